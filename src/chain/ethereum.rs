//! The Ethereum JSON-RPC backend (`eth:http://HOST:PORT?jobs=0x…&registry=0x…`),
//! through alloy. It reads only `getJob(uint256)`, `getServiceURI(address)` and
//! the block number, so it reads Livepeer's own 2018 contracts as well as
//! lpgpu's development contracts (`contracts/`), which it can also deploy and
//! write to (`chain init`, `job new`, `registry set`).
//!
//! Jobs are cached for a few seconds and the block number for one; an RPC
//! failure is `ChainError::Unavailable` (retryable), and the next call tries
//! the node again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;

use super::{Chain, ChainAdmin, ChainError, Job, NewJob, validate_service_uri};
use crate::eth::{Address, PrivateKey};

mod contracts {
    alloy::sol!(
        #[sol(rpc)]
        JobsManager,
        "contracts/out/JobsManager.json"
    );
    alloy::sol!(
        #[sol(rpc)]
        ServiceRegistry,
        "contracts/out/ServiceRegistry.json"
    );
}
use contracts::{JobsManager, ServiceRegistry};

const JOB_CACHE: Duration = Duration::from_secs(5);
const BLOCK_CACHE: Duration = Duration::from_secs(1);
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed `eth:` chain spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthSpec {
    pub url: String,
    pub jobs: Option<Address>,
    pub registry: Option<Address>,
    /// Livepeer's Controller, through which its contracts are found.
    pub controller: Option<Address>,
}

impl EthSpec {
    /// Parses what follows `eth:`.
    pub fn parse(text: &str) -> Result<Self, ChainError> {
        let invalid = |why: String| ChainError::Invalid(format!("eth:{text}: {why}"));
        let (url, query) = text.split_once('?').unwrap_or((text, ""));
        let parsed: http::Uri = url
            .parse()
            .map_err(|_| invalid("not an http://HOST:PORT URL".into()))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.authority().is_none() {
            return Err(invalid(
                "lpgpu speaks to JSON-RPC nodes over http(s)://HOST[:PORT]".into(),
            ));
        }
        let mut spec = EthSpec {
            url: url.to_string(),
            jobs: None,
            registry: None,
            controller: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(format!("{pair:?} is not key=value")))?;
            let address: Address = value.parse().map_err(|e| invalid(format!("{key}: {e}")))?;
            match key {
                "jobs" => spec.jobs = Some(address),
                "registry" => spec.registry = Some(address),
                "controller" => spec.controller = Some(address),
                other => {
                    return Err(invalid(format!(
                        "unknown parameter {other:?} (jobs, registry, controller)"
                    )));
                }
            }
        }
        Ok(spec)
    }

    pub fn render(&self) -> String {
        let mut text = format!("eth:{}", self.url);
        let mut sep = '?';
        for (key, value) in [
            ("jobs", self.jobs),
            ("registry", self.registry),
            ("controller", self.controller),
        ] {
            if let Some(address) = value {
                text.push_str(&format!("{sep}{key}={address}"));
                sep = '&';
            }
        }
        text
    }
}

fn to_alloy(address: Address) -> EthAddress {
    EthAddress::from(address.0)
}

fn from_alloy(address: EthAddress) -> Address {
    Address(address.into_array())
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> ChainError {
    ChainError::Unavailable(format!("{what}: {error}"))
}

fn small(value: U256, what: &str) -> Result<u64, ChainError> {
    u64::try_from(value)
        .map_err(|_| ChainError::Invalid(format!("{what} {value} does not fit in 64 bits")))
}

async fn rpc<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::IntoFuture<Output = Result<T, E>>,
) -> Result<T, ChainError> {
    match tokio::time::timeout(RPC_TIMEOUT, call.into_future()).await {
        Ok(result) => result.map_err(|e| unavailable(what, e)),
        Err(_) => Err(unavailable(
            what,
            format!("no answer within {RPC_TIMEOUT:?}"),
        )),
    }
}

/// How an `https://` JSON-RPC endpoint's certificate is checked: against the
/// system's roots (rustls-platform-verifier), plus any CA given with
/// `--rpc-ca` (a private CA, or a test's).
#[derive(Debug, Clone, Default)]
pub struct RpcTls {
    extra_roots: Vec<reqwest::Certificate>,
}

