//! The broadcaster of today's go-livepeer wire (`spec/bo-protocol.md`),
//! offchain, as a go-livepeer gateway with `-orchAddr` behaves:
//! `GetOrchestrator` to each orchestrator (a session and its auth token),
//! the fastest answer first; `SegData` with the fullProfiles variant
//! go-livepeer would pick; `POST /segment` and the protobuf
//! `TranscodeResult`; renditions fetched from their URLs and their pixel
//! counts checked. lpms's input errors are not retried; anything else
//! suspends the orchestrator and the segment goes to another (3 attempts
//! in all); a refused or expiring token gets a fresh session (a restarted
//! orchestrator); `EndTranscodingSession` for every session at the end.
//! Beyond go-livepeer: gRPC connections are reused, and the log says why
//! an orchestrator was suspended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use prost::Message;
use tonic::transport::Channel;

use super::payer::{PayState, Payer, Settled};
use super::upload::{TranscoderConnection, UploadError};
use super::{BroadcastOptions, SegmentFailure, Uploader};
use crate::eth::keccak256;
use crate::pipeline::RenditionSpec;
use crate::pipeline::segmenter::Segment;
use crate::proto::orchestrator_client::OrchestratorClient;
use crate::proto::{
    Capabilities, EndTranscodingSessionRequest, OrchestratorInfo, OrchestratorRequest,
    SegmentTranscodeResult, TaskAuthToken, TaskSegData, VideoProfile, segment_transcode_result,
    video_profile,
};
use crate::protocol::capabilities::CapabilitySet;
use crate::protocol::today::{OFFCHAIN_ADDRESS, PAYMENT_HEADER, SEGMENT_HEADER};
use crate::protocol::video_profile::{needs, to_video_profile};
use crate::tls::DialTarget;

/// go-livepeer's port when an `-orchAddr` entry has none.
pub const DEFAULT_PORT: u16 = 8935;
/// A session is refreshed when its token has less than this left.
const REFRESH_BEFORE_EXPIRY: i64 = 3 * 60;
/// `GetOrchestrator` answers within this (go-livepeer's 6 s cutoff).
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(6);
/// Each rendition download (go-livepeer's 4 s).
const RENDITION_TIMEOUT: Duration = Duration::from_secs(4);
/// Attempts per segment across orchestrators (`-maxAttempts`).
const MAX_ATTEMPTS: u32 = 3;

/// The errors a go-livepeer broadcaster does not retry: the input's
/// faults in lpms's words. The orchestrator is kept.
pub const NOT_RETRIED: [&str; 19] = [
    "Unsupported input pixel format",
    "Error initializing filtergraph",
    "Too many outputs",
    "Unsupported input codec",
    "No keyframes in input",
    "Unrecoverable state, restart process",
    "Encoded frames runaway",
    "Decoder not found",
    "Demuxer not found",
    "Encoder not found",
    "Muxer not found",
    "Option not found",
    "Invalid argument",
    "TranscoderInvalidResolution",
    "TranscoderInvalidVideo",
    "TranscoderUnrecognizedFormat",
    "TranscoderUnrecognizedProfile",
    "TranscoderInvalidGOP",
    "TranscoderIncompatibleDevices",
];

/// `-orchAddr a,b,…` as go-livepeer reads it: entries trimmed, `:8935`
/// added without a port, `https://` without a scheme. Each must be
/// `https://HOST:PORT` (plaintext orchestrators are not supported).
pub fn parse_orch_addrs(list: &str) -> Result<Vec<String>, String> {
    let mut uris = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let with_scheme = if entry.starts_with("http") {
            entry.to_string()
        } else {
            format!("https://{entry}")
        };
        let parsed: http::Uri = with_scheme
            .parse()
            .map_err(|_| format!("{entry:?} is not HOST[:PORT]"))?;
        if parsed.scheme_str() != Some("https") {
            return Err(format!("{entry:?}: only https orchestrators are supported"));
        }
        let authority = parsed
            .authority()
            .ok_or_else(|| format!("{entry:?} has no host"))?;
        let uri = match authority.port_u16() {
            Some(_) => format!("https://{authority}"),
            None => format!("https://{authority}:{DEFAULT_PORT}"),
        };
        DialTarget::parse(&uri).ok_or_else(|| format!("{entry:?} is not HOST[:PORT]"))?;
        uris.push(uri);
    }
    if uris.is_empty() {
        return Err("--orch-addr names no orchestrator".into());
    }
    Ok(uris)
}

