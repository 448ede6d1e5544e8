"""The fairness section of the drift report and the run report, and the gate's fairness table.

One renderer per output: markdown lines (:func:`fairness_markdown`, the CLI and the Prefect
artifact), an HTML section (:func:`fairness_html_section`) and the gate's slice table
(:func:`gate_fairness_markdown`). Refusal and safety gaps are listed apart from quality gaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalwatch.checks.fairness import FairnessFinding, FairnessReport, GapWidening, MetricGroup
from evalwatch.reporting.markdown import format_p, md_escape
from evalwatch.reporting.page import html_table, section

__all__ = [
    "GAP_SECTIONS",
    "fairness_html_section",
    "fairness_markdown",
    "fairness_summary_lines",
    "gate_fairness_intro",
    "gate_fairness_markdown",
    "gate_fairness_rows",
]

#: The report's headings and the metric groups under each.
GAP_SECTIONS: tuple[tuple[str, tuple[MetricGroup, ...]], ...] = (
    ("Quality gaps", ("quality",)),
    ("Refusal gaps", ("refusal",)),
    ("Safety gaps", ("safety",)),
    ("Latency and satisfaction gaps", ("latency", "satisfaction")),
)


def _num(x: float | None, rate: bool) -> str:
    if x is None:
        return "n/a"
    if rate:
        return f"{100 * x:.1f}%"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _diff(f: FairnessFinding) -> str:
    rate = f.effect_name == "Δrate"
    if f.difference is None:
        return "n/a"
    if rate:
        lo, hi = f.ci or (f.difference, f.difference)
        return f"{100 * f.difference:+.1f} pp [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    lo, hi = f.ci or (f.difference, f.difference)
    return f"{f.difference:+.3g} [{lo:+.3g}, {hi:+.3g}]"


def _row(f: FairnessFinding) -> dict[str, Any]:
    rate = f.effect_name == "Δrate"
    return {
        "segment": f"{f.field}={f.segment}",
        "metric": f.metric,
        "segment value": _num(f.segment_value, rate),
        "rest": _num(f.rest_value, rate),
        "difference [CI]": _diff(f),
        "n segment / rest": f"{f.n_segment:,} / {f.n_rest:,}",
        "test": f.test,
        "adjusted p": format_p(f.p_adjusted),
        "direction": f.direction or "",
        "verdict": f.verdict,
    }


def _md_table(findings: Sequence[FairnessFinding]) -> list[str]:
    cols = list(_row(findings[0]))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for f in findings:
        lines.append("| " + " | ".join(md_escape(str(v)) for v in _row(f).values()) + " |")
    return lines


def fairness_summary_lines(report: FairnessReport) -> list[str]:
    """One plain line per gap (worse-off segments first), for a console summary.

    Examples:
        >>> from evalwatch.checks.fairness import FairnessConfig
        >>> fairness_summary_lines(FairnessReport(findings=[], config=FairnessConfig()))
        []
    """
    gaps = sorted(report.gaps(), key=lambda f: (f.direction != "worse", f.p_adjusted or 0.0))
    return [f"[{f.group}] {f.summary} (adjusted p {format_p(f.p_adjusted)})" for f in gaps]


def _head(report: FairnessReport) -> str:
    tested = sum(f.verdict != "insufficient_data" for f in report.findings)
    segs = ", ".join(
        f"{fld} ({len(vals)}: " + ", ".join(f"{k} {n:,}" for k, n in vals.items()) + ")"
        for fld, vals in report.segments.items()
    )
    return (
        f"Each segment against the rest of its field, {tested} tests; Benjamini-Hochberg at "
        f"false discovery rate {report.config.fdr:g} across all of them; segments (or rests) "
        f"under {report.config.min_segment_size} values are insufficient data. "
        f"Segments: {segs or 'none'}."
    )


def fairness_markdown(report: FairnessReport | None, heading: str = "###") -> list[str]:
    """The fairness section as markdown lines.

    Args:
        report: The report (None: the section says fairness was not checked).
        heading: Markdown heading level of the section.

    Returns:
        Lines (end with a blank line).

    Examples:
        >>> fairness_markdown(None)[0]
        '### Fairness'
    """
    lines = [f"{heading} Fairness", ""]
    if report is None:
        return [*lines, "Not checked (no current traffic or no segment fields).", ""]
    lines += [_head(report), ""]
    lines += [f"- {md_escape(n)}" for n in report.notes]
    if report.notes:
        lines.append("")
    if not report.segments:
        lines += [
            "No segment to compare: set segment fields in the interactions' metadata and "
            "name them in `fairness.segment_fields` (`EVALWATCH_FAIRNESS__SEGMENT_FIELDS`).",
            "",
        ]
        return lines
    for title, groups in GAP_SECTIONS:
        gaps = report.gaps(groups)
        if not gaps:
            continue
        lines += [f"{heading}# {title}", ""]
        lines += _md_table(gaps)
        lines.append("")
    if not report.gap_found:
        lines += ["No gap between any segment and the rest at the report's level.", ""]
    insufficient = [f for f in report.findings if f.verdict == "insufficient_data"]
    if insufficient:
        pairs = sorted({f"{f.field}={f.segment}" for f in insufficient})
        lines += [
            f"Insufficient data ({len(insufficient)} tests) in: {md_escape(', '.join(pairs))}.",
            "",
        ]
    return lines


def fairness_html_section(report: FairnessReport | None) -> str:
    """The fairness section of an HTML report (gaps by group, then every finding).

    Examples:
        >>> "Fairness" in fairness_html_section(None)
        True
    """
    if report is None:
        return section("Fairness", "<p class='meta'>Not checked.</p>")
    parts = [f"<p class='meta'>{_head(report)}</p>"]
    parts += [f"<p class='meta'>{n}</p>" for n in report.notes]
    for title, groups in GAP_SECTIONS:
        gaps = report.gaps(groups)
        if gaps:
            parts.append(f"<h3>{title}</h3>" + html_table([_row(f) for f in gaps]))
    if not report.gap_found:
        parts.append("<p class='ok'>No gap between any segment and the rest.</p>")
    if report.findings:
        parts.append(
            "<details><summary>Every finding</summary>"
            + html_table([_row(f) for f in report.findings])
            + "</details>"
        )
    return section("Fairness", *parts)


_GATE_ORDER = {"widened": 0, "pass": 1, "insufficient_data": 2}
_GATE_HEADER = [
    "segment",
    "metric",
    "n segment / rest",
    "gap baseline",
    "gap candidate",
    "widening [CI]",
    "margin",
    "adjusted p",
    "decision",
]


def gate_fairness_rows(slices: Sequence[GapWidening], limit: int = 30) -> list[list[str]]:
    """The gate's fairness table as rows of cells (header first), widened gaps first.

    Examples:
        >>> gate_fairness_rows([])[0][:2]
        ['segment', 'metric']
    """
    rows = [list(_GATE_HEADER)]
    ordered = sorted(slices, key=lambda s: (_GATE_ORDER[s.decision], s.field, s.segment, s.metric))
    for s in ordered[:limit]:
        ci = (
            f" [{s.ci_low:+.3g}, {s.ci_high:+.3g}]"
            if s.ci_low is not None and s.ci_high is not None
            else ""
        )
        rows.append(
            [
                f"{s.field}={s.segment}",
                s.metric,
                f"{s.n_segment} / {s.n_rest}",
                _num(s.gap_baseline, False),
                _num(s.gap_candidate, False),
                "n/a" if s.widening is None else f"{s.widening:+.3g}{ci}",
                f"{s.margin:g}",
                format_p(s.p_adjusted),
                s.decision,
            ]
        )
    return rows


def gate_fairness_intro(slices: Sequence[GapWidening]) -> str:
    """One line: how many fairness tests ran, how many gaps widened.

    Examples:
        >>> gate_fairness_intro([])
        'Fairness slices: 0 segment x metric tests (Holm-corrected together), 0 too small.'
    """
    tested = sum(s.decision != "insufficient_data" for s in slices)
    widened = sum(s.decision == "widened" for s in slices)
    tail = f"; {widened} gap(s) widened beyond the margin" if widened else ""
    return (
        f"Fairness slices: {tested} segment x metric tests (Holm-corrected together), "
        f"{len(slices) - tested} too small{tail}."
    )


def gate_fairness_markdown(slices: Sequence[GapWidening]) -> list[str]:
    """The gate's fairness slice table: each segment's gap on each side, and its widening.

    Examples:
        >>> gate_fairness_markdown([])
        []
    """
    if not slices:
        return []
    rows = gate_fairness_rows(slices)
    lines = [
        "### Fairness slices",
        "",
        gate_fairness_intro(slices),
        "Gap = rest - segment in the metric's good direction (positive: the segment is "
        "behind); a candidate fails when a gap widens by more than the margin (one-sided "
        "Welch test at alpha / 2).",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows[1:]]
    lines.append("")
    return lines
