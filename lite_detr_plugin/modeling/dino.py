"""detrex's DINO, trainable on any device.

detrex's ``DINO.prepare_for_cdn`` (denoising queries) and
``DINOCriterion.compute_dn_loss`` (denoising losses) place tensors with
hard-coded ``.cuda()`` / ``.to("cuda")``, so DINO trains only on a GPU as
shipped. The subclasses here run detrex's own implementation of those two
methods inside :func:`~lite_detr_plugin.modeling.device.redirect_cuda`, aimed at
the device of the model's parameters: on a GPU nothing changes, on a CPU the
tensors stay on the CPU. Nothing else is overridden.

Importing this module imports detrex's ``projects.dino.modeling``, which is
importable only with detrex's source root on ``sys.path``: call
:func:`lite_detr_plugin.config.setup_projects_path` first
(:func:`~lite_detr_plugin.config.load_detrex_config` and ``tools/train_net.py``
do), or put ``$DETREX_ROOT`` on ``PYTHONPATH``. This module never edits ``sys.path``.
"""
import torch

from .device import redirect_cuda

try:
    from projects.dino.modeling import DINO, DINOCriterion
except ImportError as exc:
    raise ImportError(
        "lite_detr_plugin.modeling.dino subclasses detrex's projects.dino.modeling, which imports only with the "
        "detrex source root on sys.path: call lite_detr_plugin.config.setup_projects_path() first "
        "(load_detrex_config does), or add $DETREX_ROOT to PYTHONPATH"
    ) from exc

__all__ = ["LiteDINO", "LiteDINOCriterion"]


class LiteDINO(DINO):
    """detrex's DINO whose denoising-query preparation follows the model's device."""

    def prepare_for_cdn(self, targets, *args, **kwargs):
        with redirect_cuda(self.label_enc.weight.device):
            return super().prepare_for_cdn(targets, *args, **kwargs)


class LiteDINOCriterion(DINOCriterion):
    """detrex's DINO criterion whose denoising losses follow the device of the targets."""

    def compute_dn_loss(self, dn_metas, targets, aux_num, num_boxes):
        with redirect_cuda(_device_of(dn_metas, targets)):
            return super().compute_dn_loss(dn_metas, targets, aux_num, num_boxes)


def _device_of(dn_metas, targets):
    """The device of the targets (or of the denoising outputs); None (no redirect) if unknown."""
    for target in targets or ():
        labels = target.get("labels") if isinstance(target, dict) else None
        if isinstance(labels, torch.Tensor):
            return labels.device
    if dn_metas:
        outputs = dn_metas.get("output_known_lbs_bboxes")
        if isinstance(outputs, dict):
            for value in outputs.values():
                if isinstance(value, torch.Tensor):
                    return value.device
    return None
