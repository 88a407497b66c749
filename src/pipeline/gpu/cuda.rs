//! The CUDA driver through cudarc (loaded at run time): finding the driver
//! and the devices, loading the resize kernels, and running them on NV12
//! pictures that live on the device.
//!
//! The kernels come as PTX made by `build.rs` (clang, no CUDA toolkit needed)
//! and are JIT-compiled by the driver once per context; when the build had no
//! clang able to do it, NVRTC compiles `cuda/resize_nv12.cu` at run time.

#![allow(unsafe_code)]

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DriverError, LaunchConfig,
    PinnedHostSlice, PushKernelArg,
};

use super::GpuError;
use super::resize::{AxisFilter, Nv12Plan, PlanePlan};

/// PTX built by `build.rs`; empty when clang could not make it.
const PREBUILT_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/resize_nv12.ptx"));
/// The kernels' source, for NVRTC when there is no prebuilt PTX.
const KERNEL_SOURCE: &str = include_str!("../../../cuda/resize_nv12.cu");

/// CUDA 12.5 (drivers 555 and newer): the oldest driver lpgpu uses, for
/// `cuCtxCreate_v4`, which rebuilding a broken context needs.
pub const MIN_DRIVER_VERSION: i32 = 12050;

/// What the driver says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverInfo {
    /// As `cuDriverGetVersion`: 1000 × major + 10 × minor.
    pub version: i32,
    pub devices: usize,
}

pub fn version_text(version: i32) -> String {
    format!("{}.{}", version / 1000, (version % 1000) / 10)
}

pub(super) fn cuda_error(context: &str, error: DriverError) -> GpuError {
    GpuError::Cuda(format!("{context}: {error}"))
}

/// Finds libcuda, initialises it and counts the devices; never aborts the
/// process (cudarc would, on the first call without a driver).
pub fn probe_driver() -> Result<DriverInfo, GpuError> {
    // SAFETY: only tries to open the library by name; no symbol is called.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(GpuError::DriverMissing(
            "libcuda.so (the NVIDIA driver) was not found".into(),
        ));
    }
    cudarc::driver::result::init().map_err(|e| cuda_error("cuInit", e))?;
    let mut version = 0i32;
    // SAFETY: the library is loaded and initialised; the pointer is to a live i32.
    let status = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) };
    status
        .result()
        .map_err(|e| cuda_error("cuDriverGetVersion", e))?;
    if version < MIN_DRIVER_VERSION {
        return Err(GpuError::DriverTooOld(format!(
            "the driver supports CUDA {}; lpgpu needs {} or newer",
            version_text(version),
            version_text(MIN_DRIVER_VERSION)
        )));
    }
    let devices = CudaContext::device_count().map_err(|e| cuda_error("cuDeviceGetCount", e))?;
    if devices <= 0 {
        return Err(GpuError::NoDevice);
    }
    Ok(DriverInfo {
        version,
        devices: devices as usize,
    })
}

/// One GPU's context and its loaded kernels.
#[derive(Debug)]
pub struct DeviceRuntime {
    pub ordinal: usize,
    pub name: String,
    pub memory_bytes: usize,
    pub compute_capability: (i32, i32),
    pub context: Arc<CudaContext>,
    kernels: ResizeKernels,
}

#[derive(Debug)]
struct ResizeKernels {
    horizontal: CudaFunction,
    vertical: CudaFunction,
}

impl DeviceRuntime {
    /// Opens the device's primary context (or, with `fresh`, a new context
    /// of its own) and loads the kernels into it.
    ///
    /// A rebuild after a context-breaking error needs `fresh`: the primary
    /// context stays the same broken one while any segment still holds it.
    pub fn open(ordinal: usize, fresh: bool) -> Result<Self, GpuError> {
        let context = if fresh {
            CudaContext::new_non_primary(ordinal, 0)
        } else {
            CudaContext::new(ordinal)
        }
        .map_err(|e| cuda_error("creating a context", e))?;
        let name = context.name().unwrap_or_else(|_| format!("GPU {ordinal}"));
        let memory_bytes = context.total_mem().unwrap_or(0);
        let compute_capability = context.compute_capability().unwrap_or((0, 0));
        let kernels = ResizeKernels::load(&context)?;
        Ok(Self {
            ordinal,
            name,
            memory_bytes,
            compute_capability,
            context,
            kernels,
        })
    }

