//! NVENC through `libnvidia-encode`, opened at run time: whether a GPU has
//! the encoder (found out the only reliable way, by opening a session on its
//! context), and per-GPU accounting of encoder sessions.
//!
//! Data-centre Hopper and Ampere cards (H100, H200, A100) have NVDEC but no
//! NVENC: opening a session there answers "unsupported device", and lpgpu
//! encodes those renditions with libx264 (the hybrid path). GeForce cards cap
//! concurrent sessions per system (8 to 12 with current drivers); a rendition
//! that finds the cap reached is encoded on the hybrid path too.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::GpuError;
use super::sys;

const LIBRARY_NAMES: [&str; 2] = ["libnvidia-encode.so.1", "libnvidia-encode.so"];

/// The API version of the headers lpgpu is built with (11.1).
pub const API_VERSION: u32 = sys::NVENCAPI_MAJOR_VERSION | (sys::NVENCAPI_MINOR_VERSION << 24);

/// `NVENCAPI_STRUCT_VERSION(ver)` from the header (a macro bindgen cannot see).
pub const fn struct_version(version: u32) -> u32 {
    API_VERSION | (version << 16) | (0x7 << 28)
}

/// What opening a session on a GPU told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvencSupport {
    /// The GPU encodes H.264 on NVENC.
    Available,
    /// The GPU has no NVENC (data-centre cards) or cannot use it.
    Unsupported(String),
    /// The library is missing or too old.
    Missing(String),
    /// Every session is taken (consumer cards' per-system cap).
    SessionLimit,
}

/// What an `NVENCSTATUS` from opening a session means for lpgpu.
pub fn classify_open_status(status: sys::NVENCSTATUS) -> NvencSupport {
    match status {
        sys::NV_ENC_SUCCESS => NvencSupport::Available,
        sys::NV_ENC_ERR_UNSUPPORTED_DEVICE
        | sys::NV_ENC_ERR_NO_ENCODE_DEVICE
        | sys::NV_ENC_ERR_INVALID_ENCODERDEVICE
        | sys::NV_ENC_ERR_DEVICE_NOT_EXIST => NvencSupport::Unsupported(format!(
            "this GPU has no NVENC (NVENCSTATUS {status}); renditions are encoded by libx264"
        )),
        // Consumer drivers answer these when their session cap is reached.
        sys::NV_ENC_ERR_OUT_OF_MEMORY | sys::NV_ENC_ERR_INCOMPATIBLE_CLIENT_KEY => {
            NvencSupport::SessionLimit
        }
        sys::NV_ENC_ERR_INVALID_VERSION => NvencSupport::Missing(format!(
            "the driver's NVENC is older than API {}.{} (NVENCSTATUS {status})",
            sys::NVENCAPI_MAJOR_VERSION,
            sys::NVENCAPI_MINOR_VERSION
        )),
        other => {
            NvencSupport::Unsupported(format!("opening an NVENC session: NVENCSTATUS {other}"))
        }
    }
}

type CreateInstance =
    unsafe extern "C" fn(*mut sys::NV_ENCODE_API_FUNCTION_LIST) -> sys::NVENCSTATUS;
type MaxSupportedVersion = unsafe extern "C" fn(*mut u32) -> sys::NVENCSTATUS;

struct Nvenc {
    _library: libloading::Library,
    functions: sys::NV_ENCODE_API_FUNCTION_LIST,
}

// SAFETY: the function list is a table of plain function pointers into the
// loaded library, which NVIDIA documents as callable from any thread.
unsafe impl Send for Nvenc {}
// SAFETY: as above; the table is never written after loading.
unsafe impl Sync for Nvenc {}

