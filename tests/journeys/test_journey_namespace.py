"""Journey: evalwatch installs under one name (issue #13 §5).

The folders a user sees in the checkout (``storage/``, ``flows/``, ...) install and import as
``evalwatch.storage``, ``evalwatch.flows``, ...; no top-level ``storage`` or ``flows`` module
reaches site-packages, where another distribution of that name would collide with it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.journeys.conftest import base_env

pytestmark = pytest.mark.journey

PACKAGES = ("storage", "ingest", "checks", "evaluators", "flows", "runs", "reporting", "alerting")


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", PACKAGES)
def test_packages_import_under_evalwatch_only(name: str, user_dir: Path) -> None:
    ok = _python(f"import evalwatch.{name} as m; print(m.__name__)", user_dir)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"evalwatch.{name}"

    bare = _python(f"import {name}", user_dir)
    assert bare.returncode != 0
    assert f"No module named '{name}'" in bare.stderr


def test_package_data_is_found_under_the_new_names(user_dir: Path) -> None:
    # The migrations, rubrics and default rules are package data; a store migrates from them.
    code = (
        "from evalwatch.storage.db import make_engine, upgrade\n"
        "import sqlalchemy as sa\n"
        "e = make_engine('sqlite:///s.db'); upgrade(e)\n"
        "print(sorted(sa.inspect(e).get_table_names())[:3])\n"
        "from evalwatch.evaluators.rubrics import load_rubric\n"
        "print(load_rubric('helpfulness').name)\n"
    )
    res = _python(code, user_dir)
    assert res.returncode == 0, res.stderr
    assert "alembic_version" in res.stdout
    assert "helpfulness" in res.stdout
