"""Markdown of drift results: a standalone report and a drift check on stored traffic.

Both lead with what moved and by how much, then list every test. The Prefect artifact of the
``drift_check`` flow and the CLI use :func:`drift_outcome_markdown`.
"""

from __future__ import annotations

from collections.abc import Sequence

from evalwatch.checks.drift import DriftReport, DriftTestResult
from evalwatch.checks.drift.base import format_number, format_pct
from evalwatch.checks.drift.outcome import DriftOutcome
from evalwatch.reporting.fairness import fairness_markdown
from evalwatch.reporting.markdown import format_p, md_escape

__all__ = ["drift_outcome_markdown", "drift_report_markdown", "results_table"]

_fmt = format_number
_pct = format_pct

# Which result of a numeric column says "by how much" best in a standalone report.
_HEADLINE_ORDER: dict[str, int] = {"mean_shift": 0, "wasserstein": 1, "ks": 2, "psi": 3}


def _title(what: str, n_moved: int, n_tests: int) -> str:
    """The heading: how many of the tests found drift, or that none did."""
    if n_moved:
        return f"## {what}: drift in {n_moved} of {n_tests} tests"
    return f"## {what}: no drift"


def drift_report_markdown(report: DriftReport) -> str:
    """Render a report, leading with what moved and by how much.

    Args:
        report: A report of :func:`evalwatch.checks.drift.run_drift`.

    Returns:
        Markdown text.

    Examples:
        >>> from evalwatch.checks.drift import DriftConfig
        >>> report = DriftReport(results=[], config=DriftConfig(), drift_found=False)
        >>> drift_report_markdown(report).splitlines()[0]
        '## Drift report: no drift'
    """
    moved = report.moved()
    insufficient = [r for r in report.results if r.verdict == "insufficient_data"]
    tested = len(report.results) - len(insufficient)
    lines = [_title("Drift report", len(moved), tested), ""]
    lines.append(
        f"Significance level {report.config.alpha:g} for the whole report (Benjamini-Hochberg "
        "across all tests); a test flags drift only when its effect reaches its floor."
    )
    lines.append("")
    if moved:
        lines.append("### What moved")
        lines.append("")
        lines.extend(_moved_lines(moved))
        lines.append("")
        topic = next((r for r in moved if r.test == "topic_shares"), None)
        if topic is not None:
            lines.extend(_topic_lines("Topic shares that changed", topic))
        new_topic = next((r for r in moved if r.test == "new_topic"), None)
        if new_topic is not None and new_topic.details.get("examples"):
            lines.append("#### Responses far from every baseline topic")
            lines.append("")
            for text in new_topic.details["examples"]:
                lines.append(f"- {md_escape(text)}")
            lines.append("")
    else:
        lines.append("Nothing moved beyond its effect-size floor at the report's level.")
        lines.append("")
    lines.append("### All tests")
    lines.append("")
    lines += results_table(report.results)
    if insufficient:
        lines.append("")
        lines.append("### Insufficient data")
        lines.append("")
        for r in insufficient:
            lines.append(f"- {md_escape(r.feature)} ({r.test}): {r.summary}")
    return "\n".join(lines) + "\n"


