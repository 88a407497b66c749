// NV12 -> NV12 resize on the GPU: a separable filter in two passes, with
// weights computed on the host (src/gpu/resize.rs) as 14-bit fixed point.
//
// Why fixed point and host-made weights: the device must agree with the CPU
// reference sample for sample. Integer sums in the same order give the same
// answer on both, so the tests can hold the kernel to the reference exactly
// (the issue asks for +-1).
//
// Pass 1 (resize_horizontal): each thread makes one output sample of one
// source row: sum over `taps` source samples of weight * sample, rounded and
// kept with 6 extra bits in a 16-bit intermediate.
// Pass 2 (resize_vertical): each thread makes one output sample from `taps`
// intermediate rows, rounded and clamped to 0..255.
//
// `channels` is 1 for the luma plane and 2 for NV12's interleaved UV plane:
// both channels of a chroma pixel use the same weights. Offsets are in
// pixels and already clamped by the host so that every tap is inside the
// plane: the kernels need no bounds checks on reads.
//
// Built three ways: by build.rs with clang to PTX (LPGPU_CLANG_PTX, no CUDA
// toolkit needed), by NVRTC at run time, or by nvcc.

#ifdef LPGPU_CLANG_PTX
#define __global__ __attribute__((global))
#define LP_BLOCK_X __nvvm_read_ptx_sreg_ctaid_x()
#define LP_BLOCK_Y __nvvm_read_ptx_sreg_ctaid_y()
#define LP_DIM_X __nvvm_read_ptx_sreg_ntid_x()
#define LP_DIM_Y __nvvm_read_ptx_sreg_ntid_y()
#define LP_THREAD_X __nvvm_read_ptx_sreg_tid_x()
#define LP_THREAD_Y __nvvm_read_ptx_sreg_tid_y()
#else
#define LP_BLOCK_X blockIdx.x
#define LP_BLOCK_Y blockIdx.y
#define LP_DIM_X blockDim.x
#define LP_DIM_Y blockDim.y
#define LP_THREAD_X threadIdx.x
#define LP_THREAD_Y threadIdx.y
#endif

// Weights sum to 1 << 14. The horizontal pass keeps 14 - 8 = 6 extra bits.
#define LP_HORIZONTAL_SHIFT 8
#define LP_VERTICAL_SHIFT 20

extern "C" __global__ void resize_horizontal(
    const unsigned char* __restrict__ src, int src_pitch, int rows,
    short* __restrict__ dst, int dst_pitch_samples, int dst_width, int channels,
    const int* __restrict__ offsets, const short* __restrict__ weights, int taps)
{
    int sample = (int)(LP_BLOCK_X * LP_DIM_X + LP_THREAD_X);
    int row = (int)(LP_BLOCK_Y * LP_DIM_Y + LP_THREAD_Y);
    if (sample >= dst_width * channels || row >= rows) {
        return;
    }
    int pixel = sample / channels;
    int channel = sample - pixel * channels;
    const unsigned char* line = src + (long long)row * src_pitch;
    const short* w = weights + pixel * taps;
    int first = offsets[pixel] * channels + channel;
    int sum = 0;
    for (int k = 0; k < taps; ++k) {
        sum += (int)w[k] * (int)line[first + k * channels];
    }
    dst[(long long)row * dst_pitch_samples + sample] =
        (short)((sum + (1 << (LP_HORIZONTAL_SHIFT - 1))) >> LP_HORIZONTAL_SHIFT);
}

extern "C" __global__ void resize_vertical(
    const short* __restrict__ src, int src_pitch_samples,
    unsigned char* __restrict__ dst, int dst_pitch, int row_samples, int rows,
    const int* __restrict__ offsets, const short* __restrict__ weights, int taps)
{
    int sample = (int)(LP_BLOCK_X * LP_DIM_X + LP_THREAD_X);
    int row = (int)(LP_BLOCK_Y * LP_DIM_Y + LP_THREAD_Y);
    if (sample >= row_samples || row >= rows) {
        return;
    }
    const short* w = weights + row * taps;
    const short* column = src + (long long)offsets[row] * src_pitch_samples + sample;
    int sum = 0;
    for (int k = 0; k < taps; ++k) {
        sum += (int)w[k] * (int)column[(long long)k * src_pitch_samples];
    }
    int value = (sum + (1 << (LP_VERTICAL_SHIFT - 1))) >> LP_VERTICAL_SHIFT;
    dst[(long long)row * dst_pitch + sample] =
        (unsigned char)(value < 0 ? 0 : (value > 255 ? 255 : value));
}
