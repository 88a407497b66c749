//! A backend that does no work, for measuring everything around the
//! transcode (the pool's relay, the protocol): every rendition is the
//! source segment as it came, at once, with no picture counted. Chosen only
//! by the hidden `--backend echo`; never by `auto`.

use bytes::Bytes;

use super::{Backend, Rendition, RenditionSpec, SegmentOptions, TranscodeError, Transcoded};

#[derive(Debug, Default)]
pub struct EchoBackend;

impl Backend for EchoBackend {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn device(&self) -> String {
        "none (echo: renditions are the source)".into()
    }

    /// What the CPU would offer, less perceptual hashes: echo makes none.
    fn capabilities(&self) -> crate::protocol::capabilities::CapabilitySet {
        let all = super::encoders::software_capabilities();
        crate::protocol::capabilities::CapabilitySet::new(
            all.iter()
                .filter(|&c| c != crate::protocol::capabilities::MPEG7_VIDEO_SIGNATURE),
        )
    }

    fn transcode(
        &self,
        segment: Bytes,
        specs: &[RenditionSpec],
        _options: &SegmentOptions,
    ) -> Result<Transcoded, TranscodeError> {
        if segment.is_empty() {
            return Err(TranscodeError::Undecodable("the segment is empty".into()));
        }
        Ok(Transcoded {
            renditions: specs
                .iter()
                .map(|spec| Rendition {
                    perceptual_hash: None,
                    spec: spec.clone(),
                    width: 0,
                    height: 0,
                    frames: 0,
                    encode_seconds: 0.0,
                    data: segment.clone(),
                })
                .collect(),
            source_seconds: 0.0,
            source_frames: 0,
            source_pixels: 0,
            backend: "echo",
            fallback: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rendition_is_the_source() {
        let specs: Vec<RenditionSpec> = crate::pipeline::rendition::from_profiles(
            &crate::protocol::parse_profile_list("P240p30fps16x9,P144p30fps16x9").unwrap(),
        );
        let out = EchoBackend
            .transcode(
                Bytes::from_static(b"segment"),
                &specs,
                &SegmentOptions::default(),
            )
            .unwrap();
        assert_eq!(out.renditions.len(), 2);
        assert!(out.renditions.iter().all(|r| r.data == "segment"));
        assert!(
            EchoBackend
                .transcode(Bytes::new(), &specs, &SegmentOptions::default())
                .is_err()
        );
    }
}
