"""One picture of a run for a person to look at: the log-mel spectrograms of a few originals
beside their reconstructions, above the training curves, in one PNG beside the samples.

A table of dB says how far a codec is from its input, not where: the spectrograms show which
bands and which onsets it loses, the curves whether more training would help. Drawing needs
matplotlib (`pip install 'baton[plot]'`, part of `.[dev]`); `curve_panel` also draws
`baton info --plot`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .spectrogram import log_mel

History = Sequence[Mapping[str, Mapping[str, Any]]]
Line = tuple[str, str]  # (stage, metric) of a history entry


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (no display needed, none opened)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("drawing a picture needs matplotlib: pip install 'baton[plot]'") from None
    return plt


def curve_panel(axis: Any, history: History, lines: Sequence[Line], title: str) -> None:
    """One panel: a line per (stage, metric) over the epochs of `history` (missing points skipped)."""
    for stage, name in lines:
        points = [(epoch, entry[stage][name]) for epoch, entry in enumerate(history, start=1)
                  if isinstance(entry.get(stage, {}).get(name), (int, float))]
        if points:
            label = stage if len({metric for _, metric in lines}) == 1 else f"{stage} {name}"
            axis.plot(*zip(*points, strict=True), marker="o", markersize=3, label=label)
    axis.set_title(title)
    axis.set_xlabel("epoch")
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize="small")


def write_overview(
    path: Path,
    pairs: Sequence[tuple[str, np.ndarray, np.ndarray]],
    sample_rate: int,
    history: History,
    panels: Mapping[str, Sequence[Line]],
    title: str,
) -> Path:
    """Draw `pairs` ((name, original, reconstruction), mono or [channels, time] arrays) as log-mel
    spectrograms, original left and reconstruction right on one colour scale per pair, above one
    curve panel per entry of `panels` (title -> lines); write the PNG to `path`.

    Raises:
        UserError: matplotlib is missing, or the file cannot be written.
    """
    plt = pyplot()
    rows, curve_cols = len(pairs), max(1, len(panels))
    figure = plt.figure(figsize=(10, 1.7 * rows + 3.0), layout="constrained")
    grid = figure.add_gridspec(rows + 1, 2 * curve_cols, height_ratios=[1.0] * rows + [1.6])
    for row, (name, original, reconstruction) in enumerate(pairs):
        mels = [log_mel(original, sample_rate), log_mel(reconstruction, sample_rate)]
        top = max(float(m.max()) for m in mels)
        for col, (mel, what) in enumerate(zip(mels, ("original", "reconstruction"), strict=True)):
            axis = figure.add_subplot(grid[row, col * curve_cols:(col + 1) * curve_cols])
            seconds = np.shape(original)[-1] / sample_rate
            axis.imshow(10 * mel, origin="lower", aspect="auto", vmin=10 * top - 80, vmax=10 * top,
                        extent=(0.0, seconds, 0, mel.shape[0]), cmap="viridis")
            axis.set_yticks([])
            axis.set_title(f"{name}: {what}", fontsize="small", loc="left")
            if row + 1 < rows:
                axis.set_xticklabels([])
            else:
                axis.set_xlabel("seconds")
    for col, (panel, lines) in enumerate(panels.items()):
        curve_panel(figure.add_subplot(grid[rows, 2 * col:2 * col + 2]), history, lines, panel)
    figure.suptitle(title)
    save_figure(figure, path, 100, f"cannot write the picture {path}", "free space or fix the folder's permissions")
    return path


def save_figure(figure: Any, path: Path, dpi: int, what: str, fix: str) -> None:
    """Write `figure` as an image at `path`, then free it; a file system error is one line,
    `<what> (<reason>); <fix>`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=dpi)
    except OSError as exc:
        raise UserError(f"{what} ({exc.strerror or exc}); {fix}") from None
    finally:
        pyplot().close(figure)
