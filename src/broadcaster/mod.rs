//! The broadcaster: finds the orchestrator, asks it for a transcoder, then
//! signs and uploads each segment (a bounded number in flight, results written
//! in order) and writes the HLS ladder.
//!
//! Delivery follows go-livepeer's habits: `503` waits for `Retry-After`,
//! network errors and `5xx` retry with backoff, refused credentials re-run
//! `GetTranscoder` once, and each call may take `max(8 s, 4 × segment length)`.
//! A segment that still fails is reported and skipped, never silently.

pub mod hls;
pub mod payer;
pub mod player;
pub mod today;
pub mod upload;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::RwLock;

use crate::chain::{Chain, ChainError, Job};
use crate::eth::{Address, PrivateKey, keccak256};
use crate::pipeline::RenditionSpec;
use crate::pipeline::ladder::output_size;
use crate::pipeline::segmenter::Segment;
use crate::proto::TranscoderRequest;
use crate::protocol::{ManifestId, Profile, SegmentHeader, encode_segment_header};
use hls::{MediaPlaylist, Variant, master_playlist};
use upload::{TranscoderConnection, UploadError, parse_multipart};

/// Where the orchestrator is: its URI, or its address in the service registry.
#[derive(Debug, Clone)]
pub enum OrchestratorTarget {
    Uri(String),
    Address(Address),
}

#[derive(Debug, Clone)]
pub struct BroadcastOptions {
    /// Segments uploaded at once.
    pub max_in_flight: usize,
    /// Attempts per segment on network errors and 5xx.
    pub max_attempts: u32,
    /// Attempts per segment while the transcoder answers `503 busy`.
    pub max_busy_attempts: u32,
    /// Keep only this many segments in the playlists (live input).
    pub live_window: Option<usize>,
}

impl Default for BroadcastOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 2,
            max_attempts: 4,
            max_busy_attempts: 30,
            live_window: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("job {0} not found on the chain")]
    UnknownJob(u64),
    #[error("job {job}: {reason}")]
    BadJob { job: u64, reason: String },
    #[error("{0} has registered no service URI")]
    NotRegistered(Address),
    #[error("GetTranscoder at {uri} failed: {reason}")]
    GetTranscoder { uri: String, reason: String },
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why one segment did not make it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SegmentFailure(pub String);

/// What happened to one segment.
#[derive(Debug, Clone)]
pub struct SegmentReport {
    pub seq: u64,
    pub seconds: f64,
    pub elapsed: Duration,
    pub attempts: u32,
    /// Bytes per rendition (in job order), or why the segment failed.
    pub result: Result<Vec<usize>, SegmentFailure>,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub segments: usize,
    pub failed: Vec<(u64, String)>,
    pub renditions: usize,
    pub source_seconds: f64,
    pub wall_seconds: f64,
    pub master_playlist: PathBuf,
}

impl Summary {
    pub fn all_delivered(&self) -> bool {
        self.failed.is_empty()
    }

    /// Wall time over seconds of video: at or below 1 the broadcast kept up.
    pub fn realtime_ratio(&self) -> f64 {
        self.wall_seconds / self.source_seconds.max(f64::EPSILON)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} segments, {} failed, {} renditions, {:.1} s of video in {:.1} s (real-time ratio {:.2})",
            self.segments,
            self.failed.len(),
            self.renditions,
            self.source_seconds,
            self.wall_seconds,
            self.realtime_ratio()
        )
    }
}

/// What takes a stream's segments to transcoding, one generation each: the
/// 2018 job's transcoder ([`Broadcaster`]) or today's orchestrators
/// ([`today::TodayBroadcaster`]). [`broadcast`] drives either and writes the
/// same HLS ladder.
#[async_trait::async_trait]
pub trait Uploader: Send + Sync + 'static {
    /// The renditions asked for, in the order answers carry them.
    fn renditions(&self) -> &[RenditionSpec];
    /// The master playlist's name (without `.m3u8`).
    fn stream_name(&self) -> String;
    /// The playlist and segment file prefix of rendition `index`.
    fn rendition_name(&self, index: usize) -> String;
    fn options(&self) -> &BroadcastOptions;
    /// Sends one segment (with retries); its renditions in profile order,
    /// and the attempts made.
    async fn upload(
        &self,
        seq: u64,
        segment: &Segment,
    ) -> (u32, Result<Vec<Bytes>, SegmentFailure>);
    /// The input is over: what the stream holds open elsewhere can go.
    async fn finish(&self) {}
}

