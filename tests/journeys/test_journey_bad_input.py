"""Journey: bad input at every door exits 2 with one line naming the problem, and writes nothing.

Issue #12. Every command that reads a file is given a path that does not exist, a directory, a
FIFO and a file it cannot decode; every store URL, duration, evaluator and rubric option a
bad value. Each call must exit 2 with one line (plus at most click's usage line) that names
the path or value, without a traceback, leave the store's table counts as they were and leave
no new file in the user's directory.

Why a FIFO and an undecodable file for "unreadable": the tests run as root, and root reads a
``chmod 000`` file. A FIFO is the unreadable file root meets too (``mkfifo``, a process
substitution): opening it blocks until someone writes, so a command that does not check for a
regular file hangs. An undecodable file is what a wrong file looks like: a garbage ``.parquet``
for the row readers (whose JSONL and CSV readers keep bad bytes and quarantine the row, by
design), and bytes that are not UTF-8 for the YAML and JSONL files read whole.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from evalwatch.storage.db import make_engine
from evalwatch.storage.repo import table_counts
from tests.journeys.conftest import REPO, DemoStore, base_env, run_cli

pytestmark = [pytest.mark.journey, pytest.mark.slow]

MISSING = "missing.jsonl"
DIRECTORY = "a-folder"
FIFO = "pipe.jsonl"
GARBAGE_PARQUET = "garbage.parquet"
NOT_UTF8 = "not-utf8.yaml"

# A command that hangs on a FIFO would block forever; this bounds it (a start is ~3 s).
CALL_TIMEOUT = 60

BASELINE_OUTPUTS = "datasets/support-qa.predictions.baseline.jsonl"
GATE = ("gate", "--dataset", "support-qa", "--baseline-model", "acme-chat-v1.0", "--no-progress")
COMPARE = ("compare", "--app", "support-bot", "--model-a", "v1.0", "--model-b", "v2.0-canary")


@dataclass(frozen=True)
class Door:
    """A command that reads a file: its arguments around the file, and how it reads it.

    ``whole`` doors read the file as one text (YAML, JSONL read at once): the undecodable
    file for them is not UTF-8. The others read rows through ``evalwatch.ingest.readers``.
    """

    name: str
    before: tuple[str, ...]
    after: tuple[str, ...] = ()
    whole: bool = False

    def args(self, path: str) -> tuple[str, ...]:
        return (*self.before, path, *self.after)


DOORS = [
    Door("ingest", ("ingest",)),
    Door("ingest-feedback", ("ingest", "--kind", "feedback")),
    Door("datasets-load", ("datasets", "load"), ("--name", "bad-input")),
    Door("datasets-load-outputs", ("datasets", "load-outputs"), ("--name", "support-qa")),
    Door("gate-candidate-outputs", (*GATE, "--candidate-outputs")),
    Door("gate-policy", (*GATE, "--candidate-model", "acme-chat-v1.1", "--policy"), whole=True),
    Door("compare-policy", (*COMPARE, "--policy"), whole=True),
    Door("rules-check", ("rules", "check"), whole=True),
    Door("judge-calibrate-labels", ("judge", "calibrate", "--labels"), whole=True),
    Door(
        "evaluate-options-file",
        ("evaluate", "-e", "heuristics", "--max-items", "5", "--options-file"),
        whole=True,
    ),
    Door("run-dataset-outputs", ("run", "dataset", "support-qa", "--outputs")),
]

# What the one line must say besides the path, per kind of bad file (case-insensitive).
FILE_PROBLEMS: dict[str, tuple[str | None, str]] = {
    "missing": (MISSING, r"no such file|does not exist|not found"),
    "directory": (DIRECTORY, r"directory|not a regular file|not a file"),
    "fifo": (FIFO, r"not a regular file|not a file"),
    "undecodable": (None, r"utf-8|parquet|decod"),
}


@dataclass(frozen=True)
class Case:
    """One bad call: its arguments and what its one line must contain."""

    id: str
    args: tuple[str, ...]
    names: str  # the path or value the line must name
    problem: str = ""  # a regex for the problem (case-insensitive); empty: the name suffices


def _file_cases() -> list[Case]:
    cases = []
    for door in DOORS:
        for kind, (path, problem) in FILE_PROBLEMS.items():
            p = path or (NOT_UTF8 if door.whole else GARBAGE_PARQUET)
            cases.append(Case(f"{door.name}-{kind}", door.args(p), p, problem))
    return cases


DURATION = r"bad (time|duration)"
EVALUATOR = r"unknown evaluator"
RUBRIC = r"unknown rubric"

CASES: list[Case] = [
    *_file_cases(),
    # A store URL that is not one. Nothing may be created for it (no file named like it).
    Case("db-not-a-url", ("--db", "not-a-url", "datasets", "list"), "not-a-url"),
    Case("db-unknown-kind", ("--db", "nosuchdb://x/y", "sample"), "nosuchdb"),
    Case(
        "db-not-a-url-ingest",
        ("--db", "not-a-url", "ingest", "datasets/sample_traffic.jsonl"),
        "not-a-url",
    ),
    # A typo'd folder: no folder and no empty store may be made for it (a store file that does
    # not exist yet, in a folder that does, is still created on first use).
    Case(
        "db-missing-folder",
        ("--db", "sqlite:///no/such/dir/x.db", "datasets", "list"),
        "no/such/dir",
        r"does not exist",
    ),
    # A predictions file with no usable row (bytes that are not UTF-8 JSON): refused before
    # anything is stored, so not even its quarantined rows are left behind.
    Case(
        "gate-candidate-outputs-no-usable-row",
        (*GATE, "--candidate-outputs", NOT_UTF8),
        NOT_UTF8,
        r"exactly one model",
    ),
    Case(
        "run-dataset-outputs-no-usable-row",
        ("run", "dataset", "support-qa", "--outputs", NOT_UTF8),
        NOT_UTF8,
        r"exactly one model",
    ),
    Case(
        "run-dataset-model-not-stored",
        ("run", "dataset", "support-qa", "--model", "not-stored-model"),
        "not-stored-model",
        r"no stored answers",
    ),
    # A bad file with a store that does not exist yet: no store may be created for it.
    *(
        Case(
            f"{door.name}-missing-fresh-store",
            ("--db", "sqlite:///fresh.db", *door.args(MISSING)),
            MISSING,
            FILE_PROBLEMS["missing"][1],
        )
        for door in DOORS
        if door.name
        in ("ingest", "datasets-load", "datasets-load-outputs", "judge-calibrate-labels")
    ),
    # Durations and times.
    Case("sample-since", ("sample", "--since", "3x"), "3x", DURATION),
    Case("sample-until", ("sample", "--until", "yesterday"), "yesterday", DURATION),
    Case("evaluate-since", ("evaluate", "-e", "heuristics", "--since", "3x"), "3x", DURATION),
    Case("run-traffic-since", ("run", "traffic", "--since", "3x"), "3x", DURATION),
    Case("db-prune-older-than", ("db", "prune", "--older-than", "3x"), "3x", DURATION),
    Case("drift-window", ("drift", "--window", "3x"), "3x", DURATION),
    Case("compare-window", (*COMPARE, "--window", "3x"), "3x", DURATION),
    # Evaluators.
    Case("evaluate-evaluator", ("evaluate", "-e", "nope"), "nope", EVALUATOR),
    Case("run-traffic-evaluator", ("run", "traffic", "--evaluators", "nope"), "nope", EVALUATOR),
    Case(
        "run-dataset-evaluator",
        ("run", "dataset", "support-qa", "--outputs", BASELINE_OUTPUTS, "--evaluators", "nope"),
        "nope",
        EVALUATOR,
    ),
    Case(
        "gate-evaluator",
        (*GATE, "--candidate-model", "acme-chat-v1.1", "--evaluators", "nope"),
        "nope",
        EVALUATOR,
    ),
    # Rubrics.
    Case(
        "evaluate-rubric",
        ("evaluate", "-e", "judge", "--rubrics", "nope", "--max-items", "2"),
        "nope",
        RUBRIC,
    ),
    Case(
        "judge-estimate-rubric",
        ("judge", "estimate", "--input", "datasets/sample_traffic.jsonl", "--rubrics", "nope"),
        "nope",
        RUBRIC,
    ),
    Case(
        "judge-calibrate-rubric",
        ("judge", "calibrate", "--labels", "datasets/human_labels.jsonl", "--rubric", "nope"),
        "nope",
        RUBRIC,
    ),
]

# Lines click may add around its own usage errors; evalwatch's own message is the other line.
_CLICK_LINE = re.compile(r"^(Usage: |Try '.*--help')")


@dataclass
class BadInputUser:
    """The module's user directory, its environment and its store file."""

    dir: Path
    env: dict[str, str]
    store: Path


