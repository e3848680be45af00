"""Plots for the demo and benchmarks (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, out) -> Path:
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def range_caption(x: np.ndarray, lo: float, hi: float, floor: Optional[float] = None) -> str:
    """``'range [lo, hi], p% clipped'``; with a floor, the share under it is told apart.

    Values under a score-threshold floor are clipped to the lowest level, which lies
    under the threshold: they are discarded after quantization as before, not lost.
    """
    head = f'range [{lo:.3g}, {hi:.3g}]'
    if floor is None:
        return f'{head}, {100 * float(((x < lo) | (x > hi)).mean()):.2f}% clipped'
    return (f'{head}, {100 * float((x < lo).mean()):.2f}% under it (and under the floor {floor:.3g}: '
            f'discarded either way), {100 * float((x > hi).mean()):.2f}% above')


def activation_histograms(samples: Dict[str, tuple], out, bins: int = 200) -> Path:
    """One panel per layer: histogram of its activations (log counts), the calibrated clip range marked.

    Args:
        samples: layer name -> (values, range min, range max) or (values, range min, range max,
            floor): a quantizer with a score-threshold floor gets it marked (dotted) and its
            clipped share split into under the floor and above the range.
        out: PNG path.
    """
    plt = _plt()
    n = len(samples)
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, (x, lo, hi, *rest)) in zip(axes.flat, samples.items()):
        floor = rest[0] if rest else None
        x = np.asarray(x, dtype=np.float64).ravel()
        span = max(x.max(), hi) - min(x.min(), lo)
        edges = np.linspace(min(x.min(), lo) - 0.02 * span, max(x.max(), hi) + 0.02 * span, bins + 1)
        ax.hist(x, bins=edges, color='#4c72b0', log=True)
        for v in (lo, hi):
            ax.axvline(v, color='#c44e52', ls='--', lw=1.2)
        if floor is not None:
            ax.axvline(floor, color='#55a868', ls=':', lw=1.5)
        ax.set_title(f'{name}\n{range_caption(x, lo, hi, floor)}', fontsize=9)
        ax.set_xlabel('activation value')
        ax.set_ylabel('count (log)')
    for ax in list(axes.flat)[n:]:
        ax.axis('off')
    return _save(plt, fig, out)


def map_bars(rows: Sequence[Tuple[str, float]], out, title: str = 'COCO bbox mAP per variant') -> Path:
    """Horizontal bar chart of mAP per variant, values printed on the bars."""
    plt = _plt()
    names: List[str] = [r[0] for r in rows]
    vals = [r[1] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, vals, color=['#8c8c8c'] + ['#4c72b0'] * (len(rows) - 1))
    for yi, v in zip(y, vals):
        ax.text(v, yi, f' {v:.3f}', va='center', fontsize=9)
    ax.set_yticks(y, names, fontsize=9)
    ax.set_xlim(0, max(vals + [1e-3]) * 1.2)
    ax.set_xlabel('bbox mAP@[.5:.95]')
    ax.set_title(title)
    return _save(plt, fig, out)
