// CUDA kernels of the KDA / MSDA op family.
//
// Math: identical to the CPU kernels in csrc/deformable_attn/cpu/ (they are the
// specification); bilinear corners come from sampling.h.
//
// One fused kernel per op and direction. A "group" is one (batch, query, head)
// triple t in [0, B*Nq*M); nothing of size Nq*M*L*P*D ever reaches global
// memory: samples are gathered, weighted and reduced in registers (fast path)
// or with a per-warp table of the L*P sample corners in shared memory (generic
// path). The backward recomputes the samples from the saved inputs and the
// logsumexp; grad_value / grad_key are accumulated with atomicAdd into an
// opmath-dtype (float32 / float64) buffer that the host then casts.
//
// Fast path (head dim Dk == Dv == 32 or 64, all row pointers 16-byte aligned):
//   each lane owns C = 16 / sizeof(scalar_t) consecutive channels (one 16-byte
//   vector load per corner row: float4 / 8 halves / double2) and G = D / C
//   lanes form a group (float: G = 8 or 16, half/bfloat16: 4 or 8, double: 16
//   or 32), so a warp serves 32 / G groups. q.k and the backward's per-sample
//   scalars are reduced with xor shuffles inside the group. The softmax is an
//   online softmax (flash-attention style) over the L*P samples. The four
//   corner loads of a sample (eight with a separate key) are issued before
//   any is used. KDA kernels are templated on the shared key (key=None: one
//   load serves key and value, one fused atomic per corner in the backward).
//   On sm_90+ the float grad atomics are 16-byte vector atomics (float4).
// Generic path (every other Dk, Dv, including Dk != Dv, D = 8, 30, 257, 512+):
//   one warp per group. The warp first computes the corners of its L*P
//   samples (one sample per lane) into a shared-memory table, then
//   forward:  pass 1 computes the logits (lanes stride over Dk, warp
//             reduction), logsumexp, and folds softmax(logit) into the table
//             weights; pass 2 is a weighted gather, lanes striding over Dv.
//   backward: phase A computes the per-sample scalars (attention, dlogit,
//             grad_loc); phase B loops over channels: grad_query in a register,
//             atomics into grad_value / grad_key.
//   The table takes 32 + 5 * sizeof(acc) bytes per sample (forward) or
//   32 + 14 * sizeof(acc) (backward); up to 4 warps share a block within
//   48 KiB, beyond that one warp per block with the opt-in shared memory
//   (L*P up to ~1600 samples in float64 backward on H100); more raises.
//
// Safety: spatial_shapes / level_start_index live on the device and are not
// validated on the host, so every corner row index is checked against
// [0, S) in the kernel (out-of-range corners are zero corners). Offsets that
// can exceed 2^31 are int64; every kernel uses a grid-stride loop.
#include "../ops.h"
#include "../checks.h"
#include "../sampling.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace lite_detr {
namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kFastThreads = 128;   // threads per block of the fast kernels (fine occupancy granularity)
constexpr int kGenericWarps = 4;    // warps (groups) per block of the generic kernels
constexpr int64_t kDefaultSmem = 48 * 1024;
constexpr int64_t kMaxSamples = int64_t(1) << 30;  // L*P; keeps 2*i in int
constexpr int64_t kMaxDim = int64_t(1) << 30;      // Dk, Dv; keeps d += 32 in int
constexpr int kBlocksPerSm = 32;    // grid cap, in blocks per SM (grid-stride beyond)

// Sizes passed to every kernel.
struct Dims {
  int64_t total;        // B * Nq * M groups
  int64_t nq_m;         // Nq * M
  int64_t heads;        // M
  int64_t value_heads;  // Mv (1 or M)
  int64_t num_value;    // S
  int levels;           // L
  int points;           // P
  int lp;               // L * P
  int dk;               // Dk
  int dv;               // Dv
};

// ------------------------------------------------------------ device helpers

__device__ __forceinline__ float dev_exp(float x) { return ::expf(x); }
__device__ __forceinline__ double dev_exp(double x) { return ::exp(x); }
__device__ __forceinline__ float dev_log(float x) { return ::logf(x); }
__device__ __forceinline__ double dev_log(double x) { return ::log(x); }

template <typename acc_t>
__device__ __forceinline__ acc_t neg_inf() {
  return -static_cast<acc_t>(INFINITY);
}

// Sum over the G lanes of a group (G a power of two dividing 32; groups are
// aligned runs of G lanes). Every lane of the warp must call it. The xor
// butterfly gives every lane of the group the bitwise-same sum.
template <int G, typename T>
__device__ __forceinline__ T group_sum(T v) {
#pragma unroll
  for (int offset = G / 2; offset > 0; offset >>= 1) {
    v += __shfl_xor_sync(kFullMask, v, offset, G);
  }
  return v;
}

// 16-byte vector load of N = 16 / sizeof(scalar_t) elements (p must be
// 16-byte aligned), converted to the accumulation type.
template <typename scalar_t, typename acc_t, int N>
__device__ __forceinline__ void load16(const scalar_t* p, acc_t (&out)[N]) {
  static_assert(sizeof(scalar_t) * N == 16, "load16 loads 16 bytes");
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
  scalar_t v[N];
  memcpy(v, &raw, 16);
#pragma unroll
  for (int c = 0; c < N; ++c) out[c] = static_cast<acc_t>(v[c]);
}

// The 16-byte chunk of corner row `idx` (zeros for an invalid corner, idx < 0).
// Used to issue the loads of all corners of a sample before consuming any.
template <typename scalar_t>
__device__ __forceinline__ uint4 load_row16(const scalar_t* base, int64_t idx, int64_t row_stride) {
  uint4 raw = make_uint4(0u, 0u, 0u, 0u);
  if (idx >= 0) raw = __ldg(reinterpret_cast<const uint4*>(base + idx * row_stride));
  return raw;
}

template <typename scalar_t, typename acc_t, int N>
__device__ __forceinline__ void unpack16(const uint4& raw, acc_t (&out)[N]) {
  static_assert(sizeof(scalar_t) * N == 16, "unpack16 unpacks 16 bytes");
  scalar_t v[N];
  memcpy(v, &raw, 16);
#pragma unroll
  for (int c = 0; c < N; ++c) out[c] = static_cast<acc_t>(v[c]);
}

template <typename scalar_t, typename acc_t, int N>
__device__ __forceinline__ void store16(scalar_t* p, const acc_t (&in)[N]) {
  static_assert(sizeof(scalar_t) * N == 16, "store16 stores 16 bytes");
  scalar_t v[N];
#pragma unroll
  for (int c = 0; c < N; ++c) v[c] = static_cast<scalar_t>(in[c]);
  uint4 raw;
  memcpy(&raw, v, 16);
  *reinterpret_cast<uint4*>(p) = raw;
}

// p[c] += v[c] for N consecutive opmath elements. On sm_90+ float uses the
// vector atomics (float4, p 16-byte aligned), which the fast path guarantees.
template <int N>
__device__ __forceinline__ void atomic_add_n(float* p, const float (&v)[N]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr bool kVector = N % 4 == 0;
#else
  constexpr bool kVector = false;
#endif
  if constexpr (kVector) {
#pragma unroll
    for (int j = 0; j < N / 4; ++j) {
      atomicAdd(
          reinterpret_cast<float4*>(p) + j,
          make_float4(v[4 * j], v[4 * j + 1], v[4 * j + 2], v[4 * j + 3]));
    }
  } else {
#pragma unroll
    for (int c = 0; c < N; ++c) atomicAdd(p + c, v[c]);
  }
}

