//! The 2018 `/segment` verification in the spec's order, as plain functions
//! over plain values: [`authenticate`] (Authorization type, credentials
//! signed by our orchestrator), then [`authorize`] (job exists and has not
//! expired, content type, segment signed by the job's broadcaster). Each
//! failure is a [`Rejection`] with a stable code and an HTTP status; what
//! follows the headers (admission, the body and its hash against
//! [`VerifiedSegment::segment`], the transcode) is the segment core's, and
//! fails with its [`crate::segment::Error`].

use http::StatusCode;

use crate::chain::Job;
use crate::eth::{Address, SignatureError};
use crate::protocol::{
    AUTH_TYPE_ETH, CredentialsError, HeaderError, Profile, SegmentHeader, decode_credentials,
    decode_segment_header, rendition_stream_ids,
};

/// The request headers verification looks at; `None` when absent or empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct SegmentHeaders<'a> {
    pub authorization: Option<&'a str>,
    pub credentials: Option<&'a str>,
    pub segment: Option<&'a str>,
    pub content_type: Option<&'a str>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Rejection {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("Authorization must be {AUTH_TYPE_ETH}")]
    BadAuthType,
    #[error("Credentials header is malformed: {0}")]
    MalformedCredentials(HeaderError),
    #[error("Credentials are not signed by this transcoder's orchestrator: {0}")]
    BadCredentials(SignatureError),
    #[error("job {0} not found")]
    JobNotFound(u64),
    #[error("job {job} cannot be transcoded: {reason}")]
    UnusableJob { job: u64, reason: String },
    #[error("job {job} ended at block {end}; the current block is {current}")]
    JobExpired { job: u64, end: u64, current: u64 },
    #[error("Content-Type must be video/MP2T, not {0:?}")]
    UnsupportedMedia(String),
    #[error("Livepeer-Segment header is malformed: {0}")]
    MalformedSegmentHeader(HeaderError),
    #[error("segment signature is not the job's broadcaster's: {0}")]
    BadSegmentSignature(SignatureError),
    #[error("the chain cannot be read right now")]
    ChainUnavailable(String),
}

impl Rejection {
    /// The `detail` a client sees without `--expose-errors`: lpgpu's own
    /// words and the request's own values, never the text of a library
    /// error (a protobuf decoder's, hyper's, the chain client's).
    pub fn public_detail(&self) -> String {
        use Rejection::*;
        match self {
            MalformedCredentials(_) => "the Credentials header is malformed".into(),
            BadCredentials(_) => {
                "the credentials are not signed by this transcoder's orchestrator".into()
            }
            UnusableJob { job, .. } => format!("job {job} cannot be transcoded"),
            MalformedSegmentHeader(_) => "the Livepeer-Segment header is malformed".into(),
            BadSegmentSignature(_) => "the segment is not signed by the job's broadcaster".into(),
            ChainUnavailable(_) => "the chain cannot be read right now".into(),
            MissingHeader(_)
            | BadAuthType
            | JobNotFound(_)
            | JobExpired { .. }
            | UnsupportedMedia(_) => self.to_string(),
        }
    }