impl Nvenc {
    fn load() -> Result<Self, String> {
        let mut failures = Vec::new();
        for name in LIBRARY_NAMES {
            // SAFETY: loading the driver's library runs its initialisers only.
            let library = match unsafe { libloading::Library::new(name) } {
                Ok(library) => library,
                Err(e) => {
                    failures.push(format!("{name}: {e}"));
                    continue;
                }
            };
            // SAFETY: both symbols have these signatures in nvEncodeAPI.h.
            let (max_version, create) = unsafe {
                let max_version = library
                    .get::<MaxSupportedVersion>(b"NvEncodeAPIGetMaxSupportedVersion")
                    .map(|s| *s)
                    .map_err(|e| e.to_string())?;
                let create = library
                    .get::<CreateInstance>(b"NvEncodeAPICreateInstance")
                    .map(|s| *s)
                    .map_err(|e| e.to_string())?;
                (max_version, create)
            };
            let mut driver_version = 0u32;
            // SAFETY: a live out-pointer.
            let status = unsafe { max_version(&mut driver_version) };
            let ours = (sys::NVENCAPI_MAJOR_VERSION << 4) | sys::NVENCAPI_MINOR_VERSION;
            if status != sys::NV_ENC_SUCCESS || driver_version < ours {
                return Err(format!(
                    "the driver's NVENC API is {}.{}; lpgpu needs {}.{}",
                    driver_version >> 4,
                    driver_version & 0xf,
                    sys::NVENCAPI_MAJOR_VERSION,
                    sys::NVENCAPI_MINOR_VERSION
                ));
            }
            let mut functions = sys::NV_ENCODE_API_FUNCTION_LIST {
                version: struct_version(2),
                ..Default::default()
            };
            // SAFETY: `functions` has the version field set as the API asks.
            let status = unsafe { create(&mut functions) };
            if status != sys::NV_ENC_SUCCESS {
                return Err(format!("NvEncodeAPICreateInstance: NVENCSTATUS {status}"));
            }
            return Ok(Self {
                _library: library,
                functions,
            });
        }
        Err(format!(
            "libnvidia-encode (NVENC, part of the NVIDIA driver) was not found ({})",
            failures.join("; ")
        ))
    }
}

fn library() -> Result<&'static Nvenc, String> {
    static LIBRARY: OnceLock<Result<Nvenc, String>> = OnceLock::new();
    LIBRARY
        .get_or_init(Nvenc::load)
        .as_ref()
        .map_err(Clone::clone)
}

/// An open encoder session; closed on `Drop`.
struct Session {
    handle: *mut c_void,
    destroy: unsafe extern "C" fn(*mut c_void) -> sys::NVENCSTATUS,
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the handle came from nvEncOpenEncodeSessionEx and is
        // destroyed once.
        let _ = unsafe { (self.destroy)(self.handle) };
    }
}

/// Opens a session on `context` (a `CUcontext`): the session, or what the
/// refusal means.
fn open_session(context: *mut c_void) -> Result<(&'static Nvenc, Session), NvencSupport> {
    let lib = library().map_err(NvencSupport::Missing)?;
    let (Some(open), Some(destroy)) = (
        lib.functions.nvEncOpenEncodeSessionEx,
        lib.functions.nvEncDestroyEncoder,
    ) else {
        return Err(NvencSupport::Missing(
            "the NVENC function table is incomplete".into(),
        ));
    };
    let mut params = sys::NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS {
        version: struct_version(1),
        deviceType: sys::NV_ENC_DEVICE_TYPE_CUDA,
        device: context,
        apiVersion: API_VERSION,
        ..Default::default()
    };
    let mut handle: *mut c_void = std::ptr::null_mut();
    // SAFETY: initialised parameters naming a live CUDA context; a live
    // out-pointer.
    let status = unsafe { open(&mut params, &mut handle) };
    match classify_open_status(status) {
        NvencSupport::Available if !handle.is_null() => Ok((lib, Session { handle, destroy })),
        NvencSupport::Available => Err(NvencSupport::Unsupported("NVENC opened no session".into())),
        refused => Err(refused),
    }
}

