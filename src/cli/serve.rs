//! `lpgpu node` and `lpgpu orchestrator`: validate everything, then bind and serve.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use super::{ChainArgs, KeystoreArgs, runtime};
use crate::chain::validate_service_uri;
use crate::orchestrator::OrchestratorService;
use crate::server::{NodeRoutes, serve, service_uri, shutdown_signal};
use crate::tls::SelfSignedCert;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address and port to listen on (TLS; gRPC and HTTP share it).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8935")]
    listen: SocketAddr,
    /// The name broadcasters dial: the certificate's only name and the host of
    /// the service URI.
    #[arg(long, value_name = "NAME")]
    hostname: String,
    /// The orchestrator's keystore (its key signs credentials).
    #[command(flatten)]
    keystore: KeystoreArgs,
    #[command(flatten)]
    chain: ChainArgs,
}

#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Transcoder URI to hand out instead of this node's own https://HOSTNAME:PORT.
    #[arg(long, value_name = "URI")]
    transcoder_uri: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct OrchestratorArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Where broadcasters send segments: the transcoder's https://HOST:PORT.
    #[arg(long, value_name = "URI")]
    transcoder_uri: String,
}

pub(crate) fn run_node(args: NodeArgs) -> Result<()> {
    run(args.serve, args.transcoder_uri, "node")
}

pub(crate) fn run_orchestrator(args: OrchestratorArgs) -> Result<()> {
    run(args.serve, Some(args.transcoder_uri), "orchestrator")
}

fn run(args: ServeArgs, transcoder_uri: Option<String>, role: &'static str) -> Result<()> {
    // Everything that can be wrong is checked before a port is bound.
    let transcoder_uri = transcoder_uri
        .as_deref()
        .map(validate_service_uri)
        .transpose()?;
    let cert = SelfSignedCert::generate(&args.hostname)?;
    let tls = cert.server_config()?;
    let key = Arc::new(args.keystore.unlock()?);
    let chain = args.chain.chain.open()?;
    let runtime = runtime()?;
    runtime.block_on(async move {
        let block = chain.current_block().await.with_context(|| format!("reading {}", args.chain.chain))?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding --listen {}", args.listen))?;
        let port = listener.local_addr()?.port();
        let own_uri = service_uri(&args.hostname, port);
        let handed_out = transcoder_uri.unwrap_or_else(|| own_uri.clone());
        let orchestrator = OrchestratorService::new(key.clone(), chain, &handed_out);
        let routes = NodeRoutes::new(Some(orchestrator), role == "node");
        tracing::info!(
            role, listen = %listener.local_addr()?, service_uri = %own_uri, transcoder_uri = %handed_out,
            orchestrator = %key.address(), chain = %args.chain.chain, block, "serving"
        );
        // One machine-readable line on stdout for scripts and tests.
        println!("lpgpu {role} listening on {} as {own_uri}", listener.local_addr()?);
        serve(listener, tls, routes, shutdown_signal()).await.context("serving")?;
        tracing::info!("stopped");
        Ok(())
    })
}