    /// Makes the context current on the calling thread (nvcuvid uses the
    /// current context).
    pub fn bind(&self) -> Result<(), GpuError> {
        self.context
            .bind_to_thread()
            .map_err(|e| cuda_error("binding the context", e))
    }

    pub fn new_stream(&self) -> Result<Arc<CudaStream>, GpuError> {
        self.context
            .new_stream()
            .map_err(|e| cuda_error("creating a stream", e))
    }

    /// Checks that the context still works: an error that poisons a context
    /// (an illegal address, a launch failure) shows here, and the caller
    /// then rebuilds it.
    pub fn healthy(&self) -> bool {
        self.context.synchronize().is_ok() && self.context.check_err().is_ok()
    }

    /// Uploads the weights for one source → output size.
    pub fn scaler(
        &self,
        stream: &Arc<CudaStream>,
        source: (u32, u32),
        output: (u32, u32),
    ) -> Result<DeviceScaler, GpuError> {
        DeviceScaler::new(stream, source, output)
    }

    /// Resizes `source` into `scaler`'s output picture, queued on `stream`.
    pub fn resize(
        &self,
        stream: &Arc<CudaStream>,
        source: DeviceNv12,
        scaler: &mut DeviceScaler,
    ) -> Result<(), GpuError> {
        let (w, h) = scaler.output;
        let luma_len = w as usize * h as usize;
        for (plane, src_ptr, dst_offset) in [
            (&scaler.luma, source.luma, 0usize),
            (&scaler.chroma, source.chroma, luma_len),
        ] {
            self.launch_plane(
                stream,
                plane,
                src_ptr,
                source.pitch,
                &mut scaler.intermediate,
                &mut scaler.picture,
                dst_offset,
            )?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_plane(
        &self,
        stream: &Arc<CudaStream>,
        plane: &DevicePlanePlan,
        src: u64,
        src_pitch: u32,
        intermediate: &mut CudaSlice<i16>,
        picture: &mut CudaSlice<u8>,
        dst_offset: usize,
    ) -> Result<(), GpuError> {
        let channels = plane.channels as i32;
        let dst_width = plane.horizontal.output_len as i32;
        let row_samples = dst_width * channels;
        let source_rows = plane.vertical.source_len as i32;
        let output_rows = plane.vertical.output_len as i32;
        let src_pitch = src_pitch as i32;
        let h_taps = plane.horizontal.taps as i32;
        let v_taps = plane.vertical.taps as i32;

        let mut horizontal = stream.launch_builder(&self.kernels.horizontal);
        horizontal
            .arg(&src)
            .arg(&src_pitch)
            .arg(&source_rows)
            .arg(&mut *intermediate)
            .arg(&row_samples)
            .arg(&dst_width)
            .arg(&channels)
            .arg(&plane.horizontal.offsets)
            .arg(&plane.horizontal.weights)
            .arg(&h_taps);
        // SAFETY: the arguments match `resize_horizontal`'s parameters in
        // order and type. `src` is a device NV12 plane of `source_rows` rows
        // `src_pitch` apart, at least as wide as the plan's source (the
        // caller's contract in `DeviceNv12`); the intermediate holds
        // `row_samples × source_rows` i16 (sized in `DeviceScaler::new` for
        // the larger plane); offsets/weights were made by `AxisFilter` so
        // every tap is inside the source row.
        unsafe { horizontal.launch(grid(row_samples, source_rows)) }
            .map_err(|e| cuda_error("launching resize_horizontal", e))?;

        let mut destination = picture.slice_mut(dst_offset..);
        let mut vertical = stream.launch_builder(&self.kernels.vertical);
        vertical
            .arg(&*intermediate)
            .arg(&row_samples)
            .arg(&mut destination)
            .arg(&row_samples)
            .arg(&row_samples)
            .arg(&output_rows)
            .arg(&plane.vertical.offsets)
            .arg(&plane.vertical.weights)
            .arg(&v_taps);
        // SAFETY: the arguments match `resize_vertical`'s parameters; the
        // intermediate rows read are `offsets[row] .. + taps`, all below
        // `source_rows` by construction of `AxisFilter`; the destination view
        // starts at this plane's offset in the packed output picture and
        // holds `row_samples × output_rows` bytes.
        unsafe { vertical.launch(grid(row_samples, output_rows)) }
            .map_err(|e| cuda_error("launching resize_vertical", e))?;
        Ok(())
    }
}

fn grid(samples: i32, rows: i32) -> LaunchConfig {
    const BLOCK: (u32, u32) = (32, 8);
    LaunchConfig {
        grid_dim: (
            (samples as u32).div_ceil(BLOCK.0),
            (rows as u32).div_ceil(BLOCK.1),
            1,
        ),
        block_dim: (BLOCK.0, BLOCK.1, 1),
        shared_mem_bytes: 0,
    }
}

impl ResizeKernels {
    fn load(context: &Arc<CudaContext>) -> Result<Self, GpuError> {
        let ptx = if PREBUILT_PTX.trim().is_empty() {
            cudarc::nvrtc::Ptx::from_src(nvrtc_ptx()?)
        } else {
            cudarc::nvrtc::Ptx::from_src(PREBUILT_PTX)
        };
        let module = context
            .load_module(ptx)
            .map_err(|e| GpuError::Kernel(format!("loading the resize kernels: {e}")))?;
        let function = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| GpuError::Kernel(format!("{name}: {e}")))
        };
        Ok(Self {
            horizontal: function("resize_horizontal")?,
            vertical: function("resize_vertical")?,
        })
    }
}

