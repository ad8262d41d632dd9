// Bilinear sampling shared by the CPU and CUDA kernels of the KDA/MSDA op family.
//
// Convention: F.grid_sample(mode="bilinear", padding_mode="zeros",
// align_corners=False) on a location (x, y) in [0, 1]: the pixel coordinate is
// x * W - 0.5, and corners outside the map contribute zero.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define LITE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define LITE_HOST_DEVICE inline
#endif

namespace lite_detr {

// The (up to) four corners of one bilinear sample. A corner outside the map
// has index -1 and weight 0. dweight_dx/dy are the derivatives of each corner
// weight with respect to the normalised location (they include the W and H
// factors), used by the backward pass.
template <typename acc_t>
struct BilinearCorners {
  int64_t index[4];
  acc_t weight[4];
  acc_t dweight_dx[4];
  acc_t dweight_dy[4];
};

// Fills `c` for location (x, y) on a level of size H x W whose first token is
// `level_start` in the flattened value tensor. Returns false when the sample
// touches no pixel (including NaN or infinite locations), so callers can skip
// it: its key and value are zero.
template <typename acc_t>
LITE_HOST_DEVICE bool bilinear_corners(
    acc_t x,
    acc_t y,
    int64_t H,
    int64_t W,
    int64_t level_start,
    BilinearCorners<acc_t>& c) {
  const acc_t h_im = y * static_cast<acc_t>(H) - acc_t(0.5);
  const acc_t w_im = x * static_cast<acc_t>(W) - acc_t(0.5);
  // Written so that NaN fails every comparison.
  if (!(h_im > acc_t(-1) && w_im > acc_t(-1) && h_im < static_cast<acc_t>(H) &&
        w_im < static_cast<acc_t>(W))) {
    return false;
  }
  const acc_t h_floor = ::floor(h_im);
  const acc_t w_floor = ::floor(w_im);
  const int64_t h0 = static_cast<int64_t>(h_floor);
  const int64_t w0 = static_cast<int64_t>(w_floor);
  const acc_t lh = h_im - h_floor;
  const acc_t lw = w_im - w_floor;
  const acc_t hh = acc_t(1) - lh;
  const acc_t hw = acc_t(1) - lw;
  const acc_t fH = static_cast<acc_t>(H);
  const acc_t fW = static_cast<acc_t>(W);

  // Corner order: (h0, w0), (h0, w0+1), (h0+1, w0), (h0+1, w0+1).
  const int64_t hs[4] = {h0, h0, h0 + 1, h0 + 1};
  const int64_t ws[4] = {w0, w0 + 1, w0, w0 + 1};
  const acc_t weights[4] = {hh * hw, hh * lw, lh * hw, lh * lw};
  const acc_t ddx[4] = {-hh * fW, hh * fW, -lh * fW, lh * fW};
  const acc_t ddy[4] = {-hw * fH, -lw * fH, hw * fH, lw * fH};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const bool inside = hs[k] >= 0 && hs[k] < H && ws[k] >= 0 && ws[k] < W;
    c.index[k] = inside ? level_start + hs[k] * W + ws[k] : int64_t(-1);
    c.weight[k] = inside ? weights[k] : acc_t(0);
    c.dweight_dx[k] = inside ? ddx[k] : acc_t(0);
    c.dweight_dy[k] = inside ? ddy[k] : acc_t(0);
  }
  return true;
}

} // namespace lite_detr
