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

/// Opens (and closes) one session on `context` (a `CUcontext`) to learn
/// whether this GPU has NVENC.
pub fn detect(context: *mut c_void) -> NvencSupport {
    let lib = match library() {
        Ok(lib) => lib,
        Err(why) => return NvencSupport::Missing(why),
    };
    let (Some(open), Some(destroy)) = (
        lib.functions.nvEncOpenEncodeSessionEx,
        lib.functions.nvEncDestroyEncoder,
    ) else {
        return NvencSupport::Missing("the NVENC function table is incomplete".into());
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
    let support = classify_open_status(status);
    if status == sys::NV_ENC_SUCCESS && !handle.is_null() {
        drop(Session { handle, destroy });
    }
    support
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
