"""Alert rules: schema validation (every error names its rule and field) and pure semantics."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from evalwatch.checks.rules import (
    DEFAULT_RULES_PATH,
    Rule,
    RulesError,
    RulesFile,
    RuleState,
    aggregate,
    complete_windows,
    decide,
    evaluate_window,
    format_scope_key,
    item_filter,
    parse_aggregation,
    parse_scope_key,
    render_parameters,
    transition,
)
from evalwatch.checks.rules import check_rules as _check_rules
from evalwatch.checks.rules import load_rules as _load_rules
from evalwatch.core import AlertStatus
from evalwatch.evaluators.metrics import metric_catalogue

# The metrics the registered evaluators declare: what the CLI and the alerting engine pass in
# (the checks layer knows no evaluators).
KNOWN = frozenset(metric_catalogue())


def check_rules(path: Path, known_metrics=KNOWN, known_channels=None) -> list[str]:
    return _check_rules(path, known_metrics, known_channels)


def load_rules(path: Path | None = None, known_metrics=KNOWN) -> RulesFile:
    return _load_rules(path, known_metrics)


T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)

GOOD_RULE = """\
  - name: r1
    selector: toxicity.safety
    aggregation: any
    comparison: "<"
    threshold: 0.9
    window: run
    severity: critical
    channels: [ops]
"""

HEADER = """\
channels:
  ops: {type: webhook, block: custom-webhook/ops-hook}
rules:
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def _rule(**kw: object) -> Rule:
    base: dict[str, object] = {
        "name": "q",
        "selector": "judge.helpfulness",
        "comparison": "<",
        "threshold": 0.7,
    }
    base.update(kw)
    return Rule.model_validate(base)


# -- schema ------------------------------------------------------------------------------------


def test_default_rules_are_valid_and_mirror_common_practice() -> None:
    assert check_rules(DEFAULT_RULES_PATH) == []
    rules = {r.name: r for r in load_rules().rules}
    q = rules["quality-low"]
    assert (q.selector, q.aggregation, q.comparison, q.threshold) == (
        "judge.helpfulness",
        "mean",
        "<",
        0.7,
    )
    assert (q.consecutive, q.severity) == (5, "high")
    s = rules["unsafe-response"]
    assert (s.selector, s.aggregation, s.comparison, s.threshold, s.severity) == (
        "toxicity.safety",
        "any",
        "<",
        0.5,
        "critical",
    )
    assert s.escalation  # critical alerts escalate
    lat = rules["latency-p95-high"]
    assert (lat.selector, lat.aggregation, lat.comparison, lat.threshold) == (
        "latency_ms",
        "p95",
        ">",
        5000,
    )
    assert (lat.consecutive, lat.severity) == (3, "medium")
    assert (rules["drift-found"].selector, rules["drift-found"].severity) == (
        "drift.verdict",
        "warning",
    )
    assert (rules["gate-failed"].selector, rules["gate-failed"].severity) == (
        "gate.verdict",
        "high",
    )
    k = rules["judge-kappa-low"]
    assert (k.selector, k.comparison, k.threshold, k.severity) == (
        "judge.kappa",
        "<",
        0.6,
        "warning",
    )


