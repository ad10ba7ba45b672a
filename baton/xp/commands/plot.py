"""`baton info -f SIG -m --plot FILE.png`: an XP's curves, one panel per metric, a line per
stage, epochs on x. Needs matplotlib (`pip install 'baton[plot]'`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from baton.errors import UserError


def plot_history(history: Sequence[dict[str, dict[str, float]]], columns: Sequence[tuple[str, str]], path: Path, title: str) -> int:
    """Draw `columns` ((stage, metric) pairs) of `history` into `path`; returns the panel count.

    Raises:
        UserError: matplotlib is missing, there is nothing to draw, or the file cannot be written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed, none opened
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'baton[plot]'") from None
    metrics = list(dict.fromkeys(metric for _, metric in columns))
    if not metrics or not history:
        raise UserError("--plot: the XP has no finished epoch to draw yet")
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for axis, metric in zip(axes.flat, metrics, strict=False):
        for stage, name in columns:
            if name != metric:
                continue
            points = [(epoch, entry[stage][name]) for epoch, entry in enumerate(history, start=1)
                      if isinstance(entry.get(stage, {}).get(name), (int, float))]
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", markersize=3, label=stage)
        axis.set_title(metric)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    for axis in list(axes.flat)[len(metrics):]:
        axis.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
    except OSError as exc:
        raise UserError(f"--plot: cannot write {path} ({exc.strerror or exc}); choose another path") from None
    finally:
        plt.close(figure)
    return len(metrics)
