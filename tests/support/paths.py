"""Where things are: the checkout, the demo models, the test models, the document's example."""

from __future__ import annotations

import pathlib

TESTS = pathlib.Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
DEMO = ROOT / "src" / "streamwise" / "demo"
TEST_MODELS = TESTS / "models"
DOCUMENT = TESTS / "document"