@pytest.mark.parametrize(
    ("rule_text", "expected"),
    [
        (
            GOOD_RULE.replace("toxicity.safety", "toxicity.nope"),
            "rule 'r1': selector: unknown metric 'toxicity.nope'",
        ),
        (
            GOOD_RULE.replace("toxicity.safety", "not a selector"),
            "rule 'r1': selector: unknown selector 'not a selector'",
        ),
        (
            GOOD_RULE.replace("aggregation: any", "aggregation: median"),
            "rule 'r1': aggregation: unknown aggregation 'median'",
        ),
        (
            GOOD_RULE.replace("aggregation: any", "aggregation: p100"),
            "rule 'r1': aggregation: unknown aggregation 'p100'",
        ),
        (
            GOOD_RULE.replace("aggregation: any", "aggregation: share_below:abc"),
            "rule 'r1': aggregation: unknown aggregation 'share_below:abc'",
        ),
        (
            GOOD_RULE.replace("channels: [ops]", "channels: [ops, pager]"),
            "rule 'r1': channels: unknown channel 'pager'",
        ),
        (
            GOOD_RULE + "    escalation: [oncall]\n",
            "rule 'r1': escalation: unknown channel 'oncall'",
        ),
        (GOOD_RULE.replace('comparison: "<"', 'comparison: "=>"'), "rule 'r1': comparison:"),
        (GOOD_RULE.replace("severity: critical", "severity: urgent"), "rule 'r1': severity:"),
        (GOOD_RULE.replace("window: run", "window: 5x"), "rule 'r1': window: bad duration '5x'"),
        (GOOD_RULE.replace("window: run", "window: 0.5s"), "rule 'r1': window:"),
        (GOOD_RULE + "    consecutive: 0\n", "rule 'r1': consecutive:"),
        (GOOD_RULE + "    cooldown: soon\n", "rule 'r1': cooldown: bad duration 'soon'"),
        (GOOD_RULE + "    auto_resolve_after: 0\n", "rule 'r1': auto_resolve_after:"),
        (GOOD_RULE.replace("threshold:", "treshold:"), "rule 'r1': treshold: unknown field"),
        (GOOD_RULE.replace("    threshold: 0.9\n", ""), "rule 'r1': threshold: Field required"),
        (
            GOOD_RULE + "    scope: {rubric: each}\n",
            "rule 'r1': scope: 'rubric' is not a dimension of selector 'toxicity.safety'",
        ),
        (
            GOOD_RULE.replace("toxicity.safety", "volume").replace(
                "aggregation: any", "aggregation: mean"
            ),
            "rule 'r1': aggregation: selector 'volume' supports only 'count'",
        ),
        (GOOD_RULE + GOOD_RULE, "rule 'r1': name: the name is used by another rule"),
        (
            GOOD_RULE + "    action: {deployment: rollback}\n",
            "rule 'r1': action.deployment: bad deployment 'rollback'",
        ),
        (
            GOOD_RULE + "    action: {deployment: f/d, parameters: {v: '{{version}}'}}\n",
            "rule 'r1': action.parameters.v: unknown placeholder {{version}}",
        ),
        (
            GOOD_RULE.replace("  - name: r1\n", "  - selector: x.y\n", 1).replace(
                "    selector: toxicity.safety\n", ""
            ),
            "rule #1: name: Field required",
        ),
    ],
)
def test_schema_errors_name_rule_and_field(tmp_path: Path, rule_text: str, expected: str) -> None:
    errors = check_rules(_write(tmp_path, HEADER + rule_text))
    assert any(e.startswith(expected) for e in errors), errors
    with pytest.raises(RulesError) as info:
        load_rules(tmp_path / "rules.yaml")
    assert info.value.errors == errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [", "not valid YAML"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("channels:\n  ops: {type: carrier-pigeon, block: x}\nrules: []\n", "channel 'ops': type:"),
        (
            "channels:\n  ops: {type: webhook, block: 'a b'}\nrules: []\n",
            "channel 'ops': block: bad block reference",
        ),
        ("rules: []\nfoo: 1\n", "foo: unknown field"),
    ],
)
def test_file_level_errors(tmp_path: Path, text: str, expected: str) -> None:
    errors = check_rules(_write(tmp_path, text))
    assert any(expected in e for e in errors), errors


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    errors = check_rules(tmp_path / "nope.yaml")
    assert len(errors) == 1 and "nope.yaml does not exist" in errors[0]
    with pytest.raises(RulesError):
        load_rules(tmp_path / "nope.yaml")


