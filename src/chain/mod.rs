//! What lpgpu reads from (and writes to) the chain: jobs by id, service URIs by
//! address, and the current block number, behind the [`Chain`] trait.
//!
//! Backends: [`Ledger`], an embedded JSON file whose block number advances with
//! wall-clock time (the default, `ledger:PATH`), and [`Ethereum`], any
//! Ethereum JSON-RPC node (`eth:http://HOST:PORT?jobs=0x…&registry=0x…`).

pub mod ethereum;
mod ledger;
pub mod livepeer;
pub mod operator;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::eth::{Address, PrivateKey};
use crate::protocol::{Profile, ProfileError, parse_transcoding_options};

pub use ethereum::{EthSpec, Ethereum, RpcTls};
pub use ledger::{DEFAULT_BLOCK_SECONDS, Ledger};

/// A transcoding job as the chain records it (`getJob(uint256)`'s fields that
/// the protocol uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Job {
    pub id: u64,
    pub stream_id: String,
    pub transcoding_options: String,
    pub broadcaster: Address,
    pub transcoder: Address,
    pub creation_block: u64,
    pub end_block: u64,
}

impl Job {
    /// The job's profiles in job order (the order of `transcodingOptions`).
    pub fn profiles(&self) -> Result<Vec<Profile>, ProfileError> {
        parse_transcoding_options(&self.transcoding_options)
    }
}

/// What `lpgpu job new` asks the chain to record.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub stream_id: String,
    pub transcoding_options: String,
    pub transcoder: Address,
    /// `endBlock = current block + blocks`.
    pub blocks: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("ledger {0} does not exist (create it with `lpgpu chain init --chain ledger:{0}`)")]
    LedgerMissing(PathBuf),
    #[error("ledger {0} already exists; refusing to overwrite it")]
    LedgerExists(PathBuf),
    #[error("ledger {path} is corrupt: {reason} (fix or move it; lpgpu never resets a ledger)")]
    LedgerCorrupt { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the chain cannot be reached right now: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
}

impl ChainError {
    /// Whether asking again later may succeed (an RPC node that is down).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ChainError::Unavailable(_))
    }
}

/// Reads the protocol needs from a chain. Implementations are cheap to share.
#[async_trait::async_trait]
pub trait Chain: Send + Sync + fmt::Debug {
    /// The job with this id, or `None` when there is none.
    async fn job(&self, id: u64) -> Result<Option<Job>, ChainError>;
    /// The service URI an address registered, or `None`.
    async fn service_uri(&self, address: Address) -> Result<Option<String>, ChainError>;
    async fn current_block(&self) -> Result<u64, ChainError>;
}

/// Writes behind the `job new` and `registry set` commands, signed by `key`.
#[async_trait::async_trait]
pub trait ChainAdmin: Chain {
    /// Records a job whose broadcaster is `key`'s address; returns its id.
    async fn create_job(&self, key: &PrivateKey, job: NewJob) -> Result<u64, ChainError>;
    async fn set_service_uri(&self, key: &PrivateKey, uri: &str) -> Result<(), ChainError>;
}

/// A `--chain` value: `ledger:PATH`, `eth:http(s)://HOST:PORT?jobs=0x…&registry=0x…`,
/// or `offchain` (no chain: today's wire only, unpaid, as go-livepeer's
/// `-network offchain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainSpec {
    Ledger(PathBuf),
    Ethereum(String),
    Offchain,
}

impl FromStr for ChainSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("ledger:") {
            if path.is_empty() {
                return Err("ledger: needs a path, e.g. ledger:./lpgpu-ledger.json".into());
            }
            Ok(ChainSpec::Ledger(PathBuf::from(path)))
        } else if let Some(url) = s.strip_prefix("eth:") {
            Ok(ChainSpec::Ethereum(url.to_string()))
        } else if s == "offchain" {
            Ok(ChainSpec::Offchain)
        } else {
            Err(format!(
                "unknown chain {s:?}: use ledger:PATH, eth:http://HOST:PORT?jobs=0x…&registry=0x… or offchain"
            ))
        }
    }
}

impl fmt::Display for ChainSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainSpec::Ledger(path) => write!(f, "ledger:{}", path.display()),
            ChainSpec::Ethereum(url) => write!(f, "eth:{url}"),
            ChainSpec::Offchain => f.write_str("offchain"),
        }
    }
}

