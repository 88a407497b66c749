//! NVDEC through `libnvcuvid`, opened at run time: the parser that finds
//! pictures in an Annex-B elementary stream (as MPEG-TS carries H.264 and
//! HEVC), the hardware decoder, and mapped output surfaces.
//!
//! Three layers, as around any C library: the raw function table
//! ([`Nvcuvid`]), status codes turned into `Result` ([`check`]), and owning
//! types that free what they hold on `Drop` ([`Decoder`], [`Parser`],
//! [`MappedFrame`]). The parser calls back into Rust while we feed it; the
//! callbacks only record what happened (nothing in them can panic) and the
//! feeding loop acts on it.
//!
//! Every call here needs the device's context current on the calling thread
//! (`DeviceRuntime::bind`). Decoders are tied to that context and are reused
//! across segments of the same shape ([`DecoderPool`]).

#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::ffi::{c_int, c_void};
use std::sync::{Mutex, OnceLock};

use super::GpuError;
use super::sys;

/// Where a driver keeps the library, in the order the loader tries names.
const LIBRARY_NAMES: [&str; 2] = ["libnvcuvid.so.1", "libnvcuvid.so"];

/// The functions lpgpu uses, looked up once.
pub struct Nvcuvid {
    _library: libloading::Library,
    get_decoder_caps: unsafe extern "C" fn(*mut sys::CUVIDDECODECAPS) -> sys::CUresult,
    create_decoder: unsafe extern "C" fn(
        *mut sys::CUvideodecoder,
        *mut sys::CUVIDDECODECREATEINFO,
    ) -> sys::CUresult,
    destroy_decoder: unsafe extern "C" fn(sys::CUvideodecoder) -> sys::CUresult,
    decode_picture:
        unsafe extern "C" fn(sys::CUvideodecoder, *mut sys::CUVIDPICPARAMS) -> sys::CUresult,
    get_decode_status: unsafe extern "C" fn(
        sys::CUvideodecoder,
        c_int,
        *mut sys::CUVIDGETDECODESTATUS,
    ) -> sys::CUresult,
    map_frame: unsafe extern "C" fn(
        sys::CUvideodecoder,
        c_int,
        *mut u64,
        *mut std::ffi::c_uint,
        *mut sys::CUVIDPROCPARAMS,
    ) -> sys::CUresult,
    unmap_frame: unsafe extern "C" fn(sys::CUvideodecoder, u64) -> sys::CUresult,
    create_parser:
        unsafe extern "C" fn(*mut sys::CUvideoparser, *mut sys::CUVIDPARSERPARAMS) -> sys::CUresult,
    parse:
        unsafe extern "C" fn(sys::CUvideoparser, *mut sys::CUVIDSOURCEDATAPACKET) -> sys::CUresult,
    destroy_parser: unsafe extern "C" fn(sys::CUvideoparser) -> sys::CUresult,
    create_lock: unsafe extern "C" fn(*mut sys::CUvideoctxlock, sys::CUcontext) -> sys::CUresult,
    destroy_lock: unsafe extern "C" fn(sys::CUvideoctxlock) -> sys::CUresult,
}

impl std::fmt::Debug for Nvcuvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nvcuvid")
    }
}

/// Looks one symbol up as the function type `T`.
///
/// # Safety
/// `T` must be the symbol's real C signature.
unsafe fn symbol<T: Copy>(library: &libloading::Library, name: &str) -> Result<T, GpuError> {
    // SAFETY: the caller guarantees the type; the pointer is copied out and
    // stays valid as long as `library` is loaded, which `Nvcuvid` ensures
    // by owning it.
    unsafe { library.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| GpuError::NvdecMissing(format!("{name} is missing from libnvcuvid: {e}")))
}