def test_unreadable_rules_files_are_one_error_each(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.yaml")  # refused unopened: reading it would block the test
    (tmp_path / "latin1.yaml").write_bytes(b"rules:\n  - name: caf\xe9\n")
    assert check_rules(tmp_path / "pipe.yaml") == [
        f"{tmp_path / 'pipe.yaml'} is not a regular file (a FIFO)"
    ]
    assert check_rules(tmp_path) == [f"{tmp_path} is not a regular file (a directory)"]
    assert check_rules(tmp_path / "latin1.yaml") == [
        f"{tmp_path / 'latin1.yaml'} is not UTF-8 text (byte 20)"
    ]


def test_known_metrics_and_channels_extend_the_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        HEADER
        + GOOD_RULE.replace("toxicity.safety", "mine.score").replace("[ops]", "[ops, pager]"),
    )
    errors = check_rules(path)
    assert len(errors) == 2
    assert check_rules(path, known_metrics=KNOWN | {"mine.score"}, known_channels={"pager"}) == []
    declared = _write(
        tmp_path,
        "metrics: [mine.score]\n" + HEADER + GOOD_RULE.replace("toxicity.safety", "mine.score"),
    )
    assert check_rules(declared) == []
    # Without a catalogue (the checks layer alone), metric names are not checked at all.
    assert _check_rules(path, known_channels={"pager"}) == []


def test_every_aggregation_and_selector_kind_is_accepted(tmp_path: Path) -> None:
    aggs = [
        "mean",
        "sum",
        "min",
        "max",
        "count",
        "any",
        "p50",
        "p95",
        "p99",
        "share_below:0.5",
        "share_above:2",
    ]
    selectors = [
        "embedding.relevance",
        "latency_ms",
        "input_tokens",
        "output_tokens",
        "cost",
        "drift.verdict",
        "anomaly.verdict",
        "gate.verdict",
        "judge.kappa",
        "evaluators.error_rate",
        "run.cost",
        "judge.instruction_following",
    ]
    body = HEADER
    for i, agg in enumerate(aggs):
        body += GOOD_RULE.replace("r1", f"a{i}").replace("aggregation: any", f"aggregation: {agg}")
    for i, sel in enumerate(selectors):
        body += GOOD_RULE.replace("r1", f"s{i}").replace("toxicity.safety", sel)
    body += (
        GOOD_RULE.replace("r1", "v")
        .replace("toxicity.safety", "volume")
        .replace("aggregation: any", "aggregation: count")
        + "    scope: {app: each, model_version: v2}\n"
    )
    assert check_rules(_write(tmp_path, body)) == []


# -- aggregation and decision ------------------------------------------------------------------


VALUES = [0.2, 0.95, 0.5, 0.91, 0.99, 0.1, 0.7]


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        ("mean", float(np.mean(VALUES))),
        ("sum", float(np.sum(VALUES))),
        ("min", 0.1),
        ("max", 0.99),
        ("count", 7.0),
        ("p50", float(np.percentile(VALUES, 50))),
        ("p95", float(np.percentile(VALUES, 95))),
        ("p99", float(np.percentile(VALUES, 99))),
        ("share_below:0.5", 2 / 7),
        ("share_above:0.9", 3 / 7),
        ("any", 4.0),  # items < 0.9
    ],
)
def test_aggregate(agg: str, expected: float) -> None:
    assert aggregate(VALUES, agg, "<", 0.9) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        ("mean", None),
        ("p95", None),
        ("min", None),
        ("share_below:1", None),
        ("count", 0.0),
        ("sum", 0.0),
        ("any", 0.0),
    ],
)
def test_aggregate_of_nothing_is_never_a_made_up_value(agg: str, expected: float | None) -> None:
    assert aggregate([], agg) == expected


def test_decide_needs_min_items_but_count_is_always_decided() -> None:
    r = _rule(min_items=5)
    assert decide(0.5, 4, r) is None
    assert decide(0.5, 5, r) is True
    vol = _rule(selector="volume", aggregation="count", threshold=10)
    assert decide(0.0, 0, vol) is True
    assert decide(12.0, 12, vol) is False