impl RpcTls {
    /// Trust the certificates of a PEM file as well.
    pub fn with_ca_file(path: &std::path::Path) -> Result<Self, ChainError> {
        let invalid =
            |why: String| ChainError::Invalid(format!("--rpc-ca {}: {why}", path.display()));
        let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
        let extra_roots =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| invalid(e.to_string()))?;
        if extra_roots.is_empty() {
            return Err(invalid("no PEM certificate in the file".into()));
        }
        Ok(Self { extra_roots })
    }

    /// The HTTP client of every JSON-RPC call (HTTPS through rustls/ring).
    fn client(&self) -> Result<reqwest::Client, ChainError> {
        // reqwest's rustls needs ring installed as the process's provider
        // before a client is built.
        crate::tls::install_crypto_provider();
        reqwest::Client::builder()
            .tls_certs_merge(self.extra_roots.clone())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ChainError::Invalid(format!("the JSON-RPC client: {e}")))
    }
}

/// An Ethereum node and the two contracts.
#[derive(Debug)]
pub struct Ethereum {
    spec: EthSpec,
    http: reqwest::Client,
    provider: DynProvider,
    jobs: Mutex<HashMap<u64, (Instant, Option<Job>)>>,
    block: Mutex<Option<(Instant, u64)>>,
}

impl Ethereum {
    pub fn new(spec: EthSpec) -> Result<Self, ChainError> {
        Self::with_tls(spec, &RpcTls::default())
    }

    /// Connects to `spec`'s node, checking an HTTPS endpoint with `tls`.
    pub fn with_tls(spec: EthSpec, tls: &RpcTls) -> Result<Self, ChainError> {
        let http = tls.client()?;
        let url = spec
            .url
            .parse()
            .map_err(|e| ChainError::Invalid(format!("{}: {e}", spec.url)))?;
        let provider = ProviderBuilder::new()
            .connect_reqwest(http.clone(), url)
            .erased();
        Ok(Self {
            spec,
            http,
            provider,
            jobs: Mutex::default(),
            block: Mutex::default(),
        })
    }

    fn jobs_address(&self) -> Result<EthAddress, ChainError> {
        self.spec.jobs.map(to_alloy).ok_or_else(|| {
            ChainError::Invalid(format!("{} names no jobs=0x… contract", self.spec.render()))
        })
    }

    fn registry_address(&self) -> Result<EthAddress, ChainError> {
        self.spec.registry.map(to_alloy).ok_or_else(|| {
            ChainError::Invalid(format!(
                "{} names no registry=0x… contract",
                self.spec.render()
            ))
        })
    }

    /// A provider that signs transactions with `key`.
    pub fn signing(&self, key: &PrivateKey) -> Result<DynProvider, ChainError> {
        let signer = PrivateKeySigner::from_slice(key.secret_bytes().as_slice())
            .map_err(|e| ChainError::Invalid(format!("the key cannot sign: {e}")))?;
        let url = self
            .spec
            .url
            .parse()
            .map_err(|e| ChainError::Invalid(format!("{}: {e}", self.spec.url)))?;
        Ok(ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_reqwest(self.http.clone(), url)
            .erased())
    }

    /// Deploys the development contracts from `key`'s account; returns the
    /// spec that names them.
    pub async fn deploy(url: &str, key: &PrivateKey, tls: &RpcTls) -> Result<EthSpec, ChainError> {
        let chain = Ethereum::with_tls(
            EthSpec {
                url: url.to_string(),
                jobs: None,
                registry: None,
                controller: None,
            },
            tls,
        )?;
        let provider = chain.signing(key)?;
        let jobs = rpc(
            "deploying JobsManager",
            JobsManager::deploy(provider.clone()),
        )
        .await?;
        let registry = rpc(
            "deploying ServiceRegistry",
            ServiceRegistry::deploy(provider),
        )
        .await?;
        Ok(EthSpec {
            url: url.to_string(),
            jobs: Some(from_alloy(*jobs.address())),
            registry: Some(from_alloy(*registry.address())),
            controller: None,
        })
    }

    /// Deploys Livepeer's own contracts (the npm SDK's artifacts in
    /// `artifacts`) from `key`'s account; returns the spec naming their
    /// Controller.
    pub async fn deploy_livepeer(
        url: &str,
        key: &PrivateKey,
        tls: &RpcTls,
        artifacts: &std::path::Path,
    ) -> Result<EthSpec, ChainError> {
        let artifacts = super::livepeer::Artifacts::load(artifacts)?;
        let chain = Ethereum::with_tls(
            EthSpec {
                url: url.to_string(),
                jobs: None,
                registry: None,
                controller: None,
            },
            tls,
        )?;
        let provider = chain.signing(key)?;
        let deployed = super::livepeer::deploy(
            &provider,
            to_alloy(key.address()),
            &artifacts,
            super::livepeer::DevParameters::default(),
        )
        .await?;
        Ok(EthSpec {
            url: url.to_string(),
            jobs: None,
            registry: None,
            controller: Some(from_alloy(deployed.controller)),
        })
    }

