"""Build lite_detr_plugin and its compiled op library ``lite_detr_plugin._C``.

The CPU kernels are always built. The CUDA kernels are built when PyTorch has
CUDA support and a CUDA toolkit is found (``CUDA_HOME``), or when
``FORCE_CUDA=1``; ``FORCE_CUDA=0`` disables them. ``TORCH_CUDA_ARCH_LIST`` picks
the GPU architectures, as for any PyTorch extension. Install with
``pip install --no-build-isolation .`` so the build sees your installed torch.
"""
import glob
import os

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
VERSION = "0.1.0"


def want_cuda() -> bool:
    force = os.environ.get("FORCE_CUDA")
    if force == "1":
        return True
    if force == "0":
        return False
    return torch.version.cuda is not None and CUDA_HOME is not None


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
    if want_cuda():
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
        "torch>=2.4",
        "fvcore>=0.1.5",
        "ninja",
        "pycocotools",
        "tabulate",
        "tqdm",
        "matplotlib",
    ],
    extras_require={"test": ["pytest", "expecttest"]},
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    entry_points={"console_scripts": ["lite-detr-flops=lite_detr_plugin.flops.cli:main"]},
    zip_safe=False,
)
