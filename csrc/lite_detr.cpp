// The lite_detr operator library: every schema is defined here, once.
// CPU kernels register in csrc/kda/cpu/, CUDA kernels in csrc/kda/cuda/.
#include <Python.h>
#include <torch/library.h>

#include "kda/kda.h"

#include <string>

// A Python module so that `import lite_detr_plugin._C` loads the library and
// runs the registrations below; the ops themselves live in torch.ops.lite_detr.
static struct PyModuleDef lite_detr_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit__C(void) {
  return PyModule_Create(&lite_detr_module);
}

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
      "kda_backward(Tensor grad_output, Tensor query, Tensor? key, Tensor value, "
      "Tensor spatial_shapes, Tensor level_start_index, Tensor sampling_locations, "
      "Tensor output, Tensor logsumexp, float scale) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "msda_forward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights) -> Tensor");
  m.def(
      "msda_backward(Tensor grad_output, Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_locations, Tensor attention_weights) "
      "-> (Tensor, Tensor, Tensor)");
  m.def("build_info() -> str", &build_info);
  m.def("cpu_capability() -> str", &lite_detr::cpu_capability);
}
