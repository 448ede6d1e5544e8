"""Opening a user's input file: the one check every reader makes before it reads.

Every command that takes a file (traffic, test sets, predictions, policies, rules, labels,
evaluator options) says the same three things about a bad one, worded the same way: the path
does not exist, it is not a regular file (a directory, a FIFO...), or it is not UTF-8 text.
A FIFO is never opened: opening one for reading blocks until a writer comes, so a command
given ``<(...)`` or a named pipe by mistake would hang instead of saying so.

Why here: this module depends on the standard library only, and ``evalwatch`` is a package
every layer already imports (``evalwatch.settings``), so ``checks``, ``ingest``,
``evaluators`` and ``runs`` may use it without importing the CLI (``evalwatch.commands``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["InputFileError", "check_input_file", "read_input_text"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class InputFileError(ValueError):
    """An input file that cannot be read; the message names the path and says why."""


def check_input_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`~pathlib.Path` once it is known to be a regular file.

    Follows symlinks (a link to a file is a file); never opens the file.

    Args:
        path: The file a user named.

    Returns:
        The path.

    Raises:
        InputFileError: It does not exist, is not a regular file, or cannot be looked at.

    Examples:
        >>> import tempfile
        >>> try:
        ...     check_input_file(tempfile.gettempdir())
        ... except InputFileError as exc:
        ...     print(str(exc).split(" is ", 1)[1])
        not a regular file (a directory)
    """
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise InputFileError(f"{p} does not exist") from None
    except NotADirectoryError:
        raise InputFileError(f"{p} does not exist (a part of the path is not a folder)") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {p}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        kind = next((what for test, what in _KINDS if test(mode)), "not a file")
        raise InputFileError(f"{p} is not a regular file ({kind})")
    return p


def read_input_text(path: str | os.PathLike[str]) -> str:
    r"""The whole of an input file as UTF-8 text (a leading byte-order mark dropped).

    Args:
        path: The file a user named.

    Returns:
        Its text.

    Raises:
        InputFileError: It does not exist, is not a regular file, cannot be read, or is not
            UTF-8 (the message gives the offset of the first bad byte).

    Examples:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "bad.yaml"
        >>> _ = p.write_bytes(b"a: \xff")
        >>> try:
        ...     read_input_text(p)
        ... except InputFileError as exc:
        ...     print(str(exc).split(" is ", 1)[1])
        not UTF-8 text (byte 3)
    """
    p = check_input_file(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{p} is not UTF-8 text (byte {exc.start})") from None
