//! `lpgpu node`, `lpgpu orchestrator` and `lpgpu transcoder`: validate
//! everything, then bind and serve.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::transcode::PipelineArgs;
use super::{ChainArgs, KeystoreArgs, OptionalKeystoreArgs, runtime};
use crate::chain::validate_service_uri;
use crate::eth::{Address, PrivateKey};
use crate::metrics::Metrics;
use crate::node::{Node, NodeConfig};
use crate::protocol::capabilities::{GO_LIVEPEER_VERSION, Version};
use crate::server::{
    Readiness, ServeOptions, serve_metrics, serve_with, service_uri, shutdown_signal,
};
use crate::store::StoreLimits;
use crate::tls::SelfSignedCert;
use crate::transcoder::remote::{OrchestratorConfig, RemoteConfig, RemoteTranscoder};

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
    /// Connections open at once on the TLS port. Past it a new connection
    /// takes the place of one still in its handshake or idle the longest;
    /// it is refused only when every connection has a request in flight.
    #[arg(long, value_name = "N", default_value_t = crate::protocol::limits::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    #[command(flatten)]
    chain: ChainArgs,
}

/// How segments are admitted and transcoded, in every mode.
#[derive(Debug, Args)]
#[command(next_help_heading = "Transcoding (every mode)")]
pub(crate) struct SlotArgs {
    /// Segments (streams, in dial-out mode) transcoded at once; more get
    /// `503 busy` / a busy error (default: the GPU rig's sessions, else the
    /// CPU cores; half the cores in dial-out mode, where a late task costs
    /// the whole transcoder its place).
    #[arg(long, value_name = "N")]
    max_sessions: Option<usize>,
    /// Seconds one transcode may take before the request fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    transcode_timeout_seconds: u64,
    /// Put internal error text in error responses (off: stable codes only).
    #[arg(long)]
    expose_errors: bool,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

/// How `POST /segment` bodies are received and renditions kept.
#[derive(Debug, Args)]
pub(crate) struct UploadArgs {
    /// Largest segment body accepted (413 beyond).
    #[arg(long, value_name = "BYTES", default_value_t = NodeConfig::DEFAULT_MAX_SEGMENT_BYTES)]
    max_segment_bytes: u64,
    /// Seconds a client has to send the whole body.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    request_timeout_seconds: u64,
    /// Memory for protobuf-mode renditions awaiting GET /stream/… (MiB).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    stream_store_mib: u64,
    /// Seconds a protobuf-mode rendition stays fetchable.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    stream_retention_seconds: u64,
}

#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    keystore: OptionalKeystoreArgs,
    /// Transcoder URI to hand out instead of this node's own https://HOSTNAME:PORT.
    #[arg(long, value_name = "URI", conflicts_with = "orch_secret")]
    transcoder_uri: Option<String>,
    #[command(flatten)]
    pool: PoolArgs,
    #[command(flatten)]
    uploads: UploadArgs,
    #[command(flatten)]
    slots: SlotArgs,
    #[command(flatten)]
    payments: PaymentArgs,
}

/// Paid transcoding on Livepeer's contracts (today's wire).
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Payments (today's wire, --chain eth:URL?controller=0x…)")]
pub(crate) struct PaymentArgs {
    /// Charge this many wei per --pixels-per-unit pixels, in PM tickets
    /// (go-livepeer's -pricePerUnit); needs a chain naming Livepeer's
    /// Controller and a keystore.
    #[arg(long, value_name = "WEI")]
    pub(crate) price_per_unit: Option<u64>,
    /// Pixels the price is for (go-livepeer's -pixelsPerUnit).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        requires = "price_per_unit"
    )]
    pub(crate) pixels_per_unit: u64,
    /// The expected value of each ticket asked, in wei (go-livepeer's -ticketEV).
    #[arg(
        long,
        value_name = "WEI",
        default_value = "8000000000",
        requires = "price_per_unit"
    )]
    pub(crate) ticket_ev: String,
    /// The largest face value quoted, in wei (go-livepeer's -maxFaceValue).
    #[arg(long, value_name = "WEI", requires = "price_per_unit")]
    pub(crate) max_face_value: Option<String>,
    /// Redeem winning tickets only while the gas price is at most this (wei).
    #[arg(long, value_name = "WEI", requires = "price_per_unit")]
    pub(crate) max_gas_price: Option<String>,
    /// Initialize each new round (go-livepeer's -initializeRound).
    #[arg(long, requires = "price_per_unit")]
    pub(crate) initialize_round: bool,
    /// Where winning tickets are written down until redeemed.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "lpgpu-tickets.json",
        requires = "price_per_unit"
    )]
    pub(crate) ticket_store: std::path::PathBuf,
}

