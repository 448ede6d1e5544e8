"""What the report figures show: each panel titled with its own name, titles clear of ticks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure

import evalwatch.reporting.drift_report as drift_report
import evalwatch.reporting.plots as plots
from evalwatch.evaluators.summary import MetricSummary


@pytest.fixture
def captured(monkeypatch) -> list[Figure]:
    """The figures the report functions render, kept open instead of turned into PNGs."""
    figs: list[Figure] = []

    def keep(fig: Figure) -> str:
        figs.append(fig)
        return "data:image/png;base64,"

    monkeypatch.setattr(drift_report, "figure_to_data_uri", keep)
    monkeypatch.setattr(plots, "figure_to_data_uri", keep)
    return figs


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_visible()]


def test_each_moved_distribution_is_titled_with_its_own_column(captured):
    rng = np.random.default_rng(1)
    names = ["latency_ms", "cost", "output_tokens", "response_length"]
    base = {n: rng.normal(0, 1, 300) for n in names}
    cur = {n: rng.normal(1, 1, 300) for n in names}
    assert drift_report.moved_distributions_png(base, cur, names, "overall") is not None
    (fig,) = captured
    assert _titles(fig) == names
    legends = [
        t.get_text() for ax in fig.axes if ax.get_visible() for t in ax.get_legend().get_texts()
    ]
    assert legends == ["baseline (n=300)", "current (n=300)"] * len(names)


def _overlaps(fig: Figure) -> list[tuple[str, str]]:
    """(panel title, tick label) pairs whose drawn boxes intersect."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    clashes = []
    axes = [ax for ax in fig.axes if ax.get_visible()]
    for ax in axes:
        title = ax.title.get_window_extent(renderer)
        for other in axes:
            labels: list[Any] = [*other.get_xticklabels(), *other.get_yticklabels()]
            for label in labels:
                if label.get_text() and title.overlaps(label.get_window_extent(renderer)):
                    clashes.append((ax.get_title(), label.get_text()))
    return clashes


def test_panel_titles_do_not_collide_with_the_tick_labels_above(captured):
    summaries = [
        MetricSummary(
            evaluator="heuristics",
            metric=metric,
            model_version=version,
            count=100,
            mean=0.5,
            ci_low=0.4,
            ci_high=0.6,
            unscored=0,
        )
        for metric in ("empty_response", "json_valid", "pii_leak", "refusal", "response_chars")
        for version in ("v1.0", "v1.1", "v2.0-canary")
    ]
    assert plots.group_comparison_png(summaries) is not None
    (fig,) = captured
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 5
    assert _overlaps(fig) == []
