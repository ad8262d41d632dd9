"""Several processes generating the synthetic dataset at once (the ranks of `--num-gpus N`).

Issue 10: the loser of the race died in `os.rmdir(root)` ("Directory not empty").
Each test checks the end state against a dataset generated alone (same bytes).
"""
import multiprocessing
import os
import sys

import pytest

from lite_detr_plugin.data import synthetic
from lite_detr_plugin.data.synthetic import generate_synthetic_coco, synthetic_dataset_exists

from ..helpers.files import read_tree

TINY = dict(num_train=3, num_val=2, image_size=(32, 40), seed=5, max_objects=2, min_size=4)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="forks processes")


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    return read_tree(generate_synthetic_coco(str(tmp_path_factory.mktemp("alone") / "shapes"), **TINY))


def _generate(root, barrier, errors, use_lock):
    try:
        if not use_lock:
            import contextlib

            synthetic._exclusive = lambda path: contextlib.nullcontext()
        barrier.wait()
        generate_synthetic_coco(root, **TINY)
    except BaseException as exc:  # reported to the parent
        errors.put(f"{type(exc).__name__}: {exc}")


def _race(root, processes, use_lock):
    ctx = multiprocessing.get_context("fork")
    barrier, errors = ctx.Barrier(processes), ctx.Queue()
    workers = [ctx.Process(target=_generate, args=(root, barrier, errors, use_lock)) for _ in range(processes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert all(w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
    found = []
    while not errors.empty():
        found.append(errors.get())
    return found


@pytest.mark.parametrize("use_lock", [True, False], ids=["with-lock", "without-lock"])
@pytest.mark.parametrize("state", ["missing", "empty", "other-parameters"])
def test_ranks_start_at_once(tmp_path, alone, use_lock, state):
    root = str(tmp_path / "shapes")
    if state == "empty":
        os.makedirs(root)
    elif state == "other-parameters":
        generate_synthetic_coco(root, **{**TINY, "seed": 6})
    assert _race(root, 3, use_lock) == []
    assert read_tree(root) == alone
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".shapes.") and not n.endswith(".lock")]
    assert leftovers == []  # no staging or old-dataset folder is left behind


def test_waiters_reuse_the_dataset_of_the_first(tmp_path, monkeypatch):
    """With the lock, only one process generates: the others find its manifest."""
    root = str(tmp_path / "shapes")
    calls = []
    real = synthetic._write_dataset
    monkeypatch.setattr(synthetic, "_write_dataset", lambda folder, p: (calls.append(folder), real(folder, p)))
    generate_synthetic_coco(root, **TINY)
    generate_synthetic_coco(root, **TINY)
    assert len(calls) == 1


def test_dataset_appearing_before_the_rename_is_kept(tmp_path, alone, monkeypatch):
    """Without the lock another process may finish between our check and our rename."""
    root = str(tmp_path / "shapes")
    real_rename = os.rename
    raced = []

    def rename(src, dst):
        if dst == root and not raced:
            raced.append(src)
            generate_synthetic_coco(root, **TINY)  # the other process wins here
        return real_rename(src, dst)

    monkeypatch.setattr(synthetic, "_exclusive", lambda path: __import__("contextlib").nullcontext())
    monkeypatch.setattr(synthetic.os, "rename", rename)
    generate_synthetic_coco(root, **TINY)
    monkeypatch.undo()
    assert len(raced) == 1
    assert read_tree(root) == alone and synthetic_dataset_exists(root, **TINY)


def test_foreign_folder_appearing_meanwhile_is_refused(tmp_path, monkeypatch):
    root = str(tmp_path / "shapes")
    real = synthetic._write_dataset

    def write(folder, parameters):
        real(folder, parameters)
        os.makedirs(root)
        open(os.path.join(root, "mine.txt"), "w").close()

    monkeypatch.setattr(synthetic, "_write_dataset", write)
    with pytest.raises(FileExistsError, match="not a synthetic_shapes dataset"):
        generate_synthetic_coco(root, **TINY)
    assert os.listdir(root) == ["mine.txt"]


def test_root_that_is_a_file_is_refused(tmp_path):
    root = tmp_path / "shapes"
    root.write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        generate_synthetic_coco(str(root), **TINY)
