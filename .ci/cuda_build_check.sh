#!/usr/bin/env bash
# Compile the CUDA kernels against PyTorch's CUDA headers so that a CUDA compile
# error cannot land unseen. The machine's own nvcc need not match torch's CUDA,
# so this uses PyTorch 2.15 (CUDA 13.2) with PyPI's matching nvcc 13.2, in a
# cached virtualenv outside the clone. The build goes to a temporary folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${LITE_DETR_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lite_detr_plugin}
venv=$cache/cuda-build-venv
py=$venv/bin/python
wanted="2.15.0+cu132"

if ! { [ -x "$py" ] && "$py" -c "import torch, sys; sys.exit(torch.__version__ != '$wanted')" 2>/dev/null; }; then
  echo "+ creating $venv (torch $wanted and nvcc 13.2 from PyPI)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade "setuptools<81" wheel ninja
  "$venv/bin/pip" install -q "torch==2.15.0" "nvidia-cuda-nvcc==13.2.*" "nvidia-nvvm==13.2.*" \
    "nvidia-cuda-crt==13.2.*" "nvidia-cuda-runtime==13.2.*"
fi

# PyPI's CUDA packages unpack into site-packages/nvidia/cu13 with lib/ (not lib64/)
# and no unversioned libcudart.so: assemble a CUDA_HOME of links.
nv=$("$py" -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13'))")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/cuda/lib64"
ln -s "$nv/bin" "$work/cuda/bin"
ln -s "$nv/include" "$work/cuda/include"
ln -s "$nv/nvvm" "$work/cuda/nvvm"
for f in "$nv"/lib/*; do ln -s "$f" "$work/cuda/lib64/$(basename "$f")"; done
ln -s libcudart.so.13 "$work/cuda/lib64/libcudart.so"

# The install matrix on this CUDA torch without a GPU (setup.py only plans here: no compile).
cd "$root"
plan() { env -u TORCH_CUDA_ARCH_LIST -u FORCE_CUDA "$@" "$py" setup.py --name 2>&1 >/dev/null | grep '^lite_detr_plugin:'; }
line=$(plan CUDA_HOME="$work/cuda")
echo "+ no GPU, no TORCH_CUDA_ARCH_LIST: $line"
case $line in *"no visible GPU: the architectures PyTorch was built for"*) ;; *) echo "unexpected build plan" >&2; exit 1 ;; esac
mkdir -p "$work/old_cuda/bin"  # a toolkit older than torch's CUDA 13.2, as nvcc 13.0 is
printf '#!/bin/sh\necho "Cuda compilation tools, release 13.0, V13.0.88"\n' >"$work/old_cuda/bin/nvcc"
chmod +x "$work/old_cuda/bin/nvcc"
line=$(plan CUDA_HOME="$work/old_cuda")
echo "+ nvcc 13.0 against torch's CUDA 13.2: $line"
case $line in *"WARNING: building WITHOUT the CUDA kernels: nvcc 13.0"*) ;; *) echo "expected a CPU-only warning" >&2; exit 1 ;; esac
if env FORCE_CUDA=1 CUDA_HOME="$work/old_cuda" "$py" setup.py --name >/dev/null 2>&1; then
  echo "FORCE_CUDA=1 with nvcc 13.0 must fail" >&2; exit 1
fi
echo "+ FORCE_CUDA=1 with nvcc 13.0 fails as it should"

export CUDA_HOME=$work/cuda PATH=$work/cuda/bin:$PATH FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-2}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0"}
echo "+ compiling the CUDA kernels: nvcc $(nvcc --version | tail -n 2 | head -n 1), archs $TORCH_CUDA_ARCH_LIST"
cd "$root"
"$py" setup.py -q build_ext --build-temp "$work/temp" --build-lib "$work/lib"
"$py" - "$work/lib" <<'PY'
import glob, sys
import torch
# Load the library alone: importing the package would need its runtime dependencies here.
(library,) = glob.glob(f"{sys.argv[1]}/lite_detr_plugin/_C*.so")
torch.ops.load_library(library)
for op in ("kda_forward", "_kda_backward", "msda_forward", "_msda_backward"):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"lite_detr::{op}", "CUDA"), op
print("+ CUDA kernels compiled and registered:", torch.ops.lite_detr.build_info())
PY
