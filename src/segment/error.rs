//! The one error of the segment path: every way a segment can fail once its
//! wire's own checks have passed (admission, body, transcode), with who is to
//! blame, whether and when to retry, and a stable code. Each wire renders
//! it once, at its edge: the 2018 `/segment` as JSON or a `TranscodeResult`
//! error, the dial-out mode as a result text.

use std::time::Duration;

use http::StatusCode;

use crate::pipeline::TranscodeError;
use crate::pipeline::workers::{Refusal, RunError};

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The request: a retry of the same request fails the same way.
    Client,
    /// This node: full, timed out, or broken; a retry (later, or elsewhere)
    /// may succeed.
    Server,
}

/// Where in the path a segment failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before its body was read: no slot.
    Admission,
    /// While its body was read and checked.
    Body,
    /// While it was transcoded.
    Transcode,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("all {slots} transcode slots are busy")]
    Busy { slots: usize },
    #[error("this stream's earlier segments hold its slot ({queued} already waiting)")]
    StreamBusy { queued: usize },
    #[error("this stream's previous segment still held its slot after {0:.1?}")]
    StreamWaitTimedOut(Duration),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("the body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("the body did not arrive within {0} s")]
    BodyTimeout(u64),
    #[error("reading the body failed: {0}")]
    BodyRead(String),
    #[error("keccak256 of the body does not match Livepeer-Segment's hash")]
    HashMismatch,
    #[error("segment does not decode: {0}")]
    Undecodable(String),
    /// lpms's words, which go-livepeer's broadcasters recognise.
    #[error("No keyframes in input")]
    NoKeyframes,
    #[error("unsupported rendition: {0}")]
    Unsupported(String),
    #[error("transcoding took longer than {0} s")]
    TranscodeTimeout(u64),
    #[error("transcoding failed: {0}")]
    Internal(String),
}

impl Error {
    pub fn blame(&self) -> Blame {
        use Error::*;
        match self {
            BodyTooLarge { .. }
            | BodyTimeout(_)
            | BodyRead(_)
            | HashMismatch
            | Undecodable(_)
            | NoKeyframes
            | Unsupported(_) => Blame::Client,
            Busy { .. }
            | StreamBusy { .. }
            | StreamWaitTimedOut(_)
            | ShuttingDown
            | TranscodeTimeout(_)
            | Internal(_) => Blame::Server,
        }
    }

    pub fn stage(&self) -> Stage {
        use Error::*;
        match self {
            Busy { .. } | StreamBusy { .. } | StreamWaitTimedOut(_) | ShuttingDown => {
                Stage::Admission
            }
            BodyTooLarge { .. } | BodyTimeout(_) | BodyRead(_) | HashMismatch => Stage::Body,
            Undecodable(_) | NoKeyframes | Unsupported(_) | TranscodeTimeout(_) | Internal(_) => {
                Stage::Transcode
            }
        }
    }

