//! Assembly of a serving process (`lpgpu node`, `orchestrator`, listen-mode
//! `transcoder`, the demo, the tests): a checked [`NodeConfig`] becomes a
//! [`Node`] — the orchestrator's gRPC services, the node's one
//! `/stream/…` store, its executor or pool, the segment core and the
//! `/segment` wires — with the routes [`crate::server::serve`] serves. No
//! port is bound here: [`NodeConfig::validate`] says what is wrong first.

use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::chain::Chain;
use crate::eth::{Address, PrivateKey};
use crate::metrics::Metrics;
use crate::orchestrator::today::wire::TodayWire;
use crate::orchestrator::today::{TodayConfig, TodayOrchestrator};
use crate::orchestrator::{OrchestratorGrpc, OrchestratorService};
use crate::pipeline::Backend;
use crate::pipeline::workers::{Policy, Workers};
use crate::pool::{LocalMember, Pool, PoolConfig};
use crate::proto::transcoder_server::TranscoderServer;
use crate::protocol::capabilities::{CapabilitySet, GO_LIVEPEER_VERSION};
use crate::segment::{Engine, Readiness, SegmentCore, SegmentLimits, Wire};
use crate::store::{StoreLimits, StreamStore};
use crate::transcoder::{V2Config, V2Wire};

/// A node's routers: gRPC (requests whose content type is
/// `application/grpc…`) and plain HTTP, for [`crate::server::serve`].
#[derive(Debug, Clone, Default)]
pub struct NodeRoutes {
    pub grpc: axum::Router,
    pub http: axum::Router,
}

/// How long a pool's tasks in flight get to finish at shutdown.
const POOL_DRAIN: Duration = Duration::from_secs(10);

/// What a serving process is, checked by [`NodeConfig::validate`].
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This process's `https://host:port`: the base of `/stream/` URLs.
    pub service_uri: String,
    /// Serve `GetTranscoder` (and `RegisterTranscoder`) with this key.
    pub orchestrator_key: Option<Arc<PrivateKey>>,
    /// The transcoder URI `GetTranscoder` hands out (default: `service_uri`).
    pub transcoder_uri: Option<String>,
    /// 2018 credentials must be signed by this address.
    pub credentials_from: Address,
    /// Signs `TranscodeData.sig` (unsigned without).
    pub signer: Option<Arc<PrivateKey>>,
    /// Transcode here, on this backend (`node`, listen-mode `transcoder`).
    pub backend: Option<Arc<dyn Backend>>,
    /// Accept remote transcoders registering with this secret
    /// (`--orch-secret`); segments then go to the pool.
    pub pool_secret: Option<Zeroizing<String>>,
    /// Segments (streams, in a pool) transcoded here at once.
    pub max_sessions: usize,
    pub max_segment_bytes: u64,
    pub request_timeout: Duration,
    pub transcode_timeout: Duration,
    pub expose_errors: bool,
    /// The one `/stream/…` store's budget, for renditions and the pool's
    /// source segments together.
    pub store: StoreLimits,
    /// Serve the 2018 protocol (`GetTranscoder`, its `/segment`): needs a
    /// chain.
    pub v2: bool,
    /// Serve today's broadcaster wire (`GetOrchestrator`, its `/segment`)
    /// with at most this many sessions open (go-livepeer's `-maxSessions`).
    pub today_sessions: Option<usize>,
    /// Charge today's broadcasters in PM tickets (`--price-per-unit` on a
    /// chain with Livepeer's contracts).
    pub payments: Option<Arc<crate::orchestrator::today::payments::Payments>>,
}

impl NodeConfig {
    pub const DEFAULT_MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

    /// A node's defaults for `service_uri`: accepting credentials of
    /// `credentials_from`, no backend, no pool.
    pub fn new(service_uri: String, credentials_from: Address) -> Self {
        Self {
            service_uri,
            orchestrator_key: None,
            transcoder_uri: None,
            credentials_from,
            signer: None,
            backend: None,
            pool_secret: None,
            max_sessions: 1,
            max_segment_bytes: Self::DEFAULT_MAX_SEGMENT_BYTES,
            request_timeout: Duration::from_secs(30),
            transcode_timeout: Duration::from_secs(60),
            expose_errors: false,
            store: StoreLimits {
                max_bytes: 256 << 20,
                retention: Duration::from_secs(120),
            },
            v2: true,
            today_sessions: None,
            payments: None,
        }
    }

