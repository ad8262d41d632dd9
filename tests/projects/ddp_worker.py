"""The body of each process of tests/projects/test_multiprocess.py (started by detectron2's launch).

Not a test module: the spawned processes import it by name. Each rank trains with
tools/train_net.py's own ``build_training`` (DDP from ``cfg.train.ddp``, hooks,
checkpointer), then gathers every rank's parameters; rank 0 writes a JSON report.
"""
import json
import math
import os

import torch

from .helpers import REPO_ROOT, load_train_net


def _flat_parameters(model):
    return torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])


def _same_on_every_rank(model):
    """(identical on every rank, max |difference| to rank 0) after gathering the flat parameters."""
    from detectron2.utils import comm

    gathered = comm.all_gather(_flat_parameters(model))
    diffs = [float((g - gathered[0]).abs().max()) for g in gathered]
    return all(torch.equal(g, gathered[0]) for g in gathered), max(diffs)


def _train_tiny_config(train_net, config, output_dir, iters, small_val):
    from detectron2.config import LazyConfig
    from detectron2.engine import default_argument_parser
    from detectron2.utils import comm

    opts = [
        f"train.output_dir={output_dir}",
        f"train.max_iter={iters}",
        "train.log_period=1",
        f"train.eval_period={iters}",
        f"dataloader.test.dataset.names={small_val}",
        f"dataloader.evaluator.dataset_name={small_val}",
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
    ]
    args = default_argument_parser().parse_args(["--config-file", os.path.join(REPO_ROOT, config), "--num-gpus", "2"])
    cfg = train_net.prepare_config(LazyConfig.apply_overrides(LazyConfig.load(args.config_file), opts))
    trainer, start_iter = train_net.build_training(args, cfg)
    model = trainer.model
    before = _flat_parameters(model)
    trainer.train(start_iter, cfg.train.max_iter)
    same, max_diff = _same_on_every_rank(model)
    losses = [v for v, _ in trainer.storage.history("total_loss").values()] if comm.is_main_process() else []
    return {
        "ddp": type(model).__name__,
        "device_ids": getattr(model, "device_ids", None),
        "find_unused_parameters": bool(cfg.train.ddp.get("find_unused_parameters", False)),
        "params_identical": same,
        "params_max_diff": max_diff,
        "params_changed": bool((_flat_parameters(model) - before).abs().max() > 0),
        "losses": losses,
        "losses_finite": all(math.isfinite(v) for v in losses),
    }


def _ddp_encoder_steps(encoder_kwargs, steps=2):
    """``steps`` DDP steps with find_unused_parameters=False on different data per rank
    (DDP raises at the next step if a parameter went without a gradient)."""
    from detectron2.utils import comm

    from lite_detr_plugin.encoders import LiteEncoder
    from lite_detr_plugin.encoders.inputs import detrex_encoder_kwargs
    from lite_detr_plugin.engine import create_ddp_model

    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts them)
    encoder = LiteEncoder(**encoder_kwargs).train()
    model = create_ddp_model(encoder, find_unused_parameters=False, broadcast_buffers=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    levels = encoder_kwargs.get("num_feature_levels", 4)
    for step in range(steps):
        inputs = detrex_encoder_kwargs(
            [(48, 64), (40, 56)], num_levels=levels, embed_dim=encoder_kwargs["embed_dim"],
            seed=100 * comm.get_rank() + step,
        )
        out = model(**inputs)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        (out * weights).sum().backward()
        optimizer.step()
    # One more forward: DDP checks here that the previous backward reduced every parameter.
    model(**detrex_encoder_kwargs([(48, 64)], num_levels=levels, embed_dim=encoder_kwargs["embed_dim"]))
    same, max_diff = _same_on_every_rank(model)
    return {"params_identical": same, "params_max_diff": max_diff}


def run(report_path, tiny_configs, encoder_variants, iters, small_val_root):
    from detectron2.utils import comm

    from lite_detr_plugin.data import register_synthetic_dataset

    torch.set_num_threads(1)
    _, small_val = register_synthetic_dataset(small_val_root, name="synthetic_ddp_test", num_train=4, num_val=2)
    train_net = load_train_net()
    train_net.setup_paths()
    report = {"world_size": comm.get_world_size(), "configs": {}, "encoders": []}
    for name, config in tiny_configs.items():
        output_dir = os.path.join(os.path.dirname(report_path), name)
        report["configs"][name] = _train_tiny_config(train_net, config, output_dir, iters, small_val)
    for kwargs in encoder_variants:
        report["encoders"].append({"kwargs": kwargs, **_ddp_encoder_steps(kwargs)})
    if comm.is_main_process():
        with open(report_path, "w") as f:
            json.dump(report, f, indent=1)