impl Nvcuvid {
    fn load() -> Result<Self, GpuError> {
        let mut failures = Vec::new();
        for name in LIBRARY_NAMES {
            // SAFETY: loading the driver's own library runs its initialisers,
            // which is what NVIDIA's samples do too.
            match unsafe { libloading::Library::new(name) } {
                Ok(library) => {
                    // SAFETY: each type below is the signature the header
                    // declares for that name (the tcuvid* typedefs).
                    return unsafe {
                        Ok(Self {
                            get_decoder_caps: symbol(&library, "cuvidGetDecoderCaps")?,
                            create_decoder: symbol(&library, "cuvidCreateDecoder")?,
                            destroy_decoder: symbol(&library, "cuvidDestroyDecoder")?,
                            decode_picture: symbol(&library, "cuvidDecodePicture")?,
                            get_decode_status: symbol(&library, "cuvidGetDecodeStatus")?,
                            map_frame: symbol(&library, "cuvidMapVideoFrame64")?,
                            unmap_frame: symbol(&library, "cuvidUnmapVideoFrame64")?,
                            create_parser: symbol(&library, "cuvidCreateVideoParser")?,
                            parse: symbol(&library, "cuvidParseVideoData")?,
                            destroy_parser: symbol(&library, "cuvidDestroyVideoParser")?,
                            create_lock: symbol(&library, "cuvidCtxLockCreate")?,
                            destroy_lock: symbol(&library, "cuvidCtxLockDestroy")?,
                            _library: library,
                        })
                    };
                }
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        Err(GpuError::NvdecMissing(format!(
            "libnvcuvid (NVDEC, part of the NVIDIA driver; in containers it needs \
             NVIDIA_DRIVER_CAPABILITIES to include `video`) was not found ({})",
            failures.join("; ")
        )))
    }
}

/// The process's one copy of the library, or why there is none.
pub fn library() -> Result<&'static Nvcuvid, GpuError> {
    static LIBRARY: OnceLock<Result<Nvcuvid, GpuError>> = OnceLock::new();
    LIBRARY
        .get_or_init(Nvcuvid::load)
        .as_ref()
        .map_err(Clone::clone)
}

/// `CUDA_SUCCESS` is 0; anything else is an error named by its number.
fn check(what: &str, status: sys::CUresult) -> Result<(), GpuError> {
    if status == 0 {
        Ok(())
    } else {
        Err(GpuError::Nvdec(format!(
            "{what} failed with CUDA error {status}"
        )))
    }
}

/// The codecs lpgpu decodes on NVDEC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    H264,
    Hevc,
}

impl Codec {
    fn raw(self) -> sys::cudaVideoCodec {
        match self {
            Codec::H264 => sys::cudaVideoCodec_H264,
            Codec::Hevc => sys::cudaVideoCodec_HEVC,
        }
    }
}

/// What `cuvidGetDecoderCaps` says of 8-bit 4:2:0 in one codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeCaps {
    pub supported: bool,
    pub engines: u32,
    pub max_width: u32,
    pub max_height: u32,
}

/// Asks the current context's GPU what NVDEC can do for `codec`.
pub fn decode_caps(codec: Codec) -> Result<DecodeCaps, GpuError> {
    let lib = library()?;
    let mut caps = sys::CUVIDDECODECAPS {
        eCodecType: codec.raw(),
        eChromaFormat: sys::cudaVideoChromaFormat_420,
        nBitDepthMinus8: 0,
        ..Default::default()
    };
    // SAFETY: `caps` is a live, initialised struct of the header's layout;
    // the context is current (module contract).
    check("cuvidGetDecoderCaps", unsafe {
        (lib.get_decoder_caps)(&mut caps)
    })?;
    Ok(DecodeCaps {
        supported: caps.bIsSupported != 0,
        engines: u32::from(caps.nNumNVDECs),
        max_width: caps.nMaxWidth,
        max_height: caps.nMaxHeight,
    })
}

/// The stream shape a decoder is made for; equal shapes share decoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamShape {
    pub codec: Codec,
    pub coded_width: u32,
    pub coded_height: u32,
    /// The visible rectangle: left, top, right, bottom.
    pub display: (i32, i32, i32, i32),
    pub surfaces: u32,
    pub progressive: bool,
}

impl StreamShape {
    pub fn display_size(&self) -> (u32, u32) {
        let (left, top, right, bottom) = self.display;
        ((right - left).max(0) as u32, (bottom - top).max(0) as u32)
    }
}

/// One hardware decoder session.
#[derive(Debug)]
pub struct Decoder {
    handle: sys::CUvideodecoder,
    shape: StreamShape,
}

// SAFETY: a decoder handle is tied to a context, not a thread; lpgpu uses
// each decoder from one thread at a time (it moves between the pool and one
// segment's parser), with that context current.
unsafe impl Send for Decoder {}

