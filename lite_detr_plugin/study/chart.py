"""The trade-off chart, as seed 003's Fig. 5: AP against GFLOPs, arrows from the standard model to each technique."""
from typing import Dict, List

__all__ = ["ARROW_BASES", "plot_tradeoff"]

_COLOURS = {"lite_h3l1_kda": "tab:red", "skipscale": "tab:green", "lite_h2l2_kda": "tab:orange",
            "zoom_out": "tab:purple", "standard": "black"}
#: Where a technique's arrow starts (default: the standard model): zoom-out is trained on the Lite model,
#: so its arrow continues from Lite H3L1 KDA (the same model and GFLOPs) and shows the augmentation alone.
ARROW_BASES = {"zoom_out": "lite_h3l1_kda"}


def plot_tradeoff(summary: List[Dict], path: str, gflops_key: str = "total_gflops") -> str:
    """Writes a PNG of ``summary`` (rows of :func:`lite_detr_plugin.study.tradeoff.summarize`).

    One marker per (config, resolution) with the seeds' standard deviation as error
    bars; coloured arrows from the standard model to each technique at the same
    resolution (zoom-out: from the Lite model it is trained on, :data:`ARROW_BASES`); black arrows from the higher to the lower resolution of the standard
    model. Returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not summary:
        raise ValueError("plot_tradeoff: the summary is empty")
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=100)
    markers = {r: m for r, m in zip(sorted({e["resolution"] for e in summary}, reverse=True), "os^Dv")}
    labelled = set()
    for entry in summary:
        name = entry["config"]
        ax.errorbar(entry[gflops_key], entry["AP"], yerr=entry.get("AP_std", 0.0),
                    fmt=markers[entry["resolution"]], color=_COLOURS.get(name, "tab:blue"), capsize=3, ms=7,
                    label=entry["label"] if name not in labelled else None)
        labelled.add(name)
        ax.annotate(str(entry["resolution"]), (entry[gflops_key], entry["AP"]), textcoords="offset points",
                    xytext=(5, 5), fontsize=7, color="dimgray")
    by_key = {(e["config"], e["resolution"]): e for e in summary}
    for entry in summary:
        base = by_key.get((ARROW_BASES.get(entry["config"], "standard"), entry["resolution"]))
        if base is None or entry["config"] == "standard":
            continue
        _arrow(ax, base, entry, gflops_key, _COLOURS.get(entry["config"], "tab:blue"))
    resolutions = sorted({e["resolution"] for e in summary}, reverse=True)
    for high, low in zip(resolutions, resolutions[1:]):
        if ("standard", high) in by_key and ("standard", low) in by_key:
            _arrow(ax, by_key[("standard", high)], by_key[("standard", low)], gflops_key, "black")
    for resolution, marker in markers.items():
        ax.plot([], [], marker, color="gray", label=f"short edge {resolution}")
    ax.set_xlabel("total GFLOPs per image (fvcore)" if gflops_key == "total_gflops" else gflops_key)
    ax.set_ylabel("COCO AP on the synthetic val split")
    ax.set_title("Accuracy-efficiency trade-off (tiny models, synthetic shapes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _arrow(ax, start: Dict, end: Dict, key: str, colour: str) -> None:
    ax.annotate("", xy=(end[key], end["AP"]), xytext=(start[key], start["AP"]),
                arrowprops=dict(arrowstyle="->", color=colour, lw=1.2, shrinkA=4, shrinkB=4))
