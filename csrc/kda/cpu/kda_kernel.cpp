// CPU kernels of the KDA / MSDA op family.
//
// Forward: one task per (batch, query, head). Each task samples its L*P
// locations and keeps an online softmax (KDA) or a weighted sum (MSDA) in a
// per-thread buffer of D values, so nothing of size Nq*M*L*P*D is allocated.
//
// Backward: phase 1 (one task per (batch, query, head)) computes the query and
// location gradients and the per-sample coefficients that multiply the value
// and key gradients; phase 2 scatters into grad_value / grad_key, one task per
// (batch, value head, channel block), so no two threads write the same
// element and the result is deterministic.
#include "../kda.h"
#include "../kda_checks.h"
#include "../sampling.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace lite_detr {
namespace {

constexpr int64_t kChannelBlock = 32;

template <typename scalar_t, typename acc_t>
inline void axpy(acc_t alpha, const scalar_t* __restrict__ x, acc_t* __restrict__ y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    y[i] += alpha * static_cast<acc_t>(x[i]);
  }
}

template <typename scalar_t, typename acc_t>
inline acc_t dot(const acc_t* __restrict__ a, const scalar_t* __restrict__ x, int64_t n) {
  acc_t r = 0;
#pragma omp simd reduction(+ : r)
  for (int64_t i = 0; i < n; ++i) {
    r += a[i] * static_cast<acc_t>(x[i]);
  }
  return r;
}

template <typename scalar_t, typename acc_t>
inline void to_acc(const scalar_t* x, acc_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = static_cast<acc_t>(x[i]);
  }
}

// Bilinear sample of `dim` channels: out = sum_k w_k * rows[index_k].
template <typename scalar_t, typename acc_t>
inline void gather(
    const BilinearCorners<acc_t>& c,
    const scalar_t* base,
    int64_t row_stride,
    int64_t dim,
    acc_t* out) {
  std::fill(out, out + dim, acc_t(0));
  for (int k = 0; k < 4; ++k) {
    if (c.index[k] >= 0) {
      axpy(c.weight[k], base + c.index[k] * row_stride, out, dim);
    }
  }
}

// Pointers into one batch element's rows for one value head: row r of head h
// starts at base + r * row_stride.
template <typename scalar_t>
struct HeadRows {
  const scalar_t* base;
  int64_t row_stride;
};

struct Levels {
  const int64_t* shapes;  // [L, 2]
  const int64_t* starts;  // [L]
  int64_t num_levels;
  int64_t num_points;
};

template <typename acc_t>
inline bool corners_of(const Levels& lv, const acc_t* loc, int64_t sample, BilinearCorners<acc_t>& c) {
  const int64_t l = sample / lv.num_points;
  return bilinear_corners<acc_t>(
      loc[2 * sample], loc[2 * sample + 1], lv.shapes[2 * l], lv.shapes[2 * l + 1], lv.starts[l], c);
}

inline int64_t grain_for(int64_t work_per_task) {
  // Aim for tasks of roughly 32k multiply-adds each.
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work_per_task));
}

// ---------------------------------------------------------------- forward

template <typename scalar_t, typename acc_t>
void kda_forward_kernel(
    const SamplingSizes& s,
    const Levels& lv,
    const scalar_t* query,
    const scalar_t* key,  // nullptr: key = value
    const scalar_t* value,
    const acc_t* loc,
    acc_t scale,
    scalar_t* output,
    acc_t* logsumexp) {
  const int64_t M = s.num_heads, Mv = s.value_heads, S = s.num_value;
  const int64_t Dk = s.key_dim, Dv = s.value_dim, LP = s.num_levels * s.num_points;
  const int64_t tasks = s.batch * s.num_query * M;
  at::parallel_for(0, tasks, grain_for(LP * 4 * (Dk + Dv)), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> q(Dk), k_sample(Dk), v_sample(Dv), acc(Dv);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t m = t % M;
      const int64_t b = t / M / s.num_query;
      const int64_t vh = Mv == 1 ? 0 : m;
      const HeadRows<scalar_t> v_rows{value + (b * S * Mv + vh) * Dv, Mv * Dv};
      const HeadRows<scalar_t> k_rows =
          key ? HeadRows<scalar_t>{key + (b * S * Mv + vh) * Dk, Mv * Dk} : v_rows;
      // With a shared key, the key sample *is* the value sample.
      acc_t* const key_buffer = key ? k_sample.data() : v_sample.data();
      to_acc(query + t * Dk, q.data(), Dk);
      const acc_t* tloc = loc + t * LP * 2;

      acc_t running_max = -std::numeric_limits<acc_t>::infinity();
      acc_t running_sum = 0;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (int64_t i = 0; i < LP; ++i) {
        BilinearCorners<acc_t> c;
        const bool hit = corners_of(lv, tloc, i, c);
        acc_t logit = 0;  // a sample outside every map has a zero key
        if (hit) {
          gather(c, k_rows.base, k_rows.row_stride, Dk, key_buffer);
          logit = scale * dot(q.data(), key_buffer, Dk);
        }
        if (logit > running_max) {
          const acc_t rescale = running_sum > 0 ? std::exp(running_max - logit) : acc_t(0);
          running_sum *= rescale;
          for (auto& a : acc) a *= rescale;
          running_max = logit;
        }
        const acc_t p = std::exp(logit - running_max);
        running_sum += p;
        if (hit) {
          if (key) {
            gather(c, v_rows.base, v_rows.row_stride, Dv, v_sample.data());
          }
          for (int64_t d = 0; d < Dv; ++d) acc[d] += p * v_sample[d];
        }
      }
      scalar_t* out = output + t * Dv;
      for (int64_t d = 0; d < Dv; ++d) out[d] = static_cast<scalar_t>(acc[d] / running_sum);
      logsumexp[t] = running_max + std::log(running_sum);
    }
  });
}

