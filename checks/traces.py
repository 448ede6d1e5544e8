"""Where the time of a traced interaction goes: per-step-kind latency shares, the slowest step.

Pure functions over the step dicts that traced interactions keep in ``metadata.trace.steps``
(``kind``, ``name``, ``span_id``, ``parent_span_id``, ``start_ns``, ``end_ns``, ``latency_ms``).

A kind's share is the time covered by its steps (the union of their intervals, so two tool
calls running in parallel do not count twice) over the interaction's total latency, clipped
to 1; the root step itself is not a step of any kind (it is the total). ``untraced`` is the
share of the total no child step covers (the agent's own work, or gaps between spans).
Shares of different kinds can add up to more than 1 where kinds overlap (an LLM call inside a
tool call).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["UNTRACED", "kind_shares", "mean_kind_shares", "slowest_step", "slowest_step_of"]

UNTRACED = "untraced"


def _covered(intervals: Iterable[tuple[int, int]]) -> int:
    """Length of the union of half-open intervals."""
    total = 0
    end = None
    for lo, hi in sorted(intervals):
        if end is None or lo > end:
            total += hi - lo
            end = hi
        elif hi > end:
            total += hi - end
            end = hi
    return total


def _children(
    steps: Sequence[Mapping[str, Any]], root_span_id: str | None
) -> list[Mapping[str, Any]]:
    return [s for s in steps if s.get("span_id") != root_span_id]


def kind_shares(
    steps: Sequence[Mapping[str, Any]], total_ms: float | None, root_span_id: str | None = None
) -> dict[str, float]:
    """Each step kind's share of one interaction's total latency, plus ``untraced``.

    Args:
        steps: The interaction's steps.
        total_ms: Its total latency (the root span's duration); no shares without it.
        root_span_id: The root step, left out (it spans the total).

    Returns:
        Kind to share in [0, 1]; empty when the total is unknown or not positive.

    Examples:
        >>> steps = [{"span_id": "r", "kind": "agent", "start_ns": 0, "end_ns": 10_000_000},
        ...          {"span_id": "a", "kind": "llm", "start_ns": 0, "end_ns": 4_000_000},
        ...          {"span_id": "b", "kind": "tool", "start_ns": 5_000_000, "end_ns": 6_000_000},
        ...          {"span_id": "c", "kind": "tool", "start_ns": 5_500_000, "end_ns": 7_000_000}]
        >>> kind_shares(steps, 10.0, "r")
        {'llm': 0.4, 'tool': 0.2, 'untraced': 0.4}
    """
    if total_ms is None or total_ms <= 0:
        return {}
    total_ns = total_ms * 1e6
    by_kind: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for s in _children(steps, root_span_id):
        lo, hi = s.get("start_ns"), s.get("end_ns")
        if lo is None or hi is None or hi < lo:
            continue
        by_kind[str(s.get("kind", "other"))].append((int(lo), int(hi)))
    out = {k: min(1.0, _covered(v) / total_ns) for k, v in sorted(by_kind.items())}
    every = [iv for v in by_kind.values() for iv in v]
    out[UNTRACED] = max(0.0, 1.0 - min(1.0, _covered(every) / total_ns))
    return out


def mean_kind_shares(
    interactions: Iterable[
        tuple[tuple[str, str], Sequence[Mapping[str, Any]], float | None, str | None]
    ],
) -> list[dict[str, Any]]:
    """Mean step-kind shares per group (e.g. app and model version), over traced interactions.

    A kind absent from an interaction counts as share 0 there, so means over a group are
    comparable across kinds; interactions without a total latency are left out.

    Args:
        interactions: ``((app, model_version), steps, total_ms, root_span_id)`` per interaction.

    Returns:
        One dict per group and kind: ``app``, ``model_version``, ``kind``, ``mean_share``,
        ``n`` (traced interactions in the group), sorted by group then share, largest first.

    Examples:
        >>> s = [{"span_id": "x", "kind": "llm", "start_ns": 0, "end_ns": 1_000_000}]
        >>> rows = mean_kind_shares([(("bot", "v1"), s, 2.0, None), (("bot", "v1"), [], 4.0, None)])
        >>> [(r["kind"], r["mean_share"], r["n"]) for r in rows]
        [('untraced', 0.75, 2), ('llm', 0.25, 2)]
    """
    sums: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for group, steps, total, root in interactions:
        shares = kind_shares(steps, total, root)
        if not shares:
            continue
        counts[group] += 1
        for kind, share in shares.items():
            sums[group][kind] += share
    out: list[dict[str, Any]] = []
    for group in sorted(counts):
        n = counts[group]
        kinds = sorted(sums[group].items(), key=lambda kv: (-kv[1], kv[0]))
        for kind, total_share in kinds:
            out.append(
                {
                    "app": group[0],
                    "model_version": group[1],
                    "kind": kind,
                    "mean_share": total_share / n,
                    "n": n,
                }
            )
    return out


def slowest_step_of(
    steps: Sequence[Mapping[str, Any]], total_ms: float | None, root_span_id: str | None = None
) -> dict[str, Any] | None:
    """The longest step of one interaction (not its root): kind, name, latency and share.

    Examples:
        >>> slowest_step_of([{"span_id": "a", "kind": "tool", "name": "search",
        ...                   "latency_ms": 300.0}], 400.0)
        {'kind': 'tool', 'name': 'search', 'latency_ms': 300.0, 'share': 0.75}
    """
    timed = [s for s in _children(steps, root_span_id) if s.get("latency_ms") is not None]
    if not timed:
        return None
    top = max(timed, key=lambda s: float(s["latency_ms"]))
    latency = float(top["latency_ms"])
    share = min(1.0, latency / total_ms) if total_ms and total_ms > 0 else None
    return {"kind": top.get("kind"), "name": top.get("name"), "latency_ms": latency, "share": share}


def slowest_step(
    interactions: Iterable[tuple[Sequence[Mapping[str, Any]], float | None, str | None]],
) -> dict[str, Any] | None:
    """The step (kind and name) taking the largest mean share over several interactions.

    For a latency alert: over its offending interactions, the step that accounts for most of
    their time. A step missing from an interaction counts as share 0 there.

    Args:
        interactions: ``(steps, total_ms, root_span_id)`` per traced interaction.

    Returns:
        ``kind``, ``name``, ``share`` (mean), ``latency_ms`` (mean where present), ``n``
        (interactions with it) and ``of`` (traced interactions); None without any timed step.

    Examples:
        >>> a = [{"span_id": "1", "kind": "tool", "name": "search", "latency_ms": 800.0}]
        >>> b = [{"span_id": "2", "kind": "llm", "name": "chat m", "latency_ms": 100.0}]
        >>> slowest_step([(a, 1000.0, None), (b, 1000.0, None)])["name"]
        'search'
    """
    sums: dict[tuple[str, str], float] = defaultdict(float)
    lat: dict[tuple[str, str], list[float]] = defaultdict(list)
    n = 0
    for steps, total, root in interactions:
        if not total or total <= 0:
            continue
        n += 1
        per: dict[tuple[str, str], float] = defaultdict(float)
        for s in _children(steps, root):
            if s.get("latency_ms") is None:
                continue
            key = (str(s.get("kind", "other")), str(s.get("name", "")))
            per[key] += float(s["latency_ms"])
        for key, ms in per.items():
            sums[key] += min(1.0, ms / total)
            lat[key].append(ms)
    if not sums:
        return None
    (kind, name), share = max(sums.items(), key=lambda kv: (kv[1], kv[0]))
    return {
        "kind": kind,
        "name": name,
        "share": share / n,
        "latency_ms": sum(lat[(kind, name)]) / len(lat[(kind, name)]),
        "n": len(lat[(kind, name)]),
        "of": n,
    }
