"""What ``setup.py`` builds: CPU only, or CPU + CUDA and for which GPU architectures.

Pure decision logic (no torch import, no side effects), loaded by ``setup.py``
from this file's path because setup.py cannot import the package. The facts it
decides on (PyTorch's CUDA version and architectures, the visible GPUs, the
toolkit's nvcc) are gathered by setup.py and passed in, so every case of the
install matrix is unit-testable on any machine:

* ``FORCE_CUDA=0``, a CPU build of PyTorch, or no CUDA toolkit: CPU only.
* A CUDA toolkit whose nvcc cannot compile against PyTorch's CUDA headers
  (another major version, or an older minor one: nvcc 13.0 against torch's
  CUDA 13.2): CPU only, with one warning; ``FORCE_CUDA=1`` raises instead.
* Architectures: ``TORCH_CUDA_ARCH_LIST`` when set; else those of the visible
  GPUs (as torch's cpp_extension would pick them); else, with no visible GPU (a
  login node, a Docker build), the architectures PyTorch itself was built for,
  from sm_70 up, PTX for the newest. torch's own default raises an IndexError
  there.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "BuildConfigError",
    "BuildPlan",
    "MIN_DEFAULT_ARCH",
    "build_record",
    "cpu_isas",
    "default_arch_list",
    "nvcc_can_build",
    "parse_nvcc_version",
    "plan_build",
]

# The oldest architecture of the default list: older GPUs need TORCH_CUDA_ARCH_LIST.
MIN_DEFAULT_ARCH = (7, 0)


class BuildConfigError(RuntimeError):
    """A build that was asked for (FORCE_CUDA=1, a TORCH_CUDA_ARCH_LIST) cannot be made."""


@dataclass
class BuildPlan:
    """The decision. ``arch_list`` is what TORCH_CUDA_ARCH_LIST is set to for the build."""

    cuda: bool
    reason: str
    arch_list: List[str] = field(default_factory=list)
    arch_source: str = ""
    nvcc_version: Optional[str] = None
    warning: Optional[str] = None

    def summary(self) -> str:
        """One line for the build log: the warning when there is one."""
        if self.warning:
            return self.warning
        if not self.cuda:
            return f"lite_detr_plugin: building the CPU kernels only ({self.reason})"
        return (
            f"lite_detr_plugin: building the CPU and CUDA kernels (nvcc {self.nvcc_version}) for "
            f"TORCH_CUDA_ARCH_LIST={';'.join(self.arch_list)} ({self.arch_source})"
        )


def parse_nvcc_version(output: str) -> Optional[str]:
    """'13.0' from the text of ``nvcc --version``, or None."""
    match = re.search(r"release (\d+)\.(\d+)", output or "")
    return f"{match.group(1)}.{match.group(2)}" if match else None


def _major_minor(version: str) -> Tuple[int, int]:
    parts = re.findall(r"\d+", version)
    if len(parts) < 2:
        raise ValueError(f"expected a version 'major.minor', got {version!r}")
    return int(parts[0]), int(parts[1])


def nvcc_can_build(nvcc: str, torch_cuda: str) -> bool:
    """Whether nvcc ``nvcc`` compiles against the headers of PyTorch's CUDA ``torch_cuda``:
    the same major version and a minor version at least PyTorch's."""
    nvcc_v, torch_v = _major_minor(nvcc), _major_minor(torch_cuda)
    return nvcc_v[0] == torch_v[0] and nvcc_v[1] >= torch_v[1]


def _arch_tuple(arch: str) -> Tuple[int, int]:
    """'sm_90' or 'sm_90a' or '9.0' -> (9, 0); ValueError for anything else."""
    match = re.fullmatch(r"sm_(\d+)(\d)a?", arch) or re.fullmatch(r"(\d+)\.(\d)a?(\+PTX)?", arch)
    if not match:
        raise ValueError(f"not a CUDA architecture: {arch!r}")
    return int(match.group(1)), int(match.group(2))


def default_arch_list(torch_archs: Sequence[str]) -> List[str]:
    """The architectures PyTorch was built for (``torch.cuda.get_arch_list()``, e.g.
    ['sm_75', 'sm_80', 'sm_90']), from :data:`MIN_DEFAULT_ARCH` up, as
    TORCH_CUDA_ARCH_LIST entries with PTX for the newest: ['7.5', '8.0', '9.0+PTX']."""
    archs = sorted({_arch_tuple(a) for a in torch_archs if a.startswith("sm_")})
    archs = [a for a in archs if a >= MIN_DEFAULT_ARCH]
    if not archs:
        return []
    names = [f"{major}.{minor}" for major, minor in archs]
    names[-1] += "+PTX"
    return names


def _visible_arch_list(capabilities: Sequence[Tuple[int, int]], torch_archs: Sequence[str]) -> List[str]:
    """What torch's cpp_extension picks for visible GPUs: their capabilities, clamped to
    the newest PyTorch was built for, PTX for the newest."""
    supported = [_arch_tuple(a) for a in torch_archs if a.startswith("sm_")]
    newest = max(supported) if supported else None
    archs = sorted({min(tuple(c), newest) if newest else tuple(c) for c in capabilities})
    names = [f"{major}.{minor}" for major, minor in archs]
    names[-1] += "+PTX"
    return names


