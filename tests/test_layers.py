"""The import-layering contracts in pyproject.toml hold, and they see the whole package.

``make check`` runs ``lint-imports`` too; this test makes ``make test`` (and so CI) fail on an
import that points up a layer, with import-linter's report as the failure message.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent


def _lint_imports() -> str:
    beside = Path(sys.executable).with_name("lint-imports")
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is not installed: pip install -r requirements.lock")
    return found


def test_import_contracts_are_kept() -> None:
    # --no-cache: a stale cache must not hide an import added since the last run.
    done = subprocess.run(
        [_lint_imports(), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"import contracts broken:\n{report}"
    assert "0 broken" in report


def test_the_graph_holds_the_linked_packages() -> None:
    # The top-level folders are reached through the evalwatch/<folder> links; a graph that
    # missed them would keep every contract vacuously.
    graph = grimp.build_graph("evalwatch", cache_dir=None)
    for module in (
        "evalwatch.storage.models",
        "evalwatch.checks.rules",
        "evalwatch.evaluators.base",
        "evalwatch.ingest.pipeline",
        "evalwatch.flows.overview",
        "evalwatch.runs.traffic",
        "evalwatch.reporting.run_report",
        "evalwatch.alerting.engine",
        "evalwatch.core.vocab",
    ):
        assert module in graph.modules, module
    assert "evalwatch.core" in graph.find_modules_directly_imported_by("evalwatch.storage.models")


def test_the_layers_contract_is_exhaustive_and_in_the_documented_order() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")
    # Exhaustive: import-linter fails on a child of evalwatch that has no layer.
    assert layers["exhaustive"] is True
    # The order the README and the developers' rules give, top to bottom.
    order = [name for layer in layers["layers"] for name in map(str.strip, layer.split("|"))]
    for upper, lower in [
        ("cli", "commands"),
        ("commands", "flows"),
        ("flows", "runs"),
        ("runs", "reporting"),
        ("reporting", "evaluators"),
        ("evaluators", "storage"),
        ("ingest", "checks"),
        ("storage", "core"),
    ]:
        assert order.index(upper) < order.index(lower), (upper, lower)
