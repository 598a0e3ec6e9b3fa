"""Every ``>>>`` example in the package runs and is true.

Run here rather than with ``--doctest-modules`` so the examples see this session's
private mongod (tests/conftest.py): an example that touches FiftyOne never reaches the
default database. Each docstring runs in a fresh temporary working directory, so an
example that writes relative paths leaves nothing behind and sees no other's files;
``tempfile``'s directory is the test's own too, so the temporary exports examples make
(``tiny_export()``, ``tempfile.mkdtemp()``) go with it rather than pile up in /tmp.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import armory_datasets
from armory_datasets.database import NAME_ENV, URI_ENV

MODULES = sorted(info.name for info in pkgutil.walk_packages(
    armory_datasets.__path__, prefix="armory_datasets."))
PROMPT = re.compile(r"^\s*>>> ", re.MULTILINE)


def run_doctests(module_name: str, workdir: Path) -> tuple[doctest.TestResults, int, str]:
    """Run a module's doctests, each in a new directory under ``workdir``; return
    (results, examples found, failure report)."""
    module = importlib.import_module(module_name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, module_name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for number, test in enumerate(sorted(tests, key=lambda t: t.name)):
        cwd = workdir / str(number)
        cwd.mkdir()
        os.chdir(cwd)
        runner.run(test, out=report.append)
    found = sum(len(test.examples) for test in tests)
    return runner.summarize(verbose=False), found, "".join(report)


@pytest.mark.parametrize("module_name", MODULES)
def test_module_examples_are_true(module_name: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # restored after the test
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    database = {name: os.environ.get(name) for name in (URI_ENV, NAME_ENV)}
    results, found, report = run_doctests(module_name, tmp_path)
    moved = {name for name, value in database.items() if os.environ.get(name) != value}
    for name, value in database.items():  # later tests and their subprocesses need it
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    assert results.failed == 0, report
    assert not moved, f"{module_name}: examples re-pointed FiftyOne's database: {sorted(moved)}"
    # Every prompt written in the file is an example the finder saw: a docstring the
    # finder misses (a nested function, a string that is not a docstring) would
    # otherwise never run.
    source = inspect.getsource(importlib.import_module(module_name))
    assert found == len(PROMPT.findall(source)), f"{module_name}: examples not collected"


def test_the_package_has_examples_and_most_run() -> None:
    """A runner that found nothing, or skipped everything, would pass vacuously."""
    attempted = skipped = 0
    for name in MODULES:
        module = importlib.import_module(name)
        for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
            for example in test.examples:
                attempted += 1
                skipped += bool(example.options.get(doctest.SKIP))
    assert attempted > 300
    assert skipped < 0.05 * attempted, f"{skipped} of {attempted} examples are skipped"


def test_pytest_cannot_run_the_examples_outside_this_runner() -> None:
    """``pytest --doctest-modules`` on the package would run the examples without the
    session's private mongod and start FiftyOne's default database; the plugin is off
    (pyproject.toml), so pytest collects nothing there. (This session's database settings
    are passed on, so even a broken guard keeps the examples off the default database.)"""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "pytest", "--doctest-modules", "armory_datasets/database.py"],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 5 and "collected 0 items" in done.stdout, done.stdout + done.stderr