/// An upload task's outcome, with the segment it was for.
#[derive(Debug)]
struct Delivered {
    segment: Segment,
    report: SegmentReport,
    renditions: Option<Vec<Bytes>>,
}

#[derive(Debug)]
struct Session {
    /// `authType` and `credentials`, checked as header values: they come
    /// from the orchestrator and are sent on every upload.
    auth_type: http::HeaderValue,
    credentials: http::HeaderValue,
    connection: Arc<TranscoderConnection>,
}

/// A broadcaster bound to one job and orchestrator.
#[derive(Debug)]
pub struct Broadcaster {
    job: Job,
    /// The job's manifest id (read from its stream id when connecting).
    manifest: ManifestId,
    profiles: Vec<Profile>,
    specs: Vec<RenditionSpec>,
    key: Arc<PrivateKey>,
    orchestrator_uri: String,
    session: RwLock<Arc<Session>>,
    options: BroadcastOptions,
}

async fn get_transcoder(
    uri: &str,
    job: u64,
    key: &PrivateKey,
) -> Result<Arc<Session>, BroadcastError> {
    let failed = |reason: String| BroadcastError::GetTranscoder {
        uri: uri.to_string(),
        reason,
    };
    let mut client = crate::orchestrator::client::connect(uri)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let request = TranscoderRequest {
        job_id: job as i64,
        sig: key.sign(job.to_string().as_bytes()).to_vec(),
    };
    let info = tokio::time::timeout(Duration::from_secs(10), client.get_transcoder(request))
        .await
        .map_err(|_| failed("no answer within 10 s".into()))?
        .map_err(|status| failed(format!("{:?}: {}", status.code(), status.message())))?
        .into_inner();
    // The orchestrator's strings become request headers: a control
    // character or a line break in them is its error, said plainly.
    let header = |field: &str, value: &str| {
        http::HeaderValue::from_str(value).map_err(|_| {
            failed(format!(
                "the orchestrator's {field} is not a valid HTTP header value ({} bytes)",
                value.len()
            ))
        })
    };
    let auth_type = header("authType", &info.auth_type)?;
    let credentials = header("credentials", &info.credentials)?;
    let connection = Arc::new(TranscoderConnection::new(&info.transcoder)?);
    tracing::info!(job, transcoder = %info.transcoder, "GetTranscoder: credentials received");
    Ok(Arc::new(Session {
        auth_type,
        credentials,
        connection,
    }))
}

impl Broadcaster {
    /// Reads the job, finds the orchestrator and gets a transcoder.
    pub async fn connect(
        chain: &dyn Chain,
        job_id: u64,
        key: Arc<PrivateKey>,
        target: OrchestratorTarget,
        options: BroadcastOptions,
    ) -> Result<Self, BroadcastError> {
        let job = chain
            .job(job_id)
            .await?
            .ok_or(BroadcastError::UnknownJob(job_id))?;
        let profiles = job.profiles().map_err(|e| BroadcastError::BadJob {
            job: job_id,
            reason: e.to_string(),
        })?;
        let manifest =
            ManifestId::of_stream_id(&job.stream_id).map_err(|e| BroadcastError::BadJob {
                job: job_id,
                reason: e.to_string(),
            })?;
        let orchestrator_uri = match target {
            OrchestratorTarget::Uri(uri) => uri,
            OrchestratorTarget::Address(address) => {
                let uri = chain
                    .service_uri(address)
                    .await?
                    .ok_or(BroadcastError::NotRegistered(address))?;
                tracing::info!(%address, %uri, "orchestrator found in the service registry");
                uri
            }
        };
        let session = get_transcoder(&orchestrator_uri, job_id, &key).await?;
        Ok(Self {
            job,
            manifest,
            specs: crate::pipeline::rendition::from_profiles(&profiles),
            profiles,
            key,
            orchestrator_uri,
            session: RwLock::new(session),
            options,
        })
    }

    pub fn job(&self) -> &Job {
        &self.job
    }

    fn renditions(&self, answer: &upload::Answer) -> Result<Vec<Bytes>, SegmentFailure> {
        let content_type = answer
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let parts = parse_multipart(content_type, &answer.body)
            .map_err(|e| SegmentFailure(format!("bad answer: {e}")))?;
        if parts.len() != self.profiles.len()
            || parts
                .iter()
                .zip(&self.profiles)
                .any(|((n, _), p)| n != p.name)
        {
            let names: Vec<_> = parts.iter().map(|(n, _)| n.as_str()).collect();
            return Err(SegmentFailure(format!(
                "the renditions {names:?} are not the job's profiles"
            )));
        }
        Ok(parts.into_iter().map(|(_, data)| data).collect())
    }
}

