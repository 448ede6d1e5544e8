"""The one sentence every run, check and comparison prints when its window holds no traffic.

A window that holds nothing must never pass silently: the user is told, in one line, which
window was empty and the newest interaction the store does hold, so a wrong ``--until`` or a
stalled ingest is obvious (``0 interactions between 2026-11-20 00:00 and 2026-11-21 00:00 UTC;
the newest is 2026-11-14 23:56 UTC``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from evalwatch.storage.traffic_frame import newest_interaction_time

__all__ = ["format_utc", "no_data_message"]


def format_utc(dt: datetime) -> str:
    """A time as ``YYYY-MM-DD HH:MM`` in UTC (naive times are taken as UTC).

    Examples:
        >>> format_utc(datetime(2026, 11, 14, 23, 56, 30, tzinfo=UTC))
        '2026-11-14 23:56'
    """
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%d %H:%M")


def _scope(apps: Sequence[str], model_versions: Sequence[str]) -> str:
    parts = []
    if apps:
        parts.append(f"app {', '.join(apps)}")
    if model_versions:
        parts.append(f"model version {', '.join(model_versions)}")
    return f" ({'; '.join(parts)})" if parts else ""


def no_data_message(
    engine: Engine,
    start: datetime | None,
    end: datetime | None,
    *,
    apps: Sequence[str] = (),
    model_versions: Sequence[str] = (),
    what: str = "interactions",
) -> str:
    r"""The one line that says a window holds no traffic, with the newest time the store has.

    Args:
        engine: The store.
        start: The window's inclusive start (None: open).
        end: The window's exclusive end (None: open).
        apps: The window's app filter (empty: all), also applied to the newest time.
        model_versions: The window's model-version filter (empty: all).
        what: What was counted (``interactions``, ``sampled interactions``, ...).

    Returns:
        E.g. ``0 interactions between 2026-11-20 00:00 and 2026-11-21 00:00 UTC; the newest is
        2026-11-14 23:56 UTC``, or ``...; the store holds no interactions`` when it has none.

    Examples:
        >>> from evalwatch.storage.db import make_engine, upgrade
        >>> e = make_engine("sqlite://"); _ = upgrade(e)
        >>> day = datetime(2026, 11, 1, tzinfo=UTC)
        >>> print(no_data_message(e, day, day.replace(day=2)).replace("; ", ";\n"))
        0 interactions between 2026-11-01 00:00 and 2026-11-02 00:00 UTC;
        the store holds no interactions
    """
    if start is not None and end is not None:
        window = f"between {format_utc(start)} and {format_utc(end)} UTC"
    elif start is not None:
        window = f"since {format_utc(start)} UTC"
    elif end is not None:
        window = f"before {format_utc(end)} UTC"
    else:
        window = "in the store"
    scope = _scope(apps, model_versions)
    newest = newest_interaction_time(engine, apps, model_versions)
    if newest is None and start is None and end is None:
        return f"0 {what}{scope} in the store"
    if newest is None:
        held = f"the store holds no interactions{scope}"
    else:
        held = f"the newest{scope} is {format_utc(newest)} UTC"
    return f"0 {what}{scope} {window}; {held}"
