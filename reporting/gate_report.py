"""The regression gate's and canary's report as text (terminal, CI log) and markdown.

:func:`gate_text` is what ``evalwatch gate`` and ``evalwatch canary`` print;
:func:`gate_markdown` is the Prefect artifact and a PR comment; :func:`worst_items_text` and
:func:`worst_items_markdown` show both outputs of the items that regressed most. The statistics
and the report's reasons are :mod:`evalwatch.checks.regression`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalwatch.checks.regression import (
    GateReport,
    MetricComparison,
    WorstItem,
    format_gate_p,
    format_num,
)
from evalwatch.core import Redactor
from evalwatch.reporting.fairness import (
    gate_fairness_intro,
    gate_fairness_markdown,
    gate_fairness_rows,
)
from evalwatch.reporting.markdown import md_table

__all__ = ["gate_markdown", "gate_text", "worst_items_markdown", "worst_items_text"]


def _title(report: GateReport) -> str:
    what = "gate" if report.mode == "gate" else "canary comparison"
    conf = _pct(1.0 - report.alpha)
    return (
        f"evalwatch {what}: {report.verdict.upper()} (rule: {report.rule}, "
        f"{conf} intervals, one-sided decisions at {format_num(report.alpha / 2)})"
    )


def gate_text(report: GateReport) -> str:
    """A gate report as plain text for a terminal or CI log.

    Args:
        report: A gate's or canary's report.

    Returns:
        Multi-line text: verdict, reasons, per-metric table, regressing slices, the items
        that regressed most and warnings.

    Examples:
        >>> from evalwatch.checks.policy import GatePolicy
        >>> r = GateReport(verdict="pass", rule="regression", alpha=0.05, metrics=[],
        ...                policy=GatePolicy())
        >>> gate_text(r).splitlines()[0]
        'evalwatch gate: PASS (rule: regression, 95% intervals, one-sided decisions at 0.025)'
    """
    lines = [_title(report)]
    lines += [f"  - {r}" for r in report.reasons]
    if report.metrics:
        lines.append("")
        lines.append(_text_table(_rows(report.metrics, report.mode)))
    tested = [s for s in report.slices if s.status == "ok"]
    if report.slices:
        lines.append("")
        lines.append(
            f"Slices: {len(tested)} slice x metric tests (Holm-corrected together), "
            f"{len(report.slices) - len(tested)} too small to test."
        )
        flagged = [s for s in report.slices if s.decision == "regression"]
        if flagged:
            lines.append(_text_table(_rows(flagged, report.mode, with_slice=True)))
        else:
            lines.append("  no slice regresses significantly.")
    if report.fairness:
        lines += ["", gate_fairness_intro(report.fairness)]
        lines.append(_text_table(gate_fairness_rows(report.fairness)))
    if report.worst_items:
        lines.append("")
        lines.append("Items that regressed most:")
        for w in report.worst_items:
            lines.append("  " + _worst_line(w))
    if report.warnings:
        lines.append("")
        lines.append("Warnings:")
        lines += [f"  - {w}" for w in report.warnings]
    return "\n".join(lines)


def gate_markdown(report: GateReport) -> str:
    """A gate report as markdown (for a Prefect artifact or a PR comment).

    Args:
        report: A gate's or canary's report.

    Returns:
        Markdown with the verdict, tables of metrics, regressing slices and worst items.

    Examples:
        >>> from evalwatch.checks.policy import GatePolicy
        >>> r = GateReport(verdict="regression", rule="regression", alpha=0.05,
        ...                metrics=[], policy=GatePolicy())
        >>> gate_markdown(r).startswith("## evalwatch gate: REGRESSION")
        True
    """
    out = [f"## {_title(report)}", ""]
    out += [f"- {r}" for r in report.reasons]
    if report.metrics:
        out += ["", "### Metrics", "", md_table(_rows(report.metrics, report.mode))]
    if report.slices:
        flagged = [s for s in report.slices if s.decision == "regression"]
        tested = sum(1 for s in report.slices if s.status == "ok")
        out += [
            "",
            "### Slices",
            "",
            f"{tested} slice x metric tests, Holm-corrected together; "
            f"{len(report.slices) - tested} too small to test.",
        ]
        if flagged:
            out += ["", md_table(_rows(flagged, report.mode, with_slice=True))]
        else:
            out += ["", "No slice regresses significantly."]
    if report.fairness:
        out += ["", *gate_fairness_markdown(report.fairness)]
    if report.worst_items:
        out += ["", "### Items that regressed most", ""]
        header = ["metric", "item", "baseline", "candidate", "diff", "tags"]
        rows = [
            [
                w.metric,
                w.item_id,
                format_num(w.baseline) if w.verdict is None else "",
                format_num(w.candidate) if w.verdict is None else (w.verdict or ""),
                format_num(w.diff),
                ", ".join(w.tags),
            ]
            for w in report.worst_items
        ]
        out.append(md_table([header, *rows]))
    if report.warnings:
        out += ["", "### Warnings", ""]
        out += [f"- {w}" for w in report.warnings]
    return "\n".join(out) + "\n"


def _pct(x: float) -> str:
    return f"{x * 100:g}%"


def _rows(
    comps: Sequence[MetricComparison], mode: str, with_slice: bool = False
) -> list[list[str]]:
    # The non-inferiority p-value decides a pass under that rule, so show it when present.
    ni = any(c.p_noninferiority is not None for c in comps)
    head = ["slice"] if with_slice else []
    head += ["metric", "n", "baseline", "candidate", "diff [CI]", "p worse (adj)"]
    head += ["p non-inf"] if ni else []
    head += ["margin", "MDD", "decision"]
    rows = [head]
    for c in comps:
        if c.paired:
            n = "-" if c.n_both is None else str(c.n_both)
        else:
            n = f"{c.n_baseline}/{c.n_candidate}"
        if c.kind == "pairwise":
            base, cand = "", f"W{c.wins}/T{c.ties}/L{c.losses}"
        else:
            base, cand = format_num(c.baseline_mean), format_num(c.candidate_mean)
        ci = (
            f"{format_num(c.mean_diff)} [{format_num(c.ci_low)}, {format_num(c.ci_high)}]"
            if c.mean_diff is not None
            else "-"
        )
        decision = c.decision.upper().replace("_", " ")
        if c.too_small and c.status == "ok":
            decision += " (too small)"
        row = [c.slice or ""] if with_slice else []
        row += [c.metric, n, base, cand, ci, format_gate_p(c.p_adjusted)]
        row += [format_gate_p(c.p_noninferiority)] if ni else []
        row += [c.margin_spec, format_num(c.mdd), decision]
        rows.append(row)
    return rows


def _text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    )


def _worst_line(w: WorstItem) -> str:
    tags = f" [{', '.join(w.tags)}]" if w.tags else ""
    if w.verdict is not None:
        return f"{w.metric}  {w.item_id}: judge verdict {w.verdict}{tags}"
    return (
        f"{w.metric}  {w.item_id}: {format_num(w.baseline)} -> {format_num(w.candidate)} "
        f"(diff {format_num(w.diff)}){tags}"
    )


def _worst_shown(report: GateReport, per_metric: int) -> list[WorstItem]:
    """The worst items of each metric that regressed, at most ``per_metric`` per metric."""
    flagged = {c.metric for c in [*report.metrics, *report.slices] if c.decision == "regression"}
    shown: dict[str, int] = {}
    out: list[WorstItem] = []
    for w in report.worst_items:
        if w.metric not in flagged or shown.get(w.metric, 0) >= per_metric:
            continue
        shown[w.metric] = shown.get(w.metric, 0) + 1
        out.append(w)
    return out


def worst_items_text(report: GateReport, per_metric: int = 3, width: int = 160) -> str:
    """Both outputs of the worst items of each metric that regressed (overall or in a slice).

    Args:
        report: A gate report (:func:`evalwatch.runs.gate.compare_sides`).
        per_metric: Items shown per metric.
        width: Characters shown per text.

    Returns:
        Plain text; empty when nothing regressed.
    """
    redact = Redactor().redact  # outputs leave for a terminal or a CI log: masked, then cut

    def cut(text: Any) -> str:
        s = " ".join(redact(str(text or ""))[0].split())
        return s if len(s) <= width else s[: width - 1] + "…"

    lines: list[str] = []
    for w in _worst_shown(report, per_metric):
        tags = f" [{', '.join(w.tags)}]" if w.tags else ""
        lines.append(f"  {w.metric}  {w.item_id}{tags}")
        d = w.details
        lines.append(f"    input:     {cut(d.get('input'))}")
        lines.append(f"    baseline:  {cut(d.get('baseline_output'))}")
        lines.append(f"    candidate: {cut(d.get('candidate_output'))}")
        for key, label in (
            ("judge_explanation", "judge"),
            ("baseline_explanation", "why (base)"),
            ("candidate_explanation", "why (cand)"),
        ):
            if d.get(key):
                lines.append(f"    {label + ':':<11}{cut(d.get(key))}")
    return ("Outputs of the items that regressed most:\n" + "\n".join(lines)) if lines else ""


def worst_items_markdown(report: GateReport, per_metric: int = 3) -> str:
    """The markdown version of :func:`worst_items_text` (for the flow's artifact)."""
    redact = Redactor().redact  # the artifact and a PR comment leave too: masked

    def esc(text: Any) -> str:
        s = " ".join(redact(str(text or ""))[0].split())
        return s.replace("|", "\\|")

    rows: list[str] = []
    for w in _worst_shown(report, per_metric):
        d = w.details
        why = d.get("judge_explanation") or d.get("candidate_explanation") or ""
        rows.append(
            f"| {esc(w.metric)} | {esc(w.item_id)} | {esc(d.get('baseline_output'))} | "
            f"{esc(d.get('candidate_output'))} | {esc(why)} |"
        )
    if not rows:
        return ""
    head = [
        "### Outputs of the items that regressed most",
        "",
        "| metric | item | baseline output | candidate output | explanation |",
        "|---|---|---|---|---|",
    ]
    return "\n".join(head + rows) + "\n"