def test_any_single_item_breaches_where_the_mean_does_not() -> None:
    values = [0.99] * 999 + [0.3]
    any_rule = _rule(selector="toxicity.safety", aggregation="any", threshold=0.9)
    mean_rule = _rule(selector="toxicity.safety", aggregation="mean", threshold=0.9)
    assert evaluate_window(values, any_rule).breached is True
    assert evaluate_window(values, mean_rule).breached is False
    assert evaluate_window([0.99] * 1000, any_rule).breached is False


def test_parse_aggregation_rejects_nonsense() -> None:
    assert parse_aggregation("p99.9").arg == pytest.approx(0.999)
    for bad in ("median", "p0", "share_below", "share_below:", "share_above:inf", "any:1"):
        with pytest.raises(ValueError):
            parse_aggregation(bad)


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"aggregation": "any", "comparison": "<", "threshold": 0.9}, ("<", 0.9, False)),
        ({"aggregation": "p95", "comparison": ">", "threshold": 5000}, (">", 5000.0, True)),
        (
            {"aggregation": "share_below:0.5", "comparison": ">", "threshold": 0.1},
            ("<", 0.5, False),
        ),
        ({"aggregation": "share_above:3", "comparison": ">", "threshold": 0.1}, (">", 3.0, True)),
    ],
)
def test_item_filter(kw: dict[str, object], expected: tuple[str, float, bool]) -> None:
    assert tuple(item_filter(_rule(**kw)) or ()) == expected


def test_item_filter_none_for_count() -> None:
    assert item_filter(_rule(selector="volume", aggregation="count")) is None


# -- lifecycle transitions ---------------------------------------------------------------------


def _run(
    rule: Rule, breaches: list[bool | None], step: timedelta = timedelta(hours=1)
) -> list[tuple[str, bool]]:
    state = RuleState()
    out: list[tuple[str, bool]] = []
    for i, b in enumerate(breaches):
        state, action, notify = transition(state, b, T0 + i * step, rule)
        out.append((action, notify))
    return out


@pytest.mark.parametrize(
    ("kw", "breaches", "expected_actions"),
    [
        # consecutive windows: the third breach in a row opens
        ({"consecutive": 3}, [True, True, True], ["none", "none", "open"]),
        # a clear window breaks the streak
        (
            {"consecutive": 3},
            [True, True, False, True, True, True],
            ["none", "none", "none", "none", "none", "open"],
        ),
        # insufficient data neither extends nor breaks a streak
        (
            {"consecutive": 3},
            [True, None, True, None, True],
            ["none", "none", "none", "none", "open"],
        ),
        # one open alert: repeats update it (dedup)
        ({"consecutive": 1}, [True, True, True], ["open", "update", "update"]),
        # auto-resolve after N clear windows in a row
        (
            {"auto_resolve_after": 2},
            [True, False, True, False, False],
            ["open", "none", "update", "none", "resolve"],
        ),
        # never auto-resolved when auto_resolve_after is null
        (
            {"auto_resolve_after": None},
            [True, False, False, False, False],
            ["open", "none", "none", "none", "none"],
        ),
        # after a resolution a new breach opens a new alert
        ({"auto_resolve_after": 1}, [True, False, True], ["open", "resolve", "open"]),
    ],
)
def test_transition_sequences(
    kw: dict[str, object], breaches: list[bool | None], expected_actions: list[str]
) -> None:
    assert [a for a, _ in _run(_rule(**kw), breaches)] == expected_actions


def test_cooldown_limits_repeat_notifications() -> None:
    rule = _rule(cooldown="2h")
    out = _run(rule, [True, True, True, True, True])
    assert out == [
        ("open", True),
        ("update", False),
        ("update", True),
        ("update", False),
        ("update", True),
    ]


def test_open_and_resolve_always_notify_unless_disabled() -> None:
    out = _run(_rule(cooldown="1d", auto_resolve_after=1), [True, False, True])
    assert out == [("open", True), ("resolve", True), ("open", True)]
    quiet = _run(_rule(auto_resolve_after=1, notify_resolved=False), [True, False])
    assert quiet == [("open", True), ("resolve", False)]