impl Decoder {
    fn create(shape: StreamShape, lock: sys::CUvideoctxlock) -> Result<Self, GpuError> {
        let lib = library()?;
        let (left, top, right, bottom) = shape.display;
        let (width, height) = shape.display_size();
        let mut info = sys::CUVIDDECODECREATEINFO {
            ulWidth: shape.coded_width.into(),
            ulHeight: shape.coded_height.into(),
            ulNumDecodeSurfaces: shape.surfaces.into(),
            CodecType: shape.codec.raw(),
            ChromaFormat: sys::cudaVideoChromaFormat_420,
            ulCreationFlags: sys::cudaVideoCreate_PreferCUVID.into(),
            bitDepthMinus8: 0,
            ulMaxWidth: shape.coded_width.into(),
            ulMaxHeight: shape.coded_height.into(),
            OutputFormat: sys::cudaVideoSurfaceFormat_NV12,
            DeinterlaceMode: if shape.progressive {
                sys::cudaVideoDeinterlaceMode_Weave
            } else {
                sys::cudaVideoDeinterlaceMode_Adaptive
            },
            ulTargetWidth: width.into(),
            ulTargetHeight: height.into(),
            ulNumOutputSurfaces: 2,
            vidLock: lock,
            ..Default::default()
        };
        info.display_area.left = left as i16;
        info.display_area.top = top as i16;
        info.display_area.right = right as i16;
        info.display_area.bottom = bottom as i16;
        let mut handle: sys::CUvideodecoder = std::ptr::null_mut();
        // SAFETY: `info` is fully initialised in the header's layout and
        // `handle` is a live out-pointer; the context is current.
        check("cuvidCreateDecoder", unsafe {
            (lib.create_decoder)(&mut handle, &mut info)
        })?;
        Ok(Self { handle, shape })
    }

    pub fn shape(&self) -> StreamShape {
        self.shape
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        if let Ok(lib) = library() {
            // SAFETY: the handle came from cuvidCreateDecoder and is
            // destroyed once, here; nothing maps from it any more.
            let _ = unsafe { (lib.destroy_decoder)(self.handle) };
        }
    }
}

/// Idle decoders of one GPU, kept for the next segment of the same shape
/// (creating one costs milliseconds and driver memory), and the context
/// lock all its decoders share, since segments decode on several threads.
#[derive(Debug)]
pub struct DecoderPool {
    idle: Mutex<Vec<Decoder>>,
    lock: sys::CUvideoctxlock,
}

// SAFETY: the context lock is a driver object meant to be shared between
// threads (that is its purpose); the decoders are behind the mutex.
unsafe impl Send for DecoderPool {}
// SAFETY: as above.
unsafe impl Sync for DecoderPool {}

impl Drop for DecoderPool {
    fn drop(&mut self) {
        self.clear();
        if let Ok(lib) = library() {
            // SAFETY: created in `new`, destroyed once, after every decoder
            // that used it.
            let _ = unsafe { (lib.destroy_lock)(self.lock) };
        }
    }
}

/// Idle decoders kept per GPU; the oldest is freed first.
const POOL_LIMIT: usize = 16;

impl DecoderPool {
    /// A pool for the decoders of `context` (a `CUcontext`).
    pub fn new(context: *mut c_void) -> Result<Self, GpuError> {
        let lib = library()?;
        let mut lock: sys::CUvideoctxlock = std::ptr::null_mut();
        // SAFETY: a live context and a live out-pointer.
        check("cuvidCtxLockCreate", unsafe {
            (lib.create_lock)(&mut lock, context.cast())
        })?;
        Ok(Self {
            idle: Mutex::new(Vec::new()),
            lock,
        })
    }

    fn take(&self, shape: &StreamShape) -> Option<Decoder> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let index = idle.iter().position(|d| d.shape == *shape)?;
        Some(idle.swap_remove(index))
    }

    fn give_back(&self, decoder: Decoder) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= POOL_LIMIT {
            idle.remove(0);
        }
        idle.push(decoder);
    }

    /// Frees every idle decoder (before the context is rebuilt).
    pub fn clear(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A picture the parser has put out, in display order.
#[derive(Debug, Clone, Copy)]
pub struct Displayed {
    picture_index: c_int,
    progressive: bool,
    top_field_first: bool,
    /// The packet timestamp it came with (None when the packet had none).
    pub pts: Option<i64>,
}

/// What the callbacks record; the parser's user data points here.
struct ParserState<'pool> {
    codec: Codec,
    pool: &'pool DecoderPool,
    decoder: Option<Decoder>,
    displayed: VecDeque<Displayed>,
    error: Option<GpuError>,
    /// Timestamps of the packets fed, to tell "no timestamp" from 0.
    stamped: bool,
}