    /// The stable error code of the JSON body.
    pub fn code(&self) -> &'static str {
        use Rejection::*;
        match self {
            MissingHeader(_) => "missing_header",
            BadAuthType => "bad_auth_type",
            MalformedCredentials(_) | BadCredentials(_) => "bad_credentials",
            JobNotFound(_) | UnusableJob { .. } => "job_not_found",
            JobExpired { .. } => "job_expired",
            UnsupportedMedia(_) => "unsupported_media",
            MalformedSegmentHeader(_) => "bad_segment_header",
            BadSegmentSignature(_) => "bad_segment_signature",
            ChainUnavailable(_) => "chain_unavailable",
        }
    }

    pub fn status(&self) -> StatusCode {
        use Rejection::*;
        match self {
            MissingHeader(_) | MalformedCredentials(_) | MalformedSegmentHeader(_) => {
                StatusCode::BAD_REQUEST
            }
            BadAuthType => StatusCode::UNAUTHORIZED,
            BadCredentials(_)
            | JobNotFound(_)
            | UnusableJob { .. }
            | JobExpired { .. }
            | BadSegmentSignature(_) => StatusCode::FORBIDDEN,
            UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ChainUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Step 1: the Authorization type and credentials signed by `orchestrator`.
/// Returns the job id the credentials are for.
pub fn authenticate(headers: &SegmentHeaders<'_>, orchestrator: Address) -> Result<u64, Rejection> {
    let auth_type = headers
        .authorization
        .ok_or(Rejection::MissingHeader("Authorization"))?;
    if auth_type.trim() != AUTH_TYPE_ETH {
        return Err(Rejection::BadAuthType);
    }
    let credentials = headers
        .credentials
        .ok_or(Rejection::MissingHeader("Credentials"))?;
    decode_credentials(credentials, orchestrator).map_err(|e| match e {
        CredentialsError::Malformed(e) => Rejection::MalformedCredentials(e),
        CredentialsError::BadSignature(e) => Rejection::BadCredentials(e),
    })
}

/// A request whose headers passed every check; the body is still to come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSegment {
    pub job: Job,
    pub profiles: Vec<Profile>,
    /// Rendition stream ids, in profile order.
    pub rendition_stream_ids: Vec<String>,
    pub segment: SegmentHeader,
}

/// Steps 2 and 3: the job exists and has not ended, the body is MPEG-TS, and
/// the job's broadcaster signed `flatten(streamId, seq, hash)`.
pub fn authorize(
    headers: &SegmentHeaders<'_>,
    job_id: u64,
    job: Option<Job>,
    current_block: u64,
) -> Result<VerifiedSegment, Rejection> {
    let job = job.ok_or(Rejection::JobNotFound(job_id))?;
    if current_block > job.end_block {
        return Err(Rejection::JobExpired {
            job: job_id,
            end: job.end_block,
            current: current_block,
        });
    }
    let content_type = headers
        .content_type
        .ok_or(Rejection::MissingHeader("Content-Type"))?;
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("video/MP2T") {
        return Err(Rejection::UnsupportedMedia(content_type.to_string()));
    }
    let segment_header = headers
        .segment
        .ok_or(Rejection::MissingHeader("Livepeer-Segment"))?;
    let segment =
        decode_segment_header(segment_header).map_err(Rejection::MalformedSegmentHeader)?;
    segment
        .verify(&job.stream_id, job.broadcaster)
        .map_err(Rejection::BadSegmentSignature)?;
    let unusable = |reason: String| Rejection::UnusableJob {
        job: job_id,
        reason,
    };
    let profiles = job.profiles().map_err(|e| unusable(e.to_string()))?;
    crate::protocol::limits::check_renditions(profiles.len()).map_err(unusable)?;
    let ids =
        rendition_stream_ids(&job.stream_id, &profiles).map_err(|e| unusable(e.to_string()))?;
    // Chain data: a job whose ids do not cover its profiles is unusable,
    // not a reason to panic.
    let rendition_stream_ids = profiles
        .iter()
        .map(|p| {
            ids.iter()
                .find(|(_, name)| *name == p.name)
                .map(|(id, _)| id.clone())
                .ok_or_else(|| unusable(format!("no rendition stream id for {}", p.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VerifiedSegment {
        job,
        profiles,
        rendition_stream_ids,
        segment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eth::{PrivateKey, keccak256};
    use crate::protocol::{encode_segment_header, mint_credentials};

    struct World {
        orchestrator: PrivateKey,
        broadcaster: PrivateKey,
        job: Job,
        credentials: String,
        segment: String,
    }

    fn world() -> World {
        let orchestrator = PrivateKey::random();
        let broadcaster = PrivateKey::random();
        let job = Job {
            id: 5,
            stream_id: format!("{}P720p30fps16x9", "cd".repeat(32)),
            transcoding_options: "93c717e7c0a6517a".into(),
            broadcaster: broadcaster.address(),
            transcoder: orchestrator.address(),
            creation_block: 10,
            end_block: 20,
        };
        let credentials = mint_credentials(&orchestrator, 5);
        let segment = encode_segment_header(&SegmentHeader::sign(
            &broadcaster,
            &job.stream_id,
            3,
            keccak256(b"body"),
        ));
        World {
            orchestrator,
            broadcaster,
            job,
            credentials,
            segment,
        }
    }

    fn headers(w: &World) -> SegmentHeaders<'_> {
        SegmentHeaders {
            authorization: Some(AUTH_TYPE_ETH),
            credentials: Some(&w.credentials),
            segment: Some(&w.segment),
            content_type: Some("video/MP2T"),
        }
    }

    fn run(w: &World, h: SegmentHeaders<'_>, block: u64) -> Result<VerifiedSegment, Rejection> {
        let job_id = authenticate(&h, w.orchestrator.address())?;
        authorize(
            &h,
            job_id,
            Some(w.job.clone()).filter(|j| j.id == job_id),
            block,
        )
    }

    #[test]
    fn a_good_request_passes_every_step() {
        let w = world();
        let verified = run(&w, headers(&w), 15).unwrap();
        assert_eq!(verified.segment.seq, 3);
        assert_eq!(verified.profiles[0].name, "P360p30fps16x9");
        assert_eq!(
            verified.rendition_stream_ids[0],
            format!("{}P360p30fps16x9", "cd".repeat(32))
        );
        // Step 4, the body's hash, is the core's: against this one.
        assert_eq!(verified.segment.hash, keccak256(b"body"));
        assert_ne!(verified.segment.hash, keccak256(b"tampered"));
        // Content-Type is case-insensitive and may carry parameters.
        let h = SegmentHeaders {
            content_type: Some("video/mp2t; charset=binary"),
            ..headers(&w)
        };
        run(&w, h, 20).unwrap();
    }

    #[test]
    fn each_bad_header_has_its_code_and_status() {
        let w = world();
        let stranger = PrivateKey::random();
        let strangers_credentials = mint_credentials(&stranger, 5);
        let other_seq = encode_segment_header(&SegmentHeader {
            seq: 4,
            ..decode_segment_header(&w.segment).unwrap()
        });
        let strangers_segment = encode_segment_header(&SegmentHeader::sign(
            &stranger,
            &w.job.stream_id,
            3,
            keccak256(b"body"),
        ));
        let cases: Vec<(SegmentHeaders<'_>, &str, u16)> = vec![
            (
                SegmentHeaders {
                    authorization: None,
                    ..headers(&w)
                },
                "missing_header",
                400,
            ),
            (
                SegmentHeaders {
                    authorization: Some("Bearer x"),
                    ..headers(&w)
                },
                "bad_auth_type",
                401,
            ),
            (
                SegmentHeaders {
                    credentials: None,
                    ..headers(&w)
                },
                "missing_header",
                400,
            ),
            (
                SegmentHeaders {
                    credentials: Some("%%%"),
                    ..headers(&w)
                },
                "bad_credentials",
                400,
            ),
            (
                SegmentHeaders {
                    credentials: Some("//8="),
                    ..headers(&w)
                },
                "bad_credentials",
                400,
            ),
            (
                SegmentHeaders {
                    credentials: Some(&strangers_credentials),
                    ..headers(&w)
                },
                "bad_credentials",
                403,
            ),
            (
                SegmentHeaders {
                    content_type: Some("application/json"),
                    ..headers(&w)
                },
                "unsupported_media",
                415,
            ),
            (
                SegmentHeaders {
                    content_type: None,
                    ..headers(&w)
                },
                "missing_header",
                400,
            ),
            (
                SegmentHeaders {
                    segment: None,
                    ..headers(&w)
                },
                "missing_header",
                400,
            ),
            (
                SegmentHeaders {
                    segment: Some("not base64"),
                    ..headers(&w)
                },
                "bad_segment_header",
                400,
            ),
            (
                SegmentHeaders {
                    segment: Some(&strangers_segment),
                    ..headers(&w)
                },
                "bad_segment_signature",
                403,
            ),
            (
                SegmentHeaders {
                    segment: Some(&other_seq),
                    ..headers(&w)
                },
                "bad_segment_signature",
                403,
            ),
        ];
        for (h, code, status) in cases {
            let rejection = run(&w, h, 15).unwrap_err();
            assert_eq!(
                (rejection.code(), rejection.status().as_u16()),
                (code, status),
                "{rejection}"
            );
        }
        let expired = run(&w, headers(&w), 21).unwrap_err();
        assert_eq!(
            (expired.code(), expired.status().as_u16()),
            ("job_expired", 403)
        );
        let h = headers(&w);
        let missing = authorize(&h, 5, None, 15).unwrap_err();
        assert_eq!(
            (missing.code(), missing.status().as_u16()),
            ("job_not_found", 403)
        );
        let _ = &w.broadcaster;
    }

    #[test]
    fn checks_run_in_the_spec_order() {
        let w = world();
        // Bad auth type wins over everything after it.
        let h = SegmentHeaders {
            authorization: Some("x"),
            credentials: None,
            segment: None,
            content_type: None,
        };
        assert_eq!(run(&w, h, 99).unwrap_err().code(), "bad_auth_type");
        // Expiry is checked before the segment signature.
        let h = SegmentHeaders {
            segment: Some("garbage"),
            ..headers(&w)
        };
        assert_eq!(run(&w, h, 99).unwrap_err().code(), "job_expired");
    }
}
