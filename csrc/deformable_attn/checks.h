// Argument checks shared by the CPU and CUDA implementations, and the adapter
// that makes every tensor argument contiguous. The Python wrapper checks the
// same things first with ValueErrors; these checks keep a direct
// torch.ops.lite_detr.* call from ever reading out of bounds.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/util/Optional.h>

#include <optional>

namespace lite_detr {

struct SamplingSizes {
  int64_t batch = 0;       // B
  int64_t num_query = 0;   // Nq
  int64_t num_heads = 0;   // M (query heads)
  int64_t num_levels = 0;  // L
  int64_t num_points = 0;  // P
  int64_t num_value = 0;   // S = sum_l H_l * W_l
  int64_t value_heads = 0; // 1 (shared by all query heads) or M
  int64_t key_dim = 0;     // Dk
  int64_t value_dim = 0;   // Dv
};

inline at::ScalarType opmath_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_tensor(
    const at::Tensor& t,
    const char* name,
    int64_t dim,
    const char* layout,
    const at::Tensor& reference) {
  TORCH_CHECK(
      t.dim() == dim, "lite_detr: ", name, " must be a ", dim, "-D tensor ",
      layout, ", got shape ", t.sizes());
  TORCH_CHECK(
      t.device() == reference.device(), "lite_detr: ", name,
      " must be on the same device as value (", reference.device(),
      "), got ", t.device());
  // The kernels index row-major buffers; WithContiguousArgs guarantees it.
  TORCH_INTERNAL_ASSERT(t.is_contiguous(), "lite_detr: ", name, " reached a kernel non-contiguous");
}

// Checks the inputs shared by kda and msda and returns their sizes.
inline SamplingSizes check_sampling_inputs(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations) {
  TORCH_CHECK(
      value.dim() == 4, "lite_detr: value must be a 4-D tensor [B, S, Mv, Dv], got shape ",
      value.sizes());
  TORCH_CHECK(
      value.scalar_type() == at::kFloat || value.scalar_type() == at::kDouble ||
          value.scalar_type() == at::kHalf || value.scalar_type() == at::kBFloat16,
      "lite_detr: value must be float32, float64, float16 or bfloat16, got ",
      value.scalar_type());
  TORCH_INTERNAL_ASSERT(value.is_contiguous(), "lite_detr: value reached a kernel non-contiguous");
  check_tensor(spatial_shapes, "spatial_shapes", 2, "[L, 2]", value);
  check_tensor(level_start_index, "level_start_index", 1, "[L]", value);
  check_tensor(sampling_locations, "sampling_locations", 6, "[B, Nq, M, L, P, 2]", value);
  TORCH_CHECK(
      spatial_shapes.scalar_type() == at::kLong && level_start_index.scalar_type() == at::kLong,
      "lite_detr: spatial_shapes and level_start_index must be int64, got ",
      spatial_shapes.scalar_type(), " and ", level_start_index.scalar_type());
  TORCH_CHECK(
      spatial_shapes.size(1) == 2, "lite_detr: spatial_shapes must be [L, 2] (H, W), got shape ",
      spatial_shapes.sizes());
  const auto loc_dtype = opmath_dtype(value.scalar_type());
  TORCH_CHECK(
      sampling_locations.scalar_type() == loc_dtype, "lite_detr: sampling_locations must be ",
      loc_dtype, " for ", value.scalar_type(), " values, got ", sampling_locations.scalar_type());

  SamplingSizes s;
  s.batch = value.size(0);
  s.num_value = value.size(1);
  s.value_heads = value.size(2);
  s.value_dim = value.size(3);
  s.num_query = sampling_locations.size(1);
  s.num_heads = sampling_locations.size(2);
  s.num_levels = sampling_locations.size(3);
  s.num_points = sampling_locations.size(4);
  TORCH_CHECK(
      sampling_locations.size(0) == s.batch && sampling_locations.size(5) == 2,
      "lite_detr: sampling_locations must be [B=", s.batch, ", Nq, M, L, P, 2], got shape ",
      sampling_locations.sizes());
  TORCH_CHECK(
      spatial_shapes.size(0) == s.num_levels && level_start_index.size(0) == s.num_levels,
      "lite_detr: sampling_locations has L=", s.num_levels,
      " levels but spatial_shapes has ", spatial_shapes.size(0),
      " and level_start_index has ", level_start_index.size(0));
  TORCH_CHECK(s.num_levels >= 1 && s.num_points >= 1, "lite_detr: need at least one level and one point");
  TORCH_CHECK(
      s.value_heads == s.num_heads || s.value_heads == 1, "lite_detr: value has ", s.value_heads,
      " heads; expected M=", s.num_heads, " (one per query head) or 1 (shared by all heads)");
  TORCH_CHECK(s.value_dim >= 1, "lite_detr: value must have at least one channel");
  return s;
}

// Validates spatial_shapes and level_start_index against the value length.
// Reads their values, so it is only called where they live on the host.
inline void check_level_layout_on_host(
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    int64_t num_value) {
  const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
  const int64_t* starts = level_start_index.data_ptr<int64_t>();
  int64_t total = 0;
  for (int64_t l = 0; l < spatial_shapes.size(0); ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
    TORCH_CHECK(
        H >= 1 && W >= 1, "lite_detr: spatial_shapes[", l, "] must be positive (H, W), got (", H,
        ", ", W, ")");
    TORCH_CHECK(
        starts[l] == total, "lite_detr: level_start_index[", l, "] must be ", total,
        " (the cumulative sum of H*W of the previous levels), got ", starts[l]);
    // Compared without forming H*W, which could overflow int64.
    TORCH_CHECK(
        H <= num_value - total && W <= (num_value - total) / H, "lite_detr: sum of H*W over spatial_shapes ",
        "exceeds the S=", num_value, " tokens of value (level ", l, " is ", H, "x", W, ")");
    total += H * W;
  }
  TORCH_CHECK(
      total == num_value, "lite_detr: sum of H*W over spatial_shapes is ", total,
      " but value has S=", num_value, " tokens");
}

inline SamplingSizes check_kda_inputs(
    const at::Tensor& query,
    const std::optional<at::Tensor>& key,
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations) {
  SamplingSizes s =
      check_sampling_inputs(value, spatial_shapes, level_start_index, sampling_locations);
  check_tensor(query, "query", 4, "[B, Nq, M, Dk]", value);
  TORCH_CHECK(
      query.scalar_type() == value.scalar_type(), "lite_detr: query dtype ", query.scalar_type(),
      " must match value dtype ", value.scalar_type());
  TORCH_CHECK(
      query.size(0) == s.batch && query.size(1) == s.num_query && query.size(2) == s.num_heads,
      "lite_detr: query must be [B=", s.batch, ", Nq=", s.num_query, ", M=", s.num_heads,
      ", Dk], got shape ", query.sizes());
  s.key_dim = query.size(3);
  if (key.has_value() && key->defined()) {
    check_tensor(*key, "key", 4, "[B, S, Mv, Dk]", value);
    TORCH_CHECK(
        key->scalar_type() == value.scalar_type(), "lite_detr: key dtype ", key->scalar_type(),
        " must match value dtype ", value.scalar_type());
    TORCH_CHECK(
        key->size(0) == s.batch && key->size(1) == s.num_value && key->size(2) == s.value_heads &&
            key->size(3) == s.key_dim,
        "lite_detr: key must be [B=", s.batch, ", S=", s.num_value, ", Mv=", s.value_heads,
        ", Dk=", s.key_dim, "], got shape ", key->sizes());
  } else {
    TORCH_CHECK(
        s.key_dim == s.value_dim, "lite_detr: with key=None (key shared with value) query must have Dk == Dv=",
        s.value_dim, ", got Dk=", s.key_dim);
  }
  return s;
}

inline SamplingSizes check_msda_inputs(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  SamplingSizes s =
      check_sampling_inputs(value, spatial_shapes, level_start_index, sampling_locations);
  check_tensor(attention_weights, "attention_weights", 5, "[B, Nq, M, L, P]", value);
  const auto w_dtype = opmath_dtype(value.scalar_type());
  TORCH_CHECK(
      attention_weights.scalar_type() == w_dtype, "lite_detr: attention_weights must be ", w_dtype,
      " for ", value.scalar_type(), " values, got ", attention_weights.scalar_type());
  TORCH_CHECK(
      attention_weights.size(0) == s.batch && attention_weights.size(1) == s.num_query &&
          attention_weights.size(2) == s.num_heads && attention_weights.size(3) == s.num_levels &&
          attention_weights.size(4) == s.num_points,
      "lite_detr: attention_weights must be [B=", s.batch, ", Nq=", s.num_query, ", M=",
      s.num_heads, ", L=", s.num_levels, ", P=", s.num_points, "], got shape ",
      attention_weights.sizes());
  return s;
}

// Any strides are accepted: the registered kernel of each op is
// WithContiguousArgs<&kernel>::call, which passes contiguous copies of the
// tensor arguments that are not contiguous (and the others as they are) to the
// kernel, as torchvision's ops do.
inline at::Tensor contiguous_arg(const at::Tensor& t) {
  return t.defined() ? t.contiguous() : t;
}

inline std::optional<at::Tensor> contiguous_arg(const std::optional<at::Tensor>& t) {
  if (!t.has_value() || !t->defined()) return t;
  return t->contiguous();
}

inline double contiguous_arg(double x) {
  return x;
}

template <auto kernel>
struct WithContiguousArgs;

template <typename Result, typename... Args, Result (*kernel)(Args...)>
struct WithContiguousArgs<kernel> {
  static Result call(Args... args) {
    return kernel(contiguous_arg(args)...);
  }
};

inline void check_same_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected) {
  TORCH_CHECK(
      t.sizes() == expected, "lite_detr: ", name, " must have shape ", expected, ", got ",
      t.sizes());
}

} // namespace lite_detr
