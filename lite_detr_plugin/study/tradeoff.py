"""The accuracy / cost trade-off study of seed 003 at small scale, on the synthetic dataset.

Each run trains one tiny config (``tools/train_net.py`` in a subprocess, one
thread) at one input resolution with one seed, then is measured in this process:
COCO AP / AP_S / AP_M / AP_L on the synthetic validation split, fvcore GFLOPs of
the encoder and the whole model (:func:`lite_detr_plugin.flops.averaged_gflops`,
averaged over validation images) and CPU latency (median forward time, batch 1,
one thread; by default all models are then timed again side by side,
:mod:`.latency`). Rows are written to the JSON after every run, so an interrupted
study keeps what it finished, and a run whose ``model_final.pth`` exists (same
config, resolution, seed, iterations and batch size: :func:`run_name`) is not
trained again.

Needs detectron2 and detrex (imported inside the functions).
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["StudyConfig", "STUDY_CONFIGS", "RESOLUTIONS", "resolution_overrides", "run_name", "run_dir_and_opts", "summarize", "main"]


@dataclass(frozen=True)
class StudyConfig:
    """One point of the study: a tiny config file plus ``key=value`` overrides."""

    name: str
    label: str
    config_file: str
    overrides: Tuple[str, ...] = ()


_TINY = "projects/lite_dino/configs/tiny_cpu/"
#: The study's configs. Every one is lite_dino_tiny_cpu.py (R18, KDA decoder cross-attention)
#: with one change: the encoder (standard, H2L2, skipscale) or the training data (zoom-out).
STUDY_CONFIGS = {
    c.name: c
    for c in (
        StudyConfig("standard", "standard encoder (6 layers, MSDA)", _TINY + "dino_tiny_cpu.py"),
        StudyConfig("lite_h3l1_kda", "Lite H3L1-(2+1)x3, KDA", _TINY + "lite_dino_tiny_cpu.py"),
        StudyConfig(
            "skipscale", "Lite H3L1-(2+1)x3, MSDA (skipscale)", _TINY + "lite_dino_tiny_cpu.py",
            ("model.transformer.encoder.attention=msda",),
        ),
        StudyConfig(
            "lite_h2l2_kda", "Lite H2L2-(2+1)x3, KDA", _TINY + "lite_dino_tiny_cpu.py",
            ("model.transformer.encoder.variant='H2L2-(2+1)x3'",),  # quoted: Hydra's grammar
        ),
        StudyConfig("zoom_out", "Lite H3L1-(2+1)x3, KDA + zoom-out", _TINY + "lite_dino_tiny_cpu_zoom_out.py"),
    )
}
#: Test short edge -> (training short edges, max size). 128: the tiny configs' own (the synthetic images are 128×160).
# Training edges stay >= 64: below that the 4 levels hold fewer tokens than the 100 two-stage proposals (topk fails).
RESOLUTIONS = {128: ((112, 128, 144), 192), 96: ((80, 96, 112), 144), 64: ((64, 72, 80), 96)}
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def resolution_overrides(cfg, short_edge: int) -> List[str]:
    """``key=value`` overrides that set the train and test resizes of a loaded tiny config."""
    import detectron2.data.transforms as T

    if short_edge not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {sorted(RESOLUTIONS)}, got {short_edge}")
    train_edges, max_size = RESOLUTIONS[short_edge]
    out = []
    for split, edges in (("train", list(train_edges)), ("test", short_edge)):
        augmentations = cfg.dataloader[split].mapper.augmentation
        found = [i for i, a in enumerate(augmentations) if a.get("_target_") is T.ResizeShortestEdge]
        if len(found) != 1:
            raise ValueError(f"expected one ResizeShortestEdge in dataloader.{split}.mapper.augmentation, got {found}")
        key = f"dataloader.{split}.mapper.augmentation.{found[0]}"
        out += [f"{key}.short_edge_length={edges}", f"{key}.max_size={max_size}"]
    return out


def schedule_overrides(max_iter: int, batch_size: int = 4) -> List[str]:
    """The tiny configs' schedule (warm-up 1/15, lr ×0.1 for the last 1/6) at ``max_iter`` iterations."""
    if max_iter < 2:
        raise ValueError(f"max_iter must be >= 2 (the schedule drops the lr before the end), got {max_iter}")
    drop = min(max(1, round(max_iter * 5 / 6)), max_iter - 1)
    return [
        f"train.max_iter={max_iter}",
        f"dataloader.train.total_batch_size={batch_size}",
        f"lr_multiplier.scheduler.milestones=[{drop},{max_iter}]",
        f"lr_multiplier.warmup_length={1 / 15}",
        f"train.log_period={max(1, min(20, max_iter))}",
        f"train.eval_period={max_iter}",
        f"train.checkpointer.period={max_iter + 1}",
    ]


