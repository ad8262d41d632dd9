"""Whole-model GFLOPs split into backbone / neck / encoder / decoder / other.

:func:`model_gflops` counts any model; the detrex helpers below
(:func:`load_detrex_model`, :func:`fixed_size_inputs`, :func:`dataset_inputs`) need
detectron2 and detrex and import them only when called.

Parts (module names relative to the detector; the first that exists wins):

* ``backbone``: ``backbone``;
* ``neck``: ``neck`` (detrex's ChannelMapper, with its extra stride-64 conv);
* ``encoder``: ``transformer.encoder``;
* ``decoder``: ``transformer.decoder``;
* ``other``: everything else: the two-stage proposal head
  (``transformer.enc_output`` / ``enc_output_norm`` and the decoder's last
  class/box embeds applied to the encoder output), the prediction heads
  ``class_embed`` / ``bbox_embed`` (DINO shares them with its decoder, but fvcore
  attributes a shared module to its first name, ``class_embed`` / ``bbox_embed``),
  denoising queries, position embeddings and post-processing.

The total is fvcore's total of the whole forward, so the parts sum to it.
"""
import math
from collections import Counter
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..layers.placement import choosing_by
from .handles import check_deformable_ops_counted, register_handles

PARTS: Dict[str, Tuple[str, ...]] = {
    "backbone": ("backbone",),
    "neck": ("neck",),
    "encoder": ("transformer.encoder", "encoder"),
    "decoder": ("transformer.decoder", "decoder"),
}


def _has_detectron2() -> bool:
    try:
        import detectron2.utils.analysis  # noqa: F401
    except Exception:
        return False
    return True


def flop_count_analysis(model: nn.Module, inputs: Any, counting: str = "paper",
                        use_detectron2: Optional[bool] = None):
    """A ``FlopCountAnalysis`` of ``model`` on ``inputs`` with the deformable-attention handles.

    detectron2's subclass (which takes a detectron2 model's list of dicts and
    ignores element-wise ops) when detectron2 is importable or
    ``use_detectron2=True``; else fvcore's, with element-wise ops free and
    ``inputs`` a tensor or a tuple of tensors. Warnings about unsupported ops
    are off; check them with :func:`check_deformable_ops_counted` and
    ``unsupported_ops()``.
    """
    if use_detectron2 is None:
        use_detectron2 = _has_detectron2() and not isinstance(inputs, (torch.Tensor, tuple))
    if use_detectron2:
        from detectron2.utils.analysis import FlopCountAnalysis
    else:
        from fvcore.nn import FlopCountAnalysis
    analysis = FlopCountAnalysis(model, inputs)
    register_handles(analysis, counting=counting, ignore_elementwise=True)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis


def _module_names(analysis, model: nn.Module, parts: Dict[str, Sequence[str]]) -> Dict[str, Optional[str]]:
    """The analysis' canonical name of each part of ``model`` (or None when absent)."""
    modules = dict(model.named_modules())
    aliases = getattr(analysis, "_aliases", {})
    by_module = analysis.by_module()
    names = {}
    for part, candidates in parts.items():
        names[part] = None
        for candidate in candidates:
            module = modules.get(candidate)
            if module is None:
                continue
            name = aliases.get(module)
            if name is None:  # fall back to the wrapper prefixes fvcore / detectron2 use
                name = next((p + candidate for p in ("", "model.", "module.") if p + candidate in by_module), None)
            if name is not None:
                names[part] = name
                break
    return names


def model_gflops(
    model: nn.Module,
    inputs: Any,
    counting: str = "paper",
    parts: Optional[Dict[str, Sequence[str]]] = None,
    use_detectron2: Optional[bool] = None,
) -> Dict[str, Any]:
    """GFLOPs of one forward of ``model``, split into parts.

    Args:
        model: a detector (detrex DINO, H-DETR, Deformable DETR, their Lite versions)
            or any module with ``backbone`` / ``neck`` / ``transformer.encoder`` /
            ``transformer.decoder`` submodules (absent parts count 0).
        inputs: what the model takes (detectron2's ``[{"image": ...}]`` list, or tensors).
        counting: the counting conventions, "paper" or "full" (see :mod:`~lite_detr_plugin.flops.handles`).
        parts: override :data:`PARTS`.

    Returns:
        ``dict(backbone, neck, encoder, decoder, other, total)`` in GFLOPs, plus
        ``unsupported_ops`` (the ops left uncounted, none of them deformable
        attention: that raises) and ``modules`` (which module each part is).
    """
    parts = dict(PARTS if parts is None else parts)
    with torch.no_grad(), choosing_by("flops"):  # "auto" placements choose by FLOPs, not by measured time
        analysis = flop_count_analysis(model, inputs, counting=counting, use_detectron2=use_detectron2)
        unsupported = check_deformable_ops_counted(analysis)
    names = _module_names(analysis, model, parts)
    total = analysis.total()
    out: Dict[str, Any] = {}
    counted = 0
    for part, name in names.items():
        value = analysis.total(name) if name is not None else 0
        out[part] = value / 1e9
        counted += value
    out["other"] = (total - counted) / 1e9
    out["total"] = total / 1e9
    out["unsupported_ops"] = dict(unsupported)
    out["modules"] = names
    return out


# ------------------------------------------------------------------ detrex models (need detectron2 + detrex)


