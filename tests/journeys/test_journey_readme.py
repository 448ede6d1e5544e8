"""Journey: the README as written, run against the store ``make demo`` leaves.

Issue #12. The commands come from the README itself, so a rename or a new command there
breaks this test until the mapping below follows:

* every row of the "CLI reference" table (its first column's ``evalwatch …`` invocations) must
  have an entry in :data:`COMMANDS`, and every entry there must still be in the table; every
  command the CLI registers must be in the table;
* each entry is run as a user runs it (the installed console script, from a directory outside
  the checkout, relative paths) against a copy of the demo store, and must exit with the code
  the README's exit-code paragraph gives for what it does, and print or store what the table
  says it does;
* every ``evalwatch …`` line of the README's code blocks is run as written against a copy of
  the demo store: it must exit 0, unless its own comment names a setting (an endpoint to
  call), in which case it must exit 2 or 3 and name that setting.

The judge commands talk to the test OpenAI-compatible server over real HTTP; the flows run on
the session's real Prefect server.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from evalwatch.storage.db import make_engine
from evalwatch.storage.repo import table_counts
from evalwatch.testing import FakeJudgeServer
from tests.journeys.conftest import (
    REPO,
    DemoStore,
    PrefectServer,
    Result,
    base_env,
    run_cli,
)

pytestmark = [pytest.mark.journey, pytest.mark.slow]

README = REPO / "README.md"
STORE_URL = "sqlite:///demo-out/evalwatch.db"  # relative: the user's directory holds demo-out/
JUDGE_KEY = "sk-readme-journey-0123456789"

# --- what the README says ---------------------------------------------------------------------

_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_CODE = re.compile(r"`([^`]+)`")
_WORD = re.compile(r"^[a-z][a-z-]*$")


def _section(text: str, title: str) -> str:
    """The text of the ``## title`` section, up to the next heading of the same level."""
    m = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"README.md has no '## {title}' section"
    return m.group(1)


def table_invocations(text: str) -> list[str]:
    """The ``evalwatch …`` invocations in the first column of the CLI reference's command table.

    A cell may hold several (``alerts list``, ``alerts ack ID``); one without the program
    name continues the group of the one before it.
    """
    out: list[str] = []
    in_table = False
    for line in _section(text, "CLI reference").splitlines():
        cells = [c.strip() for c in _CELL_SPLIT.split(line.strip())[1:-1]]
        if not cells:
            if in_table:
                break
            continue
        if cells[0] == "command":
            in_table = True
            continue
        if not in_table or set(cells[0]) <= {"-", ":"}:
            continue
        for code in _CODE.findall(cells[0]):
            code = code.replace("\\|", "|").strip()
            out.append(code if code.startswith("evalwatch ") else f"evalwatch {code}")
    assert out, "README.md's CLI reference has no command table"
    return out


def command_key(invocation: str) -> str:
    """The command an invocation names: its sub-command words, then its first flag if any.

    Examples: ``evalwatch db prune --older-than 90d`` is ``db prune --older-than``,
    ``evalwatch db prune [--older-than 90d]`` is ``db prune``,
    ``evalwatch report RUN_ID --html FILE`` is ``report``, ``evalwatch report --overview …``
    is ``report --overview``.
    """
    words: list[str] = []
    for tok in invocation.split()[1:]:
        if _WORD.match(tok):
            words.append(tok)
            continue
        if tok.startswith("--"):
            words.append(tok.split("=")[0])
        break
    return " ".join(words)


def code_block_commands(text: str) -> list[tuple[str, str]]:
    """Every ``evalwatch …`` line in the README's fenced code blocks: (command, its comment)."""
    out = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S):
        for line in block.splitlines():
            command, _, comment = line.partition("#")
            if command.strip().startswith("evalwatch "):
                out.append((" ".join(command.split()), comment.strip()))
    return out


README_TEXT = README.read_text(encoding="utf-8")
TABLE_KEYS = list(dict.fromkeys(command_key(i) for i in table_invocations(README_TEXT)))
CODE_LINES = code_block_commands(README_TEXT)

# --- what each command must do ----------------------------------------------------------------


