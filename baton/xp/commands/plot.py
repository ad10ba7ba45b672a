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
    from baton.loggers.overview import curve_panel, pyplot, save_figure

    try:
        plt = pyplot()
    except UserError:
        raise UserError("--plot needs matplotlib: pip install 'baton[plot]'") from None
    metrics = list(dict.fromkeys(metric for _, metric in columns))
    if not metrics or not history:
        raise UserError("--plot: the XP has no finished epoch to draw yet")
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for axis, metric in zip(axes.flat, metrics, strict=False):
        curve_panel(axis, history, [(stage, name) for stage, name in columns if name == metric], metric)
    for axis in list(axes.flat)[len(metrics):]:
        axis.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path, 110, f"--plot: cannot write {path}", "choose another path")
    return len(metrics)