template <typename scalar_t, typename acc_t>
void msda_forward_kernel(
    const SamplingSizes& s,
    const Levels& lv,
    const scalar_t* value,
    const acc_t* loc,
    const acc_t* weights,
    scalar_t* output) {
  const int64_t M = s.num_heads, Mv = s.value_heads, S = s.num_value;
  const int64_t Dv = s.value_dim, LP = s.num_levels * s.num_points;
  const int64_t tasks = s.batch * s.num_query * M;
  at::parallel_for(0, tasks, grain_for(LP * 4 * Dv), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(Dv);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t m = t % M;
      const int64_t b = t / M / s.num_query;
      const int64_t vh = Mv == 1 ? 0 : m;
      const scalar_t* v_base = value + (b * S * Mv + vh) * Dv;
      const acc_t* tloc = loc + t * LP * 2;
      const acc_t* tw = weights + t * LP;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (int64_t i = 0; i < LP; ++i) {
        BilinearCorners<acc_t> c;
        if (!corners_of(lv, tloc, i, c)) continue;
        for (int k = 0; k < 4; ++k) {
          if (c.index[k] >= 0) axpy(tw[i] * c.weight[k], v_base + c.index[k] * Mv * Dv, acc.data(), Dv);
        }
      }
      scalar_t* out = output + t * Dv;
      for (int64_t d = 0; d < Dv; ++d) out[d] = static_cast<scalar_t>(acc[d]);
    }
  });
}

// ---------------------------------------------------------------- backward

// Phase 2, shared by KDA and MSDA:
//   grad_value[idx] += w * value_coef * grad_output       (per sample corner)
//   grad_key[idx]   += w * key_coef   * query             (KDA only)
// grad_key may alias grad_value (shared key), in which case Dk == Dv.
template <typename scalar_t, typename acc_t>
void scatter_value_key_grads(
    const SamplingSizes& s,
    const Levels& lv,
    const acc_t* loc,
    const acc_t* value_coef,
    const scalar_t* grad_output,
    acc_t* grad_value,
    const acc_t* key_coef,  // nullptr for MSDA
    const scalar_t* query,
    acc_t* grad_key) {
  const int64_t M = s.num_heads, Mv = s.value_heads, S = s.num_value, Nq = s.num_query;
  const int64_t Dk = s.key_dim, Dv = s.value_dim, LP = s.num_levels * s.num_points;
  const int64_t widest = key_coef ? std::max(Dk, Dv) : Dv;
  const int64_t blocks = (widest + kChannelBlock - 1) / kChannelBlock;
  const int64_t heads_per_value_head = Mv == 1 ? M : 1;
  at::parallel_for(0, s.batch * Mv * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t block = task % blocks;
      const int64_t vh = (task / blocks) % Mv;
      const int64_t b = task / blocks / Mv;
      const int64_t c0 = block * kChannelBlock;
      const int64_t v_end = std::min(Dv, c0 + kChannelBlock);
      const int64_t k_end = std::min(Dk, c0 + kChannelBlock);
      acc_t* gv_base = grad_value + (b * S * Mv + vh) * Dv;
      acc_t* gk_base = key_coef ? grad_key + (b * S * Mv + vh) * Dk : nullptr;
      for (int64_t qi = 0; qi < Nq; ++qi) {
        for (int64_t j = 0; j < heads_per_value_head; ++j) {
          const int64_t m = Mv == 1 ? j : vh;
          const int64_t t = (b * Nq + qi) * M + m;
          const scalar_t* g = grad_output + t * Dv;
          const scalar_t* qv = query ? query + t * Dk : nullptr;
          for (int64_t i = 0; i < LP; ++i) {
            BilinearCorners<acc_t> c;
            if (!corners_of(lv, loc + t * LP * 2, i, c)) continue;
            const acc_t vc = value_coef[t * LP + i];
            const acc_t kc = key_coef ? key_coef[t * LP + i] : acc_t(0);
            for (int k = 0; k < 4; ++k) {
              if (c.index[k] < 0) continue;
              acc_t* gv = gv_base + c.index[k] * Mv * Dv;
              const acc_t wv = c.weight[k] * vc;
              for (int64_t d = c0; d < v_end; ++d) gv[d] += wv * static_cast<acc_t>(g[d]);
              if (key_coef) {
                acc_t* gk = gk_base + c.index[k] * Mv * Dk;
                const acc_t wk = c.weight[k] * kc;
                for (int64_t d = c0; d < k_end; ++d) gk[d] += wk * static_cast<acc_t>(qv[d]);
              }
            }
          }
        }
      }
    }
  });
}

