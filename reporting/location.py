"""Where a store's HTML reports are written, and the URL they are served at (when they are).

One rule for everything that writes a report (the flows, ``evalwatch report``, the drift
check, the demo), so two stores never overwrite each other's ``run-1.html`` and a link never
points at another store's run:

* a SQLite file store without ``EVALWATCH_REPORT_DIR``: ``<store folder>/reports/``, beside it;
* otherwise (``EVALWATCH_REPORT_DIR`` set, PostgreSQL, an in-memory SQLite store):
  ``<reports root>/<store key>/``, where the root is ``EVALWATCH_REPORT_DIR`` (default
  ``~/.evalwatch/reports``) and the key is derived from the store URL without its credentials.

``EVALWATCH_REPORT_BASE_URL``, when set, is the http(s) address at which the reports root is
served (the store folder's ``reports/`` in the first case); a report under it gets a link.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from evalwatch.settings import Settings

__all__ = ["report_folder", "report_url", "reports_root", "store_key"]


def _sqlite_file(database_url: str) -> Path | None:
    """The absolute file of a SQLite store URL; None for in-memory stores and other backends."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        return None
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    # SQLite opens a relative path against the working directory: so does this.
    return Path(url.database).expanduser().resolve()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "store"


def store_key(database_url: str) -> str:
    """A folder name that tells one store from another, without credentials.

    SQLite: the file's name and a short hash of its absolute path. Other backends: the
    backend, host, port and database, plus a short hash of the query string when there is one.

    Args:
        database_url: The store's SQLAlchemy URL.

    Returns:
        A name of letters, digits, dots, dashes and underscores.

    Examples:
        >>> store_key("postgresql://app:secret@db.internal:5432/evalwatch")
        'postgresql-db.internal-5432-evalwatch'
        >>> store_key("sqlite:///tmp/a/evalwatch.db") != store_key("sqlite:///tmp/b/evalwatch.db")
        True
    """
    db_file = _sqlite_file(database_url)
    if db_file is not None:
        digest = hashlib.sha256(str(db_file).encode()).hexdigest()[:8]
        return _slug(f"sqlite-{db_file.stem}-{digest}")
    try:
        url = make_url(database_url)
    except ArgumentError:
        return _slug(database_url.split("://", 1)[0]) + "-" + _short_hash(database_url)
    parts = [url.get_backend_name(), url.host or "", str(url.port or ""), url.database or ""]
    key = "-".join(p for p in parts if p)
    if url.query:
        key += "-" + _short_hash(str(sorted(url.query.items())))
    return _slug(key)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def reports_root(settings: Settings) -> Path:
    """The folder that ``EVALWATCH_REPORT_BASE_URL`` serves (see the module docstring).

    Args:
        settings: Settings; ``database_url`` and ``report_dir`` are read.

    Returns:
        An absolute folder (not created).
    """
    if settings.report_dir is not None:
        return settings.report_dir.expanduser().resolve()
    db_file = _sqlite_file(settings.database_url)
    if db_file is not None:
        return db_file.parent / "reports"
    return (settings.home / "reports").expanduser().resolve()


def report_folder(settings: Settings) -> Path:
    """The folder where the reports of the store ``settings.database_url`` go (not created).

    Args:
        settings: Settings; ``database_url`` and ``report_dir`` are read.

    Returns:
        An absolute folder, different for different stores.
    """
    root = reports_root(settings)
    if settings.report_dir is None and _sqlite_file(settings.database_url) is not None:
        return root  # the store folder's own reports/ is already the store's alone
    return root / store_key(settings.database_url)


def report_url(path: Path, settings: Settings) -> str | None:
    """The http(s) address of a report, when ``EVALWATCH_REPORT_BASE_URL`` serves it.

    Args:
        path: A report file.
        settings: Settings; ``report_base_url`` and the reports root are read.

    Returns:
        The URL, or None without a base URL or for a file outside the served folder.
    """
    if not settings.report_base_url:
        return None
    try:
        rel = path.expanduser().resolve().relative_to(reports_root(settings))
    except ValueError:
        return None
    return settings.report_base_url.rstrip("/") + "/" + quote(rel.as_posix())