    /// A provider for reading (and, with [`Ethereum::signing`], writing)
    /// Livepeer's contracts.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }
}

#[async_trait::async_trait]
impl Chain for Ethereum {
    async fn job(&self, id: u64) -> Result<Option<Job>, ChainError> {
        if let Some((at, job)) = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).get(&id)
            && at.elapsed() < JOB_CACHE
        {
            return Ok(job.clone());
        }
        let contract = JobsManager::new(self.jobs_address()?, &self.provider);
        let got = rpc("getJob", contract.getJob(U256::from(id)).call()).await?;
        let job = if got.broadcasterAddress == EthAddress::ZERO {
            None
        } else {
            Some(Job {
                id,
                stream_id: got.streamId,
                transcoding_options: got.transcodingOptions,
                broadcaster: from_alloy(got.broadcasterAddress),
                transcoder: from_alloy(got.transcoderAddress),
                creation_block: small(got.creationBlock, "creationBlock")?,
                end_block: small(got.endBlock, "endBlock")?,
            })
        };
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (Instant::now(), job.clone()));
        Ok(job)
    }

    async fn service_uri(&self, address: Address) -> Result<Option<String>, ChainError> {
        let contract = ServiceRegistry::new(self.registry_address()?, &self.provider);
        let uri = rpc(
            "getServiceURI",
            contract.getServiceURI(to_alloy(address)).call(),
        )
        .await?;
        Ok(Some(uri).filter(|u| !u.is_empty()))
    }

    async fn current_block(&self) -> Result<u64, ChainError> {
        if let Some((at, block)) = *self.block.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < BLOCK_CACHE
        {
            return Ok(block);
        }
        let block = rpc("eth_blockNumber", self.provider.get_block_number()).await?;
        *self.block.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), block));
        Ok(block)
    }
}

#[async_trait::async_trait]
impl ChainAdmin for Ethereum {
    async fn create_job(&self, key: &PrivateKey, job: NewJob) -> Result<u64, ChainError> {
        let provider = self.signing(key)?;
        let current = rpc("eth_blockNumber", provider.get_block_number()).await?;
        let contract = JobsManager::new(self.jobs_address()?, &provider);
        let call = contract.createJob(
            job.stream_id,
            job.transcoding_options,
            to_alloy(job.transcoder),
            U256::from(current.saturating_add(job.blocks.max(1))),
        );
        let pending = rpc("sending createJob", call.send()).await?;
        let receipt = rpc("waiting for the createJob receipt", pending.get_receipt()).await?;
        if !receipt.status() {
            return Err(ChainError::Invalid("createJob reverted".into()));
        }
        let event = receipt
            .decoded_log::<JobsManager::NewJob>()
            .ok_or_else(|| ChainError::Invalid("createJob emitted no NewJob event".into()))?;
        small(event.data.jobId, "jobId")
    }

    async fn set_service_uri(&self, key: &PrivateKey, uri: &str) -> Result<(), ChainError> {
        let uri = validate_service_uri(uri)?;
        let provider = self.signing(key)?;
        let contract = ServiceRegistry::new(self.registry_address()?, &provider);
        let pending = rpc("sending setServiceURI", contract.setServiceURI(uri).send()).await?;
        let receipt = rpc(
            "waiting for the setServiceURI receipt",
            pending.get_receipt(),
        )
        .await?;
        if !receipt.status() {
            return Err(ChainError::Invalid("setServiceURI reverted".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_render() {
        let spec = EthSpec::parse(
            "http://127.0.0.1:8545?jobs=0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed&registry=0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        )
        .unwrap();
        assert_eq!(spec.url, "http://127.0.0.1:8545");
        assert_eq!(
            EthSpec::parse(&spec.render()["eth:".len()..]).unwrap(),
            spec
        );
        assert!(
            EthSpec::parse("http://127.0.0.1:8545")
                .unwrap()
                .jobs
                .is_none()
        );
        assert_eq!(
            EthSpec::parse("https://rpc.example").unwrap().url,
            "https://rpc.example"
        );
        for bad in [
            "ftp://x:1",
            "127.0.0.1:8545",
            "http://x:1?jobs=0x12",
            "http://x:1?what=0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "http://x:1?jobs",
        ] {
            assert!(EthSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