    /// When a client should try again (`Retry-After`), for a full node.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Busy { .. }
            | Error::StreamBusy { .. }
            | Error::StreamWaitTimedOut(_)
            | Error::ShuttingDown => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// The stable code (`design.md`'s list, and lpgpu's documented additions).
    pub fn code(&self) -> &'static str {
        use Error::*;
        match self {
            Busy { .. } | StreamBusy { .. } | StreamWaitTimedOut(_) | ShuttingDown => "busy",
            BodyTooLarge { .. } => "body_too_large",
            BodyTimeout(_) => "request_timeout",
            BodyRead(_) => "bad_request_body",
            HashMismatch => "hash_mismatch",
            Undecodable(_) | NoKeyframes => "undecodable_segment",
            Unsupported(_) => "unsupported_profile",
            TranscodeTimeout(_) | Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        use Error::*;
        match self {
            Busy { .. } | StreamBusy { .. } | StreamWaitTimedOut(_) | ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            BodyRead(_) => StatusCode::BAD_REQUEST,
            HashMismatch => StatusCode::FORBIDDEN,
            Undecodable(_) | NoKeyframes | Unsupported(_) => StatusCode::UNPROCESSABLE_ENTITY,
            TranscodeTimeout(_) | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The detail a client sees without `--expose-errors`: lpgpu's own words
    /// and the request's own values, never a library's error text.
    pub fn public_detail(&self) -> String {
        use Error::*;
        match self {
            BodyRead(_) => "the request body could not be read".into(),
            Undecodable(_) => "the segment does not decode".into(),
            NoKeyframes => "the segment has no keyframe".into(),
            Unsupported(_) => "a profile of this job is not supported".into(),
            TranscodeTimeout(_) | Internal(_) => "transcoding failed on this node".into(),
            StreamWaitTimedOut(_)
            | Busy { .. }
            | StreamBusy { .. }
            | ShuttingDown
            | BodyTooLarge { .. }
            | BodyTimeout(_)
            | HashMismatch => self.to_string(),
        }
    }

    /// The detail to send: everything with `--expose-errors`, else
    /// [`Error::public_detail`].
    pub fn detail(&self, expose: bool) -> String {
        if expose {
            self.to_string()
        } else {
            self.public_detail()
        }
    }
}

impl From<TranscodeError> for Error {
    fn from(error: TranscodeError) -> Self {
        match error {
            TranscodeError::Undecodable(detail) => Error::Undecodable(detail),
            TranscodeError::NoKeyframes => Error::NoKeyframes,
            TranscodeError::Unsupported(detail) => Error::Unsupported(detail),
            TranscodeError::Internal(detail) => Error::Internal(detail),
            TranscodeError::Cancelled => Error::Internal("the transcode was stopped".into()),
        }
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::AllSlotsBusy { slots } => Error::Busy { slots },
            Refusal::StreamQueueFull { queued } => Error::StreamBusy { queued },
        }
    }
}

impl Error {
    /// A run's failure, `timeout` being the transcode's allowance.
    pub fn from_run(error: RunError, timeout: Duration) -> Self {
        match error {
            RunError::Transcode(error) => error.into(),
            RunError::TimedOut(_) => Error::TranscodeTimeout(timeout.as_secs()),
            RunError::WaitedTooLong(waited) => Error::StreamWaitTimedOut(waited),
            RunError::Closed => Error::ShuttingDown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_error() -> Vec<Error> {
        vec![
            Error::Busy { slots: 2 },
            Error::StreamBusy { queued: 1 },
            Error::StreamWaitTimedOut(Duration::from_secs(3)),
            Error::ShuttingDown,
            Error::BodyTooLarge { limit: 10 },
            Error::BodyTimeout(30),
            Error::BodyRead("h2 reset: secret library text".into()),
            Error::HashMismatch,
            Error::Undecodable("ffmpeg said something".into()),
            Error::NoKeyframes,
            Error::Unsupported("P1x1".into()),
            Error::TranscodeTimeout(60),
            Error::Internal("libx264 secret".into()),
        ]
    }

    #[test]
    fn client_faults_are_4xx_and_server_faults_5xx() {
        for error in every_error() {
            let status = error.status();
            match error.blame() {
                Blame::Client => assert!(status.is_client_error(), "{error:?} {status}"),
                Blame::Server => assert!(status.is_server_error(), "{error:?} {status}"),
            }
            assert_eq!(
                error.retry_after().is_some(),
                status == StatusCode::SERVICE_UNAVAILABLE,
                "{error:?}"
            );
        }
    }

    #[test]
    fn public_details_carry_no_library_text() {
        for error in every_error() {
            let detail = error.public_detail();
            assert!(
                !detail.contains("secret") && !detail.contains("ffmpeg"),
                "{error:?}: {detail}"
            );
            assert_eq!(error.detail(true), error.to_string());
        }
    }

    #[test]
    fn a_stream_wait_is_not_reported_as_every_slot_busy() {
        let waited = Error::StreamWaitTimedOut(Duration::from_secs(30));
        assert!(!waited.to_string().contains("slots are busy"), "{waited}");
        let queued = Error::from(Refusal::StreamQueueFull { queued: 2 });
        assert!(!queued.to_string().contains("slots are busy"), "{queued}");
        assert_eq!(queued.code(), "busy");
    }
}
