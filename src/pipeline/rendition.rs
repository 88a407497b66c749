//! How one segment is to be handled beyond its renditions ([`SegmentOptions`]:
//! a clip, its stream, cancellation and a deadline). What a rendition is
//! lives with the wire's plain values in [`crate::protocol::rendition`] and
//! is re-exported here for the backends.

pub use crate::protocol::rendition::*;

/// How one segment is to be handled, beyond its renditions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentOptions {
    /// Keep only part of the segment.
    pub clip: Option<Clip>,
    /// The stream this segment belongs to, so a backend with per-stream
    /// placement (the GPU rig) keeps a stream on one device.
    pub stream: Option<String>,
    /// Set when nobody waits for the result any more: backends stop at the
    /// next picture and return [`super::TranscodeError::Cancelled`].
    pub cancel: Cancel,
    /// When the result is due; a backend that would wait for a device
    /// place past it gives up instead.
    pub deadline: Option<std::time::Instant>,
    /// Also make each rendition's perceptual hash (capability 14), as
    /// LPMS does: the MPEG-7 signature of the pictures the encoder gets.
    pub perceptual_hash: bool,
}

/// A flag that stops a transcode early; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops the work sharing this flag, at its next check.
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// `Err(Cancelled)` once cancelled: for `?` in a backend's loops.
    pub fn check(&self) -> Result<(), super::TranscodeError> {
        if self.is_cancelled() {
            Err(super::TranscodeError::Cancelled)
        } else {
            Ok(())
        }
    }
}

impl PartialEq for Cancel {
    /// Two flags are equal when they are the same flag.
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Cancel {}
