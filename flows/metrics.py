"""``collect-metrics``: scrape the serving fleet's metric endpoints, then judge the metric rules.

Each target of ``telemetry.targets`` (a DCGM exporter, a vLLM server's ``/metrics``, an OTLP
JSON endpoint) is scraped in its own task, its samples stored as canonical series, and then
the alert rules of family ``metrics`` (``gpu.*``, ``engine.*``, ``memory.*``) are evaluated,
so a hot GPU or a slow time-to-first-token raises its alert within one schedule interval. A
target that cannot be reached does not stop the others; the flow run then ends Failed,
naming it, after everything else was stored and judged.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from evalwatch.flows._runtime import flow_settings, store
from evalwatch.flows._tasks import AlertRulesError

__all__ = ["ScrapeFailedError", "collect_metrics"]


class ScrapeFailedError(RuntimeError):
    """One or more targets could not be scraped (the others were stored and judged)."""


@task(name="scrape-target", retries=1, retry_delay_seconds=2)
def scrape_one(target: dict[str, Any], database_url: str | None) -> dict[str, Any]:
    """Scrape one target and store its samples; returns the load's counts."""
    from evalwatch.ingest.metric_sources import scrape_target
    from evalwatch.settings import ScrapeTarget

    logger = get_run_logger()
    settings = flow_settings(database_url)
    spec = ScrapeTarget.model_validate(target)
    done = scrape_target(store(database_url), spec, settings)
    if done.quarantined:
        logger.warning(
            "%s: %d line(s) quarantined: %s",
            spec.name,
            done.quarantined,
            "; ".join(f"{why} ({n})" for why, n in done.reasons.most_common(3)),
        )
    return {
        "target": spec.name,
        "url": spec.url,
        "sources": sorted(done.sources),
        "series": done.series,
        "samples": done.samples,
        "duplicates": done.duplicates,
        "quarantined": done.quarantined,
    }


@task(name="judge-metric-anomalies")
def judge_metric_anomalies(database_url: str | None) -> dict[str, Any]:
    """Judge the newest complete windows of the metric series for anomalies; store the report."""
    from evalwatch.runs.metric_anomalies import check_metric_anomalies, params_from_settings

    logger = get_run_logger()
    settings = flow_settings(database_url)
    done = check_metric_anomalies(store(database_url), params_from_settings(settings))
    if done.no_data:
        logger.info("anomalies: %s", done.no_data)
    found = [f"{s.feature} {s.scope.label}" for s in done.series if s.verdict == "anomaly"]
    for one in found:
        logger.warning("metric anomaly: %s", one)
    return {"series": len(done.series), "anomalies": found, "stored": done.n_rows_stored}


@task(name="evaluate-metric-rules", retries=1, retry_delay_seconds=5)
def evaluate_metric_rules(database_url: str | None) -> list[dict[str, Any]]:
    """Evaluate the rules of family ``metrics`` and ``drift``; raises when they cannot be.

    ``drift`` holds ``anomaly.verdict``, which the metric anomaly report just stored feeds; a
    stored report is judged once per rule, so evaluating drift rules here too changes nothing
    for the drift job's reports.
    """
    from evalwatch.alerting.delivery import describe_error
    from evalwatch.alerting.engine import evaluate_rules, rules_for_settings

    logger = get_run_logger()
    settings = flow_settings(database_url)
    try:
        events = evaluate_rules(
            store(database_url), rules_for_settings(settings), kinds={"metrics", "drift"}
        )
    except Exception as exc:  # reported as the run's failure, without URL or token
        raise AlertRulesError(f"alert rules could not be evaluated: {describe_error(exc)}") from exc
    out = [e.summary() for e in events]
    for a in out:
        logger.warning(
            "alert %s %s [%s] %s: value %s vs threshold %s",
            a["alert_id"],
            a["action"],
            a["rule"],
            a["scope"],
            a["value"],
            a["threshold"],
        )
    return out


@flow(name="collect-metrics", log_prints=True)
def collect_metrics(
    database_url: str | None = None, targets: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Scrape every configured metrics target into the store, then judge the metric rules.

    Args:
        database_url: Store URL; default ``EVALWATCH_DATABASE_URL``.
        targets: ``[{"name", "url", "source"}]`` instead of ``telemetry.targets``.

    Returns:
        Per-target counts, the targets that failed, the metric anomalies found (the newest
        complete windows of ``telemetry.anomaly_series``, see
        :mod:`evalwatch.runs.metric_anomalies`) and the alert events.

    Raises:
        ScrapeFailedError: A target could not be scraped (after the others were stored).
    """
    settings = flow_settings(database_url)
    wanted = (
        targets if targets is not None else [t.model_dump() for t in settings.telemetry.targets]
    )
    if not wanted:
        print(
            "no scrape targets configured (set telemetry.targets, e.g. "
            'EVALWATCH_TELEMETRY__TARGETS=\'[{"name": "gpu-node-1", '
            '"url": "http://gpu-node-1:9400/metrics"}]\'); nothing scraped'
        )
    futures = [(t, scrape_one.submit(t, database_url)) for t in wanted]
    loaded: list[dict[str, Any]] = []
    failed: list[str] = []
    for t, fut in futures:
        try:
            loaded.append(fut.result())
        except Exception as exc:  # one dead target must not hide the others' samples
            failed.append(f"{t.get('name', t.get('url'))}: {' '.join(str(exc).split())}")
    for one in loaded:
        print(
            f"{one['target']}: {one['samples']} samples in {one['series']} series, "
            f"{one['quarantined']} quarantined"
        )
    anomaly_error: Exception | None = None
    try:
        anomalies: dict[str, Any] | None = judge_metric_anomalies(database_url)
    except Exception as exc:  # the metric rules are still judged; the run fails afterwards
        anomalies, anomaly_error = None, exc
    alerts = evaluate_metric_rules(database_url)
    result = {"targets": loaded, "failed": failed, "anomalies": anomalies, "alerts": alerts}
    if failed:
        raise ScrapeFailedError("could not scrape " + "; ".join(failed))
    if anomaly_error is not None:
        raise anomaly_error
    return result
