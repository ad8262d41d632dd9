// Declarations of the KDA / MSDA kernels. The schemas live in csrc/lite_detr.cpp.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <tuple>

namespace lite_detr {

// Shapes (B batch, Nq queries, M heads, Mv value heads in {1, M}, S tokens,
// L levels, P points):
//   query [B, Nq, M, Dk], key [B, S, Mv, Dk] or None (key = value),
//   value [B, S, Mv, Dv], spatial_shapes [L, 2] int64 (H, W),
//   level_start_index [L] int64, sampling_locations [B, Nq, M, L, P, 2] (x, y)
//   in [0, 1], attention_weights [B, Nq, M, L, P].
// kda_forward returns (output [B, Nq, M*Dv], logsumexp [B, Nq, M]).

std::tuple<at::Tensor, at::Tensor> kda_forward_cpu(
    const at::Tensor& query,
    const std::optional<at::Tensor>& key,
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    double scale);

// Returns (grad_query, grad_key, grad_value, grad_sampling_locations);
// grad_key is an empty tensor when key is None.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kda_backward_cpu(
    const at::Tensor& grad_output,
    const at::Tensor& query,
    const std::optional<at::Tensor>& key,
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& output,
    const at::Tensor& logsumexp,
    double scale);

at::Tensor msda_forward_cpu(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

// Returns (grad_value, grad_sampling_locations, grad_attention_weights).
std::tuple<at::Tensor, at::Tensor, at::Tensor> msda_backward_cpu(
    const at::Tensor& grad_output,
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

// CUDA kernels (csrc/deformable_attn/cuda/cuda_kernels.cu), built when LITE_DETR_WITH_CUDA
// is defined; same signatures and semantics as the CPU ones above.
std::tuple<at::Tensor, at::Tensor> kda_forward_cuda(
    const at::Tensor& query,
    const std::optional<at::Tensor>& key,
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    double scale);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kda_backward_cuda(
    const at::Tensor& grad_output,
    const at::Tensor& query,
    const std::optional<at::Tensor>& key,
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& output,
    const at::Tensor& logsumexp,
    double scale);

at::Tensor msda_forward_cuda(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

std::tuple<at::Tensor, at::Tensor, at::Tensor> msda_backward_cuda(
    const at::Tensor& grad_output,
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

// The instruction set of the CPU kernel build in use: "base", "avx2" or "avx512".
std::string cpu_capability();

} // namespace lite_detr