@dataclass
class Ctx:
    """Where a command runs: the user's directory (demo-out/ and datasets/ in it), env, store."""

    dir: Path
    env: dict[str, str]
    demo: DemoStore

    @property
    def db(self) -> Path:
        return self.dir / "demo-out" / "evalwatch.db"

    def counts(self) -> dict[str, int]:
        """Rows per table: ``table_counts`` plus the result tables it leaves out."""
        engine = make_engine(f"sqlite:///{self.db}")
        try:
            counts = table_counts(engine)
            with engine.connect() as conn:
                for table in (
                    "drift_reports",
                    "regression_reports",
                    "judge_calibrations",
                    "metric_series",
                    "metric_samples",
                    "privacy_optouts",
                    "dp_releases",
                ):
                    counts[table] = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).one()[0]
            return counts
        finally:
            engine.dispose()

    def open_alert(self, rule: str) -> str:
        """The id of the open alert of ``rule``."""
        engine = make_engine(f"sqlite:///{self.db}")
        try:
            with engine.connect() as conn:
                query = sa.text("SELECT id FROM alerts WHERE rule = :r AND status = 'open'")
                row = conn.execute(query, {"r": rule}).first()
        finally:
            engine.dispose()
        assert row is not None, f"no open {rule} alert"
        return str(row[0])


Check = Callable[[Ctx, Result, dict[str, int]], None]


@dataclass
class Step:
    """One call: its arguments, its exit code, regexes its output must match, a store check.

    ``check`` gets the context, the result and the table counts from before the call.
    ``judge`` points the call at the test judge server (else no judge is configured).
    """

    args: tuple[str, ...] | Callable[[Ctx], tuple[str, ...]]
    code: int = 0
    says: tuple[str, ...] = ()
    check: Check | None = None
    judge: bool = False


@dataclass
class Spec:
    """What the README's row for one command promises, as calls on a copy of the demo store.

    ``writes`` gives the command a private store copy; read-only commands share one.
    """

    steps: list[Step]
    writes: bool = False
    before: Callable[[Ctx], None] | None = None
    extra: Callable[[Ctx], None] | None = None


def grew(table: str, by: int | None = None) -> Check:
    """The call added rows to ``table`` (exactly ``by`` when given)."""

    def check(ctx: Ctx, res: Result, before: dict[str, int]) -> None:
        after = ctx.counts()[table]
        if by is None:
            assert after > before[table], f"{table} did not grow ({before[table]}):\n{res}"
        else:
            assert after == before[table] + by, f"{table} {before[table]} -> {after}:\n{res}"

    return check


def shrank(table: str) -> Check:
    def check(ctx: Ctx, res: Result, before: dict[str, int]) -> None:
        after = ctx.counts()[table]
        assert after < before[table], f"{table} did not shrink ({before[table]}):\n{res}"

    return check


def unchanged(ctx: Ctx, res: Result, before: dict[str, int]) -> None:
    assert ctx.counts() == before, f"the store changed:\n{res}"


def html_file(name: str) -> Check:
    """A self-contained HTML report was written: plots inline, no scripts."""

    def check(ctx: Ctx, res: Result, before: dict[str, int]) -> None:
        path = ctx.dir / name
        assert path.is_file(), f"{name} was not written:\n{res}"
        html = path.read_text(encoding="utf-8")
        assert "<html" in html.lower() and "<script" not in html.lower()
        assert not re.search(r"""(src|href)=["']https?://""", html), "it loads remote files"

    return check


def fresh_store_migrated(ctx: Ctx, res: Result, before: dict[str, int]) -> None:
    engine = make_engine(f"sqlite:///{ctx.dir / 'fresh.db'}")
    try:
        assert "interactions" in table_counts(engine)
    finally:
        engine.dispose()


def demo_ran(ctx: Ctx) -> None:
    """``evalwatch demo`` (the session's store) left a store, the reports, and said where."""
    demo = ctx.demo
    assert demo.db.is_file()
    reports = list(demo.out.rglob("*.html"))
    assert len(reports) >= 3, f"demo-out holds {reports}"
    for what in ("traffic report", "test-set report", "drift report"):
        assert what in demo.output, f"the demo did not say where its {what} is"
    counts = ctx.counts()
    assert counts["interactions"] > 0 and counts["dataset_items"] > 0 and counts["scores"] > 0


