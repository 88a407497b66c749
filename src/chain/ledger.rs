//! The embedded ledger: one JSON file standing in for the chain. Its block number
//! advances with wall-clock time from the moment it was created.
//!
//! Every update takes an exclusive lock on `PATH.lock`, reads the file, changes
//! it, writes a temporary file beside it and renames it over the original, so
//! two commands never lose each other's update and a reader never sees half a
//! file. Reads take no lock.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Chain, ChainAdmin, ChainError, Job, NewJob, validate_service_uri};
use crate::eth::{Address, PrivateKey};

const FORMAT: &str = "lpgpu-ledger/1";
pub const DEFAULT_BLOCK_SECONDS: f64 = 1.0;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LedgerFile {
    format: String,
    /// When block 0 began, in milliseconds since the Unix epoch.
    genesis_unix_ms: u64,
    /// How long one block lasts, in milliseconds.
    block_ms: u64,
    /// Jobs by id; a job's id is its index.
    jobs: Vec<Job>,
    /// Service URIs by EIP-55 address.
    registry: BTreeMap<Address, String>,
}

impl LedgerFile {
    fn block_at(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.genesis_unix_ms) / self.block_ms
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A ledger file at a path. Cheap to clone; every call reads the file afresh so
/// that separate processes (a node, `job new`) see each other's writes.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    pub fn open(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a new, empty ledger; refuses to overwrite one.
    pub fn init(path: PathBuf, block_seconds: f64) -> Result<Self, ChainError> {
        if !block_seconds.is_finite() || !(0.001..=86_400.0).contains(&block_seconds) {
            return Err(ChainError::Invalid(format!(
                "--block-seconds must be between 0.001 and 86400, got {block_seconds}"
            )));
        }
        let ledger = Self { path };
        ledger.locked(|ledger, existing| {
            if existing.is_some() {
                return Err(ChainError::LedgerExists(ledger.path.clone()));
            }
            let file = LedgerFile {
                format: FORMAT.into(),
                genesis_unix_ms: now_unix_ms(),
                block_ms: (block_seconds * 1000.0).round() as u64,
                jobs: Vec::new(),
                registry: BTreeMap::new(),
            };
            ledger.write(&file)
        })?;
        Ok(ledger)
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> ChainError {
        let path = path.to_path_buf();
        move |source| ChainError::Io { path, source }
    }

    fn corrupt(&self, reason: impl Into<String>) -> ChainError {
        ChainError::LedgerCorrupt {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Reads the file, `None` when it does not exist.
    fn read_if_exists(&self) -> Result<Option<LedgerFile>, ChainError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&self.path)(e)),
        };
        let file: LedgerFile =
            serde_json::from_slice(&bytes).map_err(|e| self.corrupt(e.to_string()))?;
        if file.format != FORMAT {
            return Err(self.corrupt(format!("format {:?}, expected {FORMAT:?}", file.format)));
        }
        if file.block_ms == 0 {
            return Err(self.corrupt("blockMs is 0"));
        }
        if let Some((index, job)) = file
            .jobs
            .iter()
            .enumerate()
            .find(|(i, job)| job.id != *i as u64)
        {
            return Err(self.corrupt(format!("job at index {index} has id {}", job.id)));
        }
        Ok(Some(file))
    }

    fn read(&self) -> Result<LedgerFile, ChainError> {
        self.read_if_exists()?
            .ok_or_else(|| ChainError::LedgerMissing(self.path.clone()))
    }

    /// Runs `update` with the file's content under the exclusive lock.
    fn locked<T>(
        &self,
        update: impl FnOnce(&Self, Option<LedgerFile>) -> Result<T, ChainError>,
    ) -> Result<T, ChainError> {
        let lock_path = self.sibling("lock");
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(self.io(dir))?;
        }
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(self.io(&lock_path))?;
        lock.lock().map_err(self.io(&lock_path))?;
        let result = update(self, self.read_if_exists()?);
        // The lock is released when `lock` closes, after the rename.
        drop(lock);
        result
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{suffix}"));
        self.path.with_file_name(name)
    }

    #[allow(
        clippy::expect_used,
        reason = "the ledger's own types always serialise to JSON"
    )]
    fn write(&self, file: &LedgerFile) -> Result<(), ChainError> {
        let temporary = self.sibling("tmp");
        let json = serde_json::to_vec_pretty(file).expect("ledger JSON serialises");
        let mut out = fs::File::create(&temporary).map_err(self.io(&temporary))?;
        out.write_all(&json)
            .and_then(|_| out.sync_all())
            .map_err(self.io(&temporary))?;
        fs::rename(&temporary, &self.path).map_err(self.io(&self.path))
    }

    fn update<T>(
        &self,
        change: impl FnOnce(&mut LedgerFile) -> Result<T, ChainError>,
    ) -> Result<T, ChainError> {
        self.locked(|ledger, existing| {
            let mut file =
                existing.ok_or_else(|| ChainError::LedgerMissing(ledger.path.clone()))?;
            let result = change(&mut file)?;
            ledger.write(&file)?;
            Ok(result)
        })
    }

    pub fn job_blocking(&self, id: u64) -> Result<Option<Job>, ChainError> {
        let file = self.read()?;
        Ok(usize::try_from(id)
            .ok()
            .and_then(|i| file.jobs.get(i))
            .cloned())
    }

    pub fn service_uri_blocking(&self, address: Address) -> Result<Option<String>, ChainError> {
        Ok(self.read()?.registry.get(&address).cloned())
    }

    pub fn current_block_blocking(&self) -> Result<u64, ChainError> {
        Ok(self.read()?.block_at(now_unix_ms()))
    }

    pub fn create_job_blocking(
        &self,
        broadcaster: Address,
        job: NewJob,
    ) -> Result<u64, ChainError> {
        self.update(|file| {
            let creation_block = file.block_at(now_unix_ms());
            let id = file.jobs.len() as u64;
            file.jobs.push(Job {
                id,
                stream_id: job.stream_id,
                transcoding_options: job.transcoding_options,
                broadcaster,
                transcoder: job.transcoder,
                creation_block,
                end_block: creation_block.saturating_add(job.blocks),
            });
            Ok(id)
        })
    }

    pub fn set_service_uri_blocking(&self, address: Address, uri: &str) -> Result<(), ChainError> {
        let uri = validate_service_uri(uri)?;
        self.update(|file| {
            file.registry.insert(address, uri);
            Ok(())
        })
    }

    /// Runs a blocking ledger call off the async executor.
    async fn off_executor<T: Send + 'static>(
        &self,
        call: impl FnOnce(Ledger) -> Result<T, ChainError> + Send + 'static,
    ) -> Result<T, ChainError> {
        let ledger = self.clone();
        tokio::task::spawn_blocking(move || call(ledger))
            .await
            .map_err(|e| ChainError::Unavailable(format!("ledger task failed: {e}")))?
    }
}

