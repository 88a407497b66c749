//! The perceptual hash of one rendition, made as LPMS makes it: FFmpeg's
//! `signature` filter (MPEG-7 video signature, binary format) fed the
//! rendition's scaled pictures just before they are encoded. Its format
//! is read by [`crate::protocol::signature`].
//!
//! The filter writes its result only to a file, at the end of its input:
//! each [`SignatureSink`] owns one temporary file, read back by
//! [`SignatureSink::finish`] and removed on `Drop` whatever happens.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ffmpeg::format::Pixel;
use ffmpeg::{filter, frame};
use ffmpeg_next as ffmpeg;

use super::{Rational, TranscodeError};

/// Whether this build of libavfilter has the `signature` filter (capability
/// 14 is offered only then).
pub fn available() -> bool {
    super::cpu::init_ffmpeg();
    filter::find("signature").is_some()
}

/// One rendition's signature filter graph: `buffer → signature → buffersink`.
pub struct SignatureSink {
    graph: filter::Graph,
    path: PathBuf,
    passed: frame::Video,
}

impl std::fmt::Debug for SignatureSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureSink")
            .field("path", &self.path)
            .finish()
    }
}

fn failed(what: &str) -> impl Fn(ffmpeg::Error) -> TranscodeError + '_ {
    move |e| TranscodeError::Internal(format!("perceptual hash: {what}: {e}"))
}

/// A value inside a filter's option string: `\`, `'` and `:` escaped, as
/// libavfilter's option parser reads them.
fn escape_option(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | '\'' | ':') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

impl SignatureSink {
    /// A graph for pictures of `width`×`height` in `format`, timed in
    /// `time_base`.
    pub fn open(
        width: u32,
        height: u32,
        format: Pixel,
        time_base: Rational,
    ) -> Result<Self, TranscodeError> {
        super::cpu::init_ffmpeg();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "lpgpu-phash-{}-{}.bin",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let path_text = path.to_str().ok_or_else(|| {
            TranscodeError::Internal("perceptual hash: temp dir is not UTF-8".into())
        })?;
        let pixel_name = format
            .descriptor()
            .map(|d| d.name())
            .ok_or_else(|| TranscodeError::Internal(format!("perceptual hash: {format:?}")))?;
        let find = |name: &str| {
            filter::find(name).ok_or_else(|| {
                TranscodeError::Internal(format!("perceptual hash: no {name} filter"))
            })
        };
        let mut graph = filter::Graph::new();
        let mut source = graph
            .add(
                &find("buffer")?,
                "in",
                &format!(
                    "video_size={width}x{height}:pix_fmt={pixel_name}:time_base={}/{}:pixel_aspect=1/1",
                    time_base.num.max(1),
                    time_base.den.max(1)
                ),
            )
            .map_err(failed("buffer source"))?;
        let mut signature = graph
            .add(
                &find("signature")?,
                "signature",
                &format!("format=binary:filename={}", escape_option(path_text)),
            )
            .map_err(failed("signature filter"))?;
        let mut sink = graph
            .add(&find("buffersink")?, "out", "")
            .map_err(failed("buffer sink"))?;
        source.link(0, &mut signature, 0);
        signature.link(0, &mut sink, 0);
        graph.validate().map_err(failed("configuring"))?;
        Ok(Self {
            graph,
            path,
            passed: frame::Video::empty(),
        })
    }

    /// Adds one picture (a copy: the encoder keeps the original).
    pub fn push(&mut self, picture: &frame::Video) -> Result<(), TranscodeError> {
        let copy = picture.clone();
        self.source()?
            .source()
            .add(&copy)
            .map_err(failed("adding a picture"))?;
        self.drain()
    }

    fn source(&mut self) -> Result<filter::Context, TranscodeError> {
        self.graph
            .get("in")
            .ok_or_else(|| TranscodeError::Internal("perceptual hash: source lost".into()))
    }

    /// Takes what passed through, so pictures do not pile up in the sink.
    fn drain(&mut self) -> Result<(), TranscodeError> {
        let mut sink = self
            .graph
            .get("out")
            .ok_or_else(|| TranscodeError::Internal("perceptual hash: sink lost".into()))?;
        loop {
            match sink.sink().frame(&mut self.passed) {
                Ok(()) => continue,
                Err(ffmpeg::Error::Eof)
                | Err(ffmpeg::Error::Other {
                    errno: ffmpeg::util::error::EAGAIN,
                }) => return Ok(()),
                Err(e) => return Err(failed("filtering")(e)),
            }
        }
    }

    /// Ends the input: the filter writes its file, which is read and
    /// removed.
    pub fn finish(mut self) -> Result<Bytes, TranscodeError> {
        self.source()?
            .source()
            .flush()
            .map_err(failed("ending the input"))?;
        self.drain()?;
        let bytes = std::fs::read(&self.path).map_err(|e| {
            TranscodeError::Internal(format!("perceptual hash: reading the signature: {e}"))
        })?;
        Ok(Bytes::from(bytes))
    }
}

impl Drop for SignatureSink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::signature::VideoSignature;

    fn picture(width: u32, height: u32, shade: u8, pts: i64) -> frame::Video {
        let mut picture = frame::Video::new(Pixel::YUV420P, width, height);
        for plane in 0..3 {
            let stride = picture.stride(plane);
            let data = picture.data_mut(plane);
            for (i, byte) in data.iter_mut().enumerate() {
                let (x, y) = (i % stride, i / stride);
                *byte = if plane == 0 {
                    ((x * 7 + y * 3) as u8).wrapping_add(shade)
                } else {
                    128
                };
            }
        }
        picture.set_pts(Some(pts));
        picture
    }

    #[test]
    fn pictures_in_give_a_signature_of_that_many_frames() {
        assert!(available());
        let mut sink =
            SignatureSink::open(160, 96, Pixel::YUV420P, Rational::new(1, 90_000)).unwrap();
        let path = sink.path.clone();
        for i in 0..50 {
            sink.push(&picture(160, 96, (i * 5) as u8, i * 3000))
                .unwrap();
        }
        let bytes = sink.finish().unwrap();
        assert!(!path.exists(), "the temporary file is removed");
        let signature = VideoSignature::parse(&bytes).unwrap();
        assert_eq!((signature.width, signature.height), (160, 96));
        assert_eq!(signature.frames.len(), 50);
        assert_eq!(signature.segments, 2);
        assert_eq!(signature.time_unit, (90_000u32 & 0xFFFF) as u16);
        assert_eq!(signature.frames[2].pts, 6000);
    }

    #[test]
    fn option_values_are_escaped() {
        assert_eq!(escape_option("/tmp/a:b'c\\d"), "/tmp/a\\:b\\'c\\\\d");
    }
}