/// Opens (and closes) one session on `context` (a `CUcontext`) to learn
/// whether this GPU has NVENC.
pub fn detect(context: *mut c_void) -> NvencSupport {
    match open_session(context) {
        Ok(_) => NvencSupport::Available,
        Err(refused) => refused,
    }
}

/// `NV_ENC_CODEC_H264_GUID` (a `static const` in the header, which bindgen
/// cannot carry).
const CODEC_H264: sys::GUID = sys::GUID {
    Data1: 0x6bc8_2762,
    Data2: 0x4e63,
    Data3: 0x4ca4,
    Data4: [0xaa, 0x85, 0x1e, 0x50, 0xf3, 0x21, 0xf6, 0xbf],
};
/// `NV_ENC_H264_PROFILE_HIGH_GUID`.
const PROFILE_HIGH: sys::GUID = sys::GUID {
    Data1: 0xe7cb_c309,
    Data2: 0x4f7a,
    Data3: 0x4b89,
    Data4: [0xaf, 0x2a, 0xd5, 0x37, 0xc9, 0x2b, 0xe3, 0x10],
};
/// `NV_ENC_PRESET_P4_GUID`: the middle of NVIDIA's quality/speed range.
const PRESET_P4: sys::GUID = sys::GUID {
    Data1: 0x90a7_b826,
    Data2: 0xdf06,
    Data3: 0x4862,
    Data4: [0xb9, 0xd2, 0xcd, 0x6d, 0x73, 0xa0, 0x86, 0x81],
};

/// What an NVENC session encodes, chosen from a rendition's codec by
/// [`NvencCodec::for_codec`]: the one place that says which renditions
/// NVENC makes. HEVC (where the card has it) is the codecs issue's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NvencCodec {
    /// H.264 High without B-frames: also what an encoder-default or
    /// constrained-high H.264 rendition asks for.
    H264High,
}

impl NvencCodec {
    pub fn for_codec(codec: crate::pipeline::VideoCodec) -> Option<Self> {
        use crate::pipeline::{H264Profile, VideoCodec};
        match codec {
            VideoCodec::H264(
                H264Profile::EncoderDefault | H264Profile::High | H264Profile::ConstrainedHigh,
            ) => Some(NvencCodec::H264High),
            _ => None,
        }
    }

    fn encode_guid(self) -> sys::GUID {
        match self {
            NvencCodec::H264High => CODEC_H264,
        }
    }

    fn profile_guid(self) -> sys::GUID {
        match self {
            NvencCodec::H264High => PROFILE_HIGH,
        }
    }
}

/// The `_VER` macros of the structs used here (nvEncodeAPI.h 11.1).
const CONFIG_VER: u32 = struct_version(7) | (1 << 31);
const INITIALIZE_PARAMS_VER: u32 = struct_version(5) | (1 << 31);
const PRESET_CONFIG_VER: u32 = struct_version(4) | (1 << 31);
const PIC_PARAMS_VER: u32 = struct_version(4) | (1 << 31);
const REGISTER_RESOURCE_VER: u32 = struct_version(3);
const MAP_INPUT_RESOURCE_VER: u32 = struct_version(4);
const CREATE_BITSTREAM_BUFFER_VER: u32 = struct_version(1);
const LOCK_BITSTREAM_VER: u32 = struct_version(1);

fn nvenc_check(what: &str, status: sys::NVENCSTATUS) -> Result<(), GpuError> {
    if status == sys::NV_ENC_SUCCESS {
        Ok(())
    } else {
        Err(GpuError::Nvenc(format!("{what}: NVENCSTATUS {status}")))
    }
}

/// A function from the table, or an error naming it.
fn function<T>(f: Option<T>, name: &str) -> Result<T, GpuError> {
    f.ok_or_else(|| GpuError::Nvenc(format!("{name} is missing from the NVENC function table")))
}

