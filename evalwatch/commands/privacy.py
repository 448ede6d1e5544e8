"""``evalwatch privacy``: opt-outs, forgetting a user, and text retention.

Ids given on the command line are raw user or session ids; they are hashed with the store's
hash key (``EVALWATCH_HASH_KEY``, as at ingest) before anything is stored or looked up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from evalwatch.commands.common import STATE, bad_input, console, open_store
from evalwatch.core import parse_duration

if TYPE_CHECKING:
    from evalwatch.storage.privacy import Identity

privacy_app = typer.Typer(help="Opt-outs, forgetting users, text retention.", no_args_is_help=True)
optout_app = typer.Typer(
    help="Users and sessions whose traffic is never stored.", no_args_is_help=True
)

UserOpt = Annotated[
    list[str] | None,
    typer.Option("--user-id", metavar="ID", help="A raw user id (repeatable)."),
]
SessionOpt = Annotated[
    list[str] | None,
    typer.Option("--session-id", metavar="ID", help="A raw session id (repeatable)."),
]
FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file",
        metavar="FILE",
        help="One id a line: ID or user:ID (a user), session:ID, user-hash:HEX, "
        "session-hash:HEX (already hashed with the store's key); # starts a comment.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

_PREFIXES = {
    "user:": ("user", False),
    "session:": ("session", False),
    "user-hash:": ("user", True),
    "session-hash:": ("session", True),
}
_HEX64 = frozenset("0123456789abcdef")


def _identities(
    users: list[str] | None, sessions: list[str] | None, file: Path | None
) -> list[Identity]:
    """The ids named on the command line and in ``--file``, hashed with the store's key."""
    from evalwatch.core.idhash import keyed_hash
    from evalwatch.storage.privacy import Identity

    key = STATE.settings().resolved_hash_key()
    out: list[Identity] = [Identity("user", keyed_hash(u, key), u) for u in users or []] + [
        Identity("session", keyed_hash(s, key), s) for s in sessions or []
    ]
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise bad_input(f"cannot read --file {file}: {exc}") from exc
        for n, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            kind, hashed = "user", False
            for prefix, (k, h) in _PREFIXES.items():
                if text.startswith(prefix):
                    kind, hashed, text = k, h, text[len(prefix) :].strip()
                    break
            if not text:
                raise bad_input(f"--file {file} line {n}: no id after the prefix")
            if hashed:
                if len(text) != 64 or not set(text.lower()) <= _HEX64:
                    raise bad_input(
                        f"--file {file} line {n}: a hash is 64 hex characters, not {text!r}"
                    )
                out.append(Identity(kind, text.lower()))  # type: ignore[arg-type]
            else:
                out.append(Identity(kind, keyed_hash(text, key), text))  # type: ignore[arg-type]
    if not out:
        raise bad_input("name at least one --user-id, --session-id or --file")
    return list(dict.fromkeys(out))


