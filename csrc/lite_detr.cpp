// The lite_detr operator library: every schema is defined here, once.
// CPU kernels register in csrc/deformable_attn/cpu/, CUDA kernels in
// csrc/deformable_attn/cuda/. The library is a plain shared object, not a Python
// module: lite_detr_plugin/ops/_extension.py loads it with torch.ops.load_library,
// which runs the registrations below. The backward ops are private (leading
// underscore): autograd calls them, users call the forward ones.
#include <torch/library.h>

#include "deformable_attn/ops.h"

#include <string>

namespace {

std::string build_info() {
  std::string info = "cpu";
#ifdef LITE_DETR_WITH_CUDA
  info += ";cuda";
#endif
  return info;
}

} // namespace

TORCH_LIBRARY(lite_detr, m) {
  m.def(
      "kda_forward(Tensor query, Tensor? key, Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_locations, float scale) -> (Tensor, Tensor)");
  m.def(
      "_kda_backward(Tensor grad_output, Tensor query, Tensor? key, Tensor value, "
      "Tensor spatial_shapes, Tensor level_start_index, Tensor sampling_locations, "
      "Tensor output, Tensor logsumexp, float scale) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "msda_forward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights) -> Tensor");
  m.def(
      "_msda_backward(Tensor grad_output, Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_locations, Tensor attention_weights) "
      "-> (Tensor, Tensor, Tensor)");
  m.def("build_info() -> str", &build_info);
  m.def("cpu_capability() -> str", &lite_detr::cpu_capability);
}
