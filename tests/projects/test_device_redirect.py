"""redirect_cuda: code with hard-coded .cuda() / .to("cuda") runs on the model's device.

No detrex needed; the DINO-specific use is covered by the detrex-marked config tests.
"""
import threading

import pytest
import torch

from lite_detr_plugin.modeling import is_redirecting, redirect_cuda

ORIGINAL_TO = torch.Tensor.to
ORIGINAL_CUDA = torch.Tensor.cuda
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")


def _cuda_written_code(labels):
    """The patterns of detrex's DINO denoising code, verbatim in spirit."""
    known = [torch.ones_like(t).cuda() for t in labels]
    index = torch.tensor(range(3)).long().cuda().unsqueeze(0)
    padding = torch.zeros(4, 2).cuda()
    mask = torch.ones(5, 5).to("cuda") < 0
    empty = torch.tensor([]).to("cuda")
    zero = torch.as_tensor(0.0).to("cuda")
    return known + [index, padding, mask, empty, zero]


def test_redirects_cuda_written_code_to_cpu():
    labels = [torch.tensor([1, 2]), torch.tensor([0])]
    with redirect_cuda("cpu"):
        assert is_redirecting()
        out = _cuda_written_code(labels)
    assert all(t.device.type == "cpu" for t in out)
    assert not is_redirecting()


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.cuda(),
        lambda t: t.cuda(0),
        lambda t: t.cuda(non_blocking=True),
        lambda t: t.to("cuda"),
        lambda t: t.to("cuda:1"),
        lambda t: t.to("CUDA"),
        lambda t: t.to(torch.device("cuda")),
        lambda t: t.to(torch.device("cuda", 0)),
        lambda t: t.to(device="cuda"),
        lambda t: t.to(0),
        lambda t: t.to("cuda", non_blocking=True),
    ],
)
def test_every_cuda_spelling_is_redirected(call):
    with redirect_cuda(torch.device("cpu")):
        out = call(torch.arange(4.0))
    assert out.device.type == "cpu"
    assert torch.equal(out, torch.arange(4.0))


def test_other_conversions_are_untouched():
    x = torch.arange(4, dtype=torch.int32)
    reference = torch.zeros(2, dtype=torch.float64)
    with redirect_cuda("cpu"):
        assert x.to(torch.float16).dtype == torch.float16
        assert x.to(dtype=torch.float64).dtype == torch.float64
        assert x.to(reference).dtype == torch.float64
        assert x.to("cpu").dtype == torch.int32
        converted = x.to("cuda", torch.float64)
        assert converted.device.type == "cpu" and converted.dtype == torch.float64
        converted = x.to(device="cuda", dtype=torch.float16)
        assert converted.device.type == "cpu" and converted.dtype == torch.float16


def test_gradients_flow_through_redirected_calls():
    w = torch.randn(3, requires_grad=True)
    with redirect_cuda("cpu"):
        loss = (w.cuda() * 2).to("cuda").sum()
    loss.backward()
    assert torch.equal(w.grad, torch.full((3,), 2.0))


def test_patch_is_removed_after_the_block_even_on_error():
    with pytest.raises(ValueError):
        with redirect_cuda("cpu"):
            assert torch.Tensor.to is not ORIGINAL_TO
            raise ValueError("boom")
    assert torch.Tensor.to is ORIGINAL_TO
    assert torch.Tensor.cuda is ORIGINAL_CUDA
    assert not is_redirecting()


def test_nested_blocks():
    with redirect_cuda("cpu"):
        with redirect_cuda("cpu"):
            assert torch.ones(1).cuda().device.type == "cpu"
        assert is_redirecting()
        assert torch.ones(1).cuda().device.type == "cpu"
    assert torch.Tensor.cuda is ORIGINAL_CUDA


def test_cuda_target_changes_nothing():
    with redirect_cuda("cuda"):
        assert torch.Tensor.to is ORIGINAL_TO
        assert torch.Tensor.cuda is ORIGINAL_CUDA
        assert not is_redirecting()
    with redirect_cuda(None):
        assert torch.Tensor.to is ORIGINAL_TO


def test_meta_device_target():
    with redirect_cuda("meta"):
        assert torch.ones(2).cuda().device.type == "meta"


@no_cuda
def test_outside_the_block_cuda_still_fails_without_a_gpu():
    with redirect_cuda("cpu"):
        pass
    with pytest.raises((RuntimeError, AssertionError)):
        torch.ones(1).cuda()


@no_cuda
def test_other_threads_are_not_redirected():
    entered, done = threading.Event(), threading.Event()
    errors = []

    def other_thread():
        entered.wait(10)
        try:
            torch.ones(1).to("cuda")
        except (RuntimeError, AssertionError) as exc:
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with redirect_cuda("cpu"):
        entered.set()
        done.wait(10)
        assert torch.ones(1).to("cuda").device.type == "cpu"
    thread.join()
    assert len(errors) == 1  # the other thread saw the real .to and had no GPU