/// What one rendition's NVENC session is set up with: the same rate control
/// as the libx264 path (bitrate = maxrate, VBV = `bufsize_factor` × bitrate,
/// keyframes every `gop_frames`), an IDR first, no B-frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NvencSettings {
    pub codec: NvencCodec,
    pub width: u32,
    pub height: u32,
    pub rate: (u32, u32),
    pub bitrate_bps: u32,
    pub gop_frames: u32,
    pub bufsize_factor: f64,
}

/// One access unit from NVENC (Annex B, SPS/PPS repeated at each IDR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedAccessUnit {
    pub data: Vec<u8>,
    pub pts: i64,
    pub key: bool,
}

/// One rendition's NVENC session, reading packed NV12 device pictures
/// (pitch = width) that the resize kernels wrote. Not `Send`: it lives on
/// the thread that drives its segment.
pub struct NvencEncoder {
    functions: &'static sys::NV_ENCODE_API_FUNCTION_LIST,
    settings: NvencSettings,
    registered: Option<(u64, sys::NV_ENC_REGISTERED_PTR)>,
    bitstream: sys::NV_ENC_OUTPUT_PTR,
    frames: u32,
    units: Vec<EncodedAccessUnit>,
    /// Closed after the resources above are freed (`Drop` runs first).
    session: Session,
    _permit: SessionPermit,
}

impl std::fmt::Debug for NvencEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvencEncoder")
            .field("settings", &self.settings)
            .field("frames", &self.frames)
            .finish()
    }
}

impl NvencEncoder {
    /// Opens and configures a session on `context` (a `CUcontext`), holding
    /// `permit` for its lifetime.
    pub fn open(
        context: *mut c_void,
        permit: SessionPermit,
        settings: NvencSettings,
    ) -> Result<Self, GpuError> {
        let (lib, session) = open_session(context).map_err(|refused| match refused {
            NvencSupport::SessionLimit => GpuError::EncoderSessionLimit(permit.sessions.limit),
            other => GpuError::Nvenc(format!("opening a session: {other:?}")),
        })?;
        let mut encoder = Self {
            functions: &lib.functions,
            settings,
            registered: None,
            bitstream: std::ptr::null_mut(),
            frames: 0,
            units: Vec::new(),
            session,
            _permit: permit,
        };
        encoder.initialize()?;
        Ok(encoder)
    }