/// The kernels compiled by NVRTC, once per process (every context, and every
/// rebuilt one, loads the same PTX).
fn nvrtc_ptx() -> Result<String, GpuError> {
    static PTX: std::sync::OnceLock<Result<String, GpuError>> = std::sync::OnceLock::new();
    PTX.get_or_init(|| {
        // SAFETY: only opens the library by name to see whether it exists.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(GpuError::Kernel(
                "this build has no prebuilt PTX and libnvrtc was not found".into(),
            ));
        }
        cudarc::nvrtc::compile_ptx(KERNEL_SOURCE)
            .map(|ptx| ptx.to_src())
            .map_err(|e| GpuError::Kernel(format!("NVRTC: {e}")))
    })
    .clone()
}

/// An NV12 picture on the device that lpgpu does not own (an NVDEC surface
/// or a test upload): the luma plane at `luma`, the UV plane at `chroma`,
/// both with rows `pitch` bytes apart (as NVDEC lays them out; so a packed
/// upload must have an even width), at least as large as the scaler's source.
#[derive(Debug, Clone, Copy)]
pub struct DeviceNv12 {
    pub luma: u64,
    pub chroma: u64,
    pub pitch: u32,
}

#[derive(Debug)]
struct DeviceAxis {
    source_len: u32,
    output_len: u32,
    taps: u32,
    offsets: CudaSlice<i32>,
    weights: CudaSlice<i16>,
}

#[derive(Debug)]
struct DevicePlanePlan {
    horizontal: DeviceAxis,
    vertical: DeviceAxis,
    channels: u32,
}

/// The weights for one source → output size, on the device, with the
/// intermediate and output buffers; reused for every frame of that shape.
#[derive(Debug)]
pub struct DeviceScaler {
    pub source: (u32, u32),
    pub output: (u32, u32),
    luma: DevicePlanePlan,
    chroma: DevicePlanePlan,
    intermediate: CudaSlice<i16>,
    /// The packed NV12 output (pitch = width).
    picture: CudaSlice<u8>,
}