def _print_counts(counts: dict[str, int], title: str, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(counts))
        return
    table = Table(title=title, title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in counts.items():
        table.add_row(name, str(n))
    console.print(table)


def _forget(identities: list[Identity], dry_run: bool, as_json: bool) -> None:
    from evalwatch.storage.privacy import forget

    settings = STATE.settings()
    engine = open_store()
    counts = forget(
        engine,
        identities,
        settings.resolved_hash_key(),
        dry_run=dry_run,
        batch_size=settings.privacy.forget_batch_size,
    )
    title = "forget, dry run (would delete)" if dry_run else "forget (deleted)"
    _print_counts(counts, title, as_json)


@optout_app.command("add")
def optout_add(
    user_id: UserOpt = None,
    session_id: SessionOpt = None,
    file: FileOpt = None,
    note: Annotated[
        str | None, typer.Option("--note", help="Why (e.g. a ticket id); no personal data.")
    ] = None,
    no_forget: Annotated[
        bool,
        typer.Option(
            "--no-forget",
            help="Only stop future ingest; keep what is stored (run `privacy forget` later).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop storing these users' or sessions' traffic, and forget what is already stored."""
    from evalwatch.storage.privacy import add_optouts

    identities = _identities(user_id, session_id, file)
    engine = open_store()
    new = 0
    for kind in ("user", "session"):
        hashes = [i.id_hash for i in identities if i.kind == kind]
        if hashes:
            new += add_optouts(engine, kind, hashes, note[:200] if note else None)
    if not as_json:
        console.print(
            f"opted out: {new} new, {len(identities) - new} already listed", highlight=False
        )
    if no_forget:
        if not as_json:
            console.print(
                "stored traffic kept; delete it with `evalwatch privacy forget` and the same ids",
                highlight=False,
            )
        else:
            console.print_json(json.dumps({"opted_out_new": new}))
        return
    _forget(identities, dry_run=False, as_json=as_json)


@optout_app.command("list")
def optout_list(as_json: JsonOpt = False) -> None:
    """Show the opt-out list (hashes only: raw ids are never stored)."""
    from evalwatch.storage.privacy import list_optouts

    rows = list_optouts(open_store())
    if as_json:
        console.print_json(
            json.dumps(
                [
                    {
                        "kind": r.kind,
                        "id_hash": r.id_hash,
                        "note": r.note,
                        "created_at": r.created_at.isoformat(),
                    }
                    for r in rows
                ]
            )
        )
        return
    if not rows:
        console.print("no opt-outs", highlight=False)
        return
    table = Table(title=f"{len(rows)} opt-out(s)", title_justify="left")
    for col in ("kind", "id hash", "note", "added"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.kind, r.id_hash, r.note or "", r.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@optout_app.command("remove")
def optout_remove(
    user_id: UserOpt = None, session_id: SessionOpt = None, file: FileOpt = None
) -> None:
    """Take users or sessions off the opt-out list (their future traffic is stored again)."""
    from evalwatch.storage.privacy import remove_optouts

    identities = _identities(user_id, session_id, file)
    engine = open_store()
    n = 0
    for kind in ("user", "session"):
        hashes = [i.id_hash for i in identities if i.kind == kind]
        if hashes:
            n += remove_optouts(engine, kind, hashes)
    console.print(
        f"removed {n} opt-out(s) ({len(identities) - n} were not listed)", highlight=False
    )


@privacy_app.command("forget")
def privacy_forget(
    user_id: UserOpt = None,
    session_id: SessionOpt = None,
    file: FileOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete everything derived from users or sessions and scrub them from stored reports.

    Interactions, feedback, scores and their run links, embeddings, judge-cache entries,
    quarantined raw rows; drift report examples, alert contexts, regression reports and run
    summaries that name them are rewritten. Idempotent, and safe while ingests and runs go
    on: run it again after they finish to catch what they stored meanwhile.
    """
    _forget(_identities(user_id, session_id, file), dry_run, as_json)


@privacy_app.command("enforce")
def privacy_enforce(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            help="Text retention, e.g. 7d (default: the ingest.text_retention setting).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would change; change nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Replace texts older than the text retention by their length and hash (scores stay)."""
    from evalwatch.storage.privacy import enforce_text_retention

    period_text = older_than or STATE.settings().ingest.text_retention
    if period_text is None:
        raise bad_input(
            "no text retention: pass --older-than (e.g. 7d) or set EVALWATCH_INGEST__TEXT_RETENTION"
        )
    try:
        period = parse_duration(period_text)
    except ValueError as exc:
        raise bad_input(str(exc)) from exc
    counts = enforce_text_retention(open_store(), period, dry_run=dry_run)
    what = "would remove, dry run" if dry_run else "removed"
    _print_counts(counts, f"text {what} (> {period_text})", as_json)


def register(app: typer.Typer) -> None:
    """Add the ``privacy`` group."""
    privacy_app.add_typer(optout_app, name="opt-out")
    app.add_typer(privacy_app, name="privacy")
