"""Session fixture ``emu``: csrc/deformable_attn/cuda/cuda_kernels.cu, rewritten by gen.py and built on the host.

The generated source is derived from the current kernel file on every run. The built
library is cached in ``$LITE_DETR_EMU_CACHE`` (default ``~/.cache/lite_detr_plugin/emu``;
empty: no cache) under a hash of the generated source, the shim, the csrc headers, the
flags and the torch version; the build itself (torch.utils.cpp_extension.load, ninja)
happens in the pytest tmp dir, so an interrupted build leaves no stale lock behind.
Linux only (ucontext); a missing compiler or ninja is an error, not a skip.
"""
import hashlib
import os
import pathlib
import re
import shutil
import sys
import time
from contextlib import contextmanager

import pytest
import torch

from . import gen

HERE = pathlib.Path(__file__).resolve().parent
CSRC = HERE.parents[1] / "csrc"
EXTRA = os.environ.get("LITE_DETR_EMU_FLAGS", "").split()  # e.g. -fsanitize=address, see __init__.py
CFLAGS = ["-O2", "-Wno-unknown-pragmas"] + EXTRA
LDFLAGS = [f for f in EXTRA if f.startswith("-fsanitize")]
_BUILD_REPORT = []


def pytest_terminal_summary(terminalreporter):
    for line in _BUILD_REPORT:
        terminalreporter.write_line(line)


def _cache_dir():
    root = os.environ.get("LITE_DETR_EMU_CACHE", os.path.expanduser("~/.cache/lite_detr_plugin/emu"))
    return pathlib.Path(root) if root else None


def _build(tmp_path_factory) -> pathlib.Path:
    from torch.utils import cpp_extension

    source = gen.generate(gen.KERNEL.read_text())
    h = hashlib.sha256()
    for part in [source, (HERE / "emu_shim.h").read_text(), *sorted(p.read_text() for p in (CSRC / "deformable_attn").glob("*.h")),
                 " ".join(CFLAGS + LDFLAGS), torch.__version__]:
        h.update(part.encode())
    name = "lite_detr_emu_" + h.hexdigest()[:16]
    cache = _cache_dir()
    cached = cache / f"{name}.so" if cache else None
    if cached and cached.exists():
        _BUILD_REPORT.append(f"CUDA emulator: cached {cached}")
        return cached

    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        pytest.fail(f"CUDA emulation tests: C++ compiler {cxx!r} not found")
    try:
        cpp_extension.verify_ninja_availability()
    except RuntimeError as exc:
        pytest.fail(f"CUDA emulation tests: {exc}")
    build_dir = tmp_path_factory.mktemp("cuda_emulation_build")
    cpp = build_dir / "kda_emu.cpp"
    cpp.write_text(source)
    start = time.perf_counter()
    cpp_extension.load(
        name=name, sources=[str(cpp)], extra_cflags=CFLAGS, extra_ldflags=LDFLAGS,
        extra_include_paths=[str(CSRC / "deformable_attn" / "cuda"), str(HERE)],  # "../ops.h" resolves via cuda/
        build_directory=str(build_dir), is_python_module=False, verbose=False,
    )
    _BUILD_REPORT.append(f"CUDA emulator: built in {time.perf_counter() - start:.1f} s")
    built = build_dir / f"{name}.so"
    if cached:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(built, tmp)
            os.replace(tmp, cached)
        except OSError as exc:  # a read-only home only costs the rebuild
            _BUILD_REPORT.append(f"CUDA emulator: not cached ({exc})")
    return built


class Emulator:
    """``torch.ops.lite_detr_emu``: the CUDA ops running emulated on CPU tensors, plus the launch log."""

    KERNEL = re.compile(r"::(\w+_kernel)\(.*?\[with scalar_t = ([\w:]+)(?:; int G = (\d+))?(?:; bool kSharedKey = (\w+))?")

    def __init__(self):
        self.ops = torch.ops.lite_detr_emu

    def __getattr__(self, name):
        return getattr(self.ops, name)

    def take_log(self):
        """(launches, errors) since the last call; a launch is a dict: kernel, scalar_t, G, shared_key, grid, block, smem."""
        launches, errors = [], []
        for line in self.ops.emu_take_log().splitlines():
            if line.startswith("error "):
                errors.append(line[6:])
                continue
            cfg = dict(kv.split("=") for kv in line.split()[1:4])
            launch = {k: int(v) for k, v in cfg.items()}
            m = self.KERNEL.search(line)
            if m:
                launch.update(kernel=m[1], scalar_t=m[2].replace("c10::", ""), G=m[3] and int(m[3]),
                              shared_key=m[4] and m[4] == "true")
            launches.append(launch)
        return launches, errors

    @contextmanager
    def configured(self, sms=1, smem_optin=227 * 1024, reverse_order=False):
        """Emulated SM count (grid cap: 1 block per SM), opt-in shared memory limit, warps and lanes scheduled last to first."""
        self.ops.emu_configure(sms, smem_optin, reverse_order)
        try:
            yield self
        finally:
            self.ops.emu_configure(1, 227 * 1024, False)


@pytest.fixture(scope="session")
def emu(tmp_path_factory):
    if not sys.platform.startswith("linux"):
        pytest.skip("the CUDA emulator runs each warp as 32 ucontext fibers: Linux (glibc) only")
    torch.ops.load_library(str(_build(tmp_path_factory)))
    e = Emulator()
    e.take_log()
    return e
