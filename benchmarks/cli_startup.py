"""How long ``evalwatch --help`` takes, and which heavy libraries it imports (goal: 0.5 s, none).

Runs the installed console script (``.venv/bin/evalwatch``, else the one on ``PATH``) in a
fresh subprocess: the wall time is the median of ``--repeat`` runs (default 5), after one
untimed run that warms the file cache. One more run with ``PYTHONPROFILEIMPORTTIME`` lists
every module the script imported, from which the heavy libraries (torch, Prefect, pandas,
scipy, scikit-learn, openai, Great Expectations, sentence-transformers, SQLAlchemy, NumPy)
are reported. ``tests/test_cli_imports.py`` asserts the same list is empty, for every help page.

Run: ``python benchmarks/cli_startup.py [--repeat 5] [-- ARGS...]`` (default ARGS: ``--help``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

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
    "numpy",
)


def console_script() -> str:
    """The installed ``evalwatch`` script: the project's virtual environment's, else PATH's."""
    beside = Path(sys.executable).with_name("evalwatch")
    for candidate in (REPO / ".venv" / "bin" / "evalwatch", beside):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("evalwatch")
    if found is None:
        sys.exit("evalwatch is not installed: pip install -e .")
    return found


def wall_time(cmd: list[str]) -> float:
    """Seconds one run of ``cmd`` takes, output discarded."""
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def imported_modules(cmd: list[str]) -> list[str]:
    """Every module ``cmd`` imported, from Python's import-time profile on stderr."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, check=False
    )
    # Lines read "import time: self [us] | cumulative | name", the name indented by depth.
    return [
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--repeat", type=int, default=5, help="Timed runs (the median is printed).")
    ap.add_argument("args", nargs="*", default=["--help"], help="evalwatch's arguments.")
    opts = ap.parse_args()
    cmd = [console_script(), *opts.args]
    wall_time(cmd)  # warm the file cache; not counted
    times = [wall_time(cmd) for _ in range(opts.repeat)]
    heavy = sorted({m.split(".")[0] for m in imported_modules(cmd)} & set(HEAVY))
    load = os.getloadavg()
    print(
        f"`evalwatch {' '.join(opts.args)}`: median {statistics.median(times):.2f} s of "
        f"{opts.repeat} (min {min(times):.2f}, max {max(times):.2f}); heavy modules imported: "
        f"{', '.join(heavy) or 'none'}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


if __name__ == "__main__":
    main()