/// Which `SegData` field carries the renditions, as go-livepeer picks it:
/// 33 when all are MPEG-TS with integer rates and default encoder
/// profiles and GOPs, 34 when the same holds but some are MP4, else 35.
pub fn profiles_field(profiles: &[VideoProfile]) -> u32 {
    let plain = profiles.iter().all(|p| {
        (p.fps_den <= 1)
            && p.profile == video_profile::Profile::EncoderDefault as i32
            && p.gop == 0
            && p.encoder == video_profile::VideoCodec::H264 as i32
            && p.color_depth == 0
            && p.chroma_format == 0
            && p.quality == 0
    });
    let all_ts = profiles
        .iter()
        .all(|p| p.format == video_profile::Format::Mpegts as i32);
    match (plain, all_ts) {
        (true, true) => 33,
        (true, false) => 34,
        _ => 35,
    }
}

/// What went wrong with one attempt, and what it means for the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// The input's fault: the segment fails, the orchestrator is kept.
    Input(String),
    /// The session's token was refused: a new session, same orchestrator.
    Token(String),
    /// The orchestrator's fault (or the network's): suspend it, go elsewhere.
    Orchestrator(String),
}

/// An answer's error text (a non-200 body, or a `TranscodeResult.error`)
/// as go-livepeer's broadcaster treats it.
pub fn classify(text: &str) -> AttemptError {
    let text = text.trim();
    if NOT_RETRIED.contains(&text) {
        AttemptError::Input(text.to_string())
    } else if matches!(text, "invalid auth token" | "expired auth token") {
        AttemptError::Token(text.to_string())
    } else {
        AttemptError::Orchestrator(text.to_string())
    }
}

/// One orchestrator's session.
#[derive(Debug, Clone)]
struct Session {
    orchestrator: usize,
    token: TaskAuthToken,
    /// Where segments go: `OrchestratorInfo.transcoder`.
    connection: Arc<TranscoderConnection>,
    latency: Duration,
    /// A paying broadcaster's tickets and balance with this session.
    pay: Option<Arc<Mutex<PayState>>>,
}

#[derive(Debug, Default)]
struct State {
    /// The session in use.
    current: Option<Session>,
    /// Every session opened, to end at the end (by token).
    opened: Vec<(usize, TaskAuthToken)>,
    /// Orchestrators suspended, with why.
    suspended: HashMap<usize, String>,
    /// gRPC channels, reused (go-livepeer dials per call).
    clients: HashMap<usize, OrchestratorClient<Channel>>,
    /// Rendition hosts, reused.
    downloads: HashMap<String, Arc<TranscoderConnection>>,
}

/// Whether renditions can go into the HLS ladder a broadcaster writes:
/// H.264 or HEVC in MPEG-TS segments (HLS has no Matroska, and its MP4 is
/// fragmented, which a rendition is not), with distinct file names.
pub fn check_hls_renditions(renditions: &[RenditionSpec]) -> Result<(), String> {
    let mut stems = std::collections::HashSet::new();
    for spec in renditions {
        let codec_ok = matches!(
            spec.codec,
            crate::pipeline::VideoCodec::H264(_) | crate::pipeline::VideoCodec::Hevc
        );
        if !codec_ok || spec.container != crate::pipeline::Container::MpegTs {
            return Err(format!(
                "{}: an HLS ladder carries H.264 or HEVC in MPEG-TS, not {} in {}",
                spec.name,
                spec.codec.name(),
                spec.container.extension()
            ));
        }
        if !stems.insert(spec.file_stem()) {
            return Err(format!("two renditions are named {:?}", spec.name));
        }
    }
    Ok(())
}

/// A broadcaster on today's wire, to one or more orchestrators.
#[derive(Debug)]
pub struct TodayBroadcaster {
    orchestrators: Vec<String>,
    manifest: String,
    renditions: Vec<RenditionSpec>,
    video_profiles: Vec<VideoProfile>,
    capabilities: Capabilities,
    options: BroadcastOptions,
    state: Mutex<State>,
    /// One discovery at a time: segments in flight wait for its session
    /// instead of each opening one.
    choosing: tokio::sync::Mutex<()>,
    /// Pay in tickets (on a chain); None: offchain.
    payer: Option<Payer>,
}

