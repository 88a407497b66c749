//! A gRPC client for an orchestrator's service URI, over TLS that accepts the
//! orchestrator's self-signed certificate but checks its name.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};

use crate::proto::orchestrator_client::OrchestratorClient;

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
    let bad_uri = || ConnectError::BadUri(service_uri.to_string());
    let uri: http::Uri = service_uri.parse().map_err(|_| bad_uri())?;
    if uri.scheme_str() != Some("https") {
        return Err(bad_uri());
    }
    let authority = uri.authority().ok_or_else(bad_uri)?.clone();
    let port = authority.port_u16().ok_or_else(bad_uri)?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let server_name = ServerName::try_from(host.clone()).map_err(|_| bad_uri())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(crate::tls::client_config(&[b"h2"])));

    let connector = tower::service_fn(move |_: http::Uri| {
        let (tls, host, server_name) = (tls.clone(), host.clone(), server_name.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = tls.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    // The scheme only labels requests; the connector above provides the TLS.
    let endpoint = Endpoint::from_shared(format!("http://{authority}")).map_err(|_| bad_uri())?;
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|source| ConnectError::Connect {
            uri: service_uri.to_string(),
            source,
        })?;
    Ok(OrchestratorClient::new(channel))
}
