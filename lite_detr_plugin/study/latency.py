"""CPU latency of the study's trained models, timed side by side.

Each run's latency measured right after its training depends on whatever else
the (shared) machine was doing at that moment. Here every model is loaded
first, then timed in rounds: each round times every model, in an order that
rotates from round to round, on the same validation images (batch 1, one
thread, after one warm-up forward). A run's latency is the median over its
rounds × images forwards, so the models share the machine's ups and downs.
"""
import statistics
import time
from typing import Dict, List

__all__ = ["side_by_side_latency"]


def side_by_side_latency(document: Dict, output_dir: str, rounds: int = 3, images: int = 5,
                         progress: bool = True) -> Dict:
    """Sets ``latency_ms`` of every run of ``document`` (a :func:`run_study` result) to the median of
    its side-by-side timings, recomputes the summary, records the method in ``meta["latency"]``, and
    returns ``document``."""
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate
    from tqdm import tqdm

    from ..flops.model import dataset_inputs
    from .tradeoff import STUDY_CONFIGS, _load, run_dir_and_opts, summarize

    if rounds < 1 or images < 1:
        raise ValueError(f"side_by_side_latency: rounds and images must be >= 1, got {rounds}, {images}")
    runs: List[Dict] = document["runs"]
    if not runs:
        raise ValueError("side_by_side_latency: the document has no runs")
    models, inputs = [], {}
    for row in runs:
        config = STUDY_CONFIGS[row["config"]]
        run_dir, opts = run_dir_and_opts(config, row["resolution"], row["seed"], row["max_iter"], row["batch_size"],
                                         output_dir)
        cfg = _load(config, opts)
        model = instantiate(cfg.model).eval()
        DetectionCheckpointer(model).load(f"{run_dir}/model_final.pth")
        if row["resolution"] not in inputs:  # the test resize depends on the resolution only
            inputs[row["resolution"]] = list(dataset_inputs(cfg, cfg.dataloader.test.dataset.names, images))
        models.append(model)
    times: List[List[float]] = [[] for _ in runs]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for round_index in tqdm(range(rounds), desc="latency rounds", disable=not progress):
                order = [(round_index + k) % len(runs) for k in range(len(runs))]
                for index in order:
                    batches = inputs[runs[index]["resolution"]]
                    models[index](batches[0])  # warm-up
                    for batch in batches:
                        start = time.perf_counter()
                        models[index](batch)
                        times[index].append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(threads)
    for row, measured in zip(runs, times):
        row["latency_ms"] = statistics.median(measured)
    document["summary"] = summarize(runs)
    document["meta"]["latency"] = {"method": "side by side: every model timed in each round, rotating order",
                                   "rounds": rounds, "images": images, "threads": 1, "batch": 1}
    return document