def write_rules(ctx: Ctx) -> None:
    shutil.copy2(REPO / "checks" / "rules" / "default.yaml", ctx.dir / "rules.yaml")
    (ctx.dir / "bad-rules.yaml").write_text(
        "rules:\n  - name: typo\n    metric: heuristics.refusl\n", encoding="utf-8"
    )


# A dcgm-exporter scrape (two GPUs of one host) and one with a line that cannot be right.
DCGM_SCRAPE = "".join(
    f"# TYPE {field} gauge\n"
    + "".join(
        f'{field}{{gpu="{gpu}",UUID="GPU-{gpu}",device="nvidia{gpu}",'
        f'modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-1"}} {value}\n'
        for gpu, value in enumerate(values)
    )
    for field, values in (
        ("DCGM_FI_DEV_GPU_UTIL", (87, 12)),
        ("DCGM_FI_DEV_FB_USED", (61000, 2000)),
        ("DCGM_FI_DEV_FB_FREE", (20000, 79000)),
        ("DCGM_FI_DEV_GPU_TEMP", (71, 40)),
        ("DCGM_FI_DEV_POWER_USAGE", (512.5, 80.25)),
    )
)
BAD_SCRAPE = DCGM_SCRAPE + 'DCGM_FI_DEV_GPU_UTIL{gpu="2",Hostname="gpu-node-1"} 250\n'


def write_scrapes(ctx: Ctx) -> None:
    (ctx.dir / "dcgm.prom").write_text(DCGM_SCRAPE, encoding="utf-8")
    (ctx.dir / "bad.prom").write_text(BAD_SCRAPE, encoding="utf-8")


class ScrapeTarget:
    """A metrics endpoint on localhost serving :data:`DCGM_SCRAPE` (``before``/``extra`` hooks)."""

    server: ThreadingHTTPServer | None = None

    @classmethod
    def start(cls, ctx: Ctx) -> None:
        body = DCGM_SCRAPE.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name for the GET handler
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        cls.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()

    @classmethod
    def url(cls, ctx: Ctx) -> tuple[str, ...]:
        assert cls.server is not None
        return ("collect", "scrape", f"http://127.0.0.1:{cls.server.server_address[1]}/metrics")

    @classmethod
    def stop(cls, ctx: Ctx) -> None:
        if cls.server is not None:
            cls.server.shutdown()
            cls.server.server_close()
            cls.server = None


def _closed_port() -> int:
    """A localhost port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def file_written(name: str, *patterns: str) -> Check:
    """``name`` was written in the user's directory and holds every pattern."""

    def check(ctx: Ctx, res: Result, before: dict[str, int]) -> None:
        path = ctx.dir / name
        assert path.is_file(), f"{name} was not written:\n{res}"
        text = path.read_text(encoding="utf-8")
        for pattern in patterns:
            assert re.search(pattern, text), f"{name} does not hold {pattern!r}"

    return check


def both(*checks: Check) -> Check:
    def check(ctx: Ctx, res: Result, before: dict[str, int]) -> None:
        for c in checks:
            c(ctx, res, before)

    return check


def write_bad_targets(ctx: Ctx) -> None:
    (ctx.dir / "bad-targets.yaml").write_text("safety: {target: high}\n", encoding="utf-8")


DEGRADED = "datasets/support-qa.predictions.candidate-degraded.jsonl"
EQUIVALENT = "datasets/support-qa.predictions.candidate-equivalent.jsonl"
BASELINE = "datasets/support-qa.predictions.baseline.jsonl"
LAST_DAY = ("--since", "2026-11-14T00:00Z")  # the bundled traffic ends 2026-11-15
GATE = ("gate", "--dataset", "support-qa", "--baseline-model", "acme-chat-v1.0")
# The canary of the bundled traffic is slower (latency x1.35) than the version it replaces.
COMPARE = ("compare", "--app", "support-bot", "--model-a", "v1.1", "--model-b", "v2.0-canary")

