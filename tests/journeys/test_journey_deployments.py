"""Journey: every deployment in prefect.yaml runs on the store `make demo` leaves.

A user follows the README: a Prefect server, a process work pool, ``prefect deploy --all``
from the project, a worker, and ``prefect deployment run`` for each deployment with its
default parameters (the gate is given its candidate, as its description says, with a path
relative to ``EVALWATCH_PROJECT_DIR``). Every flow run must end Completed (issue #12,
defect 4: the shipped defaults named a model the demo store has no answers for).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.journeys.conftest import REPO, DemoStore, PrefectServer

pytestmark = pytest.mark.slow

# Extra parameters per deployment; all others run with what prefect.yaml ships.
EQUIVALENT = "datasets/support-qa.predictions.candidate-equivalent.jsonl"
GIVEN = {"regression-gate": ["-p", f"candidate_outputs={EQUIVALENT}"]}


def _flow_run_id(output: str) -> str:
    found = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert found, output
    return found.group(1)


def test_every_deployment_completes_on_the_demo_store(
    demo_store: DemoStore, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    db = tmp_path / "evalwatch.db"
    shutil.copy2(demo_store.db, db)
    env = prefect_server.env | {
        "EVALWATCH_PROJECT_DIR": str(REPO),
        "EVALWATCH_DATABASE_URL": f"sqlite:///{db}",
        "EVALWATCH_REPORT_DIR": str(tmp_path / "reports"),
    }
    pool = "evalwatch"
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert {d["work_pool"]["name"] for d in spec["deployments"]} == {pool}
    existing = prefect_server.prefect("work-pool", "ls", env=env)
    if pool not in existing:
        prefect_server.prefect("work-pool", "create", pool, "--type", "process", env=env)
    prefect_server.prefect("--no-prompt", "deploy", "--all", env=env, cwd=REPO)
    prefect_server.spawn("deployments-worker", "worker", "start", "--pool", pool, env=env)

    runs: dict[str, str] = {}
    for d in spec["deployments"]:
        flow_name = d["entrypoint"].split(":")[1].replace("_", "-")
        out = prefect_server.prefect(
            "deployment", "run", f"{flow_name}/{d['name']}", *GIVEN.get(d["name"], []), env=env
        )
        runs[d["name"]] = _flow_run_id(out)

    states: dict[str, str] = {}
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        for name, run_id in runs.items():
            got = httpx.get(f"{prefect_server.api_url}/flow_runs/{run_id}", timeout=10).json()
            states[name] = got["state"]["type"]
        if all(s in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for s in states.values()):
            break
        time.sleep(3)
    log = prefect_server.log("deployments-worker")
    assert states == dict.fromkeys(runs, "COMPLETED"), f"{states}\n{log}"
