//! `lpgpu node`, `lpgpu orchestrator` and `lpgpu transcoder`: validate
//! everything, then bind and serve.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::transcode::PipelineArgs;
use super::{ChainArgs, KeystoreArgs, runtime};
use crate::chain::validate_service_uri;
use crate::eth::{Address, PrivateKey};
use crate::metrics::Metrics;
use crate::orchestrator::OrchestratorService;
use crate::server::{NodeRoutes, serve, serve_metrics, service_uri, shutdown_signal};
use crate::tls::SelfSignedCert;
use crate::transcoder::store::StoreLimits;
use crate::transcoder::{Transcoder, TranscoderConfig};

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Address and port to listen on (TLS; gRPC and HTTP share it).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8935")]
    listen: SocketAddr,
    /// The name clients dial: the certificate's only name and the host of the
    /// service URI.
    #[arg(long, value_name = "NAME")]
    hostname: String,
    /// Plain-HTTP listener for /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9935")]
    metrics_listen: SocketAddr,
    #[command(flatten)]
    chain: ChainArgs,
}

/// How a transcoder admits and answers segments.
#[derive(Debug, Args)]
pub(crate) struct SegmentArgs {
    /// Segments transcoded at once; more get `503 busy` (default: CPU cores).
    #[arg(long, value_name = "N")]
    max_sessions: Option<usize>,
    /// Largest segment body accepted (413 beyond).
    #[arg(long, value_name = "BYTES", default_value_t = TranscoderConfig::DEFAULT_MAX_SEGMENT_BYTES)]
    max_segment_bytes: u64,
    /// Seconds a client has to send the whole body.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    request_timeout_seconds: u64,
    /// Seconds one transcode may take before the request fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    transcode_timeout_seconds: u64,
    /// Put internal error text in error responses (off: stable codes only).
    #[arg(long)]
    expose_errors: bool,
    /// Memory for protobuf-mode renditions awaiting GET /stream/… (MiB).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    stream_store_mib: u64,
    /// Seconds a protobuf-mode rendition stays fetchable.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    stream_retention_seconds: u64,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    #[command(flatten)]
    listen: ListenArgs,
    /// The orchestrator's keystore (its key signs credentials and results).
    #[command(flatten)]
    keystore: KeystoreArgs,
    /// Transcoder URI to hand out instead of this node's own https://HOSTNAME:PORT.
    #[arg(long, value_name = "URI")]
    transcoder_uri: Option<String>,
    #[command(flatten)]
    segments: SegmentArgs,
}

#[derive(Debug, Args)]
pub(crate) struct OrchestratorArgs {
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    keystore: KeystoreArgs,
    /// Where broadcasters send segments: the transcoder's https://HOST:PORT.
    #[arg(long, value_name = "URI")]
    transcoder_uri: String,
}

#[derive(Debug, Args)]
pub(crate) struct TranscoderArgs {
    #[command(flatten)]
    listen: ListenArgs,
    /// Accept credentials signed by this orchestrator.
    #[arg(long, value_name = "0x…")]
    orchestrator_address: Address,
    /// A keystore whose key signs TranscodeData (optional: unsigned without).
    #[arg(long, value_name = "DIR")]
    keystore: Option<PathBuf>,
    /// File whose first line is the keystore password (else LPGPU_PASSWORD).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    #[command(flatten)]
    segments: SegmentArgs,
}

enum Role {
    Node {
        key: Arc<PrivateKey>,
        transcoder_uri: Option<String>,
        segments: SegmentArgs,
    },
    Orchestrator {
        key: Arc<PrivateKey>,
        transcoder_uri: String,
    },
    Transcoder {
        orchestrator: Address,
        signer: Option<Arc<PrivateKey>>,
        segments: SegmentArgs,
    },
}

impl Role {
    fn name(&self) -> &'static str {
        match self {
            Role::Node { .. } => "node",
            Role::Orchestrator { .. } => "orchestrator",
            Role::Transcoder { .. } => "transcoder",
        }
    }
}

pub(crate) fn run_node(args: NodeArgs) -> Result<()> {
    let transcoder_uri = args
        .transcoder_uri
        .as_deref()
        .map(validate_service_uri)
        .transpose()?;
    let key = Arc::new(args.keystore.unlock()?);
    run(
        args.listen,
        Role::Node {
            key,
            transcoder_uri,
            segments: args.segments,
        },
    )
}

pub(crate) fn run_orchestrator(args: OrchestratorArgs) -> Result<()> {
    let transcoder_uri = validate_service_uri(&args.transcoder_uri)?;
    let key = Arc::new(args.keystore.unlock()?);
    run(
        args.listen,
        Role::Orchestrator {
            key,
            transcoder_uri,
        },
    )
}

pub(crate) fn run_transcoder(args: TranscoderArgs) -> Result<()> {
    let signer = match args.keystore {
        Some(keystore) => Some(Arc::new(
            KeystoreArgs {
                keystore,
                password_file: args.password_file,
            }
            .unlock()?,
        )),
        None => None,
    };
    run(
        args.listen,
        Role::Transcoder {
            orchestrator: args.orchestrator_address,
            signer,
            segments: args.segments,
        },
    )
}