template <int N>
__device__ __forceinline__ void atomic_add_n(double* p, const double (&v)[N]) {
#pragma unroll
  for (int c = 0; c < N; ++c) atomicAdd(p + c, v[c]);
}

// bilinear_corners plus the in-kernel bounds check: a corner whose row index
// is outside [0, S) (possible only with an inconsistent spatial_shapes /
// level_start_index, which the host cannot check without a sync) becomes a
// zero corner. A miss (false) leaves every corner invalid.
template <typename acc_t>
__device__ __forceinline__ bool corners_at(
    acc_t x,
    acc_t y,
    int64_t H,
    int64_t W,
    int64_t level_start,
    int64_t num_value,
    BilinearCorners<acc_t>& c) {
  const bool hit = bilinear_corners<acc_t>(x, y, H, W, level_start, c);
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const bool ok = hit && c.index[k] >= 0 && c.index[k] < num_value;
    if (!ok) {
      c.index[k] = -1;
      c.weight[k] = acc_t(0);
      c.dweight_dx[k] = acc_t(0);
      c.dweight_dy[k] = acc_t(0);
    }
  }
  return hit;
}

// ------------------------------------------------------------ fast path
//
// Thread mapping: kFastThreads threads per block, G lanes per group, C
// channels per lane (D = G * C). The loop over groups is warp-uniform (t0 is
// the first group of the warp) so that every lane reaches every shuffle; a
// group past the end computes on the clamped group total-1 (in bounds) and
// writes nothing.

template <typename scalar_t, int G, bool kSharedKey>
__global__ void __launch_bounds__(kFastThreads) kda_forward_fast_kernel(
    const scalar_t* __restrict__ query,
    const scalar_t* __restrict__ key,  // == value when kSharedKey
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ shapes,
    const int64_t* __restrict__ starts,
    const at::opmath_type<scalar_t>* __restrict__ loc,
    scalar_t* __restrict__ output,
    at::opmath_type<scalar_t>* __restrict__ logsumexp,
    const Dims dims,
    const at::opmath_type<scalar_t> scale) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int C = 16 / sizeof(scalar_t);
  constexpr int D = G * C;
  constexpr int kGroupsPerWarp = kWarp / G;
  const int lane = threadIdx.x % kWarp;
  const int sub = lane % G;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t num_warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  const int64_t row_stride = dims.value_heads * D;

  for (int64_t t0 = warp * kGroupsPerWarp; t0 < dims.total; t0 += num_warps * kGroupsPerWarp) {
    const int64_t t_raw = t0 + lane / G;
    const bool valid = t_raw < dims.total;
    const int64_t t = valid ? t_raw : dims.total - 1;
    const int64_t b = t / dims.nq_m;
    const int64_t vh = dims.value_heads == 1 ? 0 : t % dims.heads;
    const int64_t head_off = b * dims.num_value * row_stride + vh * D + sub * C;
    const scalar_t* k_base = key + head_off;
    const scalar_t* v_base = value + head_off;
    const acc_t* tloc = loc + t * dims.lp * 2;

    acc_t q[C], acc[C];
    load16(query + t * D + sub * C, q);
#pragma unroll
    for (int c = 0; c < C; ++c) acc[c] = acc_t(0);
    acc_t run_max = neg_inf<acc_t>();
    acc_t run_sum = acc_t(0);

    for (int l = 0; l < dims.levels; ++l) {
      const int64_t H = shapes[2 * l];
      const int64_t W = shapes[2 * l + 1];
      const int64_t start = starts[l];
      for (int p = 0; p < dims.points; ++p) {
        const int i = l * dims.points + p;
        BilinearCorners<acc_t> cr;
        corners_at<acc_t>(tloc[2 * i], tloc[2 * i + 1], H, W, start, dims.num_value, cr);
        // All corner loads first (they are independent), then the sums.
        uint4 kraw[4], vraw[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) kraw[k] = load_row16(k_base, cr.index[k], row_stride);
        if constexpr (!kSharedKey) {
#pragma unroll
          for (int k = 0; k < 4; ++k) vraw[k] = load_row16(v_base, cr.index[k], row_stride);
        }
        acc_t ks[C], vs[C];
#pragma unroll
        for (int c = 0; c < C; ++c) {
          ks[c] = acc_t(0);
          vs[c] = acc_t(0);
        }
        bool any = false;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (cr.index[k] >= 0) {  // group-uniform
            any = true;
            acc_t r[C];
            unpack16<scalar_t>(kraw[k], r);
#pragma unroll
            for (int c = 0; c < C; ++c) ks[c] += cr.weight[k] * r[c];
            if constexpr (!kSharedKey) {
              unpack16<scalar_t>(vraw[k], r);
#pragma unroll
              for (int c = 0; c < C; ++c) vs[c] += cr.weight[k] * r[c];
            }
          }
        }
        acc_t part = acc_t(0);
#pragma unroll
        for (int c = 0; c < C; ++c) part += q[c] * ks[c];
        const acc_t dot = group_sum<G>(part);
        // A sample touching no pixel has a zero key (logit 0) and value.
        const acc_t logit = any ? scale * dot : acc_t(0);
        if (logit > run_max) {
          const acc_t rescale = run_sum > acc_t(0) ? dev_exp(run_max - logit) : acc_t(0);
          run_sum *= rescale;
#pragma unroll
          for (int c = 0; c < C; ++c) acc[c] *= rescale;
          run_max = logit;
        }
        const acc_t prob = dev_exp(logit - run_max);
        run_sum += prob;
#pragma unroll
        for (int c = 0; c < C; ++c) acc[c] += prob * (kSharedKey ? ks[c] : vs[c]);
      }
    }
    if (valid) {
      acc_t o[C];
#pragma unroll
      for (int c = 0; c < C; ++c) o[c] = acc[c] / run_sum;
      store16(output + t * D + sub * C, o);
      if (sub == 0) logsumexp[t] = run_max + dev_log(run_sum);
    }
  }
}