@pytest.fixture(scope="module")
def bad_input_user(tmp_path_factory: pytest.TempPathFactory, demo_store: DemoStore) -> BadInputUser:
    """One user directory for every case (none may change it): data, store, the bad files."""
    d = tmp_path_factory.mktemp("bad-input-user")
    shutil.copytree(REPO / "datasets", d / "datasets")
    (d / "demo-out").mkdir()
    shutil.copy2(demo_store.db, d / "demo-out" / "evalwatch.db")
    (d / DIRECTORY).mkdir()
    os.mkfifo(d / FIFO)
    # Random-looking bytes with no Parquet footer, and bytes that no UTF-8 decoder accepts.
    (d / GARBAGE_PARQUET).write_bytes(bytes(range(256)) * 4)
    (d / NOT_UTF8).write_bytes(b"\xff\xfe\x00rules:\n  - name: \x80\x81\n")
    env = base_env(
        EVALWATCH_DATABASE_URL="sqlite:///demo-out/evalwatch.db",
        # A judge endpoint is configured (nothing listens there), so the judge commands get as
        # far as reading their files and options; no case may call it.
        EVALWATCH_JUDGE__BASE_URL="http://127.0.0.1:9/v1",
        EVALWATCH_JUDGE__MODEL="judge-model",
        EVALWATCH_JUDGE__API_KEY="sk-not-used",
    )
    return BadInputUser(d, env, d / "demo-out" / "evalwatch.db")