template <typename scalar_t, typename acc_t>
void kda_backward_kernel(
    const SamplingSizes& s,
    const Levels& lv,
    const scalar_t* grad_output,
    const scalar_t* query,
    const scalar_t* key,  // nullptr: key = value
    const scalar_t* value,
    const acc_t* loc,
    const scalar_t* output,
    const acc_t* logsumexp,
    acc_t scale,
    acc_t* grad_query,
    acc_t* grad_key,  // == grad_value when key is shared
    acc_t* grad_value,
    acc_t* grad_loc) {
  const int64_t M = s.num_heads, Mv = s.value_heads, S = s.num_value;
  const int64_t Dk = s.key_dim, Dv = s.value_dim, LP = s.num_levels * s.num_points;
  const int64_t tasks = s.batch * s.num_query * M;
  std::vector<acc_t> value_coef(tasks * LP), key_coef(tasks * LP);

  at::parallel_for(0, tasks, grain_for(LP * 8 * (Dk + Dv)), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> q(Dk), g(Dv);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t m = t % M;
      const int64_t b = t / M / s.num_query;
      const int64_t vh = Mv == 1 ? 0 : m;
      const HeadRows<scalar_t> v_rows{value + (b * S * Mv + vh) * Dv, Mv * Dv};
      const HeadRows<scalar_t> k_rows =
          key ? HeadRows<scalar_t>{key + (b * S * Mv + vh) * Dk, Mv * Dk} : v_rows;
      to_acc(query + t * Dk, q.data(), Dk);
      to_acc(grad_output + t * Dv, g.data(), Dv);
      const acc_t delta = dot(g.data(), output + t * Dv, Dv);  // g . o
      const acc_t lse = logsumexp[t];
      const acc_t* tloc = loc + t * LP * 2;
      acc_t* dq = grad_query + t * Dk;
      acc_t* dloc = grad_loc + t * LP * 2;
      std::fill(dq, dq + Dk, acc_t(0));
      for (int64_t i = 0; i < LP; ++i) {
        BilinearCorners<acc_t> c;
        dloc[2 * i] = 0;
        dloc[2 * i + 1] = 0;
        value_coef[t * LP + i] = 0;
        key_coef[t * LP + i] = 0;
        if (!corners_of(lv, tloc, i, c)) continue;  // zero key and value: no gradient flows
        acc_t qk[4] = {0, 0, 0, 0}, gv[4] = {0, 0, 0, 0};
        acc_t logit = 0, dattn = 0;
        for (int k = 0; k < 4; ++k) {
          if (c.index[k] < 0) continue;
          qk[k] = dot(q.data(), k_rows.base + c.index[k] * k_rows.row_stride, Dk);
          gv[k] = dot(g.data(), v_rows.base + c.index[k] * v_rows.row_stride, Dv);
          logit += c.weight[k] * qk[k];
          dattn += c.weight[k] * gv[k];
        }
        logit *= scale;
        const acc_t attn = std::exp(logit - lse);
        const acc_t dlogit_scaled = scale * attn * (dattn - delta);
        acc_t dx = 0, dy = 0;
        for (int k = 0; k < 4; ++k) {
          if (c.index[k] < 0) continue;
          axpy(dlogit_scaled * c.weight[k], k_rows.base + c.index[k] * k_rows.row_stride, dq, Dk);
          const acc_t through_sample = attn * gv[k] + dlogit_scaled * qk[k];
          dx += c.dweight_dx[k] * through_sample;
          dy += c.dweight_dy[k] * through_sample;
        }
        dloc[2 * i] = dx;
        dloc[2 * i + 1] = dy;
        value_coef[t * LP + i] = attn;
        key_coef[t * LP + i] = dlogit_scaled;
      }
    }
  });

  scatter_value_key_grads<scalar_t, acc_t>(
      s, lv, loc, value_coef.data(), grad_output, grad_value, key_coef.data(), query,
      key ? grad_key : grad_value);
}