    /// An orchestrator's defaults: `key` answers `GetTranscoder`, mints and
    /// accepts its own credentials, and signs results.
    pub fn orchestrator(service_uri: String, key: Arc<PrivateKey>) -> Self {
        Self {
            orchestrator_key: Some(key.clone()),
            signer: Some(key.clone()),
            ..Self::new(service_uri, key.address())
        }
    }

    /// Everything that can be wrong, said before a port is bound.
    pub fn validate(&self) -> Result<(), NodeError> {
        let bad = |why: &str| Err(NodeError::Config(why.to_string()));
        if self.max_sessions == 0 {
            return bad("--max-sessions must be at least 1");
        }
        if self.max_segment_bytes == 0 {
            return bad("--max-segment-bytes must be at least 1");
        }
        if self.request_timeout.is_zero() {
            return bad("--request-timeout-seconds must be at least 1");
        }
        if self.transcode_timeout.is_zero() {
            return bad("--transcode-timeout-seconds must be at least 1");
        }
        if self.store.max_bytes == 0 {
            return bad("--stream-store-mib must be at least 1");
        }
        if self.today_sessions == Some(0) {
            return bad("--max-sessions must be at least 1");
        }
        if self.pool_secret.is_some() && self.orchestrator_key.is_none() && self.v2 {
            return bad("a pool (--orch-secret) needs an orchestrator key");
        }
        if self.pool_secret.is_some() && self.transcoder_uri.is_some() {
            return bad("--transcoder-uri and --orch-secret exclude each other");
        }
        if let Some(secret) = &self.pool_secret
            && secret.trim().is_empty()
        {
            return bad("--orch-secret is empty");
        }
        Ok(())
    }