    fn initialize(&mut self) -> Result<(), GpuError> {
        let f = self.functions;
        let handle = self.session.handle;
        let preset_config = function(
            f.nvEncGetEncodePresetConfigEx,
            "nvEncGetEncodePresetConfigEx",
        )?;
        let mut preset = sys::NV_ENC_PRESET_CONFIG {
            version: PRESET_CONFIG_VER,
            ..Default::default()
        };
        preset.presetCfg.version = CONFIG_VER;
        // SAFETY: a live session and an initialised, versioned out-struct.
        nvenc_check("reading the P4 preset", unsafe {
            preset_config(
                handle,
                self.settings.codec.encode_guid(),
                PRESET_P4,
                sys::NV_ENC_TUNING_INFO_HIGH_QUALITY,
                &mut preset,
            )
        })?;
        let s = self.settings;
        let mut config = preset.presetCfg;
        config.version = CONFIG_VER;
        config.profileGUID = s.codec.profile_guid();
        config.gopLength = s.gop_frames.max(1);
        // P frames only: no B-frames, so every picture comes out as it goes in.
        config.frameIntervalP = 1;
        config.rcParams.rateControlMode = sys::NV_ENC_PARAMS_RC_VBR;
        config.rcParams.averageBitRate = s.bitrate_bps;
        config.rcParams.maxBitRate = s.bitrate_bps;
        config.rcParams.vbvBufferSize = (f64::from(s.bitrate_bps) * s.bufsize_factor) as u32;
        config.rcParams.vbvInitialDelay = config.rcParams.vbvBufferSize;
        // One picture in, one access unit out: no lookahead, no reordering
        // (the synchronous loop below relies on it).
        config.rcParams.set_enableLookahead(0);
        config.rcParams.set_zeroReorderDelay(1);
        // SAFETY: the H.264 member is the one NVENC reads for CODEC_H264, and
        // the preset filled it.
        unsafe {
            let h264 = &mut config.encodeCodecConfig.h264Config;
            h264.idrPeriod = config.gopLength;
            h264.set_repeatSPSPPS(1);
        }
        let mut init = sys::NV_ENC_INITIALIZE_PARAMS {
            version: INITIALIZE_PARAMS_VER,
            encodeGUID: s.codec.encode_guid(),
            presetGUID: PRESET_P4,
            encodeWidth: s.width,
            encodeHeight: s.height,
            darWidth: s.width,
            darHeight: s.height,
            frameRateNum: s.rate.0,
            frameRateDen: s.rate.1.max(1),
            enablePTD: 1,
            encodeConfig: &mut config,
            maxEncodeWidth: s.width,
            maxEncodeHeight: s.height,
            tuningInfo: sys::NV_ENC_TUNING_INFO_HIGH_QUALITY,
            ..Default::default()
        };
        let initialize = function(f.nvEncInitializeEncoder, "nvEncInitializeEncoder")?;
        // SAFETY: `init` and the config it points to live across the call.
        nvenc_check("initialising the encoder", unsafe {
            initialize(handle, &mut init)
        })?;

        let create = function(f.nvEncCreateBitstreamBuffer, "nvEncCreateBitstreamBuffer")?;
        let mut buffer = sys::NV_ENC_CREATE_BITSTREAM_BUFFER {
            version: CREATE_BITSTREAM_BUFFER_VER,
            ..Default::default()
        };
        // SAFETY: a live, initialised session; a versioned out-struct.
        nvenc_check("creating the bitstream buffer", unsafe {
            create(handle, &mut buffer)
        })?;
        self.bitstream = buffer.bitstreamBuffer;
        Ok(())
    }

    /// Registers the device picture the kernels write (once per address).
    fn register(&mut self, picture: u64) -> Result<sys::NV_ENC_REGISTERED_PTR, GpuError> {
        if let Some((address, registered)) = self.registered
            && address == picture
        {
            return Ok(registered);
        }
        self.unregister();
        let register = function(
            self.functions.nvEncRegisterResource,
            "nvEncRegisterResource",
        )?;
        let mut resource = sys::NV_ENC_REGISTER_RESOURCE {
            version: REGISTER_RESOURCE_VER,
            resourceType: sys::NV_ENC_INPUT_RESOURCE_TYPE_CUDADEVICEPTR,
            width: self.settings.width,
            height: self.settings.height,
            pitch: self.settings.width,
            resourceToRegister: picture as *mut c_void,
            bufferFormat: sys::NV_ENC_BUFFER_FORMAT_NV12,
            bufferUsage: sys::NV_ENC_INPUT_IMAGE,
            ..Default::default()
        };
        // SAFETY: a live session; `picture` is a device allocation of a packed
        // NV12 picture of the session's size, which outlives the registration
        // (the caller keeps the scaler alive while encoding).
        nvenc_check("registering the input", unsafe {
            register(self.session.handle, &mut resource)
        })?;
        self.registered = Some((picture, resource.registeredResource));
        Ok(resource.registeredResource)
    }

    fn unregister(&mut self) {
        if let (Some((_, registered)), Some(unregister)) = (
            self.registered.take(),
            self.functions.nvEncUnregisterResource,
        ) {
            // SAFETY: registered on this session, unregistered once.
            let _ = unsafe { unregister(self.session.handle, registered) };
        }
    }

