"""Privacy tables (issue #17, section 1): the opt-out list and the forget tombstones.

Migration 0004 creates them (and adds the text-retention columns of ``interactions``, which
live on :class:`~evalwatch.storage.models.Interaction`).

* :class:`OptOut`: users and sessions whose traffic is never stored. Only keyed hashes are
  kept (HMAC-SHA256 with the store's hash key, as ``interactions.user_hash`` /
  ``session_hash``), never the raw ids.
* :class:`ForgetTombstone`: keyed hashes of what ``evalwatch privacy forget`` deleted (request
  ids, the start of each text), with no link to the user: a report stored after the forget by
  a run that read the user's rows before it (a concurrent ``evaluate``) is scrubbed by the
  next forget through them.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from evalwatch.storage.models import _now

__all__ = ["ForgetTombstone", "OptOut"]


class OptOut(SQLModel, table=True):
    """A user or session whose traffic is dropped at ingest (hash only, never the raw id)."""

    __tablename__ = "privacy_optouts"
    __table_args__ = (sa.UniqueConstraint("kind", "id_hash", name="uq_privacy_optout"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # user | session
    id_hash: str = Field(max_length=64)
    note: str | None = Field(default=None, max_length=200)
    created_at: datetime = _now()


class ForgetTombstone(SQLModel, table=True):
    """A keyed hash of a request id or text prefix of a forgotten interaction."""

    __tablename__ = "privacy_tombstones"
    __table_args__ = (sa.UniqueConstraint("kind", "digest", name="uq_privacy_tombstone"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # request | text | interaction
    digest: str = Field(max_length=64)
    created_at: datetime = _now()