template <typename scalar_t, int G, bool kSharedKey>
__global__ void __launch_bounds__(kFastThreads) kda_backward_fast_kernel(
    const scalar_t* __restrict__ grad_output,
    const scalar_t* __restrict__ query,
    const scalar_t* __restrict__ key,  // == value when kSharedKey
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ shapes,
    const int64_t* __restrict__ starts,
    const at::opmath_type<scalar_t>* __restrict__ loc,
    const scalar_t* __restrict__ output,
    const at::opmath_type<scalar_t>* __restrict__ logsumexp,
    scalar_t* __restrict__ grad_query,
    at::opmath_type<scalar_t>* __restrict__ grad_key,  // nullptr when kSharedKey
    at::opmath_type<scalar_t>* __restrict__ grad_value,
    at::opmath_type<scalar_t>* __restrict__ grad_loc,
    const Dims dims,
    const at::opmath_type<scalar_t> scale) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int C = 16 / sizeof(scalar_t);
  constexpr int D = G * C;
  constexpr int kGroupsPerWarp = kWarp / G;
  const int lane = threadIdx.x % kWarp;
  const int sub = lane % G;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t num_warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  const int64_t row_stride = dims.value_heads * D;

  for (int64_t t0 = warp * kGroupsPerWarp; t0 < dims.total; t0 += num_warps * kGroupsPerWarp) {
    const int64_t t_raw = t0 + lane / G;
    const bool valid = t_raw < dims.total;
    const int64_t t = valid ? t_raw : dims.total - 1;
    const int64_t b = t / dims.nq_m;
    const int64_t vh = dims.value_heads == 1 ? 0 : t % dims.heads;
    const int64_t head_off = b * dims.num_value * row_stride + vh * D + sub * C;
    const scalar_t* k_base = key + head_off;
    const scalar_t* v_base = value + head_off;
    acc_t* gv_base = grad_value + head_off;
    acc_t* gk_base = kSharedKey ? gv_base : grad_key + head_off;
    const acc_t* tloc = loc + t * dims.lp * 2;
    acc_t* tdloc = grad_loc + t * dims.lp * 2;

    acc_t q[C], g[C], dq[C];
    load16(query + t * D + sub * C, q);
    load16(grad_output + t * D + sub * C, g);
    acc_t delta;  // grad_output . output
    {
      acc_t o[C];
      load16(output + t * D + sub * C, o);
      acc_t part = acc_t(0);
#pragma unroll
      for (int c = 0; c < C; ++c) part += g[c] * o[c];
      delta = group_sum<G>(part);
    }
    const acc_t lse = logsumexp[t];
#pragma unroll
    for (int c = 0; c < C; ++c) dq[c] = acc_t(0);

    for (int l = 0; l < dims.levels; ++l) {
      const int64_t H = shapes[2 * l];
      const int64_t W = shapes[2 * l + 1];
      const int64_t start = starts[l];
      for (int p = 0; p < dims.points; ++p) {
        const int i = l * dims.points + p;
        BilinearCorners<acc_t> cr;
        corners_at<acc_t>(tloc[2 * i], tloc[2 * i + 1], H, W, start, dims.num_value, cr);
        // Per-lane partial sums over this lane's channels:
        //   qa = sum_k w_k (q.K_k), qx/qy = sum_k dw_k/dx,dy (q.K_k),
        //   ga = sum_k w_k (g.V_k), gx/gy = sum_k dw_k/dx,dy (g.V_k).
        acc_t ks[C];
#pragma unroll
        for (int c = 0; c < C; ++c) ks[c] = acc_t(0);
        uint4 kraw[4], vraw[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) kraw[k] = load_row16(k_base, cr.index[k], row_stride);
        if constexpr (!kSharedKey) {
#pragma unroll
          for (int k = 0; k < 4; ++k) vraw[k] = load_row16(v_base, cr.index[k], row_stride);
        }
        acc_t qa = 0, qx = 0, qy = 0, ga = 0, gx = 0, gy = 0;
        bool any = false;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (cr.index[k] >= 0) {  // group-uniform
            any = true;
            acc_t r[C];
            unpack16<scalar_t>(kraw[k], r);
            acc_t qk = acc_t(0), gv = acc_t(0);
#pragma unroll
            for (int c = 0; c < C; ++c) {
              qk += q[c] * r[c];
              ks[c] += cr.weight[k] * r[c];
            }
            if constexpr (kSharedKey) {
#pragma unroll
              for (int c = 0; c < C; ++c) gv += g[c] * r[c];
            } else {
              unpack16<scalar_t>(vraw[k], r);
#pragma unroll
              for (int c = 0; c < C; ++c) gv += g[c] * r[c];
            }
            qa += cr.weight[k] * qk;
            qx += cr.dweight_dx[k] * qk;
            qy += cr.dweight_dy[k] * qk;
            ga += cr.weight[k] * gv;
            gx += cr.dweight_dx[k] * gv;
            gy += cr.dweight_dy[k] * gv;
          }
        }
        qa = group_sum<G>(qa);
        ga = group_sum<G>(ga);
        const acc_t attn = any ? dev_exp(scale * qa - lse) : acc_t(0);
        const acc_t dlogit = any ? scale * attn * (ga - delta) : acc_t(0);
        const acc_t dx = group_sum<G>(attn * gx + dlogit * qx);
        const acc_t dy = group_sum<G>(attn * gy + dlogit * qy);
        if (valid && sub == 0) {
          tdloc[2 * i] = dx;
          tdloc[2 * i + 1] = dy;
        }
#pragma unroll
        for (int c = 0; c < C; ++c) dq[c] += dlogit * ks[c];
        if (valid && any) {
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (cr.index[k] >= 0) {
              const int64_t off = cr.index[k] * row_stride;
              const acc_t wa = cr.weight[k] * attn;
              const acc_t wd = cr.weight[k] * dlogit;
              acc_t u[C];
              if constexpr (kSharedKey) {
#pragma unroll
                for (int c = 0; c < C; ++c) u[c] = wa * g[c] + wd * q[c];
                atomic_add_n<C>(gv_base + off, u);
              } else {
#pragma unroll
                for (int c = 0; c < C; ++c) u[c] = wa * g[c];
                atomic_add_n<C>(gv_base + off, u);
#pragma unroll
                for (int c = 0; c < C; ++c) u[c] = wd * q[c];
                atomic_add_n<C>(gk_base + off, u);
              }
            }
          }
        }
      }
    }
    if (valid) store16(grad_query + t * D + sub * C, dq);
  }
}

template <typename scalar_t, int G>
__global__ void __launch_bounds__(kFastThreads) msda_forward_fast_kernel(
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ shapes,
    const int64_t* __restrict__ starts,
    const at::opmath_type<scalar_t>* __restrict__ loc,
    const at::opmath_type<scalar_t>* __restrict__ weights,
    scalar_t* __restrict__ output,
    const Dims dims) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int C = 16 / sizeof(scalar_t);
  constexpr int D = G * C;
  constexpr int kGroupsPerWarp = kWarp / G;
  const int lane = threadIdx.x % kWarp;
  const int sub = lane % G;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t num_warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  const int64_t row_stride = dims.value_heads * D;

  for (int64_t t0 = warp * kGroupsPerWarp; t0 < dims.total; t0 += num_warps * kGroupsPerWarp) {
    const int64_t t_raw = t0 + lane / G;
    const bool valid = t_raw < dims.total;
    const int64_t t = valid ? t_raw : dims.total - 1;
    const int64_t b = t / dims.nq_m;
    const int64_t vh = dims.value_heads == 1 ? 0 : t % dims.heads;
    const scalar_t* v_base = value + b * dims.num_value * row_stride + vh * D + sub * C;
    const acc_t* tloc = loc + t * dims.lp * 2;
    const acc_t* tw = weights + t * dims.lp;

    acc_t acc[C];
#pragma unroll
    for (int c = 0; c < C; ++c) acc[c] = acc_t(0);
    for (int l = 0; l < dims.levels; ++l) {
      const int64_t H = shapes[2 * l];
      const int64_t W = shapes[2 * l + 1];
      const int64_t start = starts[l];
      for (int p = 0; p < dims.points; ++p) {
        const int i = l * dims.points + p;
        BilinearCorners<acc_t> cr;
        if (!corners_at<acc_t>(tloc[2 * i], tloc[2 * i + 1], H, W, start, dims.num_value, cr)) {
          continue;  // no shuffles in this kernel: divergence is harmless
        }
        const acc_t a = tw[i];
        uint4 vraw[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) vraw[k] = load_row16(v_base, cr.index[k], row_stride);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (cr.index[k] >= 0) {
            acc_t r[C];
            unpack16<scalar_t>(vraw[k], r);
            const acc_t coef = a * cr.weight[k];
#pragma unroll
            for (int c = 0; c < C; ++c) acc[c] += coef * r[c];
          }
        }
      }
    }
    if (valid) store16(output + t * D + sub * C, acc);
  }
}