def test_acknowledged_alert_is_updated_without_notifying() -> None:
    rule = _rule(cooldown="0s")
    state = RuleState(
        consecutive_breaches=1, alert_status=AlertStatus.acknowledged, last_notified_at=T0
    )
    new, action, notify = transition(state, True, T0 + timedelta(days=1), rule)
    assert (action, notify, new.alert_status) == ("update", False, "acknowledged")
    assert new.consecutive_breaches == 2


# -- windows, scope keys, parameters -----------------------------------------------------------


def test_complete_windows_alignment_delay_and_catch_up() -> None:
    now = T0 + timedelta(hours=5, minutes=10)
    hour = timedelta(hours=1)
    wins = complete_windows(now, hour, lookback=3)
    assert [e for _, e in wins] == [T0 + timedelta(hours=h) for h in (3, 4, 5)]
    assert all(e - s == hour for s, e in wins)
    # the delay holds back the window that just ended
    assert complete_windows(now, hour, delay=timedelta(minutes=15))[-1][1] == T0 + 4 * hour
    # after a mark, every later complete window once, then none
    assert [e for _, e in complete_windows(now, hour, after=T0 + hour)] == [
        T0 + timedelta(hours=h) for h in (2, 3, 4, 5)
    ]
    assert complete_windows(now, hour, after=T0 + 5 * hour) == []
    # a long outage is not replayed forever
    assert len(complete_windows(now, hour, after=T0 - timedelta(days=30), max_windows=10)) == 10
    days = complete_windows(now, timedelta(days=1), after=T0 - timedelta(days=2))
    assert [e for _, e in days] == [T0 - timedelta(days=1), T0]


@pytest.mark.parametrize(
    "scope",
    [{}, {"app": "bot"}, {"app": "a,b=c", "model_version": None}, {"rubric": "x y/z"}],
)
def test_scope_key_round_trip(scope: dict[str, str | None]) -> None:
    assert parse_scope_key(format_scope_key(scope)) == scope


def test_render_parameters() -> None:
    out = render_parameters(
        {
            "version": "{{ model_version }}",
            "id": "{{alert_id}}",
            "note": "alert {{rule}}!",
            "fixed": [1, 2],
        },
        {"model_version": "v3", "alert_id": 12, "rule": "q"},
    )
    assert out == {"version": "v3", "id": 12, "note": "alert q!", "fixed": [1, 2]}


def test_every_problem_is_reported_not_only_the_first(tmp_path: Path) -> None:
    bad_agg = GOOD_RULE.replace("aggregation: any", "aggregation: median")
    bad_names = GOOD_RULE.replace("r1", "r2").replace("toxicity.safety", "toxicity.nope")
    text = HEADER + bad_agg + bad_names.replace("[ops]", "[pager]")
    errors = check_rules(_write(tmp_path, text))
    assert [e.split(";")[0] for e in errors] == [
        "rule 'r1': aggregation: unknown aggregation 'median'",
        "rule 'r2': selector: unknown metric 'toxicity.nope'",
        "rule 'r2': channels: unknown channel 'pager'",
    ]


def test_a_rule_the_schema_rejects_still_has_its_other_problems_reported(
    tmp_path: Path,
) -> None:
    # r1 breaks the schema (window) and names an unknown metric, channel and scope dimension:
    # all four are reported, grouped under r1 before r2's problem.
    broken = (
        GOOD_RULE.replace("window: run", "window: 90x")
        .replace("toxicity.safety", "nope.metric")
        .replace("[ops]", "[opz]")
        + "    scope: {colour: each}\n"
    )
    other = GOOD_RULE.replace("r1", "r2").replace("[ops]", "[ghost]")
    errors = check_rules(_write(tmp_path, HEADER + broken + other))
    assert [e.split(";")[0] for e in errors] == [
        "rule 'r1': window: bad duration '90x'",
        "rule 'r1': selector: unknown metric 'nope.metric'",
        "rule 'r1': channels: unknown channel 'opz'",
        "rule 'r1': scope: 'colour' is not a dimension of selector 'nope.metric'",
        "rule 'r2': channels: unknown channel 'ghost'",
    ]