/// A pool of remote transcoders (go-livepeer's `-orchSecret` on an orchestrator).
#[derive(Debug, Args)]
#[command(next_help_heading = "Pool of remote transcoders")]
pub(crate) struct PoolArgs {
    /// Accept transcoders (`lpgpu transcoder --orch-addr`, `livepeer
    /// -transcoder`) that register with this secret, or the first line of
    /// this file, and serve segments through them.
    #[arg(long, value_name = "SECRET|FILE", hide_env_values = true)]
    orch_secret: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct OrchestratorArgs {
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    keystore: OptionalKeystoreArgs,
    /// Where broadcasters send segments: the transcoder's https://HOST:PORT
    /// (with --orch-secret: this orchestrator, which relays to its pool).
    #[arg(
        long,
        value_name = "URI",
        required_unless_present = "orch_secret",
        conflicts_with = "orch_secret"
    )]
    transcoder_uri: Option<String>,
    #[command(flatten)]
    pool: PoolArgs,
    #[command(flatten)]
    uploads: UploadArgs,
}

/// `lpgpu transcoder`: listen mode (v2) or dial-out mode (`--orch-addr`).
#[derive(Debug, Args)]
pub(crate) struct TranscoderArgs {
    #[command(flatten)]
    listen_mode: ListenModeArgs,
    #[command(flatten)]
    dial_out: DialOutArgs,
    /// Plain-HTTP listener for /metrics, /healthz and /readyz (both modes).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:9935",
        help_heading = "Transcoding (every mode)"
    )]
    metrics_listen: SocketAddr,
    #[command(flatten)]
    slots: SlotArgs,
}

/// Listen mode: serves the 2018 protocol's `POST /segment` on a TLS port.
#[derive(Debug, Args)]
#[command(
    next_help_heading = "Listen mode (v2: serves POST /segment; needs --hostname and --orchestrator-address)"
)]
pub(crate) struct ListenModeArgs {
    /// Address and port to listen on (TLS).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8935")]
    listen: SocketAddr,
    /// Connections open at once on the TLS port (see `lpgpu node --help`).
    #[arg(long, value_name = "N", default_value_t = crate::protocol::limits::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// The name clients dial: the certificate's only name.
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "orch_addr",
        conflicts_with = "orch_addr"
    )]
    hostname: Option<String>,
    #[command(flatten)]
    chain: ChainArgs,
    /// Accept credentials signed by this orchestrator.
    #[arg(
        long,
        value_name = "0x…",
        required_unless_present = "orch_addr",
        conflicts_with = "orch_addr"
    )]
    orchestrator_address: Option<Address>,
    /// A keystore whose key signs TranscodeData (optional: unsigned without).
    #[arg(long, value_name = "DIR", conflicts_with = "orch_addr")]
    keystore: Option<PathBuf>,
    /// File whose first line is the keystore password (else LPGPU_PASSWORD).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    #[command(flatten)]
    uploads: UploadArgs,
}

