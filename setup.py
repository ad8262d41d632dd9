"""Build lite_detr_plugin and its compiled op library ``lite_detr_plugin._C``.

The CPU kernels are always built. The CUDA kernels are built when PyTorch has
CUDA support and a CUDA toolkit whose nvcc can compile against PyTorch's CUDA
headers is found (``CUDA_HOME``); ``FORCE_CUDA=1`` makes a failure to do so an
error, ``FORCE_CUDA=0`` disables them. ``TORCH_CUDA_ARCH_LIST`` picks the GPU
architectures; without it and without a visible GPU, the architectures PyTorch
was built for (lite_detr_plugin/_build_config.py decides; the build prints one
line saying what it builds, and writes it to lite_detr_plugin/_build.json for
``ops.build_info()``). Install with ``pip install --no-build-isolation .`` so
the build sees your installed torch.
"""
import glob
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError as exc:  # pragma: no cover - only hit by a broken install command
    raise SystemExit(
        "lite_detr_plugin builds against your installed PyTorch: install torch first, then run "
        "`pip install --no-build-isolation .`"
    ) from exc

ROOT = os.path.dirname(os.path.abspath(__file__))


def read_version() -> str:
    """``__version__`` of lite_detr_plugin/__init__.py, read as text (importing it needs the built library)."""
    with open(os.path.join(ROOT, "lite_detr_plugin", "__init__.py"), encoding="utf-8") as f:
        match = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.MULTILINE)
    if match is None:
        raise SystemExit("lite_detr_plugin/__init__.py has no `__version__ = \"...\"` line")
    return match.group(1)


VERSION = read_version()


def _load_build_config():
    # By path: importing lite_detr_plugin (its __init__) needs the built library.
    path = os.path.join(ROOT, "lite_detr_plugin", "_build_config.py")
    spec = importlib.util.spec_from_file_location("_lite_detr_build_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_config = _load_build_config()


def _run(command) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _gpu_capabilities():
    if torch.version.cuda is None:
        return []
    try:
        return [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]
    except RuntimeError:  # a driver without a usable GPU
        return []


def plan_build():
    nvcc = os.path.join(CUDA_HOME, "bin", "nvcc") if CUDA_HOME else None
    try:
        return build_config.plan_build(
            env=os.environ,
            torch_cuda=torch.version.cuda,
            torch_archs=torch.cuda.get_arch_list() if torch.version.cuda else [],
            gpu_capabilities=_gpu_capabilities(),
            cuda_home=CUDA_HOME,
            nvcc_version=build_config.parse_nvcc_version(_run([nvcc, "--version"])) if nvcc else None,
        )
    except build_config.BuildConfigError as exc:
        raise SystemExit(f"lite_detr_plugin: ERROR: {exc}") from None


PLAN = plan_build()
print(PLAN.summary(), file=sys.stderr)
if PLAN.cuda:
    # torch's cpp_extension reads it; without it and without a GPU it raises an IndexError.
    os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(PLAN.arch_list)


class BuildExtensionWithRecord(BuildExtension):
    """Also writes what was built to ``_build.json`` beside the library (read by ``ops.build_info()``)."""

    def run(self):
        super().run()
        compiler = os.environ.get("CXX", "c++")
        record = build_config.build_record(
            PLAN,
            torch_version=torch.__version__,
            torch_cuda=torch.version.cuda,
            isas=build_config.cpu_isas(platform.machine(), _run([compiler, "--version"])),
        )
        with open(self._record_path(), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, sort_keys=True)

    def _record_path(self):
        return os.path.join(os.path.dirname(self.get_ext_fullpath("lite_detr_plugin._C")), "_build.json")

    def get_outputs(self):
        return super().get_outputs() + [self._record_path()]


def extensions():
    csrc = os.path.join(ROOT, "csrc")
    sources = [os.path.join(csrc, "lite_detr.cpp")]
    sources += sorted(glob.glob(os.path.join(csrc, "*", "cpu", "*.cpp")))
    cxx_flags = ["-O3"]
    link_flags = []
    if torch._C.has_openmp:
        # at::parallel_for only runs in parallel when compiled with OpenMP; the
        # runtime resolves to the libgomp that torch already loaded.
        cxx_flags.append("-fopenmp")
        link_flags.append("-fopenmp")
    define_macros = []
    extension = CppExtension
    extra_compile_args = {"cxx": cxx_flags}
    if PLAN.cuda:
        extension = CUDAExtension
        sources += sorted(glob.glob(os.path.join(csrc, "*", "cuda", "*.cu")))
        define_macros.append(("LITE_DETR_WITH_CUDA", None))
        extra_compile_args["nvcc"] = ["-O3", "-lineinfo"]
    return [
        extension(
            "lite_detr_plugin._C",
            sources=[os.path.relpath(s, ROOT) for s in sources],
            include_dirs=[csrc],
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=link_flags,
        )
    ]


setup(
    name="lite_detr_plugin",
    version=VERSION,
    description="Lite DETR (interleaved encoder, key-aware deformable attention) for detectron2/detrex",
    long_description=open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    if os.path.exists(os.path.join(ROOT, "README.md"))
    else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["lite_detr_plugin", "lite_detr_plugin.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.11,<2.16",  # the range README states; tests/install/test_versions.py checks they agree
        "fvcore>=0.1.5",
        "ninja",
        "pycocotools",
        "tabulate",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest", "expecttest", "hypothesis", "onnx", "onnxscript", "onnxruntime"],
        "deploy": ["onnx", "onnxscript", "onnxruntime", "onnxsim"],
    },
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtensionWithRecord.with_options(use_ninja=True)},
    entry_points={"console_scripts": [
        "lite-detr-flops=lite_detr_plugin.flops.cli:main",
        "lite-detr-convert=lite_detr_plugin.checkpoint.cli:main",
        "lite-detr-benchmark-kda=lite_detr_plugin.benchmarks.kda:main",
        "lite-detr-benchmark-encoder=lite_detr_plugin.benchmarks.encoder:main",
        "lite-detr-benchmark-placement=lite_detr_plugin.benchmarks.placement:main",
        "lite-detr-demo=lite_detr_plugin.visualization.demo:main",
        "lite-detr-visualize=lite_detr_plugin.visualization.visualize:main",
        "lite-detr-export=lite_detr_plugin.export.cli:main",
        "lite-detr-benchmark=lite_detr_plugin.export.benchmark_cli:main",
    ]},
    zip_safe=False,
)