def resolve_config_file(config_file: str) -> str:
    """``config_file`` as given when it exists, else relative to detrex's root or this repository's
    (``projects/dino/configs/...``, ``projects/lite_dino/configs/...``). Puts detrex's ``projects``
    on ``sys.path`` (its configs import ``projects.<name>.modeling``)."""
    import os

    from ..config.detrex import DetrexNotFoundError, plugin_root, setup_projects_path

    try:
        roots = [setup_projects_path()]
    except DetrexNotFoundError:
        roots = []
    if os.path.isfile(config_file):
        return config_file
    roots.append(plugin_root())
    for root in roots:
        if root and os.path.isfile(os.path.join(root, config_file)):
            return os.path.join(root, config_file)
    raise FileNotFoundError(f"config file {config_file!r} not found (also looked under {[r for r in roots if r]})")


def load_detrex_model(
    config_file: str,
    opts: Sequence[str] = (),
    swap_encoder: Optional[Dict[str, Any]] = None,
    device: str = "cpu",
):
    """Load a detrex / Lite LazyConfig, apply ``key=value`` overrides, build its model in eval mode.

    Args:
        config_file: a detrex config (e.g. ``projects/dino/configs/dino-resnet/dino_r50_4scale_12ep.py``)
            or one of this plugin's Lite configs.
        opts: detectron2/Hydra-style overrides, e.g. ``["model.num_queries=300"]``.
        swap_encoder: keyword arguments of :func:`lite_detr_plugin.swap_encoder` (e.g.
            ``{"variant": "H3L1-(2+1)x3"}``) to turn the config into its Lite version.
        device: where the model runs ("cpu": detrex's MSDA then takes its PyTorch
            path, grid_sample; our ops run their compiled CPU kernels).

    Returns:
        ``(cfg, model)``. No checkpoint is loaded: FLOPs do not depend on the weights.
    """
    from detectron2.config import instantiate

    cfg = load_detrex_config(config_file, opts, device=None)
    if swap_encoder:
        from ..config import swap_encoder as swap

        swap(cfg, **swap_encoder)
    _set_device(cfg, device)
    model = instantiate(cfg.model)
    model.to(device).eval()
    return cfg, model


def load_detrex_config(config_file: str, opts: Sequence[str] = (), device: Optional[str] = "cpu"):
    """The LazyConfig ``config_file`` (found by :func:`resolve_config_file`) with ``key=value`` overrides
    ``opts``, and ``model.device`` / ``train.device`` set to ``device`` where the config has them
    (``None``: left as they are)."""
    from detectron2.config import LazyConfig

    cfg = LazyConfig.apply_overrides(LazyConfig.load(resolve_config_file(config_file)), list(opts))
    if device is not None:
        _set_device(cfg, device)
    return cfg


def _set_device(cfg, device: str) -> None:
    if "device" in cfg.model:
        cfg.model.device = device
    if "train" in cfg and "device" in cfg.train:
        cfg.train.device = device


def fixed_size_inputs(height: int, width: int, seed: int = 0) -> List[Dict[str, Any]]:
    """detectron2 inputs for one random ``height × width`` RGB image, already at the model's input size."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8)
    return [{"image": image, "height": height, "width": width}]


def dataset_inputs(cfg, dataset: str, num_images: int) -> Iterator[List[Dict[str, Any]]]:
    """The first ``num_images`` test inputs (batch 1) of a registered dataset, through the config's
    test mapper (e.g. detrex's ``ResizeShortestEdge(800, 1333)``)."""
    from detectron2.config import instantiate
    from detectron2.data import DatasetCatalog

    if dataset not in DatasetCatalog.list() and dataset.startswith("synthetic_shapes_"):
        from ..data import register_synthetic_dataset

        register_synthetic_dataset()  # this plugin's synthetic set, generated on first use
    if dataset not in DatasetCatalog.list():
        raise KeyError(
            f"dataset {dataset!r} is not registered with detectron2; registered: "
            f"{', '.join(sorted(DatasetCatalog.list())[:20])}..."
        )
    if "dataloader" not in cfg or "test" not in cfg.dataloader:
        raise ValueError("the config has no dataloader.test to read images with; use --size instead")
    import copy

    test = copy.deepcopy(cfg.dataloader.test)
    test.dataset.names = dataset
    if "num_workers" in test:
        test.num_workers = 0
    loader = instantiate(test)
    for index, batch in enumerate(loader):
        if index >= num_images:
            break
        yield batch


def averaged_gflops(model: nn.Module, batches: Iterable[List[Dict[str, Any]]], counting: str = "paper",
                    progress: bool = True, total: Optional[int] = None) -> Dict[str, Any]:
    """Mean and standard deviation of :func:`model_gflops` over ``batches`` (one image each)."""
    from tqdm import tqdm

    results = []
    sizes = []
    for batch in tqdm(batches, total=total, disable=not progress, desc="counting", unit="image"):
        results.append(model_gflops(model, batch, counting=counting))
        sizes.append(tuple(batch[0]["image"].shape[-2:]))
    if not results:
        raise ValueError("no images to count")
    keys = ("backbone", "neck", "encoder", "decoder", "other", "total")
    out: Dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in results]
        mean = sum(values) / len(values)
        out[key] = mean
        out[f"{key}_std"] = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    out["num_images"] = len(results)
    out["image_sizes"] = sizes
    out["per_image"] = [{key: r[key] for key in keys} for r in results]
    unsupported = Counter()
    for r in results:
        unsupported.update(r["unsupported_ops"])
    out["unsupported_ops"] = dict(unsupported)
    out["modules"] = results[0]["modules"]
    return out
