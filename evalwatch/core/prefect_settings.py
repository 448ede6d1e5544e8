"""Where Prefect would read a setting from, answered with the standard library alone.

Importing Prefect to ask its settings costs about 2 s, before a command can do anything else.
Two questions need only a glance at the places Prefect reads settings from: whether a command
may start a temporary server of its own (no API URL set, temporary servers not turned off),
and whether alert delivery can know there is no API at all (no API, database or profile
setting anywhere). :func:`prefect_setting_source` walks those places once, in Prefect's
order, for any such question; whatever cannot be read is reported as a source, so the caller
leaves the answer to Prefect (only slower).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PROFILE", "prefect_home", "prefect_setting_source"]

#: Prefect's default profile, which sets nothing; its other bundled ones ("local", "cloud")
#: name an API.
DEFAULT_PROFILE = "ephemeral"

#: ``matters(name, value)``: whether the setting ``PREFECT_…`` = value decides the question.
Matters = Callable[[str, Any], bool]


def prefect_home() -> Path:
    """``PREFECT_HOME`` (default ``~/.prefect``)."""
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()


def _flat(table: Mapping[str, Any], prefix: str = "PREFECT") -> Iterator[tuple[str, Any]]:
    """A TOML table's leaves under the names Prefect gives them: ``[api] url`` is ``API_URL``."""
    for key, value in table.items():
        name = f"{prefix}_{key}".upper()
        if isinstance(value, Mapping):
            yield from _flat(value, name)
        else:
            yield name, value


def _dotenv(path: Path) -> Iterator[tuple[str, str]]:
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition("=")
        key = key.removeprefix("export").strip()
        if key.startswith("PREFECT_"):
            yield key, value.strip().strip("'\"")


def _toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def prefect_setting_source(matters: Matters, cwd: Path | None = None) -> str | None:
    """The first place Prefect reads settings from that holds a setting ``matters`` accepts.

    The places: the environment, then in the working directory ``.env``, ``prefect.toml`` and
    ``[tool.prefect]`` in ``pyproject.toml``, then the active profile of ``profiles.toml``
    (``PREFECT_PROFILES_PATH``, default in ``PREFECT_HOME``). An active profile that the file
    does not hold (one of Prefect's bundled ones, other than the default) counts as a source,
    and so does a file that cannot be read.

    Args:
        matters: Whether a setting decides the question (its ``PREFECT_…`` name, its value).
        cwd: The working directory (default: the process's).

    Returns:
        The source (one short phrase: ``$PREFECT_API_URL``, a file, a profile), or None when
        no place holds such a setting.

    Examples:
        >>> import tempfile
        >>> empty = Path(tempfile.mkdtemp())
        >>> prefect_setting_source(lambda k, v: k == "PREFECT_NOT_A_SETTING", empty) is None
        True
    """
    for key, value in os.environ.items():
        if key.startswith("PREFECT_") and matters(key, value):
            return f"${key}"
    where = cwd or Path.cwd()
    try:
        dotenv = where / ".env"
        if dotenv.is_file() and any(matters(k, v) for k, v in _dotenv(dotenv)):
            return str(dotenv)
        toml = where / "prefect.toml"
        if toml.is_file() and any(matters(k, v) for k, v in _flat(_toml(toml))):
            return str(toml)
        if (where / "pyproject.toml").is_file():
            tool = _toml(where / "pyproject.toml").get("tool", {})
            table = tool.get("prefect") if isinstance(tool, dict) else None
            if isinstance(table, dict) and any(matters(k, v) for k, v in _flat(table)):
                return str(where / "pyproject.toml")
        profiles = Path(
            os.environ.get("PREFECT_PROFILES_PATH") or prefect_home() / "profiles.toml"
        ).expanduser()
        if profiles.is_file():
            data = _toml(profiles)
            active = str(os.environ.get("PREFECT_PROFILE") or data.get("active") or DEFAULT_PROFILE)
            profile = (data.get("profiles") or {}).get(active)
            if profile is None and active != DEFAULT_PROFILE:
                return f"Prefect profile {active!r}"  # one of Prefect's bundled profiles
            if isinstance(profile, dict) and any(matters(k, v) for k, v in profile.items()):
                return f"Prefect profile {active!r} ({profiles})"
    except (OSError, ValueError, AttributeError) as exc:
        return f"Prefect settings not read here ({type(exc).__name__})"
    return None