    /// Encodes the packed NV12 picture at device address `picture` (its
    /// writes finished: the caller synchronised the stream).
    pub fn encode(&mut self, picture: u64, pts: i64) -> Result<(), GpuError> {
        let registered = self.register(picture)?;
        let f = self.functions;
        let handle = self.session.handle;
        let map = function(f.nvEncMapInputResource, "nvEncMapInputResource")?;
        let unmap = function(f.nvEncUnmapInputResource, "nvEncUnmapInputResource")?;
        let mut mapping = sys::NV_ENC_MAP_INPUT_RESOURCE {
            version: MAP_INPUT_RESOURCE_VER,
            registeredResource: registered,
            ..Default::default()
        };
        // SAFETY: a resource registered on this session.
        nvenc_check("mapping the input", unsafe { map(handle, &mut mapping) })?;
        let mut params = sys::NV_ENC_PIC_PARAMS {
            version: PIC_PARAMS_VER,
            inputWidth: self.settings.width,
            inputHeight: self.settings.height,
            inputPitch: self.settings.width,
            encodePicFlags: if self.frames == 0 {
                sys::NV_ENC_PIC_FLAG_FORCEIDR
            } else {
                0
            },
            frameIdx: self.frames,
            inputTimeStamp: pts as u64,
            inputBuffer: mapping.mappedResource,
            outputBitstream: self.bitstream,
            bufferFmt: mapping.mappedBufferFmt,
            pictureStruct: sys::NV_ENC_PIC_STRUCT_FRAME,
            ..Default::default()
        };
        let encode = function(f.nvEncEncodePicture, "nvEncEncodePicture")?;
        // SAFETY: the mapped input and the bitstream buffer belong to this session.
        let status = unsafe { encode(handle, &mut params) };
        let result = match status {
            sys::NV_ENC_SUCCESS => {
                self.frames += 1;
                self.take_output()
            }
            // Configured out above; a driver that buffers anyway is a failure
            // here (the segment is retried on the CPU) rather than lost frames.
            sys::NV_ENC_ERR_NEED_MORE_INPUT => Err(GpuError::Nvenc(
                "NVENC buffered a picture although lookahead and B-frames are off".into(),
            )),
            other => nvenc_check("encoding", other),
        };
        // SAFETY: mapped above on this session, unmapped once.
        let _ = unsafe { unmap(handle, mapping.mappedResource) };
        result
    }

    /// Copies the access unit out of the bitstream buffer.
    fn take_output(&mut self) -> Result<(), GpuError> {
        let f = self.functions;
        let lock = function(f.nvEncLockBitstream, "nvEncLockBitstream")?;
        let unlock = function(f.nvEncUnlockBitstream, "nvEncUnlockBitstream")?;
        let mut locked = sys::NV_ENC_LOCK_BITSTREAM {
            version: LOCK_BITSTREAM_VER,
            outputBitstream: self.bitstream,
            ..Default::default()
        };
        // SAFETY: the bitstream buffer of this session, which just encoded
        // into it (synchronous mode: the lock waits for the picture).
        nvenc_check("locking the bitstream", unsafe {
            lock(self.session.handle, &mut locked)
        })?;
        // SAFETY: while locked, NVENC guarantees `bitstreamSizeInBytes` bytes
        // at `bitstreamBufferPtr`; they are copied before unlocking.
        let data = unsafe {
            std::slice::from_raw_parts(
                locked.bitstreamBufferPtr as *const u8,
                locked.bitstreamSizeInBytes as usize,
            )
        }
        .to_vec();
        // SAFETY: locked above, unlocked once.
        let _ = unsafe { unlock(self.session.handle, self.bitstream) };
        self.units.push(EncodedAccessUnit {
            data,
            pts: locked.outputTimeStamp as i64,
            key: matches!(
                locked.pictureType,
                sys::NV_ENC_PIC_TYPE_IDR | sys::NV_ENC_PIC_TYPE_I
            ),
        });
        Ok(())
    }