def run_name(config: str, resolution: int, seed: int, max_iter: int, batch_size: int) -> str:
    """The run's folder: the budget is in the name, so a finished run is reused only at the same budget."""
    return f"{config}_r{resolution}_s{seed}_i{max_iter}_b{batch_size}"


def run_dir_and_opts(config: StudyConfig, resolution: int, seed: int, max_iter: int, batch_size: int,
                     output_dir: str) -> Tuple[str, List[str]]:
    """A run's folder (absolute) and the ``key=value`` overrides it trains and is measured with."""
    run_dir = os.path.abspath(os.path.join(output_dir, run_name(config.name, resolution, seed, max_iter, batch_size)))
    opts = list(config.overrides) + resolution_overrides(_load(config, config.overrides), resolution)
    opts += schedule_overrides(max_iter, batch_size) + [f"train.seed={seed}", f"train.output_dir={run_dir}"]
    return run_dir, opts


def _load(config: StudyConfig, opts: Sequence[str]):
    from ..flops.model import load_detrex_config

    return load_detrex_config(config.config_file, opts, device=None)


def _train(config_file: str, opts: Sequence[str], log_path: str) -> float:
    from ..config.detrex import plugin_root

    script = os.path.join(plugin_root() or ".", "tools", "train_net.py")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        done = subprocess.run([sys.executable, script, "--config-file", config_file, *opts], stdout=log,
                              stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"training failed (exit {done.returncode}); see {log_path}")
    return time.perf_counter() - start


def _evaluate(cfg, model, output_dir: str) -> Dict[str, float]:
    from detectron2.config import instantiate
    from detectron2.evaluation import inference_on_dataset

    cfg.dataloader.evaluator.output_dir = output_dir
    loader = instantiate(cfg.dataloader.test)
    results = inference_on_dataset(model, loader, instantiate(cfg.dataloader.evaluator))["bbox"]
    # COCOeval gives NaN for a size range without objects (the synthetic set has no large ones): JSON null
    return {key: None if math.isnan(float(results[key])) else float(results[key]) for key in METRICS}


def _latency_ms(model, batches) -> float:
    import torch

    times = []
    with torch.no_grad():
        for index, batch in enumerate(batches):
            start = time.perf_counter()
            model(batch)
            if index > 0:  # the first call warms up
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure_run(config: StudyConfig, opts: Sequence[str], checkpoint: str, output_dir: str,
                flop_images: int, latency_images: int) -> Dict:
    """AP (COCO), GFLOPs and latency of a trained run."""
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate

    from ..flops.model import averaged_gflops, dataset_inputs

    cfg = _load(config, opts)
    model = instantiate(cfg.model).eval()
    DetectionCheckpointer(model).load(checkpoint)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        row = _evaluate(cfg, model, output_dir)
        val = cfg.dataloader.test.dataset.names
        flops = averaged_gflops(model, dataset_inputs(cfg, val, flop_images), progress=False)
        row.update(encoder_gflops=flops["encoder"], total_gflops=flops["total"])
        row["latency_ms"] = _latency_ms(model, dataset_inputs(cfg, val, latency_images + 1))
    finally:
        torch.set_num_threads(threads)
    return row


def summarize(rows: List[Dict]) -> List[Dict]:
    """Mean and standard deviation over seeds of every (config, resolution)."""
    groups: Dict[Tuple[str, int], List[Dict]] = {}
    for row in rows:
        groups.setdefault((row["config"], row["resolution"]), []).append(row)
    out = []
    for (name, resolution), runs in groups.items():
        entry = {"config": name, "label": runs[0]["label"], "resolution": resolution, "seeds": [r["seed"] for r in runs]}
        for key in METRICS + ("encoder_gflops", "total_gflops", "latency_ms"):
            values = [r[key] for r in runs if r[key] is not None]
            entry[key] = statistics.fmean(values) if values else None
            entry[f"{key}_std"] = statistics.pstdev(values) if values else None
        out.append(entry)
    return out