    /// Whether this process serves `/segment`.
    fn serves_segments(&self) -> bool {
        self.backend.is_some() || self.pool_secret.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Config(String),
    #[error("starting the transcode workers failed: {0}")]
    Workers(#[from] std::io::Error),
    #[error("registering the metrics failed: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A serving process, assembled.
#[derive(Debug)]
pub struct Node {
    routes: NodeRoutes,
    metrics: Metrics,
    core: Option<Arc<SegmentCore>>,
}

impl Node {
    /// Builds every part `config` asks for (threads start, nothing binds).
    pub fn build(
        config: NodeConfig,
        chain: Arc<dyn Chain>,
        metrics: Metrics,
    ) -> Result<Self, NodeError> {
        config.validate()?;
        let store = Arc::new(StreamStore::new(config.store));
        let limits = SegmentLimits {
            max_segment_bytes: config.max_segment_bytes,
            request_timeout: config.request_timeout,
            transcode_timeout: config.transcode_timeout,
        };
        let engine = match (&config.pool_secret, &config.backend) {
            (Some(secret), backend) => {
                let orch_id = config
                    .orchestrator_key
                    .as_ref()
                    .map_or_else(|| "offchain".to_string(), |k| k.address().to_string());
                // The pool sends a stream's segments one at a time: the
                // local member's slots count streams.
                let local = match backend {
                    Some(backend) => Some(LocalMember {
                        workers: Workers::new(
                            backend.clone(),
                            config.max_sessions,
                            Policy::streams(0),
                            metrics.clone(),
                        )?,
                        transcode_timeout: config.transcode_timeout,
                    }),
                    None => None,
                };
                let pool = Pool::new(
                    PoolConfig {
                        secret: secret.clone(),
                        service_uri: config.service_uri.clone(),
                        orch_id,
                        upload_timeout: config.request_timeout,
                    },
                    local,
                    store.clone(),
                    metrics.clone(),
                )?;
                pool.start_sweeper();
                Some(Engine::Pool(pool))
            }
            (None, Some(backend)) => Some(Engine::Local(Workers::new(
                backend.clone(),
                config.max_sessions,
                // The 2018 wire's slots count segments; its broadcasters
                // retry a `503 busy` after `Retry-After`.
                Policy::SEGMENTS,
                metrics.clone(),
            )?)),
            (None, None) => None,
        };
        let core = engine.map(|engine| {
            Arc::new(SegmentCore::new(
                engine,
                store.clone(),
                limits,
                metrics.clone(),
            ))
        });
        let pool = core.as_ref().and_then(|c| c.pool().cloned());

        let mut wires: Vec<Arc<dyn Wire>> = Vec::new();
        if config.serves_segments() && config.v2 {
            wires.push(Arc::new(V2Wire::new(
                V2Config {
                    orchestrator: config.credentials_from,
                    service_uri: config.service_uri.clone(),
                    signer: config.signer.clone(),
                    expose_errors: config.expose_errors,
                },
                chain.clone(),
            )));
        }
        let today = match (config.today_sessions, &core) {
            (Some(max_sessions), Some(core)) => {
                let capabilities = match (&config.pool_secret, &config.backend) {
                    (None, Some(backend)) => backend.capabilities(),
                    // A pool places each job on a member that can do it.
                    _ => CapabilitySet::lpgpu(),
                };
                let orchestrator = TodayOrchestrator::new(
                    TodayConfig {
                        service_uri: config.service_uri.clone(),
                        max_sessions,
                        capabilities,
                        version: GO_LIVEPEER_VERSION.to_string(),
                        signer: config.orchestrator_key.clone().filter(|_| config.v2),
                        payments: config.payments.clone(),
                    },
                    Some(core.clone()),
                    metrics.clone(),
                );
                orchestrator.start_sweeper();
                wires.push(Arc::new(
                    TodayWire::new(orchestrator.clone()).map_err(NodeError::Config)?,
                ));
                Some(orchestrator)
            }
            _ => None,
        };
        let mut http = crate::segment::http::router(core.clone(), wires);
        let v2 = match (&config.orchestrator_key, config.v2) {
            (Some(key), true) => {
                let handed_out = config
                    .transcoder_uri
                    .clone()
                    .unwrap_or_else(|| config.service_uri.clone());
                Some(OrchestratorService::new(
                    key.clone(),
                    chain,
                    &handed_out,
                    metrics.clone(),
                ))
            }
            _ => None,
        };
        let mut grpc = axum::Router::new();
        if v2.is_some() || today.is_some() {
            // `RegisterTranscoder` is always answered: by the pool, or with
            // UNIMPLEMENTED and how to enable it.
            let registration = crate::pool::service::RegistrationService::new(pool.clone());
            let most = crate::protocol::limits::MAX_GRPC_MESSAGE_BYTES;
            grpc = tonic::service::Routes::new(OrchestratorGrpc { v2, today }.into_server())
                .add_service(TranscoderServer::new(registration).max_decoding_message_size(most))
                .into_axum_router();
        }
        if let Some(pool) = pool {
            http = http.merge(crate::pool::http::router(pool));
        }
        Ok(Self {
            routes: NodeRoutes { grpc, http },
            metrics,
            core,
        })
    }

    pub fn routes(&self) -> NodeRoutes {
        self.routes.clone()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The segment path, when this process serves `/segment`.
    pub fn core(&self) -> Option<&Arc<SegmentCore>> {
        self.core.as_ref()
    }

    /// What `/readyz` asks, when this process takes segments.
    pub fn readiness(&self) -> Option<Arc<dyn Readiness>> {
        self.core.clone().map(|core| core as Arc<dyn Readiness>)
    }

    /// Shutting down: `/readyz` says no at once; a pool's members get their
    /// tasks in flight finished, then their streams end.
    pub async fn drain(&self) {
        if let Some(core) = &self.core {
            core.start_draining();
            if let Some(pool) = core.pool() {
                pool.close_when_idle(POOL_DRAIN).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        NodeConfig::new("https://node:8935".into(), PrivateKey::random().address())
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        assert!(config().validate().is_ok());
        type Change = Box<dyn Fn(&mut NodeConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.max_sessions = 0), "--max-sessions"),
            (Box::new(|c| c.max_segment_bytes = 0), "--max-segment-bytes"),
            (
                Box::new(|c| c.request_timeout = Duration::ZERO),
                "--request-timeout-seconds",
            ),
            (
                Box::new(|c| c.transcode_timeout = Duration::ZERO),
                "--transcode-timeout-seconds",
            ),
            (
                Box::new(|c| c.pool_secret = Some(Zeroizing::new("s".into()))),
                "orchestrator key",
            ),
        ];
        for (change, says) in cases {
            let mut c = config();
            change(&mut c);
            let error = c.validate().unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
        }
    }
}
