"""``--help`` and usage errors import none of the heavy libraries, so they answer at once.

Each command imports what it runs on (the store, the statistics, the evaluators, Prefect) inside
its function; the CLI's modules import only typer, rich, pydantic and :mod:`evalwatch.core`.
Every help page and a few usage errors run in one fresh interpreter, and the modules it holds
afterwards are checked: an import added at the top of a command module fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import typer

from evalwatch.cli import app

#: What ``--help`` must not import: seconds of start-up each (torch, Prefect, pandas, scipy...).
HEAVY = (
    "torch",
    "prefect",
    "pandas",
    "scipy",
    "sklearn",
    "openai",
    "great_expectations",
    "sentence_transformers",
    "sqlalchemy",
    "sqlmodel",
    "numpy",
)

# Runs each argument list through the console-script entry point in turn, then prints the exit
# codes and every module imported, as JSON on the last line.
_WRAPPER = """
import json, sys
from evalwatch.cli import main
codes = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["evalwatch", *args]
    try:
        main()
        codes.append(0)
    except SystemExit as exc:
        codes.append(exc.code if isinstance(exc.code, int) else 1)
print("\\n" + json.dumps({"codes": codes, "modules": sorted(sys.modules)}))
"""


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    """Every command and group under ``command``, as the argument lists that name them."""
    paths = [list(prefix)]
    # A group has subcommands (typer ships its own click, so no isinstance on click's classes).
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths += _command_paths(sub, (*prefix, name))
    return paths


def _run(arg_lists: list[list[str]]) -> tuple[list[int], set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, json.dumps(arg_lists)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    return last["codes"], set(last["modules"])


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_every_help_page_imports_no_heavy_library() -> None:
    paths = _command_paths(typer.main.get_command(app))
    assert ["run", "dataset"] in paths and ["drift"] in paths  # the whole tree is walked
    codes, modules = _run([[*p, "--help"] for p in paths])
    assert codes == [0] * len(paths)
    assert _heavy(modules) == []
    assert "evalwatch.commands.run" in modules  # the commands were loaded, not skipped


def test_usage_errors_import_no_heavy_library() -> None:
    errors = [
        ["drift", "--bogus"],
        ["run", "dataset"],  # the test-set name is missing
        ["evaluate", "--chunk-size", "0"],
        ["alerts", "list", "--status", "nonsense"],
        ["nonsense"],
    ]
    codes, modules = _run(errors)
    assert codes == [2] * len(errors)
    assert _heavy(modules) == []