/// Dial-out mode: go-livepeer's `livepeer -transcoder -orchAddr … -orchSecret …`.
#[derive(Debug, Args)]
#[command(
    next_help_heading = "Dial-out mode (go-livepeer's -transcoder: registers with --orch-addr and is pushed segments)"
)]
pub(crate) struct DialOutArgs {
    /// The orchestrators to register with: HOST[:PORT] (port 8935 by
    /// default), comma-separated. With several, the capacity is split
    /// between those that are up, by --orch-weight; a lost one's share
    /// moves to the others and comes back when it returns.
    #[arg(long, value_name = "HOST[:PORT][,…]", requires = "orch_secret")]
    orch_addr: Option<String>,
    /// The orchestrator secret: SECRET for all, or one per orchestrator
    /// as ADDR=SECRET,ADDR=SECRET; or a FILE whose first line is the
    /// secret for all, or whose lines are ADDR=SECRET (blank lines and
    /// lines starting with # are skipped).
    #[arg(
        long,
        value_name = "SECRET|ADDR=SECRET,…|FILE",
        hide_env_values = true,
        requires = "orch_addr"
    )]
    orch_secret: Option<String>,
    /// Each orchestrator's weight in the split: ADDR=N,… (default 1 each;
    /// every orchestrator that is up gets at least one slot while there
    /// are enough; with fewer, the heaviest get one and the rest wait as
    /// standbys).
    #[arg(long, value_name = "ADDR=N,…", requires = "orch_addr")]
    orch_weight: Option<String>,
    /// Shares follow demand: every SECONDS (default 30, at least 10) one
    /// slot may move from an orchestrator with idle slots to one whose
    /// share is full. Each move re-registers both at a quiet moment.
    #[arg(
        long,
        value_name = "SECONDS",
        num_args = 0..=1,
        default_missing_value = "30",
        requires = "orch_addr"
    )]
    orch_rebalance: Option<u64>,
    /// Accept only the orchestrator certificate with this SHA-256 (hex of
    /// its DER; colons allowed). Default: any certificate, as go-livepeer.
    #[arg(long, value_name = "HEX")]
    orch_cert_sha256: Option<String>,
    /// The version registered (a semver; orchestrators may require a minimum).
    #[arg(long, value_name = "SEMVER", default_value = GO_LIVEPEER_VERSION)]
    orch_version: String,
    /// Seconds between HTTP/2 PINGs to the orchestrator. go-livepeer's gRPC
    /// server disconnects clients that ping more often than every 300 s;
    /// TCP keep-alive notices a vanished host in about 11 s regardless.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    orch_ping_seconds: u64,
    /// Seconds running tasks get to finish and post after SIGTERM.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    drain_seconds: u64,
    /// A name for this rig in an lpgpu orchestrator's logs and metrics
    /// (letters, digits, `.`, `-`, `_`; at most 64). go-livepeer ignores it.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

/// go-livepeer's `-maxSessions` default: today's sessions an orchestrator
/// with a pool keeps open.
const GO_LIVEPEER_MAX_SESSIONS: usize = 10;

/// What a serving process transcodes with.
struct Serving {
    uploads: UploadArgs,
    slots: SlotArgs,
}

enum Role {
    Node {
        /// None offchain.
        key: Option<Arc<PrivateKey>>,
        transcoder_uri: Option<String>,
        pool_secret: Option<zeroize::Zeroizing<String>>,
        segments: Serving,
        payments: Option<PaymentArgs>,
    },
    Orchestrator {
        key: Option<Arc<PrivateKey>>,
        /// None: this orchestrator's pool serves the segments.
        transcoder_uri: Option<String>,
        pool_secret: Option<zeroize::Zeroizing<String>>,
        uploads: UploadArgs,
    },
    Transcoder {
        orchestrator: Address,
        signer: Option<Arc<PrivateKey>>,
        segments: Serving,
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
    let pool_secret = args
        .pool
        .orch_secret
        .as_deref()
        .map(read_secret)
        .transpose()?;
    let key = args.keystore.unlock(&args.listen.chain.chain)?;
    let payments = args
        .payments
        .price_per_unit
        .is_some()
        .then(|| args.payments.clone());
    if payments.is_some() {
        anyhow::ensure!(
            key.is_some(),
            "--price-per-unit needs an account to be paid: give --keystore DIR and an eth: chain"
        );
    }
    run(
        args.listen,
        Role::Node {
            key,
            transcoder_uri,
            pool_secret,
            segments: Serving {
                uploads: args.uploads,
                slots: args.slots,
            },
            payments,
        },
    )
}

pub(crate) fn run_orchestrator(args: OrchestratorArgs) -> Result<()> {
    let transcoder_uri = args
        .transcoder_uri
        .as_deref()
        .map(validate_service_uri)
        .transpose()?;
    let pool_secret = args
        .pool
        .orch_secret
        .as_deref()
        .map(read_secret)
        .transpose()?;
    let key = args.keystore.unlock(&args.listen.chain.chain)?;
    anyhow::ensure!(
        key.is_some() || pool_secret.is_some(),
        "an offchain orchestrator relays to remote transcoders: give --orch-secret"
    );
    run(
        args.listen,
        Role::Orchestrator {
            key,
            transcoder_uri,
            pool_secret,
            uploads: args.uploads,
        },
    )
}

pub(crate) fn run_transcoder(args: TranscoderArgs) -> Result<()> {
    if args.dial_out.orch_addr.is_some() {
        return run_dial_out(args.dial_out, args.metrics_listen, args.slots);
    }
    let listen_mode = args.listen_mode;
    let signer = match listen_mode.keystore {
        Some(keystore) => Some(Arc::new(
            KeystoreArgs {
                keystore,
                password_file: listen_mode.password_file,
            }
            .unlock()?,
        )),
        None => None,
    };
    let listen = ListenArgs {
        listen: listen_mode.listen,
        hostname: listen_mode
            .hostname
            .context("listen mode needs --hostname (or give --orch-addr for dial-out mode)")?,
        metrics_listen: args.metrics_listen,
        max_connections: listen_mode.max_connections,
        chain: listen_mode.chain,
    };
    let orchestrator = listen_mode.orchestrator_address.context(
        "listen mode needs --orchestrator-address (or give --orch-addr for dial-out mode)",
    )?;
    run(
        listen,
        Role::Transcoder {
            orchestrator,
            signer,
            segments: Serving {
                uploads: listen_mode.uploads,
                slots: args.slots,
            },
        },
    )
}

/// `--orch-secret`: the text itself, or the first line (trimmed) of the
/// file it names, as go-livepeer reads `-orchSecret`.
fn read_secret(value: &str) -> Result<zeroize::Zeroizing<String>> {
    let path = std::path::Path::new(value);
    let secret = if path.is_file() {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the --orch-secret file {}", path.display()))?,
        );
        zeroize::Zeroizing::new(text.lines().next().unwrap_or("").trim().to_string())
    } else {
        zeroize::Zeroizing::new(value.trim().to_string())
    };
    anyhow::ensure!(!secret.is_empty(), "--orch-secret is empty");
    Ok(secret)
}