def format_table(summary: List[Dict]) -> str:
    """A GitHub-markdown table of the summary (mean ± std over seeds)."""
    from tabulate import tabulate

    def pm(entry, key, digits):
        if entry[key] is None:
            return "–"
        return f"{entry[key]:.{digits}f} ± {entry[key + '_std']:.{digits}f}"

    rows = [
        [e["label"], e["resolution"], len(e["seeds"]), pm(e, "AP", 1), pm(e, "APs", 1), pm(e, "APm", 1),
         pm(e, "APl", 1), f"{e['encoder_gflops']:.3f}", f"{e['total_gflops']:.3f}", pm(e, "latency_ms", 1)]
        for e in sorted(summary, key=lambda e: (-e["resolution"], list(STUDY_CONFIGS).index(e["config"])
                                                if e["config"] in STUDY_CONFIGS else 99))
    ]
    headers = ["config", "short edge", "seeds", "AP", "AP_S", "AP_M", "AP_L", "encoder GFLOPs", "total GFLOPs",
               "CPU latency ms"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _write(path: str, document: Dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1)
    os.replace(tmp, path)


def run_study(configs: Sequence[str], resolutions: Sequence[int], seeds: Sequence[int], max_iter: int,
              output_dir: str, flop_images: int = 5, latency_images: int = 10, json_path: Optional[str] = None,
              progress: bool = True, batch_size: int = 4) -> Dict:
    """Trains and measures every (config, resolution, seed); returns (and writes) the JSON document."""
    from tqdm import tqdm

    unknown = [c for c in configs if c not in STUDY_CONFIGS]
    if unknown:
        raise ValueError(f"unknown study config(s) {unknown}; choose from {list(STUDY_CONFIGS)}")
    os.makedirs(output_dir, exist_ok=True)
    json_path = json_path or os.path.join(output_dir, "tradeoff.json")
    document = {
        "meta": {
            "command": " ".join(sys.argv),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS="
                       f"{os.environ.get('OMP_NUM_THREADS', 'unset')}",
            "max_iter": max_iter, "batch_size": batch_size, "seeds": list(seeds), "resolutions": list(resolutions),
            "flop_images": flop_images, "latency_images": latency_images,
            "configs": {name: vars(STUDY_CONFIGS[name]) | {"overrides": list(STUDY_CONFIGS[name].overrides)}
                        for name in configs},
        },
        "runs": [],
    }
    plan = [(c, r, s) for r in resolutions for s in seeds for c in configs]
    start = time.perf_counter()
    for name, resolution, seed in tqdm(plan, desc="study", unit="run", disable=not progress):
        config = STUDY_CONFIGS[name]
        run_dir, opts = run_dir_and_opts(config, resolution, seed, max_iter, batch_size, output_dir)
        os.makedirs(run_dir, exist_ok=True)
        checkpoint = os.path.join(run_dir, "model_final.pth")
        train_seconds = None
        if not os.path.isfile(checkpoint):
            from ..flops.model import resolve_config_file

            train_seconds = _train(resolve_config_file(config.config_file), opts, os.path.join(run_dir, "train.log"))
        row = {"config": name, "label": config.label, "resolution": resolution, "seed": seed,
               "max_iter": max_iter, "batch_size": batch_size, "train_seconds": train_seconds}
        row.update(measure_run(config, opts, checkpoint, os.path.join(run_dir, "eval"), flop_images, latency_images))
        document["runs"].append(row)
        document["summary"] = summarize(document["runs"])
        document["meta"]["wall_seconds"] = time.perf_counter() - start
        _write(json_path, document)
    return document


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(STUDY_CONFIGS), choices=list(STUDY_CONFIGS))
    parser.add_argument("--resolutions", nargs="+", type=int, default=[128, 96], choices=sorted(RESOLUTIONS),
                        help="test short edges (training scales follow)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--max-iter", type=int, default=300, help="training iterations per run")
    parser.add_argument("--batch-size", type=int, default=4, help="training images per iteration")
    parser.add_argument("--output-dir", default="./output/tradeoff_study")
    parser.add_argument("--json", help="default: OUTPUT_DIR/tradeoff.json")
    parser.add_argument("--png", help="the AP-vs-GFLOPs chart (default: OUTPUT_DIR/tradeoff.png)")
    parser.add_argument("--flop-images", type=int, default=5, help="validation images FLOPs are averaged over")
    parser.add_argument("--latency-images", type=int, default=10, help="validation images latency is the median of")
    parser.add_argument("--latency-rounds", type=int, default=3,
                        help="after the runs, time all models again side by side in this many rounds (0: keep each "
                             "run's own timing; see lite_detr_plugin/study/latency.py)")
    parser.add_argument("--latency-only", action="store_true",
                        help="only re-time the runs of an existing --json side by side (and redraw the chart)")
    args = parser.parse_args(argv)
    if args.max_iter < 2 or min(args.batch_size, args.flop_images, args.latency_images) < 1 or args.latency_rounds < 0:
        parser.error("--max-iter must be >= 2; --batch-size, --flop-images and --latency-images >= 1; "
                     "--latency-rounds >= 0")
    from .chart import plot_tradeoff
    from .latency import side_by_side_latency

    json_path = args.json or os.path.join(args.output_dir, "tradeoff.json")
    if args.latency_only:
        with open(json_path, encoding="utf-8") as f:
            document = json.load(f)
    else:
        document = run_study(args.configs, args.resolutions, args.seeds, args.max_iter, args.output_dir,
                             args.flop_images, args.latency_images, json_path, batch_size=args.batch_size)
    if args.latency_rounds or args.latency_only:
        side_by_side_latency(document, args.output_dir, max(1, args.latency_rounds), args.latency_images)
        _write(json_path, document)
    png = args.png or os.path.join(args.output_dir, "tradeoff.png")
    plot_tradeoff(document["summary"], png)
    print(format_table(document["summary"]))
    print(f"wall time {document['meta']['wall_seconds'] / 60:.1f} min; rows: {json_path}; chart: {png}")
    return document
