"""Which stored interactions a run looks at: windows, filters, deterministic rate sampling.

Rate sampling hashes each request id with the seed, so an interaction is in or out of the
sample the same way for every evaluator and every re-run with that seed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.engine import Engine

from evalwatch.core import SubjectType
from evalwatch.storage.models import Interaction, Score

__all__ = ["SampleSpec", "hash_unit", "sample_interactions", "window_holds_traffic"]


def hash_unit(request_id: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the request id and the seed.

    Examples:
        >>> hash_unit("req-1", 0) == hash_unit("req-1", 0)
        True
    """
    digest = hashlib.blake2b(f"{seed}:{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class SampleSpec(BaseModel):
    """What to sample from stored traffic.

    Examples:
        >>> SampleSpec(rate=0.1, max_items=500, seed=7).rate
        0.1
    """

    start: datetime | None = Field(None, description="Window start (inclusive).")
    end: datetime | None = Field(None, description="Window end (exclusive).")
    apps: list[str] = Field(default_factory=list, description="Only these apps.")
    model_versions: list[str] = Field(default_factory=list, description="Only these versions.")
    rate: float = Field(1.0, gt=0.0, le=1.0, description="Share of interactions to keep.")
    max_items: int | None = Field(None, gt=0, description="At most this many.")
    stratify: bool = Field(
        False, description="Split max_items evenly across model versions (others fill leftovers)."
    )
    seed: int = Field(0, description="Sampling seed.")
    unscored_by: str | None = Field(
        None, description="'evaluator@version' or 'evaluator': only what it has not scored."
    )

    @model_validator(mode="after")
    def _window_order(self) -> SampleSpec:
        if self.start and self.end and self.start >= self.end:
            raise ValueError(f"window start {self.start} is not before end {self.end}")
        return self


def _allocate(groups: dict[str, list[tuple[float, int]]], total: int) -> list[int]:
    # Even split, then hand the leftovers of small strata to the larger ones.
    quotas = dict.fromkeys(groups, 0)
    remaining = total
    open_groups = sorted(groups, key=lambda g: len(groups[g]))
    while remaining > 0 and open_groups:
        share = max(1, remaining // len(open_groups))
        still_open = []
        for g in open_groups:
            take = min(share, len(groups[g]) - quotas[g], remaining)
            quotas[g] += take
            remaining -= take
            if quotas[g] < len(groups[g]):
                still_open.append(g)
            if remaining == 0:
                break
        open_groups = still_open
    return [i for g, q in quotas.items() for _, i in groups[g][:q]]


def sample_interactions(engine: Engine, spec: SampleSpec) -> list[int]:
    """Interaction ids matching ``spec``, ordered by time.

    Args:
        engine: The store.
        spec: Window, filters, rate, cap, stratification and seed.

    Returns:
        The sampled interaction ids. Within a stratum the kept rows are those with the
        smallest hash, so a smaller cap gives a subset of a larger one.
    """
    it = Interaction.__table__  # type: ignore[attr-defined]
    q = _in_window(sa.select(it.c.id, it.c.request_id, it.c.model_version, it.c.ts), spec)
    if spec.unscored_by:
        evaluator, _, version = spec.unscored_by.partition("@")
        sc = Score.__table__  # type: ignore[attr-defined]
        scored = sa.select(sc.c.subject_id).where(
            sc.c.subject_type == SubjectType.interaction, sc.c.evaluator == evaluator
        )
        if version:
            scored = scored.where(sc.c.evaluator_version == version)
        q = q.where(it.c.id.not_in(scored))
    groups: dict[str, list[tuple[float, int]]] = defaultdict(list)
    when: dict[int, datetime] = {}
    with engine.connect() as conn:
        for iid, rid, version, ts in conn.execute(q):
            u = hash_unit(rid, spec.seed)
            if u < spec.rate:
                groups[version if spec.stratify else ""].append((u, iid))
                when[iid] = ts
    for members in groups.values():
        members.sort()
    if spec.max_items is None:
        chosen = [i for members in groups.values() for _, i in members]
    elif spec.stratify:
        chosen = _allocate(groups, spec.max_items)
    else:
        chosen = [i for _, i in groups[""][: spec.max_items]]
    return sorted(chosen, key=lambda i: (when[i], i))


def window_holds_traffic(engine: Engine, spec: SampleSpec) -> bool:
    """Whether any stored interaction is in ``spec``'s window, apps and model versions.

    Rate, cap and ``unscored_by`` are left out: this tells an empty window (nothing was
    logged there) from a sample that its filters emptied.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> window_holds_traffic(e, SampleSpec())
        False
    """
    it = Interaction.__table__  # type: ignore[attr-defined]
    q = _in_window(sa.select(it.c.id).limit(1), spec)
    with engine.connect() as conn:
        return conn.execute(q).first() is not None


_Q = TypeVar("_Q", bound=sa.Select)


def _in_window(q: _Q, spec: SampleSpec) -> _Q:
    """``q`` over interactions, limited to ``spec``'s window, apps and model versions."""
    it = Interaction.__table__  # type: ignore[attr-defined]
    if spec.start is not None:
        q = q.where(it.c.ts >= spec.start)
    if spec.end is not None:
        q = q.where(it.c.ts < spec.end)
    if spec.apps:
        q = q.where(it.c.app.in_(spec.apps))
    if spec.model_versions:
        q = q.where(it.c.model_version.in_(spec.model_versions))
    return q