template <typename scalar_t, int G>
__global__ void __launch_bounds__(kFastThreads) msda_backward_fast_kernel(
    const scalar_t* __restrict__ grad_output,
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ shapes,
    const int64_t* __restrict__ starts,
    const at::opmath_type<scalar_t>* __restrict__ loc,
    const at::opmath_type<scalar_t>* __restrict__ weights,
    at::opmath_type<scalar_t>* __restrict__ grad_value,
    at::opmath_type<scalar_t>* __restrict__ grad_loc,
    at::opmath_type<scalar_t>* __restrict__ grad_weights,
    const Dims dims) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int C = 16 / sizeof(scalar_t);
  constexpr int D = G * C;
  constexpr int kGroupsPerWarp = kWarp / G;
  const int lane = threadIdx.x % kWarp;
  const int sub = lane % G;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t num_warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  const int64_t row_stride = dims.value_heads * D;

  for (int64_t t0 = warp * kGroupsPerWarp; t0 < dims.total; t0 += num_warps * kGroupsPerWarp) {
    const int64_t t_raw = t0 + lane / G;
    const bool valid = t_raw < dims.total;
    const int64_t t = valid ? t_raw : dims.total - 1;
    const int64_t b = t / dims.nq_m;
    const int64_t vh = dims.value_heads == 1 ? 0 : t % dims.heads;
    const int64_t head_off = b * dims.num_value * row_stride + vh * D + sub * C;
    const scalar_t* v_base = value + head_off;
    acc_t* gv_base = grad_value + head_off;
    const acc_t* tloc = loc + t * dims.lp * 2;
    const acc_t* tw = weights + t * dims.lp;

    acc_t g[C];
    load16(grad_output + t * D + sub * C, g);
    for (int l = 0; l < dims.levels; ++l) {
      const int64_t H = shapes[2 * l];
      const int64_t W = shapes[2 * l + 1];
      const int64_t start = starts[l];
      for (int p = 0; p < dims.points; ++p) {
        const int i = l * dims.points + p;
        BilinearCorners<acc_t> cr;
        corners_at<acc_t>(tloc[2 * i], tloc[2 * i + 1], H, W, start, dims.num_value, cr);
        const acc_t a = tw[i];
        uint4 vraw[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) vraw[k] = load_row16(v_base, cr.index[k], row_stride);
        acc_t ga = 0, gx = 0, gy = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (cr.index[k] >= 0) {  // group-uniform
            const int64_t off = cr.index[k] * row_stride;
            acc_t r[C];
            unpack16<scalar_t>(vraw[k], r);
            acc_t gv = acc_t(0);
#pragma unroll
            for (int c = 0; c < C; ++c) gv += g[c] * r[c];
            ga += cr.weight[k] * gv;
            gx += cr.dweight_dx[k] * gv;
            gy += cr.dweight_dy[k] * gv;
            if (valid) {
              const acc_t coef = a * cr.weight[k];
              acc_t u[C];
#pragma unroll
              for (int c = 0; c < C; ++c) u[c] = coef * g[c];
              atomic_add_n<C>(gv_base + off, u);
            }
          }
        }
        ga = group_sum<G>(ga);
        gx = group_sum<G>(gx);
        gy = group_sum<G>(gy);
        if (valid && sub == 0) {
          grad_weights[t * dims.lp + i] = ga;
          grad_loc[(t * dims.lp + i) * 2] = a * gx;
          grad_loc[(t * dims.lp + i) * 2 + 1] = a * gy;
        }
      }
    }
  }
}

// ------------------------------------------------------------ generic path
//
// One warp per group; kGenericWarps warps per block. Each warp owns a table
// of its group's L*P samples in dynamic shared memory (struct of arrays, so
// the fill, one sample per lane, is free of bank conflicts, and the reads,
// every lane the same entry, are broadcasts):
//   idx[4][LP] int64 corner rows (-1: zero corner), w[4][LP] weights,
//   wx/wy[4][LP] weight derivatives (backward), s0/s1[LP] per-sample scalars.

template <typename acc_t>
struct SampleTable {
  int64_t* idx;
  acc_t* w;
  acc_t* wx;
  acc_t* wy;
  acc_t* s0;
  acc_t* s1;
};

inline int64_t table_stride_bytes(int64_t lp, int64_t acc_size, bool backward) {
  const int64_t bytes = lp * (4 * int64_t(sizeof(int64_t)) + (backward ? 14 : 5) * acc_size);
  return (bytes + 15) / 16 * 16;
}

template <typename acc_t>
__device__ __forceinline__ SampleTable<acc_t> table_at(unsigned char* base, int lp, bool backward) {
  SampleTable<acc_t> tb;
  tb.idx = reinterpret_cast<int64_t*>(base);
  acc_t* a = reinterpret_cast<acc_t*>(base + int64_t(lp) * 4 * int64_t(sizeof(int64_t)));
  tb.w = a;
  a += 4 * lp;
  if (backward) {
    tb.wx = a;
    a += 4 * lp;
    tb.wy = a;
    a += 4 * lp;
  } else {
    tb.wx = nullptr;
    tb.wy = nullptr;
  }
  tb.s0 = a;
  a += lp;
  tb.s1 = backward ? a : nullptr;
  return tb;
}

// Fills the table of one group, one sample per lane. weights (MSDA forward)
// is folded into w; nullptr means 1.
template <typename acc_t>
__device__ __forceinline__ void fill_table(
    const SampleTable<acc_t>& tb,
    bool backward,
    int lane,
    const Dims& dims,
    const int64_t* __restrict__ shapes,
    const int64_t* __restrict__ starts,
    const acc_t* __restrict__ tloc,
    const acc_t* __restrict__ tweights) {
  const int lp = dims.lp;
  for (int i = lane; i < lp; i += kWarp) {
    const int l = i / dims.points;
    BilinearCorners<acc_t> cr;
    corners_at<acc_t>(
        tloc[2 * i], tloc[2 * i + 1], shapes[2 * l], shapes[2 * l + 1], starts[l], dims.num_value, cr);
    const acc_t a = tweights != nullptr ? tweights[i] : acc_t(1);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      tb.idx[k * lp + i] = cr.index[k];
      tb.w[k * lp + i] = tweights != nullptr ? a * cr.weight[k] : cr.weight[k];
      if (backward) {
        tb.wx[k * lp + i] = cr.dweight_dx[k];
        tb.wy[k * lp + i] = cr.dweight_dy[k];
      }
    }
  }
}

