"""PNG of a benchmark: latency distribution per side and batch, and per-round speedup.

matplotlib is an optional extra (``pip install 'edgeres[plot]'``), imported
only here, with the non-interactive Agg backend.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeres.bench.runner import BenchResult
from edgeres.errors import BenchError


def import_pyplot():  # noqa: ANN201 - matplotlib is optional
    """matplotlib.pyplot on the Agg backend, or a BenchError naming the extra to install."""
    try:
        import matplotlib
    except ImportError:
        raise BenchError("--plot needs matplotlib, which is not installed; pip install 'edgeres[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _label(settings: dict, role: str) -> str:
    model = Path(str(settings.get("model", "?"))).name
    extra = settings.get("precision") or ""
    return f"{role}: {settings.get('backend')} {settings.get('device')} {extra} {model}".replace("  ", " ")


def plot_result(result: BenchResult, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Write the figure to ``path`` (PNG, atomically) and return the path."""
    from edgeres._io import atomic_path, check_writable_parent

    check_writable_parent(path)
    plt = import_pyplot()
    with_ref = result.reference is not None
    fig, axes = plt.subplots(1, 2 if with_ref else 1, figsize=(12 if with_ref else 7, 4.8), squeeze=False)
    ax = axes[0][0]
    data, labels, colors = [], [], []
    for r in result.results:
        for role, side, color in (("ref", r.reference, "#7f7f7f"), ("cand", r.candidate, "#1f77b4")):
            if side is None:
                continue
            data.append(side.samples.e2e_ms)
            labels.append(f"b{r.batch_size} {role}")
            colors.append(color)
    parts = ax.violinplot(data, showmedians=True, showextrema=False)
    for body, color in zip(parts["bodies"], colors):
        body.set_facecolor(color)
        body.set_alpha(0.6)
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30 if len(labels) > 4 else 0)
    ax.set_yscale("log")
    ax.set_ylabel("end-to-end latency per iteration (ms, log)")
    ax.set_title("latency distribution (median marked)")
    ax.grid(True, axis="y", alpha=0.3)
    if with_ref:
        ax2 = axes[0][1]
        for i, r in enumerate(result.results):
            if r.speedup is None:
                continue
            xs = [i + 1] * len(r.speedup.per_round)
            ax2.scatter(xs, r.speedup.per_round, color="#1f77b4", alpha=0.6, s=18, label="per round" if i == 0 else None)
            ax2.hlines(r.speedup.median, i + 0.75, i + 1.25, color="black", label="median" if i == 0 else None)
            ax2.vlines(i + 1, r.speedup.ci_low, r.speedup.ci_high, color="black", alpha=0.4, linewidth=4,
                       label="95% CI of median" if i == 0 else None)
        ax2.axhline(1.0, color="#d62728", linestyle="--", linewidth=1, label="reference speed")
        ax2.set_xticks(range(1, len(result.results) + 1), [f"batch {r.batch_size}" for r in result.results])
        ax2.set_ylabel("speedup (reference latency / candidate latency)")
        ax2.set_title("speedup vs FP32 reference, alternated rounds")
        ax2.grid(True, axis="y", alpha=0.3)
        ax2.legend(fontsize=8)
    title = _label(result.candidate, "candidate")
    if result.reference:
        title += "\n" + _label(result.reference, "reference")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return Path(path)
