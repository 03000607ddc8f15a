"""Figures without pyplot: each is a `matplotlib.figure.Figure` with its own Agg canvas, so plotting neither
switches the user's backend nor touches pyplot's global figure list (nothing to close, thread-safe)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any):
    """(figure, axes) like `pyplot.subplots`, on a standalone figure; `figsize` and subplot options as there."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=kwargs.pop("figsize", None))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save(fig, path: str | Path, **kwargs: Any) -> Path:
    """Write `fig` to `path` (format from the suffix) and return the path."""
    path = Path(path)
    fig.savefig(path, **kwargs)
    return path


def colormap(name: str):
    """A named colormap, from matplotlib's registry (no pyplot)."""
    import matplotlib

    return matplotlib.colormaps[name]