def _files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def test_the_table_covers_every_door() -> None:
    """Every door gets every kind of bad file, and each case id is unique."""
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(_file_cases()) == len(DOORS) * len(FILE_PROBLEMS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_exits_2_with_one_line(case: Case, bad_input_user: BadInputUser) -> None:
    """Exit 2, one line naming the path or value and the problem, nothing written."""
    user = bad_input_user
    engine = make_engine(f"sqlite:///{user.store}")
    try:
        counts = table_counts(engine)
    finally:
        engine.dispose()
    files = _files(user.dir)

    res = run_cli(*case.args, cwd=user.dir, env=user.env, timeout=CALL_TIMEOUT)

    assert res.code == 2, str(res)
    lines = [
        ln
        for ln in (res.stdout + "\n" + res.stderr).splitlines()
        if ln.strip() and not _CLICK_LINE.match(ln.strip())
    ]
    assert len(lines) == 1, f"expected one line:\n{res}"
    assert case.names in lines[0], f"the line does not name {case.names!r}:\n{res}"
    if case.problem:
        assert re.search(case.problem, lines[0], re.IGNORECASE), (
            f"the line does not say what is wrong ({case.problem}):\n{res}"
        )
    engine = make_engine(f"sqlite:///{user.store}")
    try:
        assert table_counts(engine) == counts, f"the store changed:\n{res}"
    finally:
        engine.dispose()
    assert _files(user.dir) == files, f"files were written:\n{res}"