template <typename scalar_t, typename acc_t>
void msda_backward_kernel(
    const SamplingSizes& s,
    const Levels& lv,
    const scalar_t* grad_output,
    const scalar_t* value,
    const acc_t* loc,
    const acc_t* weights,
    acc_t* grad_value,
    acc_t* grad_loc,
    acc_t* grad_weights) {
  const int64_t M = s.num_heads, Mv = s.value_heads, S = s.num_value;
  const int64_t Dv = s.value_dim, LP = s.num_levels * s.num_points;
  const int64_t tasks = s.batch * s.num_query * M;
  at::parallel_for(0, tasks, grain_for(LP * 4 * Dv), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> g(Dv);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t m = t % M;
      const int64_t b = t / M / s.num_query;
      const int64_t vh = Mv == 1 ? 0 : m;
      const scalar_t* v_base = value + (b * S * Mv + vh) * Dv;
      to_acc(grad_output + t * Dv, g.data(), Dv);
      const acc_t* tloc = loc + t * LP * 2;
      for (int64_t i = 0; i < LP; ++i) {
        BilinearCorners<acc_t> c;
        acc_t dattn = 0, dx = 0, dy = 0;
        if (corners_of(lv, tloc, i, c)) {
          for (int k = 0; k < 4; ++k) {
            if (c.index[k] < 0) continue;
            const acc_t gv = dot(g.data(), v_base + c.index[k] * Mv * Dv, Dv);
            dattn += c.weight[k] * gv;
            dx += c.dweight_dx[k] * gv;
            dy += c.dweight_dy[k] * gv;
          }
        }
        const acc_t a = weights[t * LP + i];
        grad_weights[t * LP + i] = dattn;
        grad_loc[t * LP * 2 + 2 * i] = a * dx;
        grad_loc[t * LP * 2 + 2 * i + 1] = a * dy;
      }
    }
  });
  scatter_value_key_grads<scalar_t, acc_t>(
      s, lv, loc, weights, grad_output, grad_value, nullptr, nullptr, nullptr);
}

void check_cpu(const at::Tensor& value) {
  TORCH_CHECK(value.device().is_cpu(), "lite_detr: expected CPU tensors, got ", value.device());
}

Levels levels_of(const SamplingSizes& s, const at::Tensor& spatial_shapes, const at::Tensor& starts) {
  return Levels{
      spatial_shapes.data_ptr<int64_t>(), starts.data_ptr<int64_t>(), s.num_levels, s.num_points};
}

template <typename T>
const T* optional_ptr(const std::optional<at::Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->data_ptr<T>() : nullptr;
}

} // namespace

