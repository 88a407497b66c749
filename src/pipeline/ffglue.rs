//! The FFmpeg calls ffmpeg-next does not wrap, fenced here behind safe
//! functions (the only FFmpeg FFI lpgpu writes itself):
//!
//! - bitstream filters ([`filter_all`]), for `aac_adtstoasc`: AAC demuxed
//!   from MPEG-TS comes as ADTS frames with no AudioSpecificConfig, which
//!   MP4 and Matroska want in their header;
//! - [`clear_codec_tag`]: a stream copied from one container to another
//!   must not keep the first container's tag (MPEG-TS's stream type 0x0f
//!   is no MP4 tag, and the MP4 muxer refuses it).

#![allow(unsafe_code)]

use std::ffi::CString;

use ffmpeg::codec::packet::Mut;
use ffmpeg::{Packet, codec, ffi};
use ffmpeg_next as ffmpeg;

use super::TranscodeError;

/// One bitstream filter instance; freed on `Drop`. Not shared between
/// threads: it lives for one call of [`filter_all`].
struct Bsf {
    context: *mut ffi::AVBSFContext,
}

impl Drop for Bsf {
    fn drop(&mut self) {
        // SAFETY: `context` came from av_bsf_alloc and is freed once, here;
        // av_bsf_free also frees its parameters and sets it to null.
        unsafe { ffi::av_bsf_free(&mut self.context) };
    }
}

fn failed(what: &str, code: i32) -> TranscodeError {
    TranscodeError::Internal(format!("{what}: {}", ffmpeg::Error::from(code)))
}

impl Bsf {
    fn new(
        name: &str,
        parameters: &codec::Parameters,
        time_base: ffmpeg::Rational,
    ) -> Result<Self, TranscodeError> {
        let c_name = CString::new(name)
            .map_err(|_| TranscodeError::Internal(format!("bad filter name {name:?}")))?;
        // SAFETY: a NUL-terminated name; the result is a static table entry
        // or null.
        let filter = unsafe { ffi::av_bsf_get_by_name(c_name.as_ptr()) };
        if filter.is_null() {
            return Err(TranscodeError::Internal(format!(
                "this FFmpeg has no {name} filter"
            )));
        }
        let mut context: *mut ffi::AVBSFContext = std::ptr::null_mut();
        // SAFETY: a valid filter and an out-pointer for the new context.
        let status = unsafe { ffi::av_bsf_alloc(filter, &mut context) };
        if status < 0 || context.is_null() {
            return Err(failed("allocating a bitstream filter", status));
        }
        let bsf = Bsf { context };
        // SAFETY: the context is live and owns `par_in`; `parameters` is a
        // valid AVCodecParameters that is only read.
        let status =
            unsafe { ffi::avcodec_parameters_copy((*bsf.context).par_in, parameters.as_ptr()) };
        if status < 0 {
            return Err(failed("setting up the bitstream filter", status));
        }
        // SAFETY: the context is live and not yet initialised.
        let status = unsafe {
            (*bsf.context).time_base_in = time_base.into();
            ffi::av_bsf_init(bsf.context)
        };
        if status < 0 {
            return Err(failed("initialising the bitstream filter", status));
        }
        Ok(bsf)
    }

    /// Sends one packet (or, with None, the end) and collects what comes out.
    fn push(
        &mut self,
        packet: Option<&Packet>,
        out: &mut Vec<Packet>,
    ) -> Result<(), TranscodeError> {
        let status = match packet {
            Some(packet) => {
                // The filter takes the packet's reference: give it a copy.
                let mut copy = packet.clone();
                // SAFETY: a live context and a valid packet, whose contents
                // the filter takes over (leaving it blank, freed on drop).
                unsafe { ffi::av_bsf_send_packet(self.context, copy.as_mut_ptr()) }
            }
            // SAFETY: a live context; null signals the end of the stream.
            None => unsafe { ffi::av_bsf_send_packet(self.context, std::ptr::null_mut()) },
        };
        if status < 0 {
            return Err(failed("filtering the audio", status));
        }
        loop {
            let mut filtered = Packet::empty();
            // SAFETY: a live context and a blank packet to fill.
            let status = unsafe { ffi::av_bsf_receive_packet(self.context, filtered.as_mut_ptr()) };
            if status == ffi::AVERROR(ffi::EAGAIN) || status == ffi::AVERROR_EOF {
                return Ok(());
            }
            if status < 0 {
                return Err(failed("filtering the audio", status));
            }
            out.push(filtered);
        }
    }

    /// The parameters of the filtered stream (with its extradata).
    fn output_parameters(&self) -> codec::Parameters {
        let mut parameters = codec::Parameters::new();
        // SAFETY: `par_out` is owned by the live context and only read; the
        // destination was just allocated.
        unsafe {
            ffi::avcodec_parameters_copy(parameters.as_mut_ptr(), (*self.context).par_out);
        }
        parameters
    }
}

/// Forgets the container-specific codec tag, so the next muxer picks its own.
pub(crate) fn clear_codec_tag(parameters: &mut codec::Parameters) {
    // SAFETY: `parameters` owns (or borrows mutably) a valid
    // AVCodecParameters; codec_tag is a plain integer field.
    unsafe { (*parameters.as_mut_ptr()).codec_tag = 0 };
}

/// Runs every packet of a stream through the filter `name`: the filtered
/// packets and the stream's new parameters.
pub(crate) fn filter_all(
    name: &str,
    parameters: &codec::Parameters,
    time_base: ffmpeg::Rational,
    packets: &[Packet],
) -> Result<(codec::Parameters, Vec<Packet>), TranscodeError> {
    let mut bsf = Bsf::new(name, parameters, time_base)?;
    let mut out = Vec::with_capacity(packets.len());
    for packet in packets {
        bsf.push(Some(packet), &mut out)?;
    }
    bsf.push(None, &mut out)?;
    Ok((bsf.output_parameters(), out))
}