#[async_trait::async_trait]
impl Uploader for Broadcaster {
    fn renditions(&self) -> &[RenditionSpec] {
        &self.specs
    }

    fn stream_name(&self) -> String {
        self.manifest.to_string()
    }

    fn rendition_name(&self, index: usize) -> String {
        self.profiles
            .get(index)
            .map_or_else(String::new, |profile| self.manifest.stream_id(profile))
    }

    fn options(&self) -> &BroadcastOptions {
        &self.options
    }

    /// Uploads one segment with retries; returns the renditions in job order.
    async fn upload(
        &self,
        seq: u64,
        segment: &Segment,
    ) -> (u32, Result<Vec<Bytes>, SegmentFailure>) {
        // Hashing 2 MB and signing are CPU work: off the executor.
        let (key, stream_id, data) = (
            self.key.clone(),
            self.job.stream_id.clone(),
            segment.data.clone(),
        );
        let signed = tokio::task::spawn_blocking(move || {
            encode_segment_header(&SegmentHeader::sign(
                &key,
                &stream_id,
                seq,
                keccak256(&data),
            ))
        })
        .await;
        let header = match signed {
            Ok(header) => header,
            Err(e) => {
                return (
                    0,
                    Err(SegmentFailure(format!("signing the segment failed: {e}"))),
                );
            }
        };
        let timeout = Duration::from_secs_f64((4.0 * segment.seconds).max(8.0));
        let (mut attempts, mut busy, mut reauthorized) = (0u32, 0u32, false);
        loop {
            attempts += 1;
            let session = self.session.read().await.clone();
            let request = http::Request::post(format!("{}/segment", session.connection.uri()))
                .header("authorization", session.auth_type.clone())
                .header("credentials", session.credentials.clone())
                .header("livepeer-segment", &header)
                .header("content-type", "video/MP2T")
                .header("accept", "multipart/mixed")
                .body(Full::new(segment.data.clone()));
            // The URI is the orchestrator's: a bad one is its error, not a panic.
            let request = match request {
                Ok(request) => request,
                Err(e) => {
                    return (
                        attempts,
                        Err(SegmentFailure(format!(
                            "the transcoder URI {:?} makes no valid request: {e}",
                            session.connection.uri()
                        ))),
                    );
                }
            };
            let failure = match session.connection.send(request, timeout).await {
                Ok(answer) if answer.status == http::StatusCode::OK => {
                    return (attempts, self.renditions(&answer));
                }
                Ok(answer) => {
                    let code = error_code(&answer.body);
                    match answer.status.as_u16() {
                        503 if busy < self.options.max_busy_attempts => {
                            busy += 1;
                            attempts -= 1;
                            let wait = retry_after(&answer.headers);
                            tracing::debug!(
                                seq,
                                ?wait,
                                "transcoder busy; waiting as Retry-After says"
                            );
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        403 if !reauthorized
                            && matches!(
                                code.as_str(),
                                "bad_credentials" | "credentials_expired"
                            ) =>
                        {
                            reauthorized = true;
                            attempts -= 1;
                            tracing::info!(seq, code, "credentials refused: asking for new ones");
                            match get_transcoder(&self.orchestrator_uri, self.job.id, &self.key)
                                .await
                            {
                                Ok(fresh) => *self.session.write().await = fresh,
                                Err(e) => return (attempts, Err(SegmentFailure(e.to_string()))),
                            }
                            continue;
                        }
                        status if status >= 500 && attempts < self.options.max_attempts => {
                            format!("{status} {code}")
                        }
                        status => {
                            return (attempts, Err(SegmentFailure(format!("{status} {code}"))));
                        }
                    }
                }
                Err(error) if error.is_retryable() && attempts < self.options.max_attempts => {
                    error.to_string()
                }
                Err(error) => return (attempts, Err(SegmentFailure(error.to_string()))),
            };
            let backoff = Duration::from_millis(250 << attempts.min(6));
            tracing::warn!(
                seq,
                attempts,
                "segment upload failed ({failure}); retrying in {backoff:?}"
            );
            tokio::time::sleep(backoff).await;
        }
    }
}

fn error_code(body: &Bytes) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn retry_after(headers: &http::HeaderMap) -> Duration {
    let seconds = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .unwrap_or(1);
    Duration::from_secs(seconds.clamp(1, 30))
}

/// Writes a file whole or not at all: into a temporary beside it, then
/// renamed over it, so a reader (a player, a full disk) never sees half a
/// playlist; a failed write leaves the old file and removes the temporary.
async fn write_file(path: PathBuf, data: impl AsRef<[u8]>) -> Result<(), BroadcastError> {
    let temporary = path.with_extension("tmp");
    if let Err(source) = tokio::fs::write(&temporary, data).await {
        let _ = tokio::fs::remove_file(&temporary).await;
        return Err(BroadcastError::Write { path, source });
    }
    if let Err(source) = tokio::fs::rename(&temporary, &path).await {
        let _ = tokio::fs::remove_file(&temporary).await;
        return Err(BroadcastError::Write { path, source });
    }
    Ok(())
}

/// The HLS ladder being written, and the tally.
struct Ladder<'a> {
    broadcaster: &'a dyn Uploader,
    out: &'a Path,
    master_path: PathBuf,
    master_written: bool,
    playlists: Vec<MediaPlaylist>,
    /// What the player page lists, once the master is written.
    variants: Vec<Variant>,
    summary: Summary,
}