// out[d] = sum_i sum_k w[k][i] * rows[idx[k][i]][d], lanes striding over d.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void table_gather_store(
    const SampleTable<acc_t>& tb,
    int lp,
    int lane,
    const scalar_t* __restrict__ base,
    int64_t row_stride,
    int dim,
    scalar_t* __restrict__ out) {
  for (int d = lane; d < dim; d += kWarp) {
    acc_t acc = acc_t(0);
    for (int i = 0; i < lp; ++i) {
      int64_t idx[4];
      acc_t r[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) idx[k] = tb.idx[k * lp + i];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        r[k] = idx[k] >= 0 ? static_cast<acc_t>(base[idx[k] * row_stride + d]) : acc_t(0);
      }
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (idx[k] >= 0) acc += tb.w[k * lp + i] * r[k];
      }
    }
    out[d] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kGenericWarps* kWarp) kda_forward_generic_kernel(
    const scalar_t* __restrict__ query,
    const scalar_t* __restrict__ key,  // == value when the key is shared (then Dk == Dv)
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ shapes,
    const int64_t* __restrict__ starts,
    const at::opmath_type<scalar_t>* __restrict__ loc,
    scalar_t* __restrict__ output,
    at::opmath_type<scalar_t>* __restrict__ logsumexp,
    const Dims dims,
    const at::opmath_type<scalar_t> scale,
    const int64_t table_stride) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(16) unsigned char smem[];
  const int lane = threadIdx.x % kWarp;
  const int lp = dims.lp;
  const SampleTable<acc_t> tb =
      table_at<acc_t>(smem + (threadIdx.x / kWarp) * table_stride, lp, /*backward=*/false);
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t num_warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  const int64_t k_stride = dims.value_heads * dims.dk;
  const int64_t v_stride = dims.value_heads * dims.dv;

  for (int64_t t = warp; t < dims.total; t += num_warps) {  // warp-uniform
    const int64_t b = t / dims.nq_m;
    const int64_t vh = dims.value_heads == 1 ? 0 : t % dims.heads;
    const scalar_t* k_base = key + b * dims.num_value * k_stride + vh * dims.dk;
    const scalar_t* v_base = value + b * dims.num_value * v_stride + vh * dims.dv;
    const scalar_t* tq = query + t * dims.dk;

    fill_table<acc_t>(tb, false, lane, dims, shapes, starts, loc + t * lp * 2, nullptr);
    __syncwarp();

    // Pass 1: logits (kept in s0), running max and sum.
    acc_t run_max = neg_inf<acc_t>();
    acc_t run_sum = acc_t(0);
    for (int i = 0; i < lp; ++i) {
      int64_t idx[4];
      acc_t w[4];
      bool any = false;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        idx[k] = tb.idx[k * lp + i];
        w[k] = tb.w[k * lp + i];
        any = any || idx[k] >= 0;
      }
      acc_t part = acc_t(0);
      if (any) {  // warp-uniform
        for (int d = lane; d < dims.dk; d += kWarp) {
          acc_t r[4];
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            r[k] = idx[k] >= 0 ? static_cast<acc_t>(k_base[idx[k] * k_stride + d]) : acc_t(0);
          }
          // Invalid corners have w = 0 and r = 0: the key sample is the
          // gathered sum of the valid corners, as on the CPU.
          acc_t ks = acc_t(0);
#pragma unroll
          for (int k = 0; k < 4; ++k) ks += w[k] * r[k];
          part += static_cast<acc_t>(tq[d]) * ks;
        }
      }
      const acc_t dot = group_sum<kWarp>(part);
      const acc_t logit = any ? scale * dot : acc_t(0);
      if (lane == 0) tb.s0[i] = logit;
      if (logit > run_max) {
        run_sum = run_sum > acc_t(0) ? run_sum * dev_exp(run_max - logit) : acc_t(0);
        run_max = logit;
      }
      run_sum += dev_exp(logit - run_max);
    }
    const acc_t lse = run_max + dev_log(run_sum);
    __syncwarp();
    // Fold the attention probabilities into the corner weights.
    for (int i = lane; i < lp; i += kWarp) {
      const acc_t prob = dev_exp(tb.s0[i] - lse);
#pragma unroll
      for (int k = 0; k < 4; ++k) tb.w[k * lp + i] *= prob;
    }
    __syncwarp();
    // Pass 2: weighted gather of the values.
    table_gather_store<scalar_t, acc_t>(tb, lp, lane, v_base, v_stride, dims.dv, output + t * dims.dv);
    if (lane == 0) logsumexp[t] = lse;
    __syncwarp();  // the table is refilled for the next group
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kGenericWarps* kWarp) kda_backward_generic_kernel(
    const scalar_t* __restrict__ grad_output,
    const scalar_t* __restrict__ query,
    const scalar_t* __restrict__ key,  // == value when shared_key
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ shapes,
    const int64_t* __restrict__ starts,
    const at::opmath_type<scalar_t>* __restrict__ loc,
    const scalar_t* __restrict__ output,
    const at::opmath_type<scalar_t>* __restrict__ logsumexp,
    scalar_t* __restrict__ grad_query,
    at::opmath_type<scalar_t>* __restrict__ grad_key,  // nullptr when shared_key
    at::opmath_type<scalar_t>* __restrict__ grad_value,
    at::opmath_type<scalar_t>* __restrict__ grad_loc,
    const Dims dims,
    const at::opmath_type<scalar_t> scale,
    const bool shared_key,
    const int64_t table_stride) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(16) unsigned char smem[];
  const int lane = threadIdx.x % kWarp;
  const int lp = dims.lp;
  const int dk = dims.dk;
  const int dv = dims.dv;
  const SampleTable<acc_t> tb =
      table_at<acc_t>(smem + (threadIdx.x / kWarp) * table_stride, lp, /*backward=*/true);
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t num_warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  const int64_t k_stride = dims.value_heads * dk;
  const int64_t v_stride = dims.value_heads * dv;

  for (int64_t t = warp; t < dims.total; t += num_warps) {  // warp-uniform
    const int64_t b = t / dims.nq_m;
    const int64_t vh = dims.value_heads == 1 ? 0 : t % dims.heads;
    const int64_t k_off = b * dims.num_value * k_stride + vh * dk;
    const int64_t v_off = b * dims.num_value * v_stride + vh * dv;
    const scalar_t* k_base = key + k_off;
    const scalar_t* v_base = value + v_off;
    acc_t* gv_base = grad_value + v_off;
    acc_t* gk_base = shared_key ? gv_base : grad_key + k_off;
    const scalar_t* tq = query + t * dk;
    const scalar_t* tg = grad_output + t * dv;
    acc_t* tdloc = grad_loc + t * lp * 2;

    fill_table<acc_t>(tb, true, lane, dims, shapes, starts, loc + t * lp * 2, nullptr);
    acc_t part = acc_t(0);
    for (int d = lane; d < dv; d += kWarp) {
      part += static_cast<acc_t>(tg[d]) * static_cast<acc_t>(output[t * dv + d]);
    }
    const acc_t delta = group_sum<kWarp>(part);  // grad_output . output
    const acc_t lse = logsumexp[t];
    __syncwarp();

    // Phase A: per-sample scalars; grad_loc written here.
    for (int i = 0; i < lp; ++i) {
      int64_t idx[4];
      bool any = false;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        idx[k] = tb.idx[k * lp + i];
        any = any || idx[k] >= 0;
      }
      // qk[k] = q . K_k and gv[k] = g . V_k over this lane's channels
      // (invalid corners stay 0, as the CPU skips them).
      acc_t qk[4] = {0, 0, 0, 0}, gv[4] = {0, 0, 0, 0};
      if (any) {  // warp-uniform
        if (shared_key) {  // Dk == Dv, one load serves key and value
          for (int d = lane; d < dv; d += kWarp) {
            const acc_t qd = static_cast<acc_t>(tq[d]);
            const acc_t gd = static_cast<acc_t>(tg[d]);
            acc_t r[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              r[k] = idx[k] >= 0 ? static_cast<acc_t>(v_base[idx[k] * v_stride + d]) : acc_t(0);
            }
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              if (idx[k] >= 0) {
                qk[k] += qd * r[k];
                gv[k] += gd * r[k];
              }
            }
          }
        } else {
          for (int d = lane; d < dk; d += kWarp) {
            const acc_t qd = static_cast<acc_t>(tq[d]);
            acc_t r[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              r[k] = idx[k] >= 0 ? static_cast<acc_t>(k_base[idx[k] * k_stride + d]) : acc_t(0);
            }
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              if (idx[k] >= 0) qk[k] += qd * r[k];
            }
          }
          for (int d = lane; d < dv; d += kWarp) {
            const acc_t gd = static_cast<acc_t>(tg[d]);
            acc_t r[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              r[k] = idx[k] >= 0 ? static_cast<acc_t>(v_base[idx[k] * v_stride + d]) : acc_t(0);
            }
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              if (idx[k] >= 0) gv[k] += gd * r[k];
            }
          }
        }
      }
      acc_t qa = 0, qx = 0, qy = 0, ga = 0, gx = 0, gy = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const acc_t w = tb.w[k * lp + i];
        const acc_t wx = tb.wx[k * lp + i];
        const acc_t wy = tb.wy[k * lp + i];
        qa += w * qk[k];
        qx += wx * qk[k];
        qy += wy * qk[k];
        ga += w * gv[k];
        gx += wx * gv[k];
        gy += wy * gv[k];
      }
      qa = group_sum<kWarp>(qa);
      ga = group_sum<kWarp>(ga);
      const acc_t attn = any ? dev_exp(scale * qa - lse) : acc_t(0);
      const acc_t dlogit = any ? scale * attn * (ga - delta) : acc_t(0);
      const acc_t dx = group_sum<kWarp>(attn * gx + dlogit * qx);
      const acc_t dy = group_sum<kWarp>(attn * gy + dlogit * qy);
      if (lane == 0) {
        tdloc[2 * i] = dx;
        tdloc[2 * i + 1] = dy;
        tb.s0[i] = attn;
        tb.s1[i] = dlogit;
      }
    }
    __syncwarp();

    // Phase B: lanes stride over channels; grad_query in a register, atomics
    // into grad_value / grad_key.
    const int dmax = dk > dv ? dk : dv;
    for (int d = lane; d < dmax; d += kWarp) {
      const bool in_k = d < dk;
      const bool in_v = d < dv;
      const acc_t qd = in_k ? static_cast<acc_t>(tq[d]) : acc_t(0);
      const acc_t gd = in_v ? static_cast<acc_t>(tg[d]) : acc_t(0);
      acc_t dq = acc_t(0);
      for (int i = 0; i < lp; ++i) {
        const acc_t attn = tb.s0[i];
        const acc_t dlogit = tb.s1[i];
        int64_t idx[4];
        acc_t r[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) idx[k] = tb.idx[k * lp + i];
        // Key rows for grad_query (the value rows when the key is shared).
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          r[k] = idx[k] >= 0 && in_k ? static_cast<acc_t>(k_base[idx[k] * k_stride + d]) : acc_t(0);
        }
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (idx[k] < 0) continue;
          const acc_t w = tb.w[k * lp + i];
          if (in_k) dq += dlogit * w * r[k];
          if (shared_key) {  // d < Dk == Dv
            atomicAdd(gv_base + idx[k] * v_stride + d, w * attn * gd + w * dlogit * qd);
          } else {
            if (in_k) atomicAdd(gk_base + idx[k] * k_stride + d, w * dlogit * qd);
            if (in_v) atomicAdd(gv_base + idx[k] * v_stride + d, w * attn * gd);
          }
        }
      }
      if (in_k) grad_query[t * dk + d] = static_cast<scalar_t>(dq);
    }
    __syncwarp();  // the table is refilled for the next group
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kGenericWarps* kWarp) msda_forward_generic_kernel(
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ shapes,
    const int64_t* __restrict__ starts,
    const at::opmath_type<scalar_t>* __restrict__ loc,
    const at::opmath_type<scalar_t>* __restrict__ weights,
    scalar_t* __restrict__ output,
    const Dims dims,
    const int64_t table_stride) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(16) unsigned char smem[];
  const int lane = threadIdx.x % kWarp;
  const int lp = dims.lp;
  const SampleTable<acc_t> tb =
      table_at<acc_t>(smem + (threadIdx.x / kWarp) * table_stride, lp, /*backward=*/false);
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t num_warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  const int64_t v_stride = dims.value_heads * dims.dv;

  for (int64_t t = warp; t < dims.total; t += num_warps) {  // warp-uniform
    const int64_t b = t / dims.nq_m;
    const int64_t vh = dims.value_heads == 1 ? 0 : t % dims.heads;
    const scalar_t* v_base = value + b * dims.num_value * v_stride + vh * dims.dv;
    fill_table<acc_t>(tb, false, lane, dims, shapes, starts, loc + t * lp * 2, weights + t * lp);
    __syncwarp();
    table_gather_store<scalar_t, acc_t>(tb, lp, lane, v_base, v_stride, dims.dv, output + t * dims.dv);
    __syncwarp();  // the table is refilled for the next group
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kGenericWarps* kWarp) msda_backward_generic_kernel(
    const scalar_t* __restrict__ grad_output,
    const scalar_t* __restrict__ value,
    const int64_t* __restrict__ shapes,
    const int64_t* __restrict__ starts,
    const at::opmath_type<scalar_t>* __restrict__ loc,
    const at::opmath_type<scalar_t>* __restrict__ weights,
    at::opmath_type<scalar_t>* __restrict__ grad_value,
    at::opmath_type<scalar_t>* __restrict__ grad_loc,
    at::opmath_type<scalar_t>* __restrict__ grad_weights,
    const Dims dims,
    const int64_t table_stride) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(16) unsigned char smem[];
  const int lane = threadIdx.x % kWarp;
  const int lp = dims.lp;
  const int dv = dims.dv;
  const SampleTable<acc_t> tb =
      table_at<acc_t>(smem + (threadIdx.x / kWarp) * table_stride, lp, /*backward=*/true);
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t num_warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  const int64_t v_stride = dims.value_heads * dv;

  for (int64_t t = warp; t < dims.total; t += num_warps) {  // warp-uniform
    const int64_t b = t / dims.nq_m;
    const int64_t vh = dims.value_heads == 1 ? 0 : t % dims.heads;
    const int64_t v_off = b * dims.num_value * v_stride + vh * dv;
    const scalar_t* v_base = value + v_off;
    acc_t* gv_base = grad_value + v_off;
    const scalar_t* tg = grad_output + t * dv;
    const acc_t* tw = weights + t * lp;

    fill_table<acc_t>(tb, true, lane, dims, shapes, starts, loc + t * lp * 2, nullptr);
    __syncwarp();
    for (int i = 0; i < lp; ++i) {
      const acc_t a = tw[i];
      int64_t idx[4];
      acc_t w[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        idx[k] = tb.idx[k * lp + i];
        w[k] = tb.w[k * lp + i];
      }
      acc_t gv[4] = {0, 0, 0, 0};
      for (int d = lane; d < dv; d += kWarp) {
        const acc_t gd = static_cast<acc_t>(tg[d]);
        acc_t r[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          r[k] = idx[k] >= 0 ? static_cast<acc_t>(v_base[idx[k] * v_stride + d]) : acc_t(0);
        }
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (idx[k] >= 0) {
            gv[k] += gd * r[k];
            atomicAdd(gv_base + idx[k] * v_stride + d, a * w[k] * gd);
          }
        }
      }
      acc_t ga = 0, gx = 0, gy = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        ga += w[k] * gv[k];
        gx += tb.wx[k * lp + i] * gv[k];
        gy += tb.wy[k * lp + i] * gv[k];
      }
      ga = group_sum<kWarp>(ga);
      gx = group_sum<kWarp>(gx);
      gy = group_sum<kWarp>(gy);
      if (lane == 0) {
        grad_weights[t * lp + i] = ga;
        grad_loc[(t * lp + i) * 2] = a * gx;
        grad_loc[(t * lp + i) * 2 + 1] = a * gy;
      }
    }
    __syncwarp();  // the table is refilled for the next group
  }
}

