"""Matplotlib figures rendered to inline PNG data URIs, so reports need no external files."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evalwatch.evaluators.summary import MetricSummary

__all__ = [
    "distributions_png",
    "figure_to_data_uri",
    "grid",
    "group_comparison_png",
    "over_time_png",
    "panel_titles",
]


def figure_to_data_uri(fig: Figure) -> str:
    """Render a figure as a ``data:image/png;base64,...`` URI and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def grid(n: int, width: float = 4.2, height: float = 2.8) -> tuple[Figure, list[Axes]]:
    """A figure of ``n`` panels, three to a row, each ``width`` x ``height`` inches.

    The layout is constrained: each panel's title, tick labels and the figure's title get
    their own space, so a title never overlaps the tick labels of the row above.

    Examples:
        >>> fig, axes = grid(4)
        >>> len(axes), fig.get_layout_engine().__class__.__name__
        (4, 'ConstrainedLayoutEngine')
        >>> plt.close(fig)
    """
    cols = min(3, max(1, n))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained"
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def panel_titles(fig: Figure) -> list[str]:
    """The titles of a figure's visible panels, in drawing order (for captions and tests).

    Examples:
        >>> fig, axes = grid(2)
        >>> _ = axes[0].set_title("a"); _ = axes[1].set_title("b")
        >>> panel_titles(fig)
        ['a', 'b']
        >>> plt.close(fig)
    """
    return [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]


def distributions_png(df: pd.DataFrame) -> str | None:
    """Histogram of each metric's scored values (``metric``, ``value`` columns)."""
    ok = df.dropna(subset=["value"])
    metrics = sorted(ok["metric"].unique())
    if not metrics:
        return None
    fig, axes = grid(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        values = ok.loc[ok["metric"] == metric, "value"].to_numpy()
        ax.hist(values, bins=30, color="#4878d0")
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle("Score distributions", fontsize=11)
    return figure_to_data_uri(fig)


def group_comparison_png(summaries: Sequence[MetricSummary]) -> str | None:
    """Mean with its 95% interval of each metric per group (model version or model).

    Args:
        summaries: Per-group summaries (``model_version`` holds the group).
    """
    by_metric: dict[str, list[MetricSummary]] = {}
    for s in summaries:
        if s.mean is not None and s.model_version is not None:
            by_metric.setdefault(f"{s.evaluator}.{s.metric}", []).append(s)
    metrics = sorted(by_metric)
    if not metrics:
        return None
    fig, axes = grid(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        rows = sorted(by_metric[metric], key=lambda s: str(s.model_version))
        means = [float(s.mean or 0.0) for s in rows]
        pairs = list(zip(means, rows, strict=True))
        low = [m - (m if s.ci_low is None else s.ci_low) for m, s in pairs]
        high = [(m if s.ci_high is None else s.ci_high) - m for m, s in pairs]
        ax.bar(
            [str(s.model_version) for s in rows],
            means,
            yerr=[low, high],
            color="#ee854a",
            capsize=3,
        )
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=7, axis="both")
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle("Comparison across model versions (mean, 95% CI)", fontsize=11)
    return figure_to_data_uri(fig)


def over_time_png(df: pd.DataFrame, freq: str = "D") -> str | None:
    """Mean of each metric per period (by the subject's timestamp), one line per group."""
    ok = df.dropna(subset=["value"])
    if ok.empty or ok["ts"].nunique() < 2:
        return None
    metrics = sorted(ok["metric"].unique())
    fig, axes = grid(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        sub = ok[ok["metric"] == metric]
        for group, g in sub.groupby("group"):
            series = g.set_index("ts")["value"].resample(freq).mean().dropna()
            ax.plot(series.index, series.to_numpy(), marker=".", label=str(group))
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.tick_params(axis="x", rotation=30)
    axes[0].legend(fontsize=7)
    fig.suptitle("Scores over time", fontsize=11)
    return figure_to_data_uri(fig)