impl Ladder<'_> {
    fn playlist_path(&self, index: usize) -> PathBuf {
        self.out
            .join(format!("{}.m3u8", self.broadcaster.rendition_name(index)))
    }

    async fn write_master(&mut self, segment: &Segment) -> Result<(), BroadcastError> {
        let (w, h, sar) = segment.picture;
        let variants: Vec<Variant> = self
            .broadcaster
            .renditions()
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let (width, height) = output_size(w, h, sar, spec.width, spec.height);
                let bandwidth = spec.bitrate_bps + if segment.has_audio { 128_000 } else { 0 };
                let stream_id = self.broadcaster.rendition_name(index);
                Variant {
                    stream_id,
                    bandwidth,
                    width,
                    height,
                    has_audio: segment.has_audio,
                    hevc: spec.codec == crate::pipeline::VideoCodec::Hevc,
                }
            })
            .collect();
        let master = master_playlist(&variants);
        write_file(self.master_path.clone(), &master).await?;
        // The player page's stable names: the master's copy, and hls.js.
        // They are a convenience: failing to write them (a full disk) is a
        // warning, never a lost segment.
        if let Err(e) = write_file(self.out.join(player::MASTER_ALIAS), &master).await {
            tracing::warn!("{} was not written: {e}", player::MASTER_ALIAS);
        }
        match player::hls_js_source() {
            Some(source) => {
                let copied = match tokio::fs::read(&source).await {
                    Ok(script) => write_file(self.out.join(player::HLS_JS), script)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = copied {
                    tracing::warn!(source = %source.display(),
                        "hls.js not copied ({e}): index.html plays only where the browser has HLS");
                }
            }
            None => tracing::warn!(
                "hls.js not found (run .ci/setup, or set LPGPU_HLSJS): index.html plays only where the browser has HLS"
            ),
        }
        self.variants = variants;
        self.master_written = true;
        Ok(())
    }

    /// Writes one delivered segment's renditions and playlists, in order.
    async fn record(&mut self, delivered: Delivered) -> Result<SegmentReport, BroadcastError> {
        let Delivered {
            segment,
            report,
            renditions,
        } = delivered;
        let seq = report.seq;
        self.summary.segments += 1;
        self.summary.source_seconds += segment.seconds;
        let Some(renditions) = renditions else {
            let reason = report
                .result
                .as_ref()
                .err()
                .map(|e| e.0.clone())
                .unwrap_or_default();
            tracing::warn!(
                seq,
                "segment skipped after {} attempts: {reason}",
                report.attempts
            );
            self.summary.failed.push((seq, reason));
            return Ok(report);
        };
        if !self.master_written {
            self.write_master(&segment).await?;
        }
        for (playlist, data) in self.playlists.iter_mut().zip(renditions) {
            write_file(self.out.join(playlist.segment_name(seq)), &data).await?;
            playlist.push(seq, segment.seconds);
            self.summary.renditions += 1;
        }
        self.write_playlists().await?;
        Ok(report)
    }

    async fn write_playlists(&self) -> Result<(), BroadcastError> {
        for (index, playlist) in self.playlists.iter().enumerate() {
            write_file(self.playlist_path(index), playlist.render()).await?;
        }
        self.write_player().await
    }

    /// `index.html`, with the segment counts so far.
    async fn write_player(&self) -> Result<(), BroadcastError> {
        if !self.master_written {
            return Ok(());
        }
        let renditions: Vec<player::PlayerRendition> = self
            .variants
            .iter()
            .zip(self.broadcaster.renditions())
            .zip(&self.playlists)
            .map(|((variant, spec), playlist)| player::PlayerRendition {
                name: spec.name.clone(),
                width: variant.width,
                height: variant.height,
                bitrate_bps: spec.bitrate_bps,
                playlist: format!("{}.m3u8", variant.stream_id),
                segments: playlist.len(),
            })
            .collect();
        let title = format!("lpgpu ladder: {} renditions", renditions.len());
        let written = write_file(
            self.out.join(player::PAGE),
            player::page(&title, &renditions),
        )
        .await;
        if let Err(e) = written {
            tracing::warn!("the player page was not written: {e}");
        }
        Ok(())
    }
}