impl TodayBroadcaster {
    /// A stream to `orchestrators` (`https://HOST:PORT`) with `renditions`
    /// (the protocol's named profiles, or any `transcodingOptions`); no
    /// orchestrator is asked anything until the first segment.
    pub fn new(
        orchestrators: Vec<String>,
        renditions: Vec<RenditionSpec>,
        options: BroadcastOptions,
    ) -> Self {
        let video_profiles = renditions.iter().map(to_video_profile).collect();
        let capabilities = Capabilities {
            bitstring: needs(&renditions).to_bitstring(),
            constraints: Some(Default::default()),
            ..Default::default()
        };
        let mut id = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        Self {
            orchestrators,
            manifest: hex::encode(id),
            renditions,
            video_profiles,
            capabilities,
            options,
            state: Mutex::new(State::default()),
            choosing: tokio::sync::Mutex::new(()),
            payer: None,
        }
    }

    /// Pays orchestrators in PM tickets signed by `payer`'s key (its
    /// address in `GetOrchestrator`, its signature on each segment).
    pub fn with_payer(mut self, payer: Payer) -> Self {
        self.payer = Some(payer);
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn client(&self, index: usize) -> Result<OrchestratorClient<Channel>, String> {
        if let Some(client) = self.state().clients.get(&index) {
            return Ok(client.clone());
        }
        let uri = &self.orchestrators[index];
        let target = DialTarget::parse(uri)
            .ok_or_else(|| format!("{uri} is not https://HOST:PORT"))?
            .any_certificate();
        let client = tokio::time::timeout(
            DISCOVERY_TIMEOUT,
            crate::orchestrator::client::connect_to(uri, target),
        )
        .await
        .map_err(|_| format!("{uri}: no connection within {DISCOVERY_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
        self.state().clients.insert(index, client.clone());
        Ok(client)
    }

    /// `GetOrchestrator` to orchestrator `index`: a new session.
    async fn open_session(&self, index: usize) -> Result<Session, String> {
        let uri = &self.orchestrators[index];
        let mut client = self.client(index).await?;
        let (address, sig) = match &self.payer {
            // Sign(address): the checksummed text, as go-livepeer signs it.
            Some(payer) => (
                payer.key.address().0.to_vec(),
                payer
                    .key
                    .sign(payer.key.address().to_checksum().as_bytes())
                    .to_vec(),
            ),
            None => (OFFCHAIN_ADDRESS.to_vec(), Vec::new()),
        };
        let request = OrchestratorRequest {
            address,
            sig,
            capabilities: Some(self.capabilities.clone()),
            ignore_capacity_check: false,
        };
        let started = Instant::now();
        let answer =
            tokio::time::timeout(DISCOVERY_TIMEOUT, client.get_orchestrator(request)).await;
        let info = match answer {
            Err(_) => return Err(format!("{uri}: GetOrchestrator: no answer within 6 s")),
            Ok(Err(status)) => {
                // A broken channel is dialled afresh next time.
                self.state().clients.remove(&index);
                return Err(format!(
                    "{uri}: GetOrchestrator: {:?}: {}",
                    status.code(),
                    status.message()
                ));
            }
            Ok(Ok(info)) => info.into_inner(),
        };
        let session = self.session_of(index, info, started.elapsed())?;
        tracing::info!(orchestrator = %uri, transcoder = %session.connection.uri(),
            session = %session.token.session_id, latency_ms = session.latency.as_millis() as u64,
            "GetOrchestrator: session opened");
        self.state().opened.push((index, session.token.clone()));
        Ok(session)
    }

    /// An answer go-livepeer's broadcaster would keep: a transcoder URI, a
    /// token, capabilities that fit the job.
    fn session_of(
        &self,
        index: usize,
        info: OrchestratorInfo,
        latency: Duration,
    ) -> Result<Session, String> {
        let uri = &self.orchestrators[index];
        let token = info
            .auth_token
            .clone()
            .ok_or_else(|| format!("{uri}: OrchestratorInfo has no auth_token"))?;
        if info.transcoder.is_empty() {
            return Err(format!("{uri}: OrchestratorInfo has no transcoder"));
        }
        if let Some(offered) = &info.capabilities {
            let offered = CapabilitySet::from_bitstring(&offered.bitstring);
            let needed = CapabilitySet::from_bitstring(&self.capabilities.bitstring);
            let missing = needed.missing_from(&offered);
            if !missing.is_empty() {
                return Err(format!("{uri}: lacks capabilities {missing:?}"));
            }
        }
        let pay = match &self.payer {
            Some(payer) => Some(Arc::new(Mutex::new(
                PayState::from_info(&info, payer).map_err(|why| format!("{uri}: {why}"))?,
            ))),
            None => None,
        };
        let connection = TranscoderConnection::any_certificate(&info.transcoder)
            .map_err(|e| format!("{uri}: {e}"))?;
        Ok(Session {
            orchestrator: index,
            token,
            connection: Arc::new(connection),
            latency,
            pay,
        })
    }

    /// The session to send the next segment to: the one in use while its
    /// token has time left, else the fastest orchestrator not suspended
    /// (all of them again when every one is).
    async fn session(&self, now_unix: i64) -> Result<Session, String> {
        let _choosing = self.choosing.lock().await;
        let current = self.state().current.clone();
        if let Some(session) = current {
            if session.token.expiration - now_unix > REFRESH_BEFORE_EXPIRY {
                return Ok(session);
            }
            tracing::info!(session = %session.token.session_id, "auth token expiring: a new session");
            return self.refresh(session.orchestrator).await;
        }
        let candidates: Vec<usize> = {
            let state = self.state();
            let free: Vec<usize> = (0..self.orchestrators.len())
                .filter(|i| !state.suspended.contains_key(i))
                .collect();
            if free.is_empty() {
                (0..self.orchestrators.len()).collect()
            } else {
                free
            }
        };
        if candidates.len() == self.orchestrators.len() {
            self.state().suspended.clear();
        }
        // Discovery: every candidate at once, the fastest answer kept.
        let answers =
            futures_util::future::join_all(candidates.iter().map(|&i| self.open_session(i))).await;
        let mut sessions = Vec::new();
        let mut why = Vec::new();
        for answer in answers {
            match answer {
                Ok(session) => sessions.push(session),
                Err(e) => why.push(e),
            }
        }
        sessions.sort_by_key(|s| s.latency);
        let Some(best) = sessions.into_iter().next() else {
            return Err(format!("no orchestrator answered: {}", why.join("; ")));
        };
        self.state().current = Some(best.clone());
        Ok(best)
    }

    /// A new session with the same orchestrator (its token was refused or
    /// is expiring: it restarted, or time passed).
    async fn refresh(&self, index: usize) -> Result<Session, String> {
        let session = self.open_session(index).await?;
        self.state().current = Some(session.clone());
        Ok(session)
    }

    fn suspend(&self, session: &Session, why: &str) {
        let uri = &self.orchestrators[session.orchestrator];
        tracing::warn!(orchestrator = %uri, "orchestrator suspended: {why}");
        let mut state = self.state();
        state
            .suspended
            .insert(session.orchestrator, why.to_string());
        if state
            .current
            .as_ref()
            .is_some_and(|c| c.orchestrator == session.orchestrator)
        {
            state.current = None;
        }
    }

    fn segment_header(
        &self,
        seq: u64,
        segment: &Segment,
        hash: [u8; 32],
        session: &Session,
    ) -> String {
        let field = profiles_field(&self.video_profiles);
        let profiles = self.video_profiles.clone();
        let mut data = TaskSegData {
            manifest_id: self.manifest.as_bytes().to_vec(),
            seq: seq as i64,
            hash: hash.to_vec(),
            profiles: b"invalid".to_vec(),
            duration: (segment.seconds * 1000.0).round().clamp(0.0, 300_000.0) as i32,
            capabilities: Some(self.capabilities.clone()),
            auth_token: Some(session.token.clone()),
            ..Default::default()
        };
        if let Some(payer) = &self.payer {
            let names: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
            let preimage = crate::protocol::today::segment_preimage(
                &data.manifest_id,
                data.seq,
                &data.hash,
                &names,
            );
            data.sig = payer.key.sign(&preimage).to_vec();
        }
        match field {
            33 => data.full_profiles = profiles,
            34 => data.full_profiles2 = profiles,
            _ => data.full_profiles3 = profiles,
        }
        base64::engine::general_purpose::STANDARD.encode(data.encode_to_vec())
    }

    /// One attempt on `session`.
    async fn attempt(
        &self,
        seq: u64,
        segment: &Segment,
        hash: [u8; 32],
        session: &Session,
    ) -> Result<Vec<Bytes>, AttemptError> {
        let header = self.segment_header(seq, segment, hash, session);
        let staged = match (&self.payer, &session.pay) {
            (Some(payer), Some(pay)) => {
                let estimate: Vec<(u32, u32, Option<f64>)> = self
                    .renditions
                    .iter()
                    .map(|r| (r.width, r.height, r.max_frame_rate.map(|f| f.as_f64())))
                    .collect();
                let pixels = crate::protocol::pm::sender::out_pixels(&estimate, segment.seconds);
                // Signing the tickets is CPU work: off the async executor.
                let (signing, key) = (pay.clone(), payer.key.clone());
                let staged = tokio::task::spawn_blocking(move || {
                    signing
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .payment(&key, pixels)
                })
                .await
                .map_err(|e| AttemptError::Orchestrator(format!("signing tickets: {e}")))?
                .map_err(AttemptError::Orchestrator)?;
                Some((pay.clone(), staged))
            }
            _ => None,
        };
        let payment_header = staged
            .as_ref()
            .map_or_else(String::new, |(_, (payment, _))| {
                base64::engine::general_purpose::STANDARD.encode(payment.encode_to_vec())
            });
        let outcome = self
            .send_segment(segment, session, header, payment_header)
            .await;
        if let Some((pay, (_, staged))) = staged {
            let mut pay = pay.lock().unwrap_or_else(|p| p.into_inner());
            match &outcome {
                Ok((_, pixels, info)) => {
                    pay.settle(staged, Settled::Paid { pixels: *pixels });
                    if let Some(info) = info {
                        pay.update(info);
                    }
                }
                Err((_, sent)) => pay.settle(
                    staged,
                    if *sent {
                        Settled::Lost
                    } else {
                        Settled::NotSent
                    },
                ),
            }
        }
        outcome
            .map(|(renditions, _, _)| renditions)
            .map_err(|(e, _)| e)
    }

    /// Sends one segment with its headers: the renditions, the pixels the
    /// orchestrator charged, its refreshed info; or the error and whether
    /// the request went out.
    async fn send_segment(
        &self,
        segment: &Segment,
        session: &Session,
        header: String,
        payment_header: String,
    ) -> Result<(Vec<Bytes>, u64, Option<OrchestratorInfo>), (AttemptError, bool)> {
        let request = http::Request::post(format!("{}/segment", session.connection.uri()))
            .header(SEGMENT_HEADER, header)
            .header(PAYMENT_HEADER, payment_header)
            .header("content-type", "video/MP2T")
            .body(Full::new(segment.data.clone()))
            .map_err(|e| {
                (
                    AttemptError::Orchestrator(format!("no valid request: {e}")),
                    false,
                )
            })?;
        self.exchange(request, segment, session)
            .await
            .map_err(|e| (e, true))
    }

    /// The request's answer: renditions checked against their pixels, the
    /// pixels charged, the refreshed info.
    async fn exchange(
        &self,
        request: http::Request<Full<Bytes>>,
        segment: &Segment,
        session: &Session,
    ) -> Result<(Vec<Bytes>, u64, Option<OrchestratorInfo>), AttemptError> {
        let timeout = Duration::from_secs_f64((4.0 * segment.seconds).max(8.0));
        let answer = session
            .connection
            .send(request, timeout)
            .await
            .map_err(|e| AttemptError::Orchestrator(e.to_string()))?;
        if answer.status != http::StatusCode::OK {
            let text = String::from_utf8_lossy(&answer.body).trim().to_string();
            return Err(match classify(&text) {
                AttemptError::Orchestrator(text) => {
                    AttemptError::Orchestrator(format!("{} {text}", answer.status.as_u16()))
                }
                other => other,
            });
        }
        let result = SegmentTranscodeResult::decode(answer.body.as_ref()).map_err(|e| {
            AttemptError::Orchestrator(format!("TranscodeResult does not decode: {e}"))
        })?;
        let info = result.info;
        let data = match result.result {
            Some(segment_transcode_result::Result::Data(data)) => data,
            Some(segment_transcode_result::Result::Error(text)) => return Err(classify(&text)),
            None => return Err(AttemptError::Orchestrator("UnknownResponse".into())),
        };
        if data.segments.len() != self.renditions.len() {
            return Err(AttemptError::Orchestrator(format!(
                "{} renditions for {} profiles",
                data.segments.len(),
                self.renditions.len()
            )));
        }
        let downloads = data
            .segments
            .iter()
            .map(|rendition| self.download(&rendition.url));
        let renditions = futures_util::future::try_join_all(downloads).await?;
        // Pixels are what a paid broadcaster pays for: the renditions must
        // hold what the orchestrator says (CPU work, off the executor).
        let claimed: Vec<i64> = data.segments.iter().map(|r| r.pixels).collect();
        let checked = renditions.clone();
        let counted = tokio::task::spawn_blocking(move || {
            checked
                .into_iter()
                .map(|r| {
                    crate::pipeline::cpu::count_video_frames(r)
                        .map(|(f, w, h)| f * u64::from(w) * u64::from(h))
                })
                .collect::<Result<Vec<u64>, _>>()
        })
        .await
        .map_err(|e| AttemptError::Orchestrator(format!("counting pixels: {e}")))?
        .map_err(|e| AttemptError::Orchestrator(format!("a rendition does not demux: {e}")))?;
        for ((claimed, counted), profile) in claimed.iter().zip(&counted).zip(&self.renditions) {
            if u64::try_from(*claimed).ok() != Some(*counted) {
                return Err(AttemptError::Orchestrator(format!(
                    "{}: the orchestrator claims {claimed} pixels, the rendition holds {counted}",
                    profile.name
                )));
            }
        }
        let charged = counted.iter().sum();
        Ok((renditions, charged, info))
    }

    async fn download(&self, url: &str) -> Result<Bytes, AttemptError> {
        let failed = |why: String| AttemptError::Orchestrator(format!("GET {url}: {why}"));
        let parsed: http::Uri = url.parse().map_err(|_| failed("not a URL".into()))?;
        let origin = format!(
            "https://{}",
            parsed.authority().ok_or_else(|| failed("no host".into()))?
        );
        let connection = {
            let existing = self.state().downloads.get(&origin).cloned();
            match existing {
                Some(connection) => connection,
                None => {
                    let connection = Arc::new(
                        TranscoderConnection::any_certificate(&origin)
                            .map_err(|e: UploadError| failed(e.to_string()))?,
                    );
                    self.state()
                        .downloads
                        .insert(origin.clone(), connection.clone());
                    connection
                }
            }
        };
        let request = http::Request::get(url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| failed(e.to_string()))?;
        let answer = connection
            .send(request, RENDITION_TIMEOUT)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if answer.status != http::StatusCode::OK {
            return Err(failed(format!("answered {}", answer.status)));
        }
        Ok(answer.body)
    }
}

#[async_trait::async_trait]
impl Uploader for TodayBroadcaster {
    fn renditions(&self) -> &[RenditionSpec] {
        &self.renditions
    }

    fn stream_name(&self) -> String {
        self.manifest.clone()
    }

    fn rendition_name(&self, index: usize) -> String {
        let stem = self
            .renditions
            .get(index)
            .map_or_else(String::new, RenditionSpec::file_stem);
        format!("{}_{stem}", self.manifest)
    }

    fn options(&self) -> &BroadcastOptions {
        &self.options
    }

    async fn upload(
        &self,
        seq: u64,
        segment: &Segment,
    ) -> (u32, Result<Vec<Bytes>, SegmentFailure>) {
        let data = segment.data.clone();
        let hash = match tokio::task::spawn_blocking(move || keccak256(&data)).await {
            Ok(hash) => hash,
            Err(e) => return (0, Err(SegmentFailure(format!("hashing failed: {e}")))),
        };
        let budget = Instant::now() + Duration::from_secs_f64((4.0 * segment.seconds).max(8.0));
        let (mut attempts, mut waits) = (0, 0u32);
        let mut refreshed = false;
        let mut last = String::new();
        while attempts < MAX_ATTEMPTS {
            let session = match self.session(crate::orchestrator::today::unix_now()).await {
                Ok(session) => session,
                Err(why) => {
                    // No orchestrator answers (one restarting, say): ask
                    // again until the segment's budget, max(8 s, 4 ×
                    // duration), is spent.
                    waits += 1;
                    let backoff = Duration::from_millis(250 << waits.min(4));
                    if Instant::now() + backoff > budget {
                        return (attempts.max(1), Err(SegmentFailure(why)));
                    }
                    tracing::warn!(seq, "{why}; asking again in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            attempts += 1;
            match self.attempt(seq, segment, hash, &session).await {
                Ok(renditions) => return (attempts, Ok(renditions)),
                Err(AttemptError::Input(text)) => {
                    // The input's fault: another orchestrator would fail
                    // the same way.
                    return (attempts, Err(SegmentFailure(text)));
                }
                Err(AttemptError::Token(text)) if !refreshed => {
                    // A restarted orchestrator: a new session there, the
                    // same segment again (not counted as an attempt).
                    refreshed = true;
                    attempts -= 1;
                    tracing::info!(seq, orchestrator = %self.orchestrators[session.orchestrator],
                        "{text}: a new session");
                    if let Err(why) = self.refresh(session.orchestrator).await {
                        self.suspend(&session, &why);
                    }
                    last = text;
                }
                Err(AttemptError::Token(text) | AttemptError::Orchestrator(text)) => {
                    tracing::warn!(
                        seq,
                        attempts,
                        "segment failed at {}: {text}",
                        self.orchestrators[session.orchestrator]
                    );
                    self.suspend(&session, &text);
                    last = text;
                    // With no other orchestrator to turn to, the next
                    // attempt goes back to this one: give it a moment.
                    let alone = self.state().suspended.len() >= self.orchestrators.len();
                    let backoff = Duration::from_millis(250 << attempts.min(4));
                    if alone && attempts < MAX_ATTEMPTS && Instant::now() + backoff < budget {
                        tokio::time::sleep(backoff).await;
                    }
                }
            }
        }
        (attempts, Err(SegmentFailure(last)))
    }

    /// `EndTranscodingSession` for every session opened.
    async fn finish(&self) {
        let opened = std::mem::take(&mut self.state().opened);
        for (index, token) in opened {
            let Ok(mut client) = self.client(index).await else {
                continue;
            };
            let request = EndTranscodingSessionRequest {
                auth_token: Some(token.clone()),
            };
            match tokio::time::timeout(
                Duration::from_secs(3),
                client.end_transcoding_session(request),
            )
            .await
            {
                Ok(Ok(_)) => tracing::debug!(session = %token.session_id, "session ended"),
                Ok(Err(status)) => tracing::debug!(session = %token.session_id,
                    "EndTranscodingSession: {}", status.message()),
                Err(_) => {
                    tracing::debug!(session = %token.session_id, "EndTranscodingSession: no answer")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orch_addrs_are_read_as_go_livepeer_reads_them() {
        assert_eq!(
            parse_orch_addrs(" o1.example , 10.0.0.2:9000,https://o3.example:8936 ").unwrap(),
            [
                "https://o1.example:8935",
                "https://10.0.0.2:9000",
                "https://o3.example:8936"
            ]
        );
        assert!(parse_orch_addrs(" , ").is_err());
        assert!(parse_orch_addrs("http://o.example:8935").is_err());
        assert!(parse_orch_addrs("o.example:notaport").is_err());
    }

    #[test]
    fn the_profiles_field_is_the_one_go_livepeer_picks() {
        let ts = VideoProfile {
            name: "a".into(),
            width: 426,
            height: 240,
            bitrate: 600_000,
            fps: 30,
            ..Default::default()
        };
        assert_eq!(profiles_field(std::slice::from_ref(&ts)), 33);
        let mp4 = VideoProfile {
            format: video_profile::Format::Mp4 as i32,
            ..ts.clone()
        };
        assert_eq!(profiles_field(&[ts.clone(), mp4.clone()]), 34);
        let fractional = VideoProfile {
            fps: 30000,
            fps_den: 1001,
            ..ts.clone()
        };
        assert_eq!(profiles_field(&[ts.clone(), fractional]), 35);
        let high = VideoProfile {
            profile: video_profile::Profile::H264High as i32,
            ..mp4
        };
        assert_eq!(profiles_field(&[high]), 35);
    }

    #[test]
    fn input_errors_are_not_retried_and_refused_tokens_renew_the_session() {
        assert_eq!(
            classify("No keyframes in input"),
            AttemptError::Input("No keyframes in input".into())
        );
        assert!(matches!(
            classify("invalid auth token\n"),
            AttemptError::Token(_)
        ));
        assert!(matches!(
            classify("OrchestratorBusy"),
            AttemptError::Orchestrator(_)
        ));
        assert!(matches!(
            classify("Remote transcoder took too long"),
            AttemptError::Orchestrator(_)
        ));
    }
}