def plan_build(
    env: Mapping[str, str],
    torch_cuda: Optional[str],
    torch_archs: Sequence[str],
    gpu_capabilities: Sequence[Tuple[int, int]],
    cuda_home: Optional[str],
    nvcc_version: Optional[str],
) -> BuildPlan:
    """Decides the build.

    Args:
        env: the environment (FORCE_CUDA, TORCH_CUDA_ARCH_LIST).
        torch_cuda: ``torch.version.cuda`` ('13.2'), None for a CPU build of PyTorch.
        torch_archs: ``torch.cuda.get_arch_list()`` (filled without a GPU too).
        gpu_capabilities: (major, minor) of each visible GPU.
        cuda_home: the toolkit torch's cpp_extension found (CUDA_HOME), or None.
        nvcc_version: 'major.minor' of ``$CUDA_HOME/bin/nvcc``, or None when it does not run.

    Raises:
        BuildConfigError: FORCE_CUDA=1 and the CUDA kernels cannot be built, or
            FORCE_CUDA is neither 0 nor 1.
    """
    force = env.get("FORCE_CUDA", "").strip()
    if force not in ("", "0", "1"):
        raise BuildConfigError(f"FORCE_CUDA must be 0 or 1 (or unset), got {force!r}")
    if force == "0":
        return BuildPlan(cuda=False, reason="FORCE_CUDA=0")

    def cpu_only(reason: str, warn: bool) -> BuildPlan:
        if force == "1":
            raise BuildConfigError(f"FORCE_CUDA=1 but the CUDA kernels cannot be built: {reason}")
        warning = (
            f"lite_detr_plugin: WARNING: building WITHOUT the CUDA kernels: {reason} (FORCE_CUDA=1 makes this an error)"
            if warn
            else None
        )
        return BuildPlan(cuda=False, reason=reason, nvcc_version=nvcc_version, warning=warning)

    if torch_cuda is None:
        return cpu_only("this PyTorch is a CPU build", warn=False)
    if cuda_home is None:
        return cpu_only("no CUDA toolkit found: set CUDA_HOME", warn=False)
    if nvcc_version is None:
        return cpu_only(f"no working nvcc in CUDA_HOME={cuda_home}", warn=True)
    if not nvcc_can_build(nvcc_version, torch_cuda):
        return cpu_only(
            f"nvcc {nvcc_version} (CUDA_HOME={cuda_home}) cannot build against PyTorch's CUDA {torch_cuda} "
            f"headers; install a CUDA {torch_cuda.split('.')[0]}.x toolkit >= {torch_cuda} and point "
            "CUDA_HOME at it",
            warn=True,
        )

    requested = env.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if requested and requested != "native":
        arch_list = [a for a in re.split(r"[;\s,]+", requested) if a]
        source = "from TORCH_CUDA_ARCH_LIST"
    elif gpu_capabilities:
        arch_list = _visible_arch_list(gpu_capabilities, torch_archs)
        source = "the visible GPUs"
    else:
        arch_list = default_arch_list(torch_archs)
        source = "no visible GPU: the architectures PyTorch was built for"
        if not arch_list:
            return cpu_only(
                f"no visible GPU, no TORCH_CUDA_ARCH_LIST, and PyTorch lists no architecture >= "
                f"{MIN_DEFAULT_ARCH[0]}.{MIN_DEFAULT_ARCH[1]} ({list(torch_archs)}): set TORCH_CUDA_ARCH_LIST",
                warn=True,
            )
    return BuildPlan(cuda=True, reason="CUDA", arch_list=arch_list, arch_source=source, nvcc_version=nvcc_version)


def cpu_isas(machine: str, compiler_version_output: str) -> List[str]:
    """The CPU kernel builds compiled in (csrc/kda/cpu/kda_kernel.cpp): base everywhere;
    AVX2 and AVX-512 too with GCC on x86."""
    x86 = machine.lower() in ("x86_64", "amd64", "i386", "i686", "x86")
    gcc = "clang" not in (compiler_version_output or "").lower()
    return ["base", "avx2", "avx512"] if x86 and gcc else ["base"]


def build_record(plan: BuildPlan, torch_version: str, torch_cuda: Optional[str], isas: Sequence[str]) -> Dict:
    """The JSON that ``ops.build_info()`` reads back (``lite_detr_plugin/_build.json``)."""
    return {
        "devices": ["cpu", "cuda"] if plan.cuda else ["cpu"],
        "cuda_reason": plan.reason,
        "cuda_version": torch_cuda if plan.cuda else None,
        "nvcc_version": plan.nvcc_version if plan.cuda else None,
        "cuda_archs": list(plan.arch_list) if plan.cuda else [],
        "cpu_isas": list(isas),
        "torch_version": torch_version,
    }