# A failed gate opens the built-in rules' gate-failed alert (or keeps it open).
OPEN_GATE_ALERT = Step(
    (*GATE, "--candidate-outputs", DEGRADED, "--no-progress"), code=1, says=("REGRESSION",)
)

COMMANDS: dict[str, Spec] = {
    "demo": Spec([], extra=demo_ran),
    "db upgrade": Spec(
        [
            Step(("db", "upgrade"), says=(r"revision",), check=unchanged),
            Step(("--db", "sqlite:///fresh.db", "db", "upgrade"), check=fresh_store_migrated),
        ]
    ),
    "db prune": Spec(
        [
            # The bundled traffic is newer than 90 days: nothing goes.
            Step(("db", "prune", "--older-than", "90d"), says=("nothing to prune",)),
            # A dry run says what would go and deletes nothing; no --yes off a terminal refuses.
            Step(
                ("db", "prune", "--older-than", "25d", "--dry-run"),
                says=(r"would delete \d+",),
                check=unchanged,
            ),
            Step(("db", "prune", "--older-than", "25d"), code=2, says=("--yes",), check=unchanged),
            Step(
                ("db", "prune", "--older-than", "25d", "--yes"),
                says=(r"pruned \d+",),
                check=shrank("interactions"),
            ),
        ],
        writes=True,
    ),
    "ingest": Spec(
        [
            Step(
                ("ingest", "datasets/sample_traffic.jsonl"),
                says=(r"0 interactions ingested, 5000 duplicate, 0 quarantined",),
                check=unchanged,
            ),
            Step(
                ("ingest", "datasets/bad_traffic.jsonl"),
                code=1,
                says=(r"\d+ interactions ingested", r"\d+ duplicate", r"[1-9]\d* quarantined"),
                check=grew("quarantine"),
            ),
        ],
        writes=True,
    ),
    "ingest --kind": Spec(
        [
            Step(
                ("ingest", "--kind", "metrics", "dcgm.prom"),
                says=(r"12 metric samples stored in 12 series \(12 new\), 0 duplicate", "dcgm"),
                check=grew("metric_samples", 12),
            ),
            # The same file again (same modification time): nothing new.
            Step(
                ("ingest", "--kind", "metrics", "dcgm.prom"),
                says=(r"0 metric samples stored .* 12 duplicate, 0 quarantined",),
                check=unchanged,
            ),
            Step(
                ("ingest", "--kind", "metrics", "bad.prom"),
                code=1,
                says=("1 quarantined", "above 100 percent"),
                check=grew("quarantine", 1),
            ),
            Step(("ingest", "--kind", "metrics", "missing.prom"), code=2, says=("missing.prom",)),
        ],
        writes=True,
        before=write_scrapes,
    ),
    "collect scrape": Spec(
        [
            Step(
                ScrapeTarget.url,
                says=(r"12 metric samples stored in 12 series \(12 new\)", "1 endpoint"),
                check=grew("metric_samples", 12),
            ),
            Step(
                lambda ctx: ("collect", "scrape", f"http://127.0.0.1:{_closed_port()}/metrics"),
                code=3,
                says=("cannot reach http://127.0.0.1:",),
                check=unchanged,
            ),
        ],
        writes=True,
        before=ScrapeTarget.start,
        extra=ScrapeTarget.stop,
    ),
    # No NVIDIA driver or GPU where the suite runs: one line says so.
    "collect gpu": Spec(
        [Step(("collect", "gpu"), code=2, says=("NVML is not available",), check=unchanged)]
    ),
    # The demo store holds no metric samples: nothing to judge, and the line says so.
    "collect anomalies": Spec(
        [
            Step(
                ("collect", "anomalies", "--window", "1h"),
                code=2,
                says=("metric samples", "nothing judged"),
                check=unchanged,
            ),
            Step(
                ("collect", "anomalies", "--series", "gpu.tempx"),
                code=2,
                says=("unknown metric series 'gpu.tempx'",),
            ),
        ]
    ),
    "datasets load": Spec(
        [
            Step(
                ("datasets", "load", "datasets/support-qa.jsonl"),
                says=(r"support-qa version \w+: 250 items, unchanged",),
                check=unchanged,
            )
        ]
    ),
    "datasets load-outputs": Spec(
        [
            Step(
                ("datasets", "load-outputs", BASELINE, "--name", "support-qa"),
                says=(r"0 outputs stored, 250 duplicate",),
                check=unchanged,
            )
        ]
    ),
    "datasets list": Spec([Step(("datasets", "list"), says=("support-qa", r"\b250\b"))]),
    "sample": Spec(
        [Step(("sample", *LAST_DAY), says=(r"\d+ interactions", "support-bot", "v2.0-canary"))]
    ),
    "evaluate": Spec(
        [
            Step(
                ("evaluate", "--evaluators", "heuristics", *LAST_DAY, "--max-items", "40"),
                says=(r"run \d+: 40 interactions", "95% CI", "refusal", "process CPU|GPU"),
                check=grew("eval_runs", 1),
            ),
            # The same options again resume that run: nothing is missing.
            Step(
                ("evaluate", "--evaluators", "heuristics", *LAST_DAY, "--max-items", "40"),
                says=(r"resuming run \d+.*0 new scores",),
                check=unchanged,
            ),
        ],
        writes=True,
    ),
    "run traffic": Spec(
        [
            Step(
                ("run", "traffic", *LAST_DAY, "--max-items", "40", "--evaluators", "heuristics"),
                says=(r"run \d+",),
                check=grew("eval_runs", 1),
            )
        ],
        writes=True,
    ),
    "run dataset": Spec(
        [
            Step(
                ("run", "dataset", "support-qa", "--outputs", BASELINE),
                says=(r"run \d+",),
            ),
            # Without a target endpoint, --model says what to configure.
            Step(
                ("run", "dataset", "support-qa", "--model", "not-stored-model"),
                code=2,
                says=("EVALWATCH_TARGET__",),
            ),
        ],
        writes=True,
    ),
    "report": Spec(
        [Step(("report", "1", "--html", "run-1.html"), check=html_file("run-1.html"))],
        writes=True,
    ),
    "report --overview": Spec(
        [
            Step(
                ("report", "--overview", "--days", "14", "--html", "overview.html"),
                check=html_file("overview.html"),
            ),
            Step(
                ("report", "--overview", "--days", "7", "--dp-epsilon", "0.5", "--html", "dp.html"),
                says=(r"differentially private, release 1, epsilon 0\.5 of dataset 'traffic'",),
                check=both(html_file("dp.html"), grew("dp_releases", 1)),
            ),
            # One release may spend at most dp.max_epsilon_per_release (5).
            Step(
                ("report", "--overview", "--dp-epsilon", "6", "--html", "no.html"),
                code=2,
                says=("above the largest one release may spend",),
                check=unchanged,
            ),
        ],
        writes=True,
    ),
    "report --executive": Spec(
        [
            Step(
                ("report", "--executive", "--days", "7", "--html", "executive.html"),
                says=("executive view: ", "markdown: "),
                check=both(
                    html_file("executive.html"),
                    file_written("executive.md", "health", "safety compliance", "support-bot"),
                ),
            ),
            Step(
                ("report", "--executive", "--targets", "bad-targets.yaml"),
                code=2,
                says=("bad-targets.yaml",),
            ),
            Step(
                ("report", "--executive", "--days", "7", "--dp-epsilon", "0.5", "--html", "x.html"),
                says=(r"differentially private, release 1, epsilon 0\.5 of dataset 'traffic'",),
                check=both(html_file("x.html"), grew("dp_releases", 1)),
            ),
        ],
        writes=True,
        before=write_bad_targets,
    ),
    "export daily --dp-epsilon": Spec(
        [
            Step(
                (
                    *("export", "daily", "--dp-epsilon", "1", "--out", "daily.csv"),
                    *("--since", "2026-11-01", "--until", "2026-11-15", "--app", "support-bot"),
                ),
                says=(r"14 rows, release 1, epsilon 1 of dataset 'traffic:support-bot'",),
                check=both(
                    file_written("daily.csv", "interactions_noise95", "2026-11-14,support-bot"),
                    grew("dp_releases", 1),
                ),
            ),
            Step(
                (
                    *("export", "daily", "--dp-epsilon", "5", "--out", "d.json"),
                    *("--format", "json", "--app", "support-bot"),
                ),
                says=(r"epsilon 5 of dataset 'traffic:support-bot': 6 of 10 spent, 4 left",),
                check=file_written("d.json", r"\"interactions\""),
            ),
            # 1 + 5 spent of traffic:support-bot's 10: another 5 is over budget.
            Step(
                ("export", "daily", "--dp-epsilon", "5", "--out", "no.csv", "--app", "support-bot"),
                code=1,
                says=("privacy budget", "remaining 4", "requested 5"),
                check=unchanged,
            ),
        ],
        writes=True,
    ),
    "export budget": Spec(
        [
            Step(("export", "budget"), says=("no differentially private release yet",)),
            Step(("export", "daily", "--dp-epsilon", "2", "--out", "daily.csv")),
            Step(
                ("export", "budget"),
                says=(r"traffic: budget 10, spent 2, remaining 8, 1 release",),
                check=unchanged,
            ),
        ],
        writes=True,
    ),
    "privacy opt-out add": Spec(
        [
            Step(
                ("privacy", "opt-out", "add", "--user-id", "user_00098", "--note", "ticket-4711"),
                says=(r"opted out: 1 new", "interactions"),
                check=both(shrank("interactions"), grew("privacy_optouts", 1)),
            ),
            Step(("privacy", "opt-out", "list"), says=("1 opt-out", "ticket-4711")),
        ],
        writes=True,
    ),
    "privacy opt-out list": Spec(
        [Step(("privacy", "opt-out", "list"), says=("no opt-outs",), check=unchanged)]
    ),
    "privacy opt-out remove": Spec(
        [
            Step(
                ("privacy", "opt-out", "add", "--user-id", "user_00098", "--no-forget"),
                says=(r"opted out: 1 new",),
                check=grew("privacy_optouts", 1),
            ),
            Step(
                ("privacy", "opt-out", "remove", "--user-id", "user_00098"),
                says=(r"removed 1 opt-out",),
            ),
            Step(("privacy", "opt-out", "list"), says=("no opt-outs",)),
        ],
        writes=True,
    ),
    "privacy forget": Spec(
        [
            Step(
                ("privacy", "forget", "--user-id", "user_00098", "--dry-run"),
                says=("dry run", "interactions"),
                check=unchanged,
            ),
            Step(
                ("privacy", "forget", "--user-id", "user_00098"),
                says=("forget",),
                check=shrank("interactions"),
            ),
            # Idempotent: a second run deletes nothing.
            Step(
                ("privacy", "forget", "--user-id", "user_00098", "--json"),
                says=(r'"interactions": 0',),
                check=unchanged,
            ),
        ],
        writes=True,
    ),
    "privacy enforce": Spec(
        [
            Step(("privacy", "enforce"), code=2, says=("--older-than",), check=unchanged),
            Step(
                ("privacy", "enforce", "--older-than", "1d", "--dry-run"),
                says=("would remove", r"interactions\W+\d+"),
                check=unchanged,
            ),
        ]
    ),
    "judge calibrate --labels": Spec(
        [
            Step(
                ("judge", "calibrate", "--labels", "datasets/human_labels.jsonl"),
                code=2,
                says=("EVALWATCH_JUDGE__BASE_URL",),
            ),
            Step(
                ("judge", "calibrate", "--labels", "datasets/human_labels.jsonl"),
                says=("kappa", "position consistency", "confusion"),
                check=grew("judge_calibrations"),
                judge=True,
            ),
        ],
        writes=True,
    ),
    "judge estimate": Spec(
        [
            Step(
                ("judge", "estimate", "--input", "datasets/sample_traffic.jsonl"),
                says=(r"judge estimate: \d+ calls", "tokens"),
                check=unchanged,
                judge=True,
            )
        ]
    ),
    "judge rubrics": Spec(
        [Step(("judge", "rubrics"), says=("helpfulness", "correctness", "faithfulness"))]
    ),
    "gate --dataset": Spec(
        [
            Step(
                (*GATE, "--candidate-outputs", DEGRADED, "--no-progress"),
                code=1,
                says=("REGRESSION", "billing", r"stored as regression report \d+"),
            ),
            Step(
                (*GATE, "--candidate-outputs", EQUIVALENT, "--no-progress"),
                says=("PASS",),
            ),
        ],
        writes=True,
    ),
    "compare --app": Spec(
        [
            Step(
                (*COMPARE, "--window", "3d"),
                code=1,
                says=("REGRESSION", "latency_ms"),
            )
        ],
        writes=True,
    ),
    "drift": Spec(
        [
            Step(
                ("drift", "--window", "3d"),
                code=1,
                says=(r"drift in \d+ of \d+ tests",),
                check=grew("drift_reports"),  # one row per test of the report
            )
        ],
        writes=True,
    ),
    "rules check": Spec(
        [
            Step(("rules", "check", "rules.yaml"), says=(r"OK: rules\.yaml",)),
            Step(("rules", "check", "bad-rules.yaml"), code=2, says=("typo", "bad-rules.yaml")),
        ],
        before=write_rules,
    ),
    "alerts list": Spec(
        [OPEN_GATE_ALERT, Step(("alerts", "list", "--status", "open"), says=("gate-failed",))],
        writes=True,
    ),
    "alerts ack": Spec(
        [
            OPEN_GATE_ALERT,
            Step(lambda ctx: ("alerts", "ack", ctx.open_alert("gate-failed"))),
            Step(("alerts", "list", "--status", "acknowledged"), says=("gate-failed",)),
        ],
        writes=True,
    ),
    "alerts resolve": Spec(
        [
            OPEN_GATE_ALERT,
            Step(lambda ctx: ("alerts", "resolve", ctx.open_alert("gate-failed"))),
            Step(("alerts", "list", "--status", "resolved"), says=("gate-failed",)),
        ],
        writes=True,
    ),
    "alerts evaluate": Spec(
        [Step(("alerts", "evaluate", "--no-deliver"))],
        writes=True,
    ),
    # A real local Prefect server: started, found, stopped (each spec leaves none running).
    "server start": Spec(
        [
            Step(("server", "start"), says=("Prefect server at http://",)),
            Step(("server", "status"), says=("answers",)),
            Step(("server", "stop"), says=("stopped the Prefect server",)),
        ]
    ),
    "server status": Spec([Step(("server", "status"), code=3, says=("no local Prefect server",))]),
    "server stop": Spec([Step(("server", "stop"), code=2, says=("no Prefect server",))]),
    "runs list": Spec([Step(("runs", "list"), says=(r"\d+ of \d+ runs", "traffic", "dataset"))]),
    "runs show": Spec([Step(("runs", "show", "1"), says=("kind: traffic", "heuristics"))]),
    "quarantine list": Spec(
        [
            Step(("ingest", "datasets/bad_traffic.jsonl"), code=1),
            Step(("quarantine", "list"), says=(r"\d+ of \d+ quarantined rows",)),
        ],
        writes=True,
    ),
    "quarantine show": Spec(
        [
            Step(("ingest", "datasets/bad_traffic.jsonl"), code=1),
            Step(("quarantine", "show", "1"), says=("bad_traffic.jsonl",)),
        ],
        writes=True,
    ),
}

# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def judge_server() -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer(expected_api_key=JUDGE_KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory: pytest.TempPathFactory, demo_store: DemoStore) -> Path:
    """One user directory with a store copy for the commands that do not change the store."""
    d = tmp_path_factory.mktemp("readme-user")
    shutil.copytree(REPO / "datasets", d / "datasets")
    (d / "demo-out").mkdir()
    shutil.copy2(demo_store.db, d / "demo-out" / "evalwatch.db")
    return d


def _env(prefect_server: PrefectServer, judge: FakeJudgeServer | None) -> dict[str, str]:
    extra = {"EVALWATCH_DATABASE_URL": STORE_URL, "PREFECT_API_URL": prefect_server.api_url}
    if judge is not None:
        extra |= {
            "EVALWATCH_JUDGE__BASE_URL": judge.base_url,
            "EVALWATCH_JUDGE__MODEL": "readme-judge",
            "EVALWATCH_JUDGE__API_KEY": JUDGE_KEY,
        }
    env = base_env(**extra)
    for k in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "EVALWATCH_TARGET__BASE_URL"):
        env.pop(k, None)
    return env


def _say(res: Result, pattern: str) -> None:
    assert re.search(pattern, res.out), f"the output does not say {pattern!r}:\n{res}"


# --- tests ------------------------------------------------------------------------------------


