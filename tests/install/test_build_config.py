"""The install matrix of setup.py, decided by lite_detr_plugin/_build_config.py.

Each case is a machine setup.py can meet; the facts are the ones torch and nvcc
report there (torch 2.15 cu132 lists sm_75..sm_120 with no GPU visible; nvcc 13.0
prints 'release 13.0, V13.0.88').
"""
import pytest

from lite_detr_plugin import _build_config as bc

TORCH_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # torch 2.15.0+cu132
NVCC_13_0 = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 13.0, V13.0.88\n"


def plan(env=None, torch_cuda="13.2", archs=TORCH_ARCHS, gpus=(), cuda_home="/usr/local/cuda", nvcc="13.2"):
    return bc.plan_build(env or {}, torch_cuda, archs, list(gpus), cuda_home, nvcc)


def test_parse_nvcc_version():
    assert bc.parse_nvcc_version(NVCC_13_0) == "13.0"
    assert bc.parse_nvcc_version("Cuda compilation tools, release 12.4, V12.4.131") == "12.4"
    assert bc.parse_nvcc_version("") is None
    assert bc.parse_nvcc_version("command not found") is None


def test_cpu_torch_builds_cpu_only_without_warning():
    p = plan(torch_cuda=None, archs=[], cuda_home=None, nvcc=None)
    assert not p.cuda and p.warning is None
    assert "CPU build" in p.summary()


def test_cpu_torch_with_force_cuda_fails_loudly():
    with pytest.raises(bc.BuildConfigError, match="FORCE_CUDA=1.*CPU build"):
        plan(env={"FORCE_CUDA": "1"}, torch_cuda=None, archs=[])


def test_force_cuda_0_wins_over_everything():
    p = plan(env={"FORCE_CUDA": "0"}, gpus=[(9, 0)])
    assert not p.cuda and p.reason == "FORCE_CUDA=0"


def test_bad_force_cuda_value_names_it():
    with pytest.raises(bc.BuildConfigError, match="FORCE_CUDA must be 0 or 1"):
        plan(env={"FORCE_CUDA": "yes"})


def test_cuda_torch_no_gpu_no_arch_list_builds_for_torch_archs():
    """The login-node case of issue 10: torch's own default raises IndexError here."""
    p = plan()
    assert p.cuda
    assert p.arch_list == ["7.5", "8.0", "8.6", "9.0", "10.0", "12.0+PTX"]
    line = p.summary()
    assert "\n" not in line and "TORCH_CUDA_ARCH_LIST=7.5;8.0;8.6;9.0;10.0;12.0+PTX" in line
    assert "no visible GPU" in line


def test_default_arch_list_drops_old_archs_and_dedups():
    assert bc.default_arch_list(["sm_50", "sm_60", "sm_70", "sm_90", "sm_90", "compute_90"]) == ["7.0", "9.0+PTX"]
    assert bc.default_arch_list(["sm_50", "sm_61"]) == []
    assert bc.default_arch_list(["sm_90a", "sm_100"]) == ["9.0", "10.0+PTX"]


def test_only_old_torch_archs_and_no_gpu_builds_cpu_with_warning():
    p = plan(archs=["sm_50", "sm_60"])
    assert not p.cuda and "TORCH_CUDA_ARCH_LIST" in p.warning


def test_explicit_arch_list_is_kept():
    p = plan(env={"TORCH_CUDA_ARCH_LIST": "8.0 9.0+PTX"}, gpus=[(8, 6)])
    assert p.arch_list == ["8.0", "9.0+PTX"] and "TORCH_CUDA_ARCH_LIST" in p.arch_source


def test_visible_gpus_pick_their_archs_clamped_to_torch():
    p = plan(gpus=[(9, 0), (8, 0), (9, 0)])
    assert p.arch_list == ["8.0", "9.0+PTX"] and p.arch_source == "the visible GPUs"
    # A GPU newer than every arch torch knows is clamped to torch's newest, as cpp_extension does.
    assert plan(gpus=[(13, 0)]).arch_list == ["12.0+PTX"]


def test_native_arch_list_means_visible_gpus():
    assert plan(env={"TORCH_CUDA_ARCH_LIST": "native"}, gpus=[(9, 0)]).arch_list == ["9.0+PTX"]


@pytest.mark.parametrize(
    "nvcc, torch_cuda, ok",
    [("13.0", "13.2", False), ("13.2", "13.2", True), ("13.4", "13.2", True), ("12.8", "13.0", False),
     ("13.0", "12.8", False), ("12.4", "12.1", True)],
)
def test_nvcc_can_build(nvcc, torch_cuda, ok):
    assert bc.nvcc_can_build(nvcc, torch_cuda) is ok


def test_older_nvcc_than_torch_builds_cpu_only_with_one_warning():
    """This machine: /usr/local/bin/nvcc 13.0 against torch 2.15's CUDA 13.2."""
    p = plan(nvcc=bc.parse_nvcc_version(NVCC_13_0))
    assert not p.cuda
    assert p.warning.count("\n") == 0
    assert "WARNING" in p.warning and "nvcc 13.0" in p.warning and "13.2" in p.warning
    assert "FORCE_CUDA=1" in p.warning


def test_older_nvcc_with_force_cuda_fails_loudly():
    with pytest.raises(bc.BuildConfigError, match=r"FORCE_CUDA=1 .*nvcc 13\.0.*13\.2"):
        plan(env={"FORCE_CUDA": "1"}, nvcc="13.0")


def test_missing_toolkit():
    p = plan(cuda_home=None, nvcc=None)
    assert not p.cuda and p.warning is None and "CUDA_HOME" in p.reason
    p = plan(nvcc=None)
    assert not p.cuda and "no working nvcc" in p.warning
    with pytest.raises(bc.BuildConfigError, match="CUDA_HOME"):
        plan(env={"FORCE_CUDA": "1"}, cuda_home=None, nvcc=None)


def test_cpu_isas():
    assert bc.cpu_isas("x86_64", "c++ (GCC) 12.2.0") == ["base", "avx2", "avx512"]
    assert bc.cpu_isas("x86_64", "clang version 17") == ["base"]
    assert bc.cpu_isas("aarch64", "c++ (GCC) 12.2.0") == ["base"]


def test_build_record():
    record = bc.build_record(plan(), "2.15.0+cu132", "13.2", ["base"])
    assert record == {
        "devices": ["cpu", "cuda"],
        "cuda_reason": "CUDA",
        "cuda_version": "13.2",
        "nvcc_version": "13.2",
        "cuda_archs": ["7.5", "8.0", "8.6", "9.0", "10.0", "12.0+PTX"],
        "cpu_isas": ["base"],
        "torch_version": "2.15.0+cu132",
    }
    cpu = bc.build_record(plan(nvcc="13.0"), "2.15.0+cu132", "13.2", ["base", "avx2", "avx512"])
    assert cpu["devices"] == ["cpu"] and cpu["cuda_version"] is None and cpu["cuda_archs"] == []
    assert "nvcc 13.0" in cpu["cuda_reason"]