std::tuple<at::Tensor, at::Tensor> kda_forward_cpu(
    const at::Tensor& query,
    const std::optional<at::Tensor>& key,
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    double scale) {
  check_cpu(value);
  const SamplingSizes s =
      check_kda_inputs(query, key, value, spatial_shapes, level_start_index, sampling_locations);
  check_level_layout_on_host(spatial_shapes, level_start_index, s.num_value);
  auto output = at::empty({s.batch, s.num_query, s.num_heads * s.value_dim}, value.options());
  auto logsumexp = at::empty(
      {s.batch, s.num_query, s.num_heads}, value.options().dtype(opmath_dtype(value.scalar_type())));
  if (output.numel() == 0) return {output, logsumexp};
  const Levels lv = levels_of(s, spatial_shapes, level_start_index);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "kda_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    kda_forward_kernel<scalar_t, acc_t>(
        s, lv, query.data_ptr<scalar_t>(), optional_ptr<scalar_t>(key), value.data_ptr<scalar_t>(),
        sampling_locations.data_ptr<acc_t>(), static_cast<acc_t>(scale), output.data_ptr<scalar_t>(),
        logsumexp.data_ptr<acc_t>());
  });
  return {output, logsumexp};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kda_backward_cpu(
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
  check_cpu(value);
  const SamplingSizes s =
      check_kda_inputs(query, key, value, spatial_shapes, level_start_index, sampling_locations);
  check_level_layout_on_host(spatial_shapes, level_start_index, s.num_value);
  const std::vector<int64_t> out_shape{s.batch, s.num_query, s.num_heads * s.value_dim};
  check_same_shape(grad_output_in, "grad_output", out_shape);
  check_same_shape(output, "output", out_shape);
  check_same_shape(logsumexp, "logsumexp", {s.batch, s.num_query, s.num_heads});
  const auto acc_dtype = opmath_dtype(value.scalar_type());
  const auto grad_output = grad_output_in.to(value.scalar_type()).contiguous();
  const auto output_c = output.to(value.scalar_type()).contiguous();
  const auto lse = logsumexp.to(acc_dtype).contiguous();
  const bool has_key = key.has_value() && key->defined();

  auto acc_opts = value.options().dtype(acc_dtype);
  auto grad_query = at::zeros(query.sizes(), acc_opts);
  auto grad_value = at::zeros(value.sizes(), acc_opts);
  auto grad_key = has_key ? at::zeros(key->sizes(), acc_opts) : at::empty({0}, value.options());
  auto grad_loc = at::zeros(sampling_locations.sizes(), acc_opts);
  if (grad_output.numel() > 0) {
    const Levels lv = levels_of(s, spatial_shapes, level_start_index);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "kda_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      kda_backward_kernel<scalar_t, acc_t>(
          s, lv, grad_output.data_ptr<scalar_t>(), query.data_ptr<scalar_t>(),
          optional_ptr<scalar_t>(key), value.data_ptr<scalar_t>(), sampling_locations.data_ptr<acc_t>(),
          output_c.data_ptr<scalar_t>(), lse.data_ptr<acc_t>(), static_cast<acc_t>(scale),
          grad_query.data_ptr<acc_t>(), has_key ? grad_key.data_ptr<acc_t>() : nullptr,
          grad_value.data_ptr<acc_t>(), grad_loc.data_ptr<acc_t>());
    });
  }
  const auto dtype = value.scalar_type();
  return {
      grad_query.to(dtype), has_key ? grad_key.to(dtype) : grad_key, grad_value.to(dtype), grad_loc};
}

at::Tensor msda_forward_cpu(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  check_cpu(value);
  const SamplingSizes s = check_msda_inputs(
      value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  check_level_layout_on_host(spatial_shapes, level_start_index, s.num_value);
  auto output = at::empty({s.batch, s.num_query, s.num_heads * s.value_dim}, value.options());
  if (output.numel() == 0) return output;
  const Levels lv = levels_of(s, spatial_shapes, level_start_index);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "msda_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    msda_forward_kernel<scalar_t, acc_t>(
        s, lv, value.data_ptr<scalar_t>(), sampling_locations.data_ptr<acc_t>(),
        attention_weights.data_ptr<acc_t>(), output.data_ptr<scalar_t>());
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> msda_backward_cpu(
    const at::Tensor& grad_output_in,
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  check_cpu(value);
  const SamplingSizes s = check_msda_inputs(
      value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  check_level_layout_on_host(spatial_shapes, level_start_index, s.num_value);
  check_same_shape(grad_output_in, "grad_output", {s.batch, s.num_query, s.num_heads * s.value_dim});
  const auto grad_output = grad_output_in.to(value.scalar_type()).contiguous();
  auto acc_opts = value.options().dtype(opmath_dtype(value.scalar_type()));
  auto grad_value = at::zeros(value.sizes(), acc_opts);
  auto grad_loc = at::zeros(sampling_locations.sizes(), acc_opts);
  auto grad_weights = at::zeros(attention_weights.sizes(), acc_opts);
  if (grad_output.numel() > 0) {
    const Levels lv = levels_of(s, spatial_shapes, level_start_index);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "msda_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      msda_backward_kernel<scalar_t, acc_t>(
          s, lv, grad_output.data_ptr<scalar_t>(), value.data_ptr<scalar_t>(),
          sampling_locations.data_ptr<acc_t>(), attention_weights.data_ptr<acc_t>(),
          grad_value.data_ptr<acc_t>(), grad_loc.data_ptr<acc_t>(), grad_weights.data_ptr<acc_t>());
    });
  }
  return {grad_value.to(value.scalar_type()), grad_loc, grad_weights};
}

TORCH_LIBRARY_IMPL(lite_detr, CPU, m) {
  m.impl("kda_forward", &kda_forward_cpu);
  m.impl("kda_backward", &kda_backward_cpu);
  m.impl("msda_forward", &msda_forward_cpu);
  m.impl("msda_backward", &msda_backward_cpu);
}

} // namespace lite_detr
