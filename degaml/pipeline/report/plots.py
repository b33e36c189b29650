"""The report's PNG plots: scores per task, the stage ablation, accuracy against seconds per target."""

from __future__ import annotations

import statistics
from pathlib import Path

from .rows import Cell
from .tables import ABLATION


def plots(agg: dict[tuple[str, str], Cell], methods: list[str], domains: dict[str, list[str]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    tasks = [t for ts in domains.values() for t in ts]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tasks) * len(methods) / 3), 4))
    width = 0.8 / max(len(methods), 1)
    for i, m in enumerate(methods):
        xs = [j + i * width for j, t in enumerate(tasks) if (m, t) in agg]
        ys = [100 * agg[(m, t)].mean for t in tasks if (m, t) in agg]
        es = [100 * agg[(m, t)].spread for t in tasks if (m, t) in agg]
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=m)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks, rotation=30, ha="right")
    ax.set_ylabel("score (%)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "per_task.png", dpi=120)
    plt.close(fig)
    written.append("per_task.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k, ts in enumerate(domains.values()):
        stages = [s for s, _ in ABLATION if all((s, t) in agg for t in ts)]
        values = [100 * statistics.fmean(agg[(s, t)].mean for t in ts) for s in stages]
        ax.bar([k + i * 0.25 for i in range(len(stages))], values, 0.25,
               color=["#999999", "#6baed6", "#08519c"][:len(stages)])
        for i, v in enumerate(values):
            ax.text(k + i * 0.25, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks([k + 0.25 for k in range(len(domains))], list(domains))
    ax.set_ylabel("average score (%)")
    ax.set_title("stage ablation: base / +generalization / +adaptation", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "ablation.png", dpi=120)
    plt.close(fig)
    written.append("ablation.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    markers = "osD^vP*X"  # coinciding methods (DeGAML choosing "none") stay distinguishable
    for i, m in enumerate(methods):
        points = [(agg[(m, t)].seconds, agg[(m, t)].mean) for t in tasks if (m, t) in agg]
        if not points:
            continue
        seconds = statistics.fmean(p[0] for p in points)
        ax.scatter([max(seconds, 0.01)], [100 * statistics.fmean(p[1] for p in points)], label=m,
                   marker=markers[i % len(markers)], s=60 - 4 * i, alpha=0.8)
    ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("seconds per target (generation + adaptation, or training)")
    ax.set_ylabel("average score (%)")
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_time.png", dpi=120)
    plt.close(fig)
    written.append("accuracy_vs_time.png")
    return written
