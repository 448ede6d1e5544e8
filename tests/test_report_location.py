"""Where a store's reports go (one folder per store) and when they get an http link."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from evalwatch.cli import app
from evalwatch.reporting.location import report_folder, report_url, reports_root, store_key
from evalwatch.settings import Settings
from evalwatch.storage.repo import create_run


def _settings(url: str, **extra: object) -> Settings:
    return Settings(database_url=url, **extra)  # type: ignore[arg-type]


def test_a_sqlite_store_keeps_its_reports_beside_it(tmp_path):
    a = report_folder(_settings(f"sqlite:///{tmp_path / 'a' / 'evalwatch.db'}"))
    b = report_folder(_settings(f"sqlite:///{tmp_path / 'b' / 'evalwatch.db'}"))
    assert a == tmp_path / "a" / "reports"
    assert b == tmp_path / "b" / "reports"


def test_a_relative_sqlite_path_is_read_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert report_folder(_settings("sqlite:///store/evalwatch.db")) == tmp_path / "store/reports"


def test_a_configured_reports_root_holds_one_folder_per_store(tmp_path):
    root = tmp_path / "shared"
    urls = [
        f"sqlite:///{tmp_path / 'a' / 'evalwatch.db'}",
        f"sqlite:///{tmp_path / 'b' / 'evalwatch.db'}",
        "postgresql://postgres@127.0.0.1:5432/one",
        "postgresql://postgres@127.0.0.1:5432/two",
        "postgresql://postgres@10.0.0.9:5432/one",
        "sqlite://",
    ]
    folders = [report_folder(_settings(u, report_dir=root)) for u in urls]
    assert len(set(folders)) == len(urls)
    assert all(f.parent == root for f in folders)


def test_the_store_key_carries_no_credentials():
    key = store_key("postgresql+psycopg://evaluser:s3cr3t-pw@db.internal:6543/evalwatch")
    assert key == "postgresql-db.internal-6543-evalwatch"
    assert "s3cr3t" not in key and "evaluser" not in key
    # The same server and database, whoever connects, is the same store.
    assert store_key("postgresql://other@db.internal:6543/evalwatch") == key


def test_a_server_store_without_a_reports_root_uses_the_evalwatch_home(tmp_path):
    s = _settings("postgresql://postgres@127.0.0.1:5432/test", home=tmp_path / "home")
    assert report_folder(s) == tmp_path / "home" / "reports" / "postgresql-127.0.0.1-5432-test"


def test_a_report_gets_an_http_link_only_where_the_reports_are_served(tmp_path):
    plain = _settings(f"sqlite:///{tmp_path / 'evalwatch.db'}")
    report = report_folder(plain) / "run-1.html"
    assert report_url(report, plain) is None
    served = _settings(
        f"sqlite:///{tmp_path / 'evalwatch.db'}", report_base_url="https://reports.example/ev/"
    )
    assert reports_root(served) == tmp_path / "reports"
    assert report_url(report, served) == "https://reports.example/ev/run-1.html"
    assert report_url(tmp_path / "elsewhere.html", served) is None
    keyed = _settings(
        "postgresql://u:pw@h:5432/d", report_dir=tmp_path / "r", report_base_url="http://h/r"
    )
    assert report_url(report_folder(keyed) / "run 2.html", keyed) == (
        "http://h/r/postgresql-h-5432-d/run%202.html"
    )


@pytest.mark.parametrize("overview", [False, True])
def test_the_report_command_writes_into_the_store_folder_by_default(
    tmp_path, monkeypatch, overview
):
    monkeypatch.chdir(tmp_path)
    written = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        url = f"sqlite:///{tmp_path / name / 'evalwatch.db'}"
        from evalwatch.storage.db import get_engine

        run = create_run(get_engine(url), "traffic")
        args = ["--overview"] if overview else [str(run.id)]
        res = CliRunner().invoke(app, ["--db", url, "report", *args])
        assert res.exit_code == 0, res.output
        path = Path(res.output.split(": ", 1)[1].strip())
        assert path.parent == tmp_path / name / "reports" and path.is_file()
        written.append(path)
    assert written[0] != written[1]
    assert not (tmp_path / "report.html").exists()