/// A channel of segments for [`broadcast`], filled from a list.
#[allow(
    clippy::expect_used,
    reason = "the channel is made as large as the list"
)]
pub fn segments_from(list: Vec<Segment>) -> tokio::sync::mpsc::Receiver<Segment> {
    let (sender, receiver) = tokio::sync::mpsc::channel(list.len().max(1));
    for segment in list {
        sender
            .try_send(segment)
            .expect("the channel holds the whole list");
    }
    receiver
}

/// Uploads segments as they arrive, at most `max_in_flight` at once, and
/// writes the HLS ladder into `out` in order. `on_segment` sees each report
/// in order. The input ends when the channel closes.
pub async fn broadcast(
    broadcaster: Arc<dyn Uploader>,
    mut segments: tokio::sync::mpsc::Receiver<Segment>,
    out: &Path,
    mut on_segment: impl FnMut(&SegmentReport),
) -> Result<Summary, BroadcastError> {
    let started = Instant::now();
    tokio::fs::create_dir_all(out)
        .await
        .map_err(|source| BroadcastError::Write {
            path: out.to_path_buf(),
            source,
        })?;
    let master_path = out.join(format!("{}.m3u8", broadcaster.stream_name()));
    let mut ladder = Ladder {
        broadcaster: broadcaster.as_ref(),
        out,
        master_path: master_path.clone(),
        master_written: false,
        variants: Vec::new(),
        playlists: (0..broadcaster.renditions().len())
            .map(|index| {
                MediaPlaylist::new(
                    &broadcaster.rendition_name(index),
                    broadcaster.options().live_window,
                )
            })
            .collect(),
        summary: Summary {
            segments: 0,
            failed: Vec::new(),
            renditions: 0,
            source_seconds: 0.0,
            wall_seconds: 0.0,
            master_playlist: master_path,
        },
    };

    let spawn_upload = |seq: u64, segment: Segment| {
        let broadcaster = broadcaster.clone();
        tokio::spawn(async move {
            let begun = Instant::now();
            let (attempts, result) = broadcaster.upload(seq, &segment).await;
            let report = SegmentReport {
                seq,
                seconds: segment.seconds,
                elapsed: begun.elapsed(),
                attempts,
                result: result
                    .as_ref()
                    .map(|r| r.iter().map(Bytes::len).collect())
                    .map_err(Clone::clone),
            };
            Delivered {
                segment,
                report,
                renditions: result.ok(),
            }
        })
    };
    let joined = |result: Result<Delivered, tokio::task::JoinError>| {
        result.map_err(|e| {
            BroadcastError::Upload(UploadError::Request(format!("an upload task failed: {e}")))
        })
    };
    let max_in_flight = broadcaster.options().max_in_flight.max(1);
    let mut in_flight: VecDeque<tokio::task::JoinHandle<Delivered>> = VecDeque::new();
    let mut next_seq = 0u64;
    let mut input_open = true;
    loop {
        if input_open && in_flight.len() < max_in_flight {
            // Take the next segment, unless the oldest upload finishes first.
            let arrived = match in_flight.front_mut() {
                None => Some(segments.recv().await),
                Some(oldest) => tokio::select! {
                    biased;
                    done = oldest => {
                        in_flight.pop_front();
                        let report = ladder.record(joined(done)?).await?;
                        on_segment(&report);
                        None
                    }
                    segment = segments.recv() => Some(segment),
                },
            };
            match arrived {
                Some(Some(segment)) => {
                    in_flight.push_back(spawn_upload(next_seq, segment));
                    next_seq += 1;
                }
                Some(None) => input_open = false,
                None => {}
            }
            continue;
        }
        let Some(oldest) = in_flight.pop_front() else {
            break;
        };
        let report = ladder.record(joined(oldest.await)?).await?;
        on_segment(&report);
    }
    // The input is over: the playlists say so (live ones keep their window).
    for playlist in &mut ladder.playlists {
        playlist.end();
    }
    ladder.write_playlists().await?;
    broadcaster.finish().await;
    let mut summary = ladder.summary;
    summary.wall_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
