// CPU implementation of the lite_detr ops: argument checks, allocation, and the
// choice of kernel build (baseline, AVX2+FMA or AVX-512) for this processor.
// The kernels themselves are in cpu_kernels_impl.h.
#include "../ops.h"
#include "../checks.h"
#include "../sampling.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>
#include <c10/util/BFloat16.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define LITE_DETR_X86_MULTI_ISA 1
#endif

namespace lite_detr {
namespace {

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

Levels levels_of(const SamplingSizes& s, const at::Tensor& spatial_shapes, const at::Tensor& starts) {
  return Levels{
      spatial_shapes.data_ptr<int64_t>(), starts.data_ptr<int64_t>(), s.num_levels, s.num_points};
}

void check_cpu(const at::Tensor& value) {
  TORCH_CHECK(value.device().is_cpu(), "lite_detr: expected CPU tensors, got ", value.device());
}

#define LITE_DETR_CPU_ISA isa_base
#include "cpu_kernels_impl.h"
#undef LITE_DETR_CPU_ISA

#ifdef LITE_DETR_X86_MULTI_ISA
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define LITE_DETR_CPU_ISA isa_avx2
#include "cpu_kernels_impl.h"
#undef LITE_DETR_CPU_ISA
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")
#define LITE_DETR_CPU_ISA isa_avx512
#include "cpu_kernels_impl.h"
#undef LITE_DETR_CPU_ISA
#pragma GCC pop_options
#endif

enum class CpuIsa { kBase, kAvx2, kAvx512 };

const char* isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx2:
      return "avx2";
    default:
      return "base";
  }
}

CpuIsa best_supported_isa() {
#ifdef LITE_DETR_X86_MULTI_ISA
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return avx512 ? CpuIsa::kAvx512 : avx2 ? CpuIsa::kAvx2 : CpuIsa::kBase;
#else
  return CpuIsa::kBase;
#endif
}

// The widest kernel build this processor runs; LITE_DETR_CPU_ISA=base|avx2|avx512
// asks for a narrower one (tests use it to cover every build).
CpuIsa cpu_isa() {
  static const CpuIsa isa = [] {
    const CpuIsa best = best_supported_isa();
    const char* wanted = std::getenv("LITE_DETR_CPU_ISA");
    if (wanted == nullptr || *wanted == 0) return best;
    for (CpuIsa candidate : {CpuIsa::kBase, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
      if (std::strcmp(wanted, isa_name(candidate)) == 0) {
        TORCH_CHECK(
            static_cast<int>(candidate) <= static_cast<int>(best), "lite_detr: LITE_DETR_CPU_ISA=", wanted,
            " is not supported by this processor or build (best: ", isa_name(best), ")");
        return candidate;
      }
    }
    TORCH_CHECK(false, "lite_detr: LITE_DETR_CPU_ISA must be base, avx2 or avx512, got '", wanted, "'");
  }();
  return isa;
}

#ifdef LITE_DETR_X86_MULTI_ISA
#define LITE_DETR_CALL_FOR_CPU_ISA(fn, ...)  \
  switch (cpu_isa()) {                       \
    case CpuIsa::kAvx512:                    \
      isa_avx512::fn(__VA_ARGS__);           \
      break;                                 \
    case CpuIsa::kAvx2:                      \
      isa_avx2::fn(__VA_ARGS__);             \
      break;                                 \
    default:                                 \
      isa_base::fn(__VA_ARGS__);             \
  }
#else
#define LITE_DETR_CALL_FOR_CPU_ISA(fn, ...) isa_base::fn(__VA_ARGS__)
#endif

} // namespace

std::string cpu_capability() {
  return isa_name(cpu_isa());
}

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
  LITE_DETR_CALL_FOR_CPU_ISA(
      kda_forward, s, lv, query, key, value, sampling_locations, scale, output, logsumexp);
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
    LITE_DETR_CALL_FOR_CPU_ISA(
        kda_backward, s, lv, grad_output, query, key, value, sampling_locations, output_c, lse, scale,
        grad_query, grad_key, grad_value, grad_loc);
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
  LITE_DETR_CALL_FOR_CPU_ISA(msda_forward, s, lv, value, sampling_locations, attention_weights, output);
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
    LITE_DETR_CALL_FOR_CPU_ISA(
        msda_backward, s, lv, grad_output, value, sampling_locations, attention_weights, grad_value, grad_loc,
        grad_weights);
  }
  return {grad_value.to(value.scalar_type()), grad_loc, grad_weights};
}

TORCH_LIBRARY_IMPL(lite_detr, CPU, m) {
  m.impl("kda_forward", &WithContiguousArgs<&kda_forward_cpu>::call);
  m.impl("_kda_backward", &WithContiguousArgs<&kda_backward_cpu>::call);
  m.impl("msda_forward", &WithContiguousArgs<&msda_forward_cpu>::call);
  m.impl("_msda_backward", &WithContiguousArgs<&msda_backward_cpu>::call);
}

} // namespace lite_detr