def test_mapping_follows_the_readme() -> None:
    """Every README command is covered here, and nothing here has left the README."""
    missing = [k for k in TABLE_KEYS if k not in COMMANDS]
    stale = [k for k in COMMANDS if k not in TABLE_KEYS]
    assert not missing, f"README commands with no entry in COMMANDS: {missing}"
    assert not stale, f"COMMANDS entries no longer in the README's CLI table: {stale}"


def test_every_cli_command_is_in_the_readme() -> None:
    """Each command the CLI registers (by its words) has a row in the README's table."""
    from evalwatch.cli import app

    def leaves(typer_app: object, prefix: tuple[str, ...]) -> Iterator[str]:
        for cmd in typer_app.registered_commands:  # type: ignore[attr-defined]
            if not cmd.hidden:
                yield " ".join((*prefix, cmd.name or cmd.callback.__name__))
        for group in typer_app.registered_groups:  # type: ignore[attr-defined]
            if not group.hidden:
                yield from leaves(group.typer_instance, (*prefix, group.name))

    documented = {k.split(" --")[0] for k in TABLE_KEYS}
    undocumented = sorted(set(leaves(app, ())) - documented)
    assert not undocumented, f"commands missing from the README's CLI table: {undocumented}"


@pytest.mark.parametrize("key", TABLE_KEYS)
def test_readme_command(
    key: str,
    shared_dir: Path,
    user_dir: Path,
    demo_store: DemoStore,
    prefect_server: PrefectServer,
    judge_server: FakeJudgeServer,
) -> None:
    """The command does what its README row says, with the README's exit code."""
    spec = COMMANDS.get(key)
    assert spec is not None, f"README command {key!r} has no entry in COMMANDS"
    if spec.writes:
        (user_dir / "demo-out").mkdir()
        shutil.copy2(demo_store.db, user_dir / "demo-out" / "evalwatch.db")
        where = user_dir
    else:
        where = shared_dir
    ctx = Ctx(where, _env(prefect_server, None), demo_store)
    if spec.before:
        spec.before(ctx)
    for step in spec.steps:
        env = _env(prefect_server, judge_server if step.judge else None)
        before = ctx.counts()
        args = step.args(ctx) if callable(step.args) else step.args
        res = run_cli(*args, cwd=ctx.dir, env=env, timeout=900)
        assert res.code == step.code, f"expected exit {step.code}:\n{res}"
        for pattern in step.says:
            _say(res, pattern)
        if step.check:
            step.check(ctx, res, before)
    if spec.extra:
        spec.extra(ctx)


@pytest.mark.parametrize("line", CODE_LINES, ids=[c for c, _ in CODE_LINES])
def test_readme_code_block(
    line: tuple[str, str], user_dir: Path, demo_store: DemoStore, prefect_server: PrefectServer
) -> None:
    """A code-block command runs as written on the bundled data: exit 0 unless it needs an
    endpoint its comment names, in which case it says to configure that setting."""
    command, comment = line
    (user_dir / "demo-out").mkdir()
    shutil.copy2(demo_store.db, user_dir / "demo-out" / "evalwatch.db")
    res = run_cli(*command.split()[1:], cwd=user_dir, env=_env(prefect_server, None), timeout=900)
    needs = re.findall(r"\b(?:EVALWATCH|OPENAI)_[A-Z_]+", comment)
    if needs:
        assert res.code in (2, 3), f"without {needs} it must exit 2 or 3:\n{res}"
        for setting in needs:
            assert setting.rstrip("_").split("__")[0] in res.out, f"it does not name {setting}"
    else:
        assert res.code == 0, f"the README's example fails on the bundled data:\n{res}"
