"""A side channel from test models (running inside an in-process server) to the tests.

Models import it as ``from tests.support import probe``, the very module the tests read
(the repository root is on ``sys.path``: pytest puts it there, and ``python -m`` from the
root does for the scripts and subprocess servers), and record, per request id, when their
generator's ``finally`` ran and whether the generator was cancelled (rather than ending by
itself).
"""

import time

finally_at: dict[str, float] = {}
cancelled: dict[str, bool] = {}
headers_seen: dict[str, dict[str, str]] = {}
"""The request headers a model saw, per request id (models that record them)."""
progress: dict[str, int] = {}
"""Responses a model has yielded so far, per request id (models that count them)."""
prompts: dict[str, str] = {}
"""The prompt a model got, per request id (models that record it: openai-words)."""
parameters_seen: dict[str, dict[str, object]] = {}
"""The request parameters a model got, per request id (models that record them)."""
batches: list[dict[str, object]] = []
"""What each ``predict`` call of a batching test model saw (tests/test_batching.py)."""
gate: dict[str, bool] = {}
"""Switches a test model waits on (``"held"``: it is waiting; ``"open"``: go on)."""


def record_finally(request_id: str | None, was_cancelled: bool) -> None:
    key = request_id or "?"
    cancelled[key] = was_cancelled
    finally_at[key] = time.monotonic()