/// Extra decode surfaces over the stream's minimum: room for the display
/// delay and the frames we hold mapped.
const EXTRA_SURFACES: u32 = 4;
/// nvcuvid's ceiling on decode surfaces.
const MAX_DECODE_SURFACES: u32 = 32;

extern "C" fn on_sequence(user: *mut c_void, format: *mut sys::CUVIDEOFORMAT) -> c_int {
    // SAFETY: `user` is the `ParserState` that `Parser::new` registered,
    // alive and not otherwise borrowed while `cuvidParseVideoData` runs;
    // `format` is valid for this call (nvcuvid's contract).
    let (state, format) = unsafe { (&mut *(user as *mut ParserState<'_>), &*format) };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.sequence(format))).unwrap_or(0)
}

extern "C" fn on_decode(user: *mut c_void, picture: *mut sys::CUVIDPICPARAMS) -> c_int {
    // SAFETY: as in `on_sequence`; `picture` is valid for this call.
    let state = unsafe { &mut *(user as *mut ParserState<'_>) };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.decode(picture))).unwrap_or(0)
}

extern "C" fn on_display(user: *mut c_void, info: *mut sys::CUVIDPARSERDISPINFO) -> c_int {
    // SAFETY: as in `on_sequence`; `info` is null at the end of the stream,
    // else valid for this call.
    let state = unsafe { &mut *(user as *mut ParserState<'_>) };
    let info = unsafe { info.as_ref() };
    if let Some(info) = info {
        state.displayed.push_back(Displayed {
            picture_index: info.picture_index,
            progressive: info.progressive_frame != 0,
            top_field_first: info.top_field_first != 0,
            pts: state.stamped.then_some(info.timestamp),
        });
    }
    1
}

impl ParserState<'_> {
    /// A new sequence header: make sure a decoder of its shape is ready.
    /// Returns the decode surfaces to use, or 0 to stop the parser.
    fn sequence(&mut self, format: &sys::CUVIDEOFORMAT) -> c_int {
        if format.bit_depth_luma_minus8 != 0
            || format.chroma_format != sys::cudaVideoChromaFormat_420
        {
            self.error = Some(GpuError::NvdecUnsupported(format!(
                "only 8-bit 4:2:0 is decoded on the GPU (this stream: {} bits, chroma format {})",
                8 + format.bit_depth_luma_minus8,
                format.chroma_format
            )));
            return 0;
        }
        let area = format.display_area;
        let shape = StreamShape {
            codec: self.codec,
            coded_width: format.coded_width,
            coded_height: format.coded_height,
            display: (area.left, area.top, area.right, area.bottom),
            surfaces: (u32::from(format.min_num_decode_surfaces) + EXTRA_SURFACES)
                .min(MAX_DECODE_SURFACES),
            progressive: format.progressive_sequence != 0,
        };
        if self.decoder.as_ref().is_some_and(|d| d.shape == shape) {
            return shape.surfaces as c_int;
        }
        if let Some(old) = self.decoder.take() {
            self.pool.give_back(old);
        }
        let decoder = match self.pool.take(&shape) {
            Some(decoder) => decoder,
            None => match check_size(self.codec, &shape)
                .and_then(|()| Decoder::create(shape, self.pool.lock))
            {
                Ok(decoder) => decoder,
                Err(e) => {
                    self.error = Some(e);
                    return 0;
                }
            },
        };
        self.decoder = Some(decoder);
        shape.surfaces as c_int
    }

    fn decode(&mut self, picture: *mut sys::CUVIDPICPARAMS) -> c_int {
        let (Some(decoder), Ok(lib)) = (self.decoder.as_ref(), library()) else {
            return 0;
        };
        // SAFETY: the decoder is live and `picture` is the parser's, valid
        // for this callback.
        match check("cuvidDecodePicture", unsafe {
            (lib.decode_picture)(decoder.handle, picture)
        }) {
            Ok(()) => 1,
            Err(e) => {
                self.error.get_or_insert(e);
                0
            }
        }
    }
}

fn check_size(codec: Codec, shape: &StreamShape) -> Result<(), GpuError> {
    let caps = decode_caps(codec)?;
    if !caps.supported {
        return Err(GpuError::NvdecUnsupported(format!(
            "this GPU's NVDEC does not decode 8-bit 4:2:0 {codec:?}"
        )));
    }
    if shape.coded_width > caps.max_width || shape.coded_height > caps.max_height {
        return Err(GpuError::NvdecUnsupported(format!(
            "{}x{} {codec:?} is larger than NVDEC's {}x{}",
            shape.coded_width, shape.coded_height, caps.max_width, caps.max_height
        )));
    }
    Ok(())
}

/// One segment's parser: feed it packets, take the pictures it displays.
pub struct Parser<'pool> {
    handle: sys::CUvideoparser,
    /// Owned through a raw pointer (from `Box::into_raw`, freed in `Drop`):
    /// nvcuvid holds the same address and the callbacks write through it, so
    /// no `Box` or `&mut` may claim it exclusively between calls.
    state: *mut ParserState<'pool>,
}

impl std::fmt::Debug for Parser<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parser")
            .field("codec", &self.state().codec)
            .field("decoder", &self.decoder_shape())
            .finish()
    }
}

impl<'pool> Parser<'pool> {
    pub fn new(codec: Codec, pool: &'pool DecoderPool) -> Result<Self, GpuError> {
        let lib = library()?;
        let state = Box::into_raw(Box::new(ParserState {
            codec,
            pool,
            decoder: None,
            displayed: VecDeque::new(),
            error: None,
            stamped: false,
        }));
        let mut params = sys::CUVIDPARSERPARAMS {
            CodecType: codec.raw(),
            ulMaxNumDecodeSurfaces: 1,
            ulMaxDisplayDelay: 1,
            pUserData: state.cast(),
            pfnSequenceCallback: Some(on_sequence),
            pfnDecodePicture: Some(on_decode),
            pfnDisplayPicture: Some(on_display),
            ..Default::default()
        };
        let mut handle: sys::CUvideoparser = std::ptr::null_mut();
        // SAFETY: `params` is initialised; the user data outlives the parser
        // (both are owned by the returned value, and Drop destroys the
        // parser first).
        let created = check("cuvidCreateVideoParser", unsafe {
            (lib.create_parser)(&mut handle, &mut params)
        });
        if let Err(e) = created {
            // SAFETY: from Box::into_raw above, never shared: nvcuvid refused it.
            drop(unsafe { Box::from_raw(state) });
            return Err(e);
        }
        Ok(Self { handle, state })
    }

    fn state(&self) -> &ParserState<'pool> {
        // SAFETY: `state` is live until Drop; nvcuvid writes through it only
        // inside `parse`, which takes `&mut self`, so no callback runs while
        // this shared borrow exists.
        unsafe { &*self.state }
    }

    fn state_mut(&mut self) -> &mut ParserState<'pool> {
        // SAFETY: as in `state`; `&mut self` makes this the only borrow.
        unsafe { &mut *self.state }
    }

    /// Feeds one access unit (Annex B) with its timestamp; pictures it
    /// completes are queued for [`Parser::next_displayed`].
    pub fn feed(&mut self, data: &[u8], pts: Option<i64>) -> Result<(), GpuError> {
        let mut packet = sys::CUVIDSOURCEDATAPACKET {
            flags: 0,
            payload_size: data.len() as _,
            payload: data.as_ptr(),
            timestamp: pts.unwrap_or(0),
        };
        if pts.is_some() {
            packet.flags |= sys::CUVID_PKT_TIMESTAMP as sys::tcu_ulong;
            self.state_mut().stamped = true;
        }
        self.parse(&mut packet)
    }

    /// Tells the parser the stream ended, so it displays what it holds back.
    pub fn finish(&mut self) -> Result<(), GpuError> {
        let mut packet = sys::CUVIDSOURCEDATAPACKET {
            flags: sys::CUVID_PKT_ENDOFSTREAM as sys::tcu_ulong,
            ..Default::default()
        };
        self.parse(&mut packet)
    }

    fn parse(&mut self, packet: &mut sys::CUVIDSOURCEDATAPACKET) -> Result<(), GpuError> {
        let lib = library()?;
        // SAFETY: the packet's payload is borrowed for this call only
        // (nvcuvid copies what it keeps); the callbacks run inside this call
        // with `state` not otherwise borrowed.
        let status = unsafe { (lib.parse)(self.handle, packet) };
        if let Some(error) = self.state_mut().error.take() {
            return Err(error);
        }
        check("cuvidParseVideoData", status)
    }

    /// The next picture in display order, if one is ready.
    pub fn next_displayed(&mut self) -> Option<Displayed> {
        self.state_mut().displayed.pop_front()
    }

    pub fn decoder_shape(&self) -> Option<StreamShape> {
        self.state().decoder.as_ref().map(Decoder::shape)
    }

    /// Whether NVDEC decoded the picture cleanly (concealed pictures are
    /// dropped, as the CPU backend drops them).
    pub fn decoded_cleanly(&self, picture: &Displayed) -> bool {
        let (Some(decoder), Ok(lib)) = (self.state().decoder.as_ref(), library()) else {
            return false;
        };
        let mut status = sys::CUVIDGETDECODESTATUS::default();
        // SAFETY: a live decoder, a picture index the parser gave us, and a
        // live out-struct.
        let result =
            unsafe { (lib.get_decode_status)(decoder.handle, picture.picture_index, &mut status) };
        // Drivers that cannot tell answer "not supported": trust the picture.
        result != 0
            || !matches!(
                status.decodeStatus,
                sys::cuvidDecodeStatus_Error | sys::cuvidDecodeStatus_Error_Concealed
            )
    }

    /// Maps a displayed picture for reading on `stream`: NV12, luma rows
    /// `pitch` apart, the UV plane after the luma's (even) height.
    pub fn map(
        &self,
        picture: &Displayed,
        stream: sys::CUstream,
    ) -> Result<MappedFrame<'_>, GpuError> {
        let lib = library()?;
        let decoder = self
            .state()
            .decoder
            .as_ref()
            .ok_or_else(|| GpuError::Nvdec("a picture before any sequence header".into()))?;
        let mut params = sys::CUVIDPROCPARAMS {
            progressive_frame: c_int::from(picture.progressive),
            top_field_first: c_int::from(picture.top_field_first),
            output_stream: stream,
            ..Default::default()
        };
        let (mut pointer, mut pitch) = (0u64, 0u32);
        // SAFETY: live decoder, an index the parser displayed, live out-pointers.
        check("cuvidMapVideoFrame", unsafe {
            (lib.map_frame)(
                decoder.handle,
                picture.picture_index,
                &mut pointer,
                &mut pitch,
                &mut params,
            )
        })?;
        let (width, height) = decoder.shape.display_size();
        Ok(MappedFrame {
            decoder: decoder.handle,
            pointer,
            pitch,
            width,
            height,
            _parser: std::marker::PhantomData,
        })
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        if let Ok(lib) = library() {
            // SAFETY: the handle came from cuvidCreateVideoParser and is
            // destroyed once; no callback runs after this returns.
            let _ = unsafe { (lib.destroy_parser)(self.handle) };
        }
        // SAFETY: from Box::into_raw in `new`; the parser that wrote through
        // it is destroyed above, so this is the last use.
        let state = unsafe { Box::from_raw(self.state) };
        if let Some(decoder) = state.decoder {
            state.pool.give_back(decoder);
        }
    }
}

