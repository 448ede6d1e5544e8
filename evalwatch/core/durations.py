"""Durations as people write them: ``90s``, ``15m``, ``36h``, ``7d``, ``2w``, ``1h30m``.

The one parser behind every duration evalwatch accepts: the CLI's ``--window``/``--since``/
``--older-than``, alert rules' ``window``/``delay``/``cooldown`` and the flows' windows.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

__all__ = ["DURATION_UNITS", "parse_duration"]

#: Seconds in each unit a duration may use.
DURATION_UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}

_PART = r"(\d+(?:\.\d+)?)\s*([smhdw])"
# One or more number-unit parts ("1h30m", "1d 12h"); whitespace around and between is fine.
_DURATION = re.compile(rf"^\s*(?:{_PART}\s*)+$", re.IGNORECASE)
_PARTS = re.compile(_PART, re.IGNORECASE)
_BARE_NUMBER = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")
_HOW = "use a number and one of s, m, h, d, w (e.g. 90s, 30m, 1h, 7d, 1h30m)"


def parse_duration(text: str | float | int | timedelta) -> timedelta:
    """Parse a duration.

    Accepted: a number and a unit (``s``, ``m``, ``h``, ``d``, ``w``; case and spaces do not
    matter; decimals are fine: ``1.5h``), several of them in a row (``1h30m``, ``1d 12h``), a
    bare int or float, which is seconds (YAML's ``delay: 90``), and a timedelta as it is. A
    bare number written as a string (``"90"``) is refused: from a command line it is more
    likely a forgotten unit than seconds.

    Args:
        text: The duration.

    Returns:
        The duration as a timedelta.

    Raises:
        ValueError: Not a duration, or a negative or non-finite one. The message starts with
            ``bad duration`` and the value as given.

    Examples:
        >>> parse_duration("36h")
        datetime.timedelta(days=1, seconds=43200)
        >>> parse_duration("1h30m")
        datetime.timedelta(seconds=5400)
        >>> parse_duration(0)
        datetime.timedelta(0)
    """
    if isinstance(text, timedelta):
        if text < timedelta(0):
            raise ValueError(f"bad duration {text!r}: must not be negative")
        return text
    # bool is an int subclass; True is not "1 second".
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"bad duration {text!r}; {_HOW}")
    if isinstance(text, int | float):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"bad duration {text!r}: must be a finite number of seconds, >= 0")
        seconds = float(text)
    elif _DURATION.match(text):
        seconds = sum(
            float(number) * DURATION_UNITS[unit.lower()] for number, unit in _PARTS.findall(text)
        )
    elif _BARE_NUMBER.match(text):
        number = text.strip()
        raise ValueError(f"bad duration {text!r}: give a unit, e.g. {number}s or {number}m")
    else:
        raise ValueError(f"bad duration {text!r}; {_HOW}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"bad duration {text!r}: too long") from None
