"""The linters the project keeps clean, run with the tests (so CI runs them): ruff's
checks and format on everything that is ours, mypy --strict on the package."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OURS = ["src", "tests", "conformance", "scripts", "docs/hooks"]


def run(*argv: str) -> None:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_finds_nothing() -> None:
    run(sys.executable, "-m", "ruff", "check", *OURS)


def test_ruff_format_changes_nothing() -> None:
    run(sys.executable, "-m", "ruff", "format", "--check", *OURS)


def test_mypy_strict_on_the_package() -> None:
    run(sys.executable, "-m", "mypy", "src")
