"""The ``evalwatch privacy`` commands (stub; owned by its helper)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``privacy`` group (nothing yet)."""
