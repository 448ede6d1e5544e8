from __future__ import annotations

from pathlib import Path

import pytest

from evalwatch.checks.policy import (
    GateInputError,
    GatePolicy,
    MetricPolicy,
    PolicyError,
    default_policy,
    load_policy,
    policy_from_mapping,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "datasets" / "gate-policy.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_policy_is_the_documented_regression_gate() -> None:
    p = default_policy()
    assert (p.rule, p.alpha, p.default_margin, p.slices) == ("regression", 0.05, 0.0, True)
    assert p.n_bootstrap >= 10_000
    assert p.metrics == []
    # A fresh object each time: mutating one must not leak into the next gate run.
    p.metrics.append(MetricPolicy(metric="x"))
    assert default_policy().metrics == []


def test_example_policy_loads_with_every_metric_resolved() -> None:
    p = load_policy(EXAMPLE)
    assert p.rule == "regression"
    names = [m.metric for m in p.metrics]
    assert "judge.correctness" in names and "latency_ms" in names

    correctness = p.metric_policy("judge.correctness")
    assert (correctness.kind, correctness.pass_threshold, correctness.margin) == (
        "binary",
        4.0,
        0.0,
    )
    latency = p.metric_policy("latency_ms")
    assert (latency.higher_is_better, latency.margin, latency.margin_kind) == (
        False,
        0.10,
        "relative",
    )
    pairwise = p.metric_policy("judge.correctness_pairwise")
    assert pairwise.kind == "pairwise"
    refusal = p.metric_policy("heuristics.refusal")
    assert (refusal.kind, refusal.higher_is_better, refusal.pass_threshold) == (
        "binary",
        False,
        None,
    )


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "# nothing here\n")) == GatePolicy()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rule: regresion\n", "field 'rule'"),
        ("alpha: 0.7\n", "field 'alpha'"),
        ("alpha: often\n", "field 'alpha'"),
        ("marign: 0.1\n", "field 'marign': unknown field"),
        ("default_margin: -0.1\n", "field 'default_margin'"),
        ("n_bootstrap: 10\n", "field 'n_bootstrap'"),
        ("min_items: 1\n", "field 'min_items'"),
        (
            "metrics:\n  - metric: a\n    margin: 0.1\n    margin_kind: abs\n",
            "field 'metrics[0].margin_kind'",
        ),
        ("metrics:\n  - metric: a\n  - metrics: b\n", "field 'metrics[1].metrics'"),
        ("metrics:\n  - metric: a\n  - metric: a\n", "metric 'a' is listed twice"),
        (
            "metrics:\n  - metric: a\n    pass_threshold: 3\n",
            "pass_threshold only applies to kind 'binary'",
        ),
        ("metrics:\n  - metric: a\n    margin_kind: relative\n", "margin_kind is set but margin"),
        (
            "metrics:\n  - metric: p\n    kind: pairwise\n    margin: 0.1\n"
            "    margin_kind: relative\n",
            "pairwise metrics take an absolute margin",
        ),
        ("- a\n- b\n", "top level must be a mapping"),
        ("rule: [regression\n", "not valid YAML"),
    ],
)
def test_bad_policies_name_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert expected in message
    assert str(path) in message


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_mapping({"rule": "maybe", "alpha": 2, "seed": -1})
    message = str(info.value)
    for field in ("'rule'", "'alpha'", "'seed'"):
        assert f"field {field}" in message


def test_missing_file_is_a_gate_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(GateInputError, match="cannot read gate policy"):
        load_policy(missing)


@pytest.mark.parametrize(
    ("policy", "name", "kind", "expected"),
    [
        # Unlisted metric: gate defaults, continuous, higher is better.
        (
            GatePolicy(default_margin=0.02, default_margin_kind="relative"),
            "sim",
            None,
            ("continuous", 0.02, "relative", True),
        ),
        # Pairwise verdicts have no baseline level, so a relative default becomes absolute.
        (
            GatePolicy(default_margin=0.02, default_margin_kind="relative"),
            "judge.pairwise",
            "pairwise",
            ("pairwise", 0.02, "absolute", True),
        ),
        # Listed without a margin: inherits the default margin, keeps its own direction.
        (
            GatePolicy(
                default_margin=0.5, metrics=[MetricPolicy(metric="lat", higher_is_better=False)]
            ),
            "lat",
            None,
            ("continuous", 0.5, "absolute", False),
        ),
        # Listed with a margin: used as is.
        (
            GatePolicy(default_margin=0.5, metrics=[MetricPolicy(metric="lat", margin=0.1)]),
            "lat",
            None,
            ("continuous", 0.1, "absolute", True),
        ),
    ],
)
def test_metric_policy_resolution(
    policy: GatePolicy, name: str, kind: str | None, expected: tuple[object, ...]
) -> None:
    mp = policy.metric_policy(name, kind=kind)  # type: ignore[arg-type]
    assert (mp.kind, mp.margin, mp.margin_kind, mp.higher_is_better) == expected
