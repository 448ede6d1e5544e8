"""Markdown building blocks shared by the reports: escaping, p-values, tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_p", "md_escape", "md_records", "md_table"]


def format_p(p: float | None, missing: str = "n/a") -> str:
    """A p-value for reports (``missing`` when not computed).

    Examples:
        >>> format_p(0.0), format_p(0.0004), format_p(0.25)
        ('<1e-300', '4.00e-04', '0.250')
    """
    if p is None:
        return missing
    if p == 0:
        return "<1e-300"  # below double precision
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def md_escape(text: str) -> str:
    r"""Text safe inside a markdown table cell.

    Examples:
        >>> md_escape("a|b c")
        'a\\|b c'
    """
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(rows: Sequence[Sequence[str]]) -> str:
    r"""A markdown table: the first row is the header, every cell escaped.

    Examples:
        >>> print(md_table([["a", "b"], ["1", "x|y"]]))
        | a | b |
        |---|---|
        | 1 | x\|y |
    """
    lines = ["| " + " | ".join(md_escape(c) for c in rows[0]) + " |"]
    lines.append("|" + "---|" * len(rows[0]))
    lines += ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def md_records(rows: Sequence[Mapping[str, Any]]) -> str:
    r"""A markdown table of records: the first record's keys are the header, None is ``—``.

    ``|`` in a cell is escaped; no records give ``_none_`` (an empty table would not render).

    Examples:
        >>> print(md_records([{"a": 1, "b": None}, {"a": "x|y", "b": 2}]), end="")
        | a | b |
        |---|---|
        | 1 | — |
        | x\|y | 2 |
        >>> md_records([])
        '_none_\n'
    """
    if not rows:
        return "_none_\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += [
        "| "
        + " | ".join("—" if r[c] is None else str(r[c]).replace("|", "\\|") for c in cols)
        + " |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"
