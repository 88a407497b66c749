//! A gRPC client for an orchestrator's service URI, over TLS that accepts the
//! orchestrator's self-signed certificate but checks its name.

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use crate::proto::orchestrator_client::OrchestratorClient;
use crate::tls::DialTarget;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("orchestrator URI {0:?} is not https://HOST:PORT")]
    BadUri(String),
    #[error("connecting to {uri}: {source}")]
    Connect {
        uri: String,
        source: tonic::transport::Error,
    },
}

/// Connects to `service_uri` (`https://host:port`); the TLS handshake fails
/// unless the certificate names `host`.
pub async fn connect(service_uri: &str) -> Result<OrchestratorClient<Channel>, ConnectError> {
    let target = DialTarget::parse(service_uri)
        .ok_or_else(|| ConnectError::BadUri(service_uri.to_string()))?;
    connect_to(service_uri, target).await
}

/// Connects to `target` (named `service_uri` in errors).
pub async fn connect_to(
    service_uri: &str,
    target: DialTarget,
) -> Result<OrchestratorClient<Channel>, ConnectError> {
    let authority = target.authority.clone();
    let connector = tower::service_fn(move |_: http::Uri| {
        let target = target.clone();
        async move { target.connect().await.map(TokioIo::new) }
    });
    // The scheme only labels requests; the connector above provides the TLS.
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|_| ConnectError::BadUri(service_uri.to_string()))?;
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|source| ConnectError::Connect {
            uri: service_uri.to_string(),
            source,
        })?;
    Ok(OrchestratorClient::new(channel))
}
