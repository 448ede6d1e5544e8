"""``evalwatch compare``: is the canary version worse than the current one on live traffic?

Exit codes: 0 not shown worse (too little traffic does not roll back), 1 the canary is worse,
2 bad input (no traffic for a version in the window: one line says so with the newest time
that version has; bad window, invalid policy).

Without ``--until`` the window ends at the hour after the newest interaction of the two
versions, as ``evalwatch drift`` anchors its window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from evalwatch.commands.common import (
    STATE,
    bad_input,
    finish_gate_report,
    open_store,
    parse_time,
    validation_message,
)
from evalwatch.core import parse_duration

__all__ = ["compare", "register"]


def compare(
    app: Annotated[str, typer.Option("--app", help="The app whose traffic is compared.")],
    model_a: Annotated[
        str, typer.Option("--model-a", help="Current model version (the baseline).")
    ],
    model_b: Annotated[str, typer.Option("--model-b", help="Canary model version.")],
    window: Annotated[
        str, typer.Option("--window", help="Window length before --until (30m, 24h, 7d).")
    ] = "24h",
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="Window end (exclusive): ISO time or 2h back; default: the hour after the "
            "newest interaction of the two versions.",
        ),
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Gate policy YAML (margins, rule, alpha).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compare two model versions serving the same traffic window: exit 1 if the canary is worse.

    Per metric, unpaired tests: a bootstrap interval of the difference of means with
    Mann-Whitney U as a rank check, and two-proportion tests for rates (refusals, empty
    answers, thumbs up), Holm-corrected, with the policy's margins.
    """
    from evalwatch.checks.policy import GateInputError
    from evalwatch.runs.canary import CanaryParams, compare_versions

    try:
        length = parse_duration(window)
        end = parse_time(until) if until else None
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    try:
        params = CanaryParams(
            app=app,
            model_a=model_a,
            model_b=model_b,
            window=length,
            until=end,
            policy_file=str(policy) if policy else None,
        )
    except ValidationError as exc:
        raise bad_input(validation_message(exc)) from exc
    try:
        outcome = compare_versions(open_store(), params, STATE.settings())
    except GateInputError as exc:
        raise bad_input(str(exc)) from exc
    meta = outcome.report.meta
    n, w = meta.get("interactions", {}), meta.get("window", {})
    finish_gate_report(
        outcome,
        json_out,
        header=f"{app}: {model_a} ({n.get(model_a)} interactions) vs canary {model_b} "
        f"({n.get(model_b)}), {w.get('start')} to {w.get('end')}",
        left=meta.get("not_compared"),
    )


def register(app: typer.Typer) -> None:
    """Add the ``compare`` command."""
    app.command("compare")(compare)