// ------------------------------------------------------------ host side

void check_cuda(const at::Tensor& value) {
  TORCH_CHECK(value.is_cuda(), "lite_detr: expected CUDA tensors, got ", value.device());
}

void check_device(const at::Tensor& t, const char* name, const at::Tensor& value) {
  TORCH_CHECK(
      t.device() == value.device(), "lite_detr: ", name, " must be on the same device as value (",
      value.device(), "), got ", t.device());
}

Dims make_dims(const SamplingSizes& s) {
  TORCH_CHECK(
      s.num_levels * s.num_points <= kMaxSamples, "lite_detr: L*P = ", s.num_levels * s.num_points,
      " samples per head is too many for the CUDA kernels");
  TORCH_CHECK(
      s.key_dim <= kMaxDim && s.value_dim <= kMaxDim, "lite_detr: head dims (Dk=", s.key_dim,
      ", Dv=", s.value_dim, ") are too large for the CUDA kernels");
  Dims d;
  d.total = s.batch * s.num_query * s.num_heads;
  d.nq_m = s.num_query * s.num_heads;
  d.heads = s.num_heads;
  d.value_heads = s.value_heads;
  d.num_value = s.num_value;
  d.levels = static_cast<int>(s.num_levels);
  d.points = static_cast<int>(s.num_points);
  d.lp = static_cast<int>(s.num_levels * s.num_points);
  d.dk = static_cast<int>(s.key_dim);
  d.dv = static_cast<int>(s.value_dim);
  return d;
}