/// The dial-out mode's capacity: `--max-sessions`, else what the backend
/// holds (the GPU rig's sessions), else half the CPU cores.
fn dial_out_capacity(max_sessions: Option<usize>, backend_capacity: Option<usize>) -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    max_sessions
        .or(backend_capacity)
        .unwrap_or((cores / 2).max(1))
}

fn run_dial_out(dial: DialOutArgs, metrics_listen: SocketAddr, slots: SlotArgs) -> Result<()> {
    // Everything that can be wrong is checked before anything is dialled.
    use crate::transcoder::remote::flags;
    let addrs = flags::parse_orch_addrs(dial.orch_addr.as_deref().unwrap_or(""))
        .map_err(anyhow::Error::msg)?;
    let secrets = {
        let value = dial.orch_secret.as_deref().unwrap_or("");
        let path = std::path::Path::new(value);
        if path.is_file() {
            let text =
                zeroize::Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                    format!("reading the --orch-secret file {}", path.display())
                })?);
            flags::parse_orch_secrets(&addrs, &text, true)
        } else {
            flags::parse_orch_secrets(&addrs, value, false)
        }
        .map_err(anyhow::Error::msg)?
    };
    let weights = flags::parse_orch_weights(&addrs, dial.orch_weight.as_deref())
        .map_err(anyhow::Error::msg)?;
    if let Some(seconds) = dial.orch_rebalance {
        anyhow::ensure!(
            seconds >= 10,
            "--orch-rebalance {seconds}: at least 10 seconds (each move re-registers)"
        );
    }
    let orchestrators: Vec<OrchestratorConfig> = addrs
        .into_iter()
        .zip(secrets)
        .zip(weights)
        .map(|((addr, secret), weight)| OrchestratorConfig {
            addr,
            secret,
            weight,
        })
        .collect();
    let cert_pin = dial
        .orch_cert_sha256
        .as_deref()
        .map(|text| {
            crate::tls::parse_sha256_pin(text)
                .with_context(|| format!("--orch-cert-sha256 {text:?} is not 64 hex digits"))
        })
        .transpose()?;
    anyhow::ensure!(
        Version::parse(&dial.orch_version).is_some(),
        "--orch-version {:?} is not a semver such as {GO_LIVEPEER_VERSION}",
        dial.orch_version
    );
    if let Some(name) = &dial.name {
        anyhow::ensure!(
            crate::pool::service::valid_member_name(name),
            "--name {name:?}: use letters, digits, '.', '-' and '_', at most 64"
        );
    }
    anyhow::ensure!(
        dial.orch_ping_seconds >= 1,
        "--orch-ping-seconds must be at least 1"
    );
    anyhow::ensure!(
        slots.transcode_timeout_seconds >= 1,
        "--transcode-timeout-seconds must be at least 1"
    );
    if let Some(n) = slots.max_sessions {
        anyhow::ensure!(n >= 1, "--max-sessions must be at least 1");
    }
    let backend = slots.pipeline.backend()?;
    let capacity = dial_out_capacity(slots.max_sessions, backend.capacity());
    let config = RemoteConfig {
        orchestrators,
        capacity,
        version: dial.orch_version,
        // What the backend really does: the one source of advertised bits.
        capabilities: backend.capabilities(),
        cert_pin,
        ping_interval: Duration::from_secs(dial.orch_ping_seconds),
        transcode_timeout: Duration::from_secs(slots.transcode_timeout_seconds),
        expose_errors: slots.expose_errors,
        backoff: Default::default(),
        drain_timeout: Duration::from_secs(dial.drain_seconds),
        name: dial.name,
        rebalance: dial.orch_rebalance.map(Duration::from_secs),
    };
    runtime()?.block_on(async move {
        let metrics_listener = tokio::net::TcpListener::bind(metrics_listen)
            .await
            .with_context(|| format!("binding --metrics-listen {metrics_listen}"))?;
        let metrics = Metrics::new();
        metrics.start_gpu_sampler(Duration::from_secs(5));
        let dialled: Vec<String> = config
            .orchestrators
            .iter()
            .map(|o| o.addr.to_string())
            .collect();
        let dialled = dialled.join(",");
        tracing::info!(orchestrators = %dialled, backend = backend.name(), capacity,
            metrics = %metrics_listener.local_addr()?, "remote transcoder starting");
        // One machine-readable line on stdout for scripts and tests.
        println!(
            "lpgpu transcoder dialling {} metrics on {}",
            dialled,
            metrics_listener.local_addr()?
        );
        let remote = Arc::new(RemoteTranscoder::new(config, backend, metrics.clone())?);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let readiness: Arc<dyn Readiness> = remote.clone();
        let metrics_server = tokio::spawn(serve_metrics(
            metrics_listener,
            metrics,
            "transcoder (dial-out)",
            Some(readiness),
            wait(stopped.clone()),
        ));
        let outcome = remote.run(wait(stopped.clone())).await;
        // The metrics listener stops with the process, whatever ended the link.
        metrics_server.abort();
        outcome?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The node a role asks for, from its flags (checked by
/// [`NodeConfig::validate`] before anything is bound).
fn node_config(
    role: Role,
    own_uri: &str,
    backend: Option<Arc<dyn crate::pipeline::Backend>>,
) -> Result<NodeConfig> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let orchestrating = |key: Option<Arc<PrivateKey>>, transcoder_uri, pool_secret| {
        let base = match key {
            Some(key) => NodeConfig::orchestrator(own_uri.to_string(), key),
            // Offchain: today's wire only.
            None => NodeConfig {
                v2: false,
                ..NodeConfig::new(own_uri.to_string(), Address([0; 20]))
            },
        };
        NodeConfig {
            transcoder_uri,
            pool_secret,
            // go-livepeer's -maxSessions default, until --max-sessions says.
            today_sessions: Some(GO_LIVEPEER_MAX_SESSIONS),
            ..base
        }
    };
    let (mut config, uploads, slots) = match role {
        Role::Node {
            key,
            transcoder_uri,
            pool_secret,
            segments,
            ..
        } => (
            orchestrating(key, transcoder_uri, pool_secret),
            segments.uploads,
            Some(segments.slots),
        ),
        Role::Orchestrator {
            key,
            transcoder_uri,
            pool_secret,
            uploads,
        } => (
            orchestrating(key, transcoder_uri, pool_secret),
            uploads,
            None,
        ),
        Role::Transcoder {
            orchestrator,
            signer,
            segments,
        } => {
            let mut config = NodeConfig::new(own_uri.to_string(), orchestrator);
            config.signer = signer;
            (config, segments.uploads, Some(segments.slots))
        }
    };
    config.max_segment_bytes = uploads.max_segment_bytes;
    config.request_timeout = Duration::from_secs(uploads.request_timeout_seconds);
    config.store = StoreLimits {
        max_bytes: uploads.stream_store_mib.saturating_mul(1024 * 1024),
        retention: Duration::from_secs(uploads.stream_retention_seconds),
    };
    if let Some(slots) = slots {
        // A GPU backend is sized by its GPUs; the CPU by its cores.
        let backend_capacity = backend.as_ref().and_then(|b| b.capacity());
        config.max_sessions = slots
            .max_sessions
            .unwrap_or_else(|| backend_capacity.unwrap_or(cores));
        config.transcode_timeout = Duration::from_secs(slots.transcode_timeout_seconds);
        config.expose_errors = slots.expose_errors;
        if config.today_sessions.is_some() {
            // A node's own backend holds as many sessions as slots; a pool
            // as many as --max-sessions says, else go-livepeer's default.
            config.today_sessions = Some(match (slots.max_sessions, &config.pool_secret) {
                (Some(n), _) => n,
                (None, None) => config.max_sessions,
                (None, Some(_)) => GO_LIVEPEER_MAX_SESSIONS,
            });
        }
        config.backend = backend;
    }
    config.validate()?;
    Ok(config)
}

fn run(listen: ListenArgs, role: Role) -> Result<()> {
    // Everything that can be wrong is checked before a port is bound.
    let cert = SelfSignedCert::generate(&listen.hostname)?;
    let tls = cert.server_config()?;
    let chain = listen.chain.open()?;
    let backend = match &role {
        Role::Node { segments, .. } | Role::Transcoder { segments, .. } => {
            Some(segments.slots.pipeline.backend()?)
        }
        Role::Orchestrator { .. } => None,
    };
    let role_name = role.name();
    let payments = match &role {
        Role::Node {
            payments: Some(payments),
            key: Some(key),
            ..
        } => Some(super::payments::PaidSetup::check(
            payments,
            &listen.chain,
            key.clone(),
        )?),
        _ => None,
    };
    // The port is not known before binding: the config is checked with a
    // placeholder URI first, so a bad flag never binds a port.
    let provisional = service_uri(&listen.hostname, listen.listen.port());
    let config = node_config(role, &provisional, backend)?;
    anyhow::ensure!(
        listen.max_connections >= 1,
        "--max-connections must be at least 1"
    );
    crate::server::check_open_files(listen.max_connections);
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
        if config.backend.is_some() {
            metrics.start_gpu_sampler(std::time::Duration::from_secs(5));
        }
        let mut config = NodeConfig {
            service_uri: own_uri.clone(),
            ..config
        };
        if let Some(setup) = payments {
            config.payments = Some(setup.start(&metrics).await?);
        }
        tracing::info!(
            role = role_name,
            credentials_from = %config.credentials_from,
            transcoder_uri = %config.transcoder_uri.as_deref().unwrap_or(&own_uri),
            backend = config.backend.as_ref().map_or("none", |b| b.name()),
            max_sessions = config.max_sessions,
            pool = config.pool_secret.is_some(),
            "node identity"
        );
        let chain_reader: Arc<dyn crate::chain::Chain> = chain.clone();
        let node = Arc::new(Node::build(config, chain_reader, metrics.clone())?);

        // One signal stops both listeners; /readyz says no from its first moment.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let draining = node.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            draining.drain().await;
            let _ = stop.send(true);
        });
        let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let metrics_local = metrics_listener.local_addr()?;
        let metrics_server = tokio::spawn(serve_metrics(
            metrics_listener,
            metrics,
            role_name,
            node.readiness(),
            wait(stopped.clone()),
        ));
        tracing::info!(role = role_name, listen = %local, metrics = %metrics_local, service_uri = %own_uri,
            chain = %listen.chain.chain, block, "serving");
        // One machine-readable line on stdout for scripts and tests.
        println!("lpgpu {role_name} listening on {local} as {own_uri}");
        let options = ServeOptions {
            max_connections: listen.max_connections,
            metrics: Some(node.metrics().clone()),
        };
        serve_with(listener, tls, node.routes(), options, wait(stopped)).await.context("serving")?;
        metrics_server.await.context("the metrics server task")?.context("serving metrics")?;
        tracing::info!("stopped");
        Ok(())
    })
}
