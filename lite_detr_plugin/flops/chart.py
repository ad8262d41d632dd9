"""A bar chart of the encoder GFLOPs report (``lite-detr-flops --png``)."""
from typing import Dict

from .rows import by_key
from .specs import REPORT_MODES


def write_png(report: Dict, path: str) -> None:
    """A bar chart of encoder GFLOPs per variant, a bar per mode, with the paper's values marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in REPORT_MODES if m in report.get("modes", REPORT_MODES)]
    families = [("DINO / H-DETR (Tables 4, 5)", lambda r: r["feedforward_dim"] == 2048 and r["model"] != "H-DETR"
                 and not r["model"].startswith("Lite-H-DETR")),
                ("Deformable DETR (Tables 3, 6)", lambda r: r["feedforward_dim"] == 1024)]
    groups = []
    for title, keep in families:
        rows = by_key([row for row in report["rows"] if keep(row)])
        if rows:
            groups.append((title, rows))
    if not groups:
        raise ValueError("nothing to plot")
    fig, axes = plt.subplots(len(groups), 1, figsize=(13, 5.0 * len(groups)), squeeze=False)
    for ax, (title, rows) in zip(axes[:, 0], groups):
        labels, bars, paper_lo, paper_hi, paper_std, our_std = [], {m: [] for m in modes}, [], [], [], []
        for by_mode in rows.values():
            first = by_mode[modes[0]]
            labels.append(f"{first['model']}\n{first['variant']} {first['attention'].upper()}")
            for mode in modes:
                bars[mode].append(by_mode[mode]["encoder_gflops"])
            low, high = first["paper_encoder_gflops_range"] or (first["paper_encoder_gflops"],) * 2
            paper_lo.append(low)
            paper_hi.append(high)
            paper_std.append(first["paper_standard_encoder_gflops"])
            our_std.append(first["standard_encoder_gflops"])
        x = list(range(len(labels)))
        width = 0.8 / len(modes)
        for i, mode in enumerate(modes):
            offset = (i - (len(modes) - 1) / 2) * width
            ax.bar([v + offset for v in x], bars[mode], width, label=f'ours, "{mode}"')
        mid = [(a + b) / 2 for a, b in zip(paper_lo, paper_hi)]
        err = [[m - a for m, a in zip(mid, paper_lo)], [b - m for m, b in zip(mid, paper_hi)]]
        ax.errorbar(x, mid, yerr=err, fmt="D", color="black", capsize=4, label="paper (published GFLOPs)")
        scaled = [m / modes_std * std for m, modes_std, std in zip(mid, paper_std, our_std)]
        ax.scatter(x, scaled, marker="o", facecolors="none", edgecolors="black", s=60, zorder=3,
                   label="paper ratio × our standard encoder")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
        ax.set_ylabel("encoder GFLOPs")
        h, w = report["size"]
        ax.set_title(f"{title}, {h}×{w}, fvcore ({report['counting']} counting); standard rows: the same encoder "
                     "in every mode")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
