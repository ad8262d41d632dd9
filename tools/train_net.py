#!/usr/bin/env python
"""Train or evaluate a Lite DETR project config (any detrex-style LazyConfig) with detectron2's engine.

    python tools/train_net.py --config-file projects/lite_dino/configs/tiny_cpu/lite_dino_tiny_cpu.py
    python tools/train_net.py --config-file CFG --num-gpus 8 [key=value ...]
    python tools/train_net.py --config-file CFG --eval-only train.init_checkpoint=/path/to/model.pth
    python tools/train_net.py --config-file CFG --resume          # continue from train.output_dir

Overrides are Hydra-style ``key=value`` pairs (``train.max_iter=1000``,
``dataloader.train.total_batch_size=8``). Besides detrex's ``train`` keys:

* ``model.device`` follows ``train.device`` (``train.device=cpu`` trains on a CPU);
* parameters whose names contain ``sampling_offsets`` or ``reference_points``
  get ``train.deformable_lr_factor`` (default 0.1) times the learning rate the
  config gives them, as the Deformable DETR, DINO and Lite DETR training scripts
  (and detrex's DINO project trainer) do. The config's own factors (detrex:
  backbone 0.1) are kept and multiplied. ``train.deformable_lr_factor=1`` turns
  this off.

The detrex source tree (``$DETREX_ROOT`` or the installed detrex) and this
repository are put on ``sys.path``, so both ``projects.dino`` (detrex) and
``projects.lite_dino`` (ours) import.
"""
import logging
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import (
    AMPTrainer,
    SimpleTrainer,
    default_argument_parser,
    default_setup,
    default_writers,
    hooks,
    launch,
)
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from lite_detr_plugin.config import DEFORMABLE_LR_FACTOR, DetrexNotFoundError, add_deformable_lr_factor, detrex_root
from lite_detr_plugin.config.detrex import add_to_sys_path
from lite_detr_plugin.engine import create_ddp_model  # CPU-safe: no device_ids for CPU modules

# This checkout holds projects/lite_dino ...; the package itself is found by being installed.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

logger = logging.getLogger("detectron2")


def setup_paths() -> None:
    """Puts detrex's source tree and this repository on sys.path (both hold ``projects/``)."""
    try:
        add_to_sys_path(detrex_root())
    except DetrexNotFoundError:
        pass  # a config that needs detrex raises the full error (naming DETREX_ROOT) when loaded
    add_to_sys_path(_REPO_ROOT)


class GradientClipHook(hooks.HookBase):
    """Clips the gradient norm after backward (after unscaling under AMP), as detrex's trainer does."""

    def __init__(self, max_norm: float, norm_type: float = 2.0):
        self.max_norm = max_norm
        self.norm_type = norm_type

    def after_backward(self):
        trainer = self.trainer
        if isinstance(trainer, AMPTrainer):
            trainer.grad_scaler.unscale_(trainer.optimizer)
        parameters = [p for group in trainer.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if parameters:
            torch.nn.utils.clip_grad_norm_(parameters, max_norm=self.max_norm, norm_type=self.norm_type)


def _ema():
    from detrex.modeling import ema

    return ema


def _ema_enabled(cfg) -> bool:
    return bool(cfg.train.get("model_ema", {}).get("enabled", False))


def prepare_config(cfg):
    """Applies the train_net conventions above to a loaded (and overridden) config."""
    device = cfg.train.get("device", "cuda")
    if "device" in cfg.model:
        cfg.model.device = device
    add_deformable_lr_factor(cfg, cfg.train.get("deformable_lr_factor", DEFORMABLE_LR_FACTOR))
    if cfg.train.get("fast_dev_run", {}).get("enabled", False):
        cfg.train.max_iter = 20
        cfg.train.eval_period = 10
        cfg.train.log_period = 1
    return cfg


def do_test(cfg, model):
    """Runs ``cfg.dataloader.evaluator`` over ``cfg.dataloader.test``; returns its results."""
    if "evaluator" not in cfg.dataloader:
        logger.info("No dataloader.evaluator in the config: skipping evaluation")
        return {}
    # The loader first: it registers/loads the dataset the evaluator reads.
    test_loader = instantiate(cfg.dataloader.test)
    results = inference_on_dataset(model, test_loader, instantiate(cfg.dataloader.evaluator))
    print_csv_format(results)
    if _ema_enabled(cfg):
        ema = _ema()
        logger.info("Evaluating with the EMA weights")
        with ema.apply_model_ema_and_restore(model):
            ema_results = inference_on_dataset(
                model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
            )
        print_csv_format(ema_results)
        results = {**results, **{f"ema/{key}": value for key, value in ema_results.items()}}
    return results


def build_training(args, cfg):
    """The model (DDP-wrapped with several processes), its trainer with train_net's hooks, and
    the checkpointer (already resumed or loaded). ``trainer.train(start_iter, max_iter)`` runs it;
    returns ``(trainer, start_iter)``."""
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = create_ddp_model(model, **cfg.train.ddp)
    ema_kwargs = {}
    if _ema_enabled(cfg):
        ema = _ema()
        ema.may_build_model_ema(cfg, model)
        ema_kwargs = ema.may_get_ema_checkpointer(cfg, model)

    amp = bool(cfg.train.amp.enabled)
    if amp and not str(cfg.train.device).startswith("cuda"):
        logger.warning("train.amp.enabled needs CUDA; training in full precision on %s", cfg.train.device)
        amp = False
    trainer = (AMPTrainer if amp else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = DetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer, **ema_kwargs)

    clip = cfg.train.get("clip_grad", {})
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            _ema().EMAHook(cfg, model) if _ema_enabled(cfg) else None,
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            GradientClipHook(**clip.params) if clip.get("enabled", False) else None,
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period)
            if comm.is_main_process()
            else None,
        ]
    )

    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    # A resumed checkpoint stores the iteration that had finished; start after it.
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    return trainer, start_iter


def do_train(args, cfg):
    trainer, start_iter = build_training(args, cfg)
    trainer.train(start_iter, cfg.train.max_iter)


def do_eval(args, cfg):
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    model = create_ddp_model(model)
    ema_kwargs = {}
    if _ema_enabled(cfg):
        ema = _ema()
        ema.may_build_model_ema(cfg, model)
        ema_kwargs = ema.may_get_ema_checkpointer(cfg, model)
    # --resume evaluates the last checkpoint of train.output_dir, else train.init_checkpoint.
    DetectionCheckpointer(model, cfg.train.output_dir, **ema_kwargs).resume_or_load(
        cfg.train.init_checkpoint, resume=args.resume
    )
    if _ema_enabled(cfg) and cfg.train.model_ema.get("use_ema_weights_for_eval_only", False):
        _ema().apply_model_ema(model)
    return do_test(cfg, model)


def main(args):
    setup_paths()
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    prepare_config(cfg)
    default_setup(cfg, args)
    if args.eval_only:
        results = do_eval(args, cfg)
        if comm.is_main_process():
            print(results)
        return results
    return do_train(args, cfg)


def invoke_main() -> None:
    args = default_argument_parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()