    pub fn size(&self) -> (u32, u32) {
        (self.settings.width, self.settings.height)
    }

    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Ends the stream and hands over the access units in order.
    pub fn finish(mut self) -> Result<Vec<EncodedAccessUnit>, GpuError> {
        let encode = function(self.functions.nvEncEncodePicture, "nvEncEncodePicture")?;
        let mut params = sys::NV_ENC_PIC_PARAMS {
            version: PIC_PARAMS_VER,
            encodePicFlags: sys::NV_ENC_PIC_FLAG_EOS,
            ..Default::default()
        };
        // SAFETY: an end-of-stream picture carries no buffers.
        nvenc_check("ending the stream", unsafe {
            encode(self.session.handle, &mut params)
        })?;
        Ok(std::mem::take(&mut self.units))
    }
}

impl Drop for NvencEncoder {
    fn drop(&mut self) {
        self.unregister();
        if !self.bitstream.is_null()
            && let Some(destroy) = self.functions.nvEncDestroyBitstreamBuffer
        {
            // SAFETY: created on this session, destroyed once, before the
            // session itself (a field, dropped after this).
            let _ = unsafe { destroy(self.session.handle, self.bitstream) };
        }
    }
}

/// Encoder sessions in use on one GPU, against its limit.
#[derive(Debug)]
pub struct EncoderSessions {
    limit: usize,
    used: AtomicUsize,
}

/// One session held; given back on `Drop`.
#[derive(Debug)]
pub struct SessionPermit {
    sessions: Arc<EncoderSessions>,
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.sessions.used.fetch_sub(1, Ordering::AcqRel);
    }
}

impl EncoderSessions {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Takes a session, or says the limit is reached (the caller then
    /// encodes that rendition on the hybrid path).
    pub fn acquire(self: &Arc<Self>) -> Result<SessionPermit, GpuError> {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.limit).then_some(used + 1)
            });
        match taken {
            Ok(_) => Ok(SessionPermit {
                sessions: self.clone(),
            }),
            Err(_) => Err(GpuError::EncoderSessionLimit(self.limit)),
        }
    }

    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_versions_match_the_header_macros() {
        // NVENCAPI_VERSION = 11 | 1 << 24; STRUCT_VERSION(2) adds 2 << 16 and 7 << 28.
        assert_eq!(API_VERSION, 0x0100_000b);
        assert_eq!(struct_version(2), 0x7102_000b);
    }

    #[test]
    fn data_centre_cards_are_told_apart_from_a_full_card() {
        assert_eq!(
            classify_open_status(sys::NV_ENC_SUCCESS),
            NvencSupport::Available
        );
        assert!(matches!(
            classify_open_status(sys::NV_ENC_ERR_UNSUPPORTED_DEVICE),
            NvencSupport::Unsupported(why) if why.contains("no NVENC")
        ));
        assert_eq!(
            classify_open_status(sys::NV_ENC_ERR_INCOMPATIBLE_CLIENT_KEY),
            NvencSupport::SessionLimit
        );
        assert!(matches!(
            classify_open_status(sys::NV_ENC_ERR_INVALID_VERSION),
            NvencSupport::Missing(_)
        ));
    }

    #[test]
    fn sessions_are_counted_and_the_limit_is_a_clear_error() {
        let sessions = EncoderSessions::new(2);
        let a = sessions.acquire().unwrap();
        let _b = sessions.acquire().unwrap();
        let refused = sessions.acquire().unwrap_err();
        assert_eq!(
            refused.to_string(),
            "encoder session limit reached (2 per GPU)"
        );
        drop(a);
        assert_eq!(sessions.in_use(), 1);
        assert!(sessions.acquire().is_ok());
    }

    #[test]
    fn without_the_driver_detection_says_the_library_is_missing() {
        if library().is_err() {
            assert!(matches!(
                detect(std::ptr::null_mut()),
                NvencSupport::Missing(why) if why.contains("libnvidia-encode")
            ));
        }
    }
}
