"""The examples in the docstrings run and print what they say (they are documentation)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ["evalwatch"]
# Alembic's env.py runs only inside Alembic.
SKIP = {"evalwatch.storage.migrations"}


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        path = importlib.import_module(package).__path__
        for info in pkgutil.walk_packages(path, prefix=f"{package}."):
            if not any(info.name == s or info.name.startswith(f"{s}.") for s in SKIP):
                names.append(info.name)
    return sorted(names)


MODULES = _modules()


def test_every_package_is_walked() -> None:
    assert {
        "evalwatch.evaluators.runner",
        "evalwatch.runs.traffic",
        "evalwatch.storage.traffic_frame",
    } <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} docstring examples in {name} failed (see above)"
