"""Estimators for tests/test_runtimes.py, pickled there and unpickled by the server (so
importable from both: ``tests.support.estimators``)."""

from __future__ import annotations

import pathlib
import time
from typing import Any

import numpy as np


class WaitsForFile:
    """``predict`` marks that it started (``<release>.started``), then blocks its thread
    until the file ``release`` exists: a computation that takes as long as the test says."""

    def __init__(self, release: pathlib.Path) -> None:
        self.release = str(release)

    def predict(self, rows: Any) -> Any:
        pathlib.Path(self.release + ".started").touch()
        while not pathlib.Path(self.release).exists():
            time.sleep(0.01)
        return np.zeros(len(rows))


class RecordsBatches:
    """A decision tree that writes the number of rows of each ``predict`` call, one line
    each, to ``log``: what adaptive batching gave it."""

    def __init__(self, tree: Any, log: pathlib.Path) -> None:
        self.tree = tree
        self.log = str(log)

    def predict(self, rows: Any) -> Any:
        with open(self.log, "a") as f:
            f.write(f"{len(rows)}\n")
        return self.tree.predict(rows)