bool aligned16(const at::Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}

// Blocks for a grid-stride kernel that needs `items` work items at
// `items_per_block` each, capped at kBlocksPerSm blocks per SM.
unsigned grid_size(int64_t items, int64_t items_per_block) {
  const int64_t want = (items + items_per_block - 1) / items_per_block;
  const int64_t cap =
      static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount) * kBlocksPerSm;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(want, cap)));
}

struct GenericLaunch {
  unsigned grid;
  unsigned threads;
  int64_t table_stride;
  size_t smem;
};

// Launch shape of a generic kernel: as many warps per block (up to
// kGenericWarps) as the sample tables allow in 48 KiB of shared memory, and
// the opt-in maximum when even one table needs more.
template <typename KernelT>
GenericLaunch generic_launch(KernelT* kernel, int64_t total, int64_t lp, int64_t acc_size, bool backward) {
  const int64_t stride = table_stride_bytes(lp, acc_size, backward);
  int64_t warps = kGenericWarps;
  while (warps > 1 && stride * warps > kDefaultSmem) warps /= 2;
  const int64_t smem = stride * warps;
  if (smem > kDefaultSmem) {
    const int64_t limit =
        static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin);
    TORCH_CHECK(
        smem <= limit, "lite_detr: L*P = ", lp, " samples per head need ", smem,
        " bytes of shared memory for this head dim, more than this GPU's ", limit,
        "; use fewer levels or points");
    C10_CUDA_CHECK(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  GenericLaunch g;
  g.grid = grid_size(total, warps);
  g.threads = static_cast<unsigned>(warps * kWarp);
  g.table_stride = stride;
  g.smem = static_cast<size_t>(smem);
  return g;
}

// Launches the fast-path kernel for head dim D = 32 or 64: G = D / C lanes per
// group (C = 16 / sizeof(scalar_t) channels per lane), kFastThreads threads per
// block, a grid for `total` groups. `instance(g)` returns the kernel instance
// for the lane count G = decltype(g)::value (a std::integral_constant).
template <typename scalar_t, typename Instance, typename... Args>
void launch_fast(int64_t head_dim, int64_t total, cudaStream_t stream, Instance instance, Args... args) {
  constexpr int C = 16 / sizeof(scalar_t);
  auto launch = [&](auto g) {
    constexpr int G = decltype(g)::value;
    auto* kernel = instance(g);
    kernel<<<grid_size(total, kFastThreads / G), kFastThreads, 0, stream>>>(args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  if (head_dim == 32) {
    launch(std::integral_constant<int, 32 / C>{});
  } else {
    launch(std::integral_constant<int, 64 / C>{});
  }
}

} // namespace

std::tuple<at::Tensor, at::Tensor> kda_forward_cuda(
    const at::Tensor& query,
    const std::optional<at::Tensor>& key,
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    double scale) {
  check_cuda(value);
  const SamplingSizes s =
      check_kda_inputs(query, key, value, spatial_shapes, level_start_index, sampling_locations);
  c10::cuda::CUDAGuard guard(value.device());
  auto output = at::empty({s.batch, s.num_query, s.num_heads * s.value_dim}, value.options());
  auto logsumexp = at::empty(
      {s.batch, s.num_query, s.num_heads}, value.options().dtype(opmath_dtype(value.scalar_type())));
  if (output.numel() == 0) return {output, logsumexp};
  const Dims dims = make_dims(s);
  const bool has_key = key.has_value() && key->defined();
  const at::Tensor& key_t = has_key ? *key : value;
  const bool fast = s.key_dim == s.value_dim && (s.value_dim == 32 || s.value_dim == 64) &&
      aligned16(query) && aligned16(key_t) && aligned16(value) && aligned16(output);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "kda_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* q_ptr = query.data_ptr<scalar_t>();
    const scalar_t* k_ptr = key_t.data_ptr<scalar_t>();
    const scalar_t* v_ptr = value.data_ptr<scalar_t>();
    const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
    const int64_t* starts = level_start_index.data_ptr<int64_t>();
    const acc_t* loc = sampling_locations.data_ptr<acc_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    acc_t* lse = logsumexp.data_ptr<acc_t>();
    const acc_t sc = static_cast<acc_t>(scale);
    if (fast) {
      auto instance = [&](auto g) {
        constexpr int G = decltype(g)::value;
        return has_key ? kda_forward_fast_kernel<scalar_t, G, false> : kda_forward_fast_kernel<scalar_t, G, true>;
      };
      launch_fast<scalar_t>(
          s.value_dim, dims.total, stream, instance, q_ptr, k_ptr, v_ptr, shapes, starts, loc, out, lse, dims, sc);
    } else {
      auto* kernel = kda_forward_generic_kernel<scalar_t>;
      const GenericLaunch g = generic_launch(kernel, dims.total, dims.lp, sizeof(acc_t), false);
      kernel<<<g.grid, g.threads, g.smem, stream>>>(
          q_ptr, k_ptr, v_ptr, shapes, starts, loc, out, lse, dims, sc, g.table_stride);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {output, logsumexp};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kda_backward_cuda(
    const at::Tensor& grad_output_in,
    const at::Tensor& query,
    const std::optional<at::Tensor>& key,
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& output,
    const at::Tensor& logsumexp,
    double scale) {
  check_cuda(value);
  const SamplingSizes s =
      check_kda_inputs(query, key, value, spatial_shapes, level_start_index, sampling_locations);
  const std::vector<int64_t> out_shape{s.batch, s.num_query, s.num_heads * s.value_dim};
  check_same_shape(grad_output_in, "grad_output", out_shape);
  check_same_shape(output, "output", out_shape);
  check_same_shape(logsumexp, "logsumexp", {s.batch, s.num_query, s.num_heads});
  check_device(grad_output_in, "grad_output", value);
  check_device(output, "output", value);
  check_device(logsumexp, "logsumexp", value);
  c10::cuda::CUDAGuard guard(value.device());

  const auto dtype = value.scalar_type();
  const auto acc_dtype = opmath_dtype(dtype);
  const auto acc_opts = value.options().dtype(acc_dtype);
  const bool has_key = key.has_value() && key->defined();
  if (grad_output_in.numel() == 0) {
    return {
        at::zeros(query.sizes(), value.options()),
        has_key ? at::zeros(key->sizes(), value.options()) : at::empty({0}, value.options()),
        at::zeros(value.sizes(), value.options()), at::zeros(sampling_locations.sizes(), acc_opts)};
  }
  const auto grad_output = grad_output_in.to(dtype).contiguous();
  const auto output_c = output.to(dtype).contiguous();
  const auto lse_c = logsumexp.to(acc_dtype).contiguous();
  const at::Tensor& key_t = has_key ? *key : value;

  // grad_query and grad_loc are written once per element by the kernels.
  auto grad_query = at::empty(query.sizes(), value.options());
  auto grad_value = at::zeros(value.sizes(), acc_opts);
  auto grad_key = has_key ? at::zeros(key->sizes(), acc_opts) : at::Tensor();
  auto grad_loc = at::empty(sampling_locations.sizes(), acc_opts);

  const Dims dims = make_dims(s);
  const bool fast = s.key_dim == s.value_dim && (s.value_dim == 32 || s.value_dim == 64) &&
      aligned16(grad_output) && aligned16(query) && aligned16(key_t) && aligned16(value) &&
      aligned16(output_c) && aligned16(grad_query) && aligned16(grad_value) &&
      (!has_key || aligned16(grad_key));
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "kda_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* go_ptr = grad_output.data_ptr<scalar_t>();
    const scalar_t* q_ptr = query.data_ptr<scalar_t>();
    const scalar_t* k_ptr = key_t.data_ptr<scalar_t>();
    const scalar_t* v_ptr = value.data_ptr<scalar_t>();
    const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
    const int64_t* starts = level_start_index.data_ptr<int64_t>();
    const acc_t* loc = sampling_locations.data_ptr<acc_t>();
    const scalar_t* o_ptr = output_c.data_ptr<scalar_t>();
    const acc_t* lse = lse_c.data_ptr<acc_t>();
    scalar_t* gq = grad_query.data_ptr<scalar_t>();
    acc_t* gk = has_key ? grad_key.data_ptr<acc_t>() : nullptr;
    acc_t* gv = grad_value.data_ptr<acc_t>();
    acc_t* gl = grad_loc.data_ptr<acc_t>();
    const acc_t sc = static_cast<acc_t>(scale);
    if (fast) {
      auto instance = [&](auto g) {
        constexpr int G = decltype(g)::value;
        return has_key ? kda_backward_fast_kernel<scalar_t, G, false> : kda_backward_fast_kernel<scalar_t, G, true>;
      };
      launch_fast<scalar_t>(
          s.value_dim, dims.total, stream, instance, go_ptr, q_ptr, k_ptr, v_ptr, shapes, starts, loc, o_ptr, lse,
          gq, gk, gv, gl, dims, sc);
    } else {
      auto* kernel = kda_backward_generic_kernel<scalar_t>;
      const GenericLaunch g = generic_launch(kernel, dims.total, dims.lp, sizeof(acc_t), true);
      kernel<<<g.grid, g.threads, g.smem, stream>>>(
          go_ptr, q_ptr, k_ptr, v_ptr, shapes, starts, loc, o_ptr, lse, gq, gk, gv, gl, dims, sc,
          !has_key, g.table_stride);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {
      grad_query, has_key ? grad_key.to(dtype) : at::empty({0}, value.options()), grad_value.to(dtype),
      grad_loc};
}

at::Tensor msda_forward_cuda(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  check_cuda(value);
  const SamplingSizes s = check_msda_inputs(
      value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  c10::cuda::CUDAGuard guard(value.device());
  auto output = at::empty({s.batch, s.num_query, s.num_heads * s.value_dim}, value.options());
  if (output.numel() == 0) return output;
  const Dims dims = make_dims(s);
  const bool fast =
      (s.value_dim == 32 || s.value_dim == 64) && aligned16(value) && aligned16(output);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "msda_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* v_ptr = value.data_ptr<scalar_t>();
    const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
    const int64_t* starts = level_start_index.data_ptr<int64_t>();
    const acc_t* loc = sampling_locations.data_ptr<acc_t>();
    const acc_t* w = attention_weights.data_ptr<acc_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    if (fast) {
      auto instance = [](auto g) { return msda_forward_fast_kernel<scalar_t, decltype(g)::value>; };
      launch_fast<scalar_t>(s.value_dim, dims.total, stream, instance, v_ptr, shapes, starts, loc, w, out, dims);
    } else {
      auto* kernel = msda_forward_generic_kernel<scalar_t>;
      const GenericLaunch g = generic_launch(kernel, dims.total, dims.lp, sizeof(acc_t), false);
      kernel<<<g.grid, g.threads, g.smem, stream>>>(
          v_ptr, shapes, starts, loc, w, out, dims, g.table_stride);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> msda_backward_cuda(
    const at::Tensor& grad_output_in,
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  check_cuda(value);
  const SamplingSizes s = check_msda_inputs(
      value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  check_same_shape(grad_output_in, "grad_output", {s.batch, s.num_query, s.num_heads * s.value_dim});
  check_device(grad_output_in, "grad_output", value);
  c10::cuda::CUDAGuard guard(value.device());

  const auto dtype = value.scalar_type();
  const auto acc_opts = value.options().dtype(opmath_dtype(dtype));
  auto grad_value = at::zeros(value.sizes(), acc_opts);
  if (grad_output_in.numel() == 0) {
    return {
        grad_value.to(dtype), at::zeros(sampling_locations.sizes(), acc_opts),
        at::zeros(attention_weights.sizes(), acc_opts)};
  }
  const auto grad_output = grad_output_in.to(dtype).contiguous();
  // grad_loc and grad_weights are written once per element by the kernels.
  auto grad_loc = at::empty(sampling_locations.sizes(), acc_opts);
  auto grad_weights = at::empty(attention_weights.sizes(), acc_opts);

  const Dims dims = make_dims(s);
  const bool fast = (s.value_dim == 32 || s.value_dim == 64) && aligned16(grad_output) &&
      aligned16(value) && aligned16(grad_value);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "msda_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* go_ptr = grad_output.data_ptr<scalar_t>();
    const scalar_t* v_ptr = value.data_ptr<scalar_t>();
    const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
    const int64_t* starts = level_start_index.data_ptr<int64_t>();
    const acc_t* loc = sampling_locations.data_ptr<acc_t>();
    const acc_t* w = attention_weights.data_ptr<acc_t>();
    acc_t* gv = grad_value.data_ptr<acc_t>();
    acc_t* gl = grad_loc.data_ptr<acc_t>();
    acc_t* gw = grad_weights.data_ptr<acc_t>();
    if (fast) {
      auto instance = [](auto g) { return msda_backward_fast_kernel<scalar_t, decltype(g)::value>; };
      launch_fast<scalar_t>(
          s.value_dim, dims.total, stream, instance, go_ptr, v_ptr, shapes, starts, loc, w, gv, gl, gw, dims);
    } else {
      auto* kernel = msda_backward_generic_kernel<scalar_t>;
      const GenericLaunch g = generic_launch(kernel, dims.total, dims.lp, sizeof(acc_t), true);
      kernel<<<g.grid, g.threads, g.smem, stream>>>(
          go_ptr, v_ptr, shapes, starts, loc, w, gv, gl, gw, dims, g.table_stride);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {grad_value.to(dtype), grad_loc, grad_weights};
}

TORCH_LIBRARY_IMPL(lite_detr, CUDA, m) {
  m.impl("kda_forward", &WithContiguousArgs<&kda_forward_cuda>::call);
  m.impl("_kda_backward", &WithContiguousArgs<&kda_backward_cuda>::call);
  m.impl("msda_forward", &WithContiguousArgs<&msda_forward_cuda>::call);
  m.impl("_msda_backward", &WithContiguousArgs<&msda_backward_cuda>::call);
}

} // namespace lite_detr