impl ChainSpec {
    /// Opens the backend this spec names.
    pub fn open(&self) -> Result<Arc<dyn ChainAdmin>, ChainError> {
        self.open_with(&RpcTls::default())
    }

    /// Opens the backend, checking an `https://` JSON-RPC endpoint with `tls`.
    pub fn open_with(&self, tls: &RpcTls) -> Result<Arc<dyn ChainAdmin>, ChainError> {
        match self {
            ChainSpec::Ledger(path) => Ok(Arc::new(Ledger::open(path.clone()))),
            ChainSpec::Ethereum(rest) => {
                Ok(Arc::new(Ethereum::with_tls(EthSpec::parse(rest)?, tls)?))
            }
            ChainSpec::Offchain => Ok(Arc::new(Offchain)),
        }
    }

    pub fn is_offchain(&self) -> bool {
        matches!(self, ChainSpec::Offchain)
    }
}

/// `--chain offchain`: no jobs, no registry, block 0. What needs a chain
/// says so.
#[derive(Debug, Clone, Copy)]
pub struct Offchain;

impl Offchain {
    fn none<T>() -> Result<T, ChainError> {
        Err(ChainError::Invalid(
            "--chain offchain has no chain: jobs, the registry and payments need ledger:PATH or eth:URL".into(),
        ))
    }
}

#[async_trait::async_trait]
impl Chain for Offchain {
    async fn job(&self, _id: u64) -> Result<Option<Job>, ChainError> {
        Self::none()
    }
    async fn service_uri(&self, _address: Address) -> Result<Option<String>, ChainError> {
        Self::none()
    }
    async fn current_block(&self) -> Result<u64, ChainError> {
        Ok(0)
    }
}

#[async_trait::async_trait]
impl ChainAdmin for Offchain {
    async fn create_job(&self, _key: &PrivateKey, _job: NewJob) -> Result<u64, ChainError> {
        Self::none()
    }
    async fn set_service_uri(&self, _key: &PrivateKey, _uri: &str) -> Result<(), ChainError> {
        Self::none()
    }
}

/// Checks a service URI is `https://host:port` (the registry's form) and
/// returns it without a trailing slash.
pub fn validate_service_uri(uri: &str) -> Result<String, ChainError> {
    let invalid = |why: &str| {
        ChainError::Invalid(format!(
            "service URI {uri:?} {why}; expected https://HOST:PORT"
        ))
    };
    let parsed: http::Uri = uri.parse().map_err(|_| invalid("is not a URI"))?;
    if parsed.scheme_str() != Some("https") {
        return Err(invalid("is not https"));
    }
    let authority = parsed.authority().ok_or_else(|| invalid("has no host"))?;
    if authority.port_u16().is_none() || authority.host().is_empty() {
        return Err(invalid("has no port"));
    }
    if parsed.path() != "/" && !parsed.path().is_empty() || parsed.query().is_some() {
        return Err(invalid("has a path"));
    }
    Ok(format!("https://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_specs_parse() {
        assert_eq!(
            "ledger:/tmp/x.json".parse(),
            Ok(ChainSpec::Ledger("/tmp/x.json".into()))
        );
        assert!(matches!(
            "eth:http://127.0.0.1:8545".parse(),
            Ok(ChainSpec::Ethereum(_))
        ));
        assert!("ledger:".parse::<ChainSpec>().is_err());
        assert!("ftp:x".parse::<ChainSpec>().is_err());
        let eth: ChainSpec = "eth:http://127.0.0.1:8545".parse().unwrap();
        assert!(eth.open().is_ok());
        let bad: ChainSpec = "eth:ftp://x".parse().unwrap();
        assert!(matches!(bad.open(), Err(ChainError::Invalid(_))));
    }

    #[test]
    fn service_uris_are_checked() {
        assert_eq!(
            validate_service_uri("https://node.example:8935").unwrap(),
            "https://node.example:8935"
        );
        assert_eq!(
            validate_service_uri("https://127.0.0.1:8935/").unwrap(),
            "https://127.0.0.1:8935"
        );
        for bad in [
            "http://a:1",
            "https://a",
            "a:1",
            "https://a:1/x",
            "",
            "https://:1",
        ] {
            assert!(validate_service_uri(bad).is_err(), "{bad}");
        }
    }
}
