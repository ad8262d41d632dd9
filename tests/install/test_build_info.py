"""ops.build_info() / build_details(): what setup.py recorded about the build (lite_detr_plugin/_build.json)."""
import pytest
import torch

from lite_detr_plugin import ops
from lite_detr_plugin.ops import _extension

RECORD = {
    "devices": ["cpu", "cuda"], "cuda_reason": "CUDA", "cuda_version": "13.0", "nvcc_version": "13.0",
    "cuda_archs": ["9.0+PTX"], "cpu_isas": ["base", "avx2", "avx512"], "torch_version": "2.11.0+cu130",
}


@pytest.mark.skipif(not ops.is_loaded(), reason="the compiled op is not built")
def test_build_info_keeps_the_devices_first_and_adds_the_record(monkeypatch):
    monkeypatch.setattr(_extension, "build_details", lambda: dict(RECORD))
    fields = ops.build_info().split(";")
    assert fields[0] == "cpu"
    assert "cuda_version=13.0" in fields and "cuda_archs=9.0+PTX" in fields
    assert "cpu_isas=base,avx2,avx512" in fields and "torch=2.11.0+cu130" in fields
    cpu_only = dict(RECORD, devices=["cpu"], cuda_version=None, cuda_archs=[], cuda_reason="FORCE_CUDA=0")
    monkeypatch.setattr(_extension, "build_details", lambda: cpu_only)
    assert "no_cuda_because=FORCE_CUDA=0" in ops.build_info().split(";")


def test_the_record_matches_the_loaded_library():
    """When setup.py wrote a record, it agrees with the kernels that registered and this torch."""
    details = ops.build_details()
    if not details or not ops.is_loaded():
        pytest.skip("no _build.json beside the library (built by other means than setup.py)")
    assert set(details["devices"]) == {d for d in ("cpu", "cuda") if ops.has_kernel(d)}
    assert details["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    assert ops.cpu_capability() in details["cpu_isas"]