fn transcoder_config(
    segments: &SegmentArgs,
    orchestrator: Address,
    signer: Option<Arc<PrivateKey>>,
    service_uri: String,
    backend_capacity: Option<usize>,
) -> Result<TranscoderConfig> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    // A GPU backend is sized by its GPUs; the CPU by its cores.
    let max_sessions = segments
        .max_sessions
        .unwrap_or_else(|| backend_capacity.unwrap_or(cores));
    anyhow::ensure!(max_sessions >= 1, "--max-sessions must be at least 1");
    anyhow::ensure!(
        segments.max_segment_bytes >= 1,
        "--max-segment-bytes must be at least 1"
    );
    anyhow::ensure!(
        segments.request_timeout_seconds >= 1,
        "--request-timeout-seconds must be at least 1"
    );
    anyhow::ensure!(
        segments.transcode_timeout_seconds >= 1,
        "--transcode-timeout-seconds must be at least 1"
    );
    Ok(TranscoderConfig {
        orchestrator,
        service_uri,
        signer,
        max_segment_bytes: segments.max_segment_bytes,
        max_sessions,
        request_timeout: Duration::from_secs(segments.request_timeout_seconds),
        transcode_timeout: Duration::from_secs(segments.transcode_timeout_seconds),
        expose_errors: segments.expose_errors,
        store: StoreLimits {
            max_bytes: segments.stream_store_mib.saturating_mul(1024 * 1024),
            retention: Duration::from_secs(segments.stream_retention_seconds),
        },
    })
}

fn run(listen: ListenArgs, role: Role) -> Result<()> {
    // Everything that can be wrong is checked before a port is bound.
    let cert = SelfSignedCert::generate(&listen.hostname)?;
    let tls = cert.server_config()?;
    let chain = listen.chain.chain.open()?;
    let backend = match &role {
        Role::Node { segments, .. } | Role::Transcoder { segments, .. } => {
            Some(segments.pipeline.backend()?)
        }
        Role::Orchestrator { .. } => None,
    };
    let role_name = role.name();
    runtime()?.block_on(async move {
        let block = chain.current_block().await.with_context(|| format!("reading {}", listen.chain.chain))?;
        let listener = tokio::net::TcpListener::bind(listen.listen)
            .await
            .with_context(|| format!("binding --listen {}", listen.listen))?;
        let metrics_listener = tokio::net::TcpListener::bind(listen.metrics_listen)
            .await
            .with_context(|| format!("binding --metrics-listen {}", listen.metrics_listen))?;
        let local = listener.local_addr()?;
        let own_uri = service_uri(&listen.hostname, local.port());
        let metrics = Metrics::new();
        if backend.is_some() {
            metrics.start_gpu_sampler(std::time::Duration::from_secs(5));
        }
        let chain_reader: Arc<dyn crate::chain::Chain> = chain.clone();
        let (orchestrator, transcoder) = match role {
            Role::Node { key, transcoder_uri, segments } => {
                let handed_out = transcoder_uri.unwrap_or_else(|| own_uri.clone());
                let backend = backend.expect("nodes transcode");
                let config = transcoder_config(&segments, key.address(), Some(key.clone()), own_uri.clone(),
                    backend.capacity())?;
                tracing::info!(orchestrator = %key.address(), transcoder_uri = %handed_out, backend = backend.name(),
                    max_sessions = config.max_sessions, "node identity");
                let transcoder = Transcoder::new(config, chain_reader.clone(), backend, metrics.clone());
                let orchestrator = OrchestratorService::new(key, chain_reader, &handed_out, metrics.clone());
                (Some(orchestrator), Some(Arc::new(transcoder)))
            }
            Role::Orchestrator { key, transcoder_uri } => {
                tracing::info!(orchestrator = %key.address(), %transcoder_uri, "orchestrator identity");
                (Some(OrchestratorService::new(key, chain_reader, &transcoder_uri, metrics.clone())), None)
            }
            Role::Transcoder { orchestrator, signer, segments } => {
                let backend = backend.expect("transcoders transcode");
                let config = transcoder_config(&segments, orchestrator, signer, own_uri.clone(),
                    backend.capacity())?;
                tracing::info!(%orchestrator, backend = backend.name(), max_sessions = config.max_sessions,
                    "transcoder identity");
                (None, Some(Arc::new(Transcoder::new(config, chain_reader, backend, metrics.clone()))))
            }
        };

        // One signal stops both listeners; /readyz says no from its first moment.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let draining = transcoder.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            if let Some(transcoder) = draining {
                transcoder.start_draining();
            }
            let _ = stop.send(true);
        });
        let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let metrics_local = metrics_listener.local_addr()?;
        let metrics_server = tokio::spawn(serve_metrics(
            metrics_listener,
            metrics,
            transcoder.clone(),
            wait(stopped.clone()),
        ));
        let routes = NodeRoutes::new(orchestrator, transcoder);
        tracing::info!(role = role_name, listen = %local, metrics = %metrics_local, service_uri = %own_uri,
            chain = %listen.chain.chain, block, "serving");
        // One machine-readable line on stdout for scripts and tests.
        println!("lpgpu {role_name} listening on {local} as {own_uri}");
        serve(listener, tls, routes, wait(stopped)).await.context("serving")?;
        metrics_server.await.context("the metrics server task")?.context("serving metrics")?;
        tracing::info!("stopped");
        Ok(())
    })
}