/// A decoded picture mapped for reading; unmapped on `Drop`. Work reading it
/// must have finished (the stream synchronised) before it is dropped.
#[derive(Debug)]
pub struct MappedFrame<'parser> {
    decoder: sys::CUvideodecoder,
    pub pointer: u64,
    pub pitch: u32,
    pub width: u32,
    pub height: u32,
    _parser: std::marker::PhantomData<&'parser ()>,
}

impl MappedFrame<'_> {
    /// The UV plane follows the luma plane, whose height NVDEC rounds up to even.
    pub fn chroma_pointer(&self) -> u64 {
        self.pointer + u64::from(self.pitch) * u64::from((self.height + 1) & !1)
    }
}

impl Drop for MappedFrame<'_> {
    fn drop(&mut self) {
        if let Ok(lib) = library() {
            // SAFETY: the pointer came from cuvidMapVideoFrame64 on this
            // decoder, which outlives the mapping (the borrow of the parser).
            let _ = unsafe { (lib.unmap_frame)(self.decoder, self.pointer) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_size_comes_from_the_visible_rectangle() {
        let shape = StreamShape {
            codec: Codec::H264,
            coded_width: 1920,
            coded_height: 1088,
            display: (0, 0, 1920, 1080),
            surfaces: 8,
            progressive: true,
        };
        assert_eq!(shape.display_size(), (1920, 1080));
    }

    #[test]
    fn without_the_driver_the_error_names_the_library() {
        // No NVIDIA driver on CI machines: the error must say what is missing.
        if let Err(e) = library() {
            let text = e.to_string();
            assert!(text.contains("libnvcuvid"), "{text}");
        }
    }
}