#[async_trait::async_trait]
impl Chain for Ledger {
    async fn job(&self, id: u64) -> Result<Option<Job>, ChainError> {
        self.off_executor(move |l| l.job_blocking(id)).await
    }

    async fn service_uri(&self, address: Address) -> Result<Option<String>, ChainError> {
        self.off_executor(move |l| l.service_uri_blocking(address))
            .await
    }

    async fn current_block(&self) -> Result<u64, ChainError> {
        self.off_executor(|l| l.current_block_blocking()).await
    }
}

#[async_trait::async_trait]
impl ChainAdmin for Ledger {
    async fn create_job(&self, key: &PrivateKey, job: NewJob) -> Result<u64, ChainError> {
        let broadcaster = key.address();
        self.off_executor(move |l| l.create_job_blocking(broadcaster, job))
            .await
    }

    async fn set_service_uri(&self, key: &PrivateKey, uri: &str) -> Result<(), ChainError> {
        let (address, uri) = (key.address(), uri.to_string());
        self.off_executor(move |l| l.set_service_uri_blocking(address, &uri))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_job(transcoder: Address, blocks: u64) -> NewJob {
        NewJob {
            stream_id: format!("{}P720p30fps16x9", "ab".repeat(32)),
            transcoding_options: "93c717e7c0a6517a".into(),
            transcoder,
            blocks,
        }
    }

    #[test]
    fn jobs_and_registry_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::init(dir.path().join("l.json"), 1.0).unwrap();
        let (b, t) = (
            PrivateKey::random().address(),
            PrivateKey::random().address(),
        );
        assert_eq!(ledger.create_job_blocking(b, new_job(t, 10)).unwrap(), 0);
        assert_eq!(ledger.create_job_blocking(b, new_job(t, 20)).unwrap(), 1);
        let job = ledger.job_blocking(1).unwrap().unwrap();
        assert_eq!((job.broadcaster, job.transcoder), (b, t));
        assert_eq!(job.end_block, job.creation_block + 20);
        assert_eq!(ledger.job_blocking(2).unwrap(), None);
        assert_eq!(ledger.job_blocking(u64::MAX).unwrap(), None);
        ledger
            .set_service_uri_blocking(t, "https://127.0.0.1:8935")
            .unwrap();
        assert_eq!(
            ledger.service_uri_blocking(t).unwrap().as_deref(),
            Some("https://127.0.0.1:8935")
        );
        assert_eq!(ledger.service_uri_blocking(b).unwrap(), None);
        assert!(matches!(
            ledger.set_service_uri_blocking(t, "http://x:1"),
            Err(ChainError::Invalid(_))
        ));
    }

    #[test]
    fn blocks_advance_with_time() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::init(dir.path().join("l.json"), 0.02).unwrap();
        let first = ledger.current_block_blocking().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(ledger.current_block_blocking().unwrap() >= first + 3);
    }

    #[test]
    fn missing_corrupt_and_existing_ledgers_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.json");
        assert!(matches!(
            Ledger::open(path.clone()).current_block_blocking(),
            Err(ChainError::LedgerMissing(_))
        ));
        Ledger::init(path.clone(), 1.0).unwrap();
        assert!(matches!(
            Ledger::init(path.clone(), 1.0),
            Err(ChainError::LedgerExists(_))
        ));
        fs::write(&path, b"{\"format\":").unwrap();
        let ledger = Ledger::open(path.clone());
        assert!(matches!(
            ledger.current_block_blocking(),
            Err(ChainError::LedgerCorrupt { .. })
        ));
        // A corrupt ledger is never silently reset by a write either.
        let t = PrivateKey::random().address();
        assert!(matches!(
            ledger.create_job_blocking(t, new_job(t, 1)),
            Err(ChainError::LedgerCorrupt { .. })
        ));
        assert_eq!(fs::read(&path).unwrap(), b"{\"format\":");
        assert!(matches!(
            Ledger::init(dir.path().join("x.json"), 0.0),
            Err(ChainError::Invalid(_))
        ));
        assert!(matches!(
            Ledger::init(dir.path().join("x.json"), f64::NAN),
            Err(ChainError::Invalid(_))
        ));
    }

    #[test]
    fn concurrent_writers_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::init(dir.path().join("l.json"), 1.0).unwrap();
        let t = PrivateKey::random().address();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let ledger = ledger.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        ledger.create_job_blocking(t, new_job(t, 5)).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(ledger.read().unwrap().jobs.len(), 80);
    }
}
