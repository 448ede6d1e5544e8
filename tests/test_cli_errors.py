"""evalwatch.commands.common.describe_failure: real failures -> one line and an exit code.

Each exception is raised by the real component (SQLAlchemy on a bad URL, psycopg on a closed
port, httpx on a closed port, Prefect's own words), so the mapping follows what they raise.
"""

from __future__ import annotations

import socket

import httpx
import pytest
import sqlalchemy as sa

from evalwatch.commands.common import (
    EXIT_BAD_INPUT,
    EXIT_UNAVAILABLE,
    describe_failure,
    flag_names,
    validation_message,
)
from evalwatch.settings import SettingsError, get_settings
from evalwatch.storage.db import StoreUnavailableError, StoreURLError, current_revision, make_engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raised(fn) -> BaseException:
    try:
        fn()
    except Exception as exc:  # what the component raises is the point
        return exc
    raise AssertionError("nothing raised")


def test_bad_urls_are_bad_input() -> None:
    for url in ("notaurl", "foo://h/d", "mysql://h/d"):
        exc = _raised(lambda u=url: make_engine(u))
        assert isinstance(exc, StoreURLError)
        code, message = describe_failure(exc)
        assert code == EXIT_BAD_INPUT and url in message and "\n" not in message


def test_closed_port_store_is_unavailable_and_names_the_store() -> None:
    port = free_port()
    engine = make_engine(f"postgresql://postgres:s3cret@127.0.0.1:{port}/x")
    exc = _raised(lambda: current_revision(engine))
    assert isinstance(exc, StoreUnavailableError)
    code, message = describe_failure(exc)
    assert code == EXIT_UNAVAILABLE and f"127.0.0.1:{port}" in message
    assert "s3cret" not in message and "\n" not in message


def test_an_operational_error_mid_command_is_unavailable(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")

    def query() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table"))

    code, message = describe_failure(_raised(query))
    assert code == EXIT_UNAVAILABLE and "no_such_table" in message


def test_unreachable_http_endpoint_is_unavailable_and_named() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/chat"
    code, message = describe_failure(_raised(lambda: httpx.get(url, timeout=5)))
    assert code == EXIT_UNAVAILABLE and message.startswith(f"cannot reach {url}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Failed to reach API at http://127.0.0.1:9/api/", "cannot reach the Prefect API"),
        (
            "Timed out while attempting to connect to ephemeral Prefect API server.",
            "temporary Prefect server did not start",
        ),
    ],
)
def test_prefect_start_up_failures_are_unavailable(text: str, expected: str) -> None:
    import prefect  # noqa: F401 - the classifier looks at Prefect only once it is loaded

    try:
        try:
            raise httpx.ConnectError("refused")
        except httpx.ConnectError as inner:
            raise RuntimeError(text) from inner
    except RuntimeError as exc:
        code, message = describe_failure(exc)
    assert code == EXIT_UNAVAILABLE and expected in message


def test_anything_else_is_an_internal_error_exit_3() -> None:
    code, message = describe_failure(ZeroDivisionError("division by zero"))
    assert code == EXIT_UNAVAILABLE
    assert message == (
        "internal error: ZeroDivisionError: division by zero (run with --debug for the traceback)"
    )
    assert "--debug" not in describe_failure(ZeroDivisionError("x"), debug=True)[1]


def test_bad_setting_is_bad_input_naming_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("EVALWATCH_JUDGE__TIMEOUT_S", "soon")
    exc = _raised(get_settings)
    assert isinstance(exc, SettingsError)
    code, message = describe_failure(exc)
    assert code == EXIT_BAD_INPUT and "EVALWATCH_JUDGE__TIMEOUT_S" in message


def test_field_names_become_flags() -> None:
    from evalwatch.runs.gate import GateParams

    flags = {
        "baseline_run": "--baseline-run",
        "baseline_model": "--baseline-model",
        "repeats": "--repeats",
        "dataset": "--dataset",
    }
    with pytest.raises(Exception) as info:
        GateParams(dataset="d", candidate_model="m")
    assert validation_message(info.value, flags) == (  # type: ignore[arg-type]
        "give exactly one of --baseline-run or --baseline-model"
    )
    with pytest.raises(Exception) as info:
        GateParams(dataset="d", baseline_model="a", candidate_model="m", repeats=50)
    assert validation_message(info.value, flags).startswith("--repeats: ")  # type: ignore[arg-type]
    # A one-word field is left alone in prose: "dataset" is also a word.
    assert flag_names("the dataset has no baseline_run", flags) == (
        "the dataset has no --baseline-run"
    )
