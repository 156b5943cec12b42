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