def results_table(results: Sequence[DriftTestResult]) -> list[str]:
    """Markdown table lines of test results: drifted first, then by family and feature.

    Examples:
        >>> results_table([])[1]
        '|---|---|---:|---:|---:|---:|---:|---:|---|'
    """
    order = {"drift": 0, "no_drift": 1, "insufficient_data": 2}
    lines = [
        "| feature | test | n baseline | n current | effect | floor | p | adjusted p | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(results, key=lambda r: (order[r.verdict], r.family, r.feature)):
        lines.append(
            f"| {md_escape(r.feature)} | {r.test} | {r.n_baseline} | {r.n_current} "
            f"| {md_escape(r.effect_name)} {_fmt(r.effect_size)} | {_fmt(r.effect_floor)} "
            f"| {format_p(r.p_value)} | {format_p(r.p_adjusted)} | {r.verdict} |"
        )
    return lines


def _moved_lines(moved: list[DriftTestResult]) -> list[str]:
    """One bullet per moved feature (largest effect first), each embedding test on its own."""
    groups: dict[tuple[str, str], list[DriftTestResult]] = {}
    for r in moved:  # already sorted by effect ratio, so groups keep that order
        key = (r.feature, r.test) if r.family == "embedding" else (r.feature, "")
        groups.setdefault(key, []).append(r)
    lines = []
    for results in groups.values():
        headline = min(results, key=lambda r: _HEADLINE_ORDER.get(r.test, 9))
        evidence = ", ".join(
            f"{r.test} {md_escape(r.effect_name)} {_fmt(r.effect_size)}" for r in results
        )
        worst_p = max(r.p_adjusted or 0.0 for r in results)
        lines.append(
            f"- {md_escape(headline.summary)} [{evidence}; adjusted p ≤ {format_p(worst_p)}]"
        )
    return lines


def _topic_lines(title: str, result: DriftTestResult) -> list[str]:
    """The clusters that grew or shrank, with examples (nothing when none is listed)."""
    clusters = result.details.get("grown", []) + result.details.get("shrunk", [])
    if not clusters:
        return []
    lines = [f"#### {md_escape(title)}", ""]
    lines.append("| cluster | baseline share | current share | change | examples |")
    lines.append("|---|---:|---:|---:|---|")
    for c in clusters:
        examples = " / ".join(md_escape(t) for t in c.get("examples", []))
        lines.append(
            f"| {c['cluster']} | {_pct(c['baseline_share'])} | {_pct(c['current_share'])} "
            f"| {100 * c['delta']:+.1f} pp | {examples} |"
        )
    lines.append("")
    return lines


def drift_outcome_markdown(outcome: DriftOutcome) -> str:
    """Markdown of a drift check: what moved and by how much, then anomalies and details.

    Args:
        outcome: A check's outcome (:func:`evalwatch.runs.drift.check_drift`).

    Returns:
        Markdown text.
    """
    if outcome.no_data:
        lines = ["## Drift check: no data", ""]
        lines.extend(f"- {md_escape(line)}" for line in outcome.no_data)
        lines += ["", "Nothing was judged and no report was stored."]
        return "\n".join(lines)
    lines = _outcome_head(outcome)
    lines += _anomaly_lines(outcome)
    lines += fairness_markdown(outcome.fairness)
    for s in outcome.scopes:
        lines += _scope_topic_lines(s.label, s.report.results)
    lines += _scope_table(outcome)
    overall = outcome.scopes[0]
    lines.append(f"### All tests: {md_escape(overall.label)}")
    lines.append("")
    lines += results_table(overall.report.results)
    lines.append("")
    return "\n".join(lines)


def _outcome_head(outcome: DriftOutcome) -> list[str]:
    """Title, windows and level, and what moved."""
    overall = outcome.scopes[0]
    moved = outcome.moved()
    lines = [_title("Drift check", len(moved), outcome.n_tests), ""]
    lines.append(
        f"Current {outcome.current.describe()} ({overall.n_current:,} interactions) vs "
        f"baseline {outcome.baseline.describe()} ({overall.n_baseline:,} interactions); "
        f"{len(outcome.scopes)} scope(s). Significance level {outcome.params.alpha:g} across "
        f"all {outcome.n_tests} tests (Benjamini-Hochberg), and each test's effect must reach "
        f"its floor. Report key `{outcome.report_key}`."
    )
    lines.append("")
    if moved:
        lines.append("### What moved")
        lines.append("")
        for h in outcome.headlines():
            lines.append(
                f"- **{md_escape(h['scope'])}** {md_escape(h['summary'])} "
                f"[{md_escape(h['effects'])}; adjusted p ≤ {format_p(h['p_adjusted'])}]"
            )
        lines.append("")
    else:
        lines.append("Nothing moved beyond its effect-size floor at the report's level.")
        lines.append("")
    return lines


def _anomaly_lines(outcome: DriftOutcome) -> list[str]:
    found = [a for a in outcome.anomalies if a.verdict == "anomaly"]
    lines = ["### Anomalies in the current window", ""]
    if found:
        for a in found:
            lines.append(f"- **{md_escape(a.scope.label)}** {md_escape(a.summary())}")
    else:
        judged = sum(1 for a in outcome.anomalies if a.verdict != "insufficient_data")
        lines.append(f"None ({judged} series judged).")
    lines.append("")
    return lines


def _scope_topic_lines(label: str, results: Sequence[DriftTestResult]) -> list[str]:
    """A scope's drifted topic shares and its responses far from every baseline topic."""
    lines: list[str] = []
    topic = next((r for r in results if r.test == "topic_shares" and r.verdict == "drift"), None)
    if topic is not None:
        lines += _topic_lines(f"{label}: topic shares that changed", topic)
    new = next((r for r in results if r.test == "new_topic" and r.verdict == "drift"), None)
    if new is not None and new.details.get("examples"):
        lines.append(f"#### {md_escape(label)}: responses far from every baseline topic")
        lines.append("")
        lines.extend(f"- {md_escape(t)}" for t in new.details["examples"][:5])
        lines.append("")
    return lines


def _scope_table(outcome: DriftOutcome) -> list[str]:
    lines = ["### Scopes", ""]
    lines.append("| scope | baseline | current | tests | drift | insufficient data |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for s in outcome.scopes:
        res = s.report.results
        lines.append(
            f"| {md_escape(s.label)} | {s.n_baseline:,} | {s.n_current:,} "
            f"| {sum(r.verdict != 'insufficient_data' for r in res)} "
            f"| {sum(r.verdict == 'drift' for r in res)} "
            f"| {sum(r.verdict == 'insufficient_data' for r in res)} |"
        )
    lines.append("")
    return lines