impl DeviceScaler {
    fn new(
        stream: &Arc<CudaStream>,
        source: (u32, u32),
        output: (u32, u32),
    ) -> Result<Self, GpuError> {
        let plan = Nv12Plan::new(source, output);
        let upload_axis = |axis: &AxisFilter| -> Result<DeviceAxis, GpuError> {
            Ok(DeviceAxis {
                source_len: axis.source_len,
                output_len: axis.output_len,
                taps: axis.taps,
                offsets: stream
                    .clone_htod(&axis.offsets)
                    .map_err(|e| cuda_error("uploading offsets", e))?,
                weights: stream
                    .clone_htod(&axis.weights)
                    .map_err(|e| cuda_error("uploading weights", e))?,
            })
        };
        let upload = |plane: &PlanePlan| -> Result<DevicePlanePlan, GpuError> {
            Ok(DevicePlanePlan {
                horizontal: upload_axis(&plane.horizontal)?,
                vertical: upload_axis(&plane.vertical)?,
                channels: plane.channels,
            })
        };
        let intermediate_len = |plane: &PlanePlan| {
            plane.horizontal.output_len as usize
                * plane.channels as usize
                * plane.vertical.source_len as usize
        };
        let intermediate = stream
            .alloc_zeros::<i16>(intermediate_len(&plan.luma).max(intermediate_len(&plan.chroma)))
            .map_err(|e| cuda_error("allocating the intermediate", e))?;
        let picture = stream
            .alloc_zeros::<u8>(super::resize::Nv12Image::len_for(output.0, output.1))
            .map_err(|e| cuda_error("allocating the output picture", e))?;
        Ok(Self {
            source,
            output,
            luma: upload(&plan.luma)?,
            chroma: upload(&plan.chroma)?,
            intermediate,
            picture,
        })
    }

    /// The output picture on the device (packed NV12).
    pub fn picture(&self) -> &CudaSlice<u8> {
        &self.picture
    }

    pub fn picture_mut(&mut self) -> &mut CudaSlice<u8> {
        &mut self.picture
    }

    /// The output picture's device address (for NVENC, which reads it).
    pub fn picture_address(&self, stream: &Arc<CudaStream>) -> u64 {
        let (address, _sync) = self.picture.device_ptr(stream);
        address
    }
}

/// A page-locked host buffer for fast, asynchronous device-to-host copies.
pub fn alloc_pinned(runtime: &DeviceRuntime, len: usize) -> Result<PinnedHostSlice<u8>, GpuError> {
    // SAFETY: the memory starts uninitialised; lpgpu reads a pinned buffer
    // only after a device-to-host copy into it has completed (the stream is
    // synchronised first), and u8 has no invalid bit patterns.
    unsafe { runtime.context.alloc_pinned::<u8>(len) }
        .map_err(|e| cuda_error("allocating a pinned buffer", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_text_reads_like_nvidia_smi() {
        assert_eq!(version_text(13000), "13.0");
        assert_eq!(version_text(12080), "12.8");
    }

    #[test]
    fn the_kernels_are_prebuilt_or_compilable() {
        // build.rs makes PTX with clang where it can (CI installs clang); the
        // entry points must be there, or the runtime would need NVRTC.
        if !PREBUILT_PTX.trim().is_empty() {
            assert!(PREBUILT_PTX.contains(".entry resize_horizontal"));
            assert!(PREBUILT_PTX.contains(".entry resize_vertical"));
        }
        assert!(KERNEL_SOURCE.contains("resize_horizontal"));
    }

    #[test]
    fn grid_covers_every_sample() {
        let cfg = grid(1281, 721);
        assert!(cfg.grid_dim.0 * cfg.block_dim.0 >= 1281);
        assert!(cfg.grid_dim.1 * cfg.block_dim.1 >= 721);
    }
}
