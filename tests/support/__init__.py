"""Helpers shared by the tests (tests/test_*.py, conftest.py's fixtures), the test models
(tests/models, through ``probe``) and the scripts in scripts/; imported as ``tests.support``
with the repository root on ``sys.path`` (pytest puts it there; the scripts run as
``python -m scripts.NAME`` from the root).

- paths: ``ROOT``, ``TESTS``, ``DEMO``, ``TEST_MODELS``, ``DOCUMENT``;
- servers: ``free_port``, ``served_in_subprocess``, the ``StartServer`` fixture type;
- modules: ``rawhttp`` (a raw HTTP/1.1 client), ``grpc_stubs`` (grpcio stubs built from
  proto/), ``probe`` (the test models' side channel), ``disconnects`` (how long a model's
  ``finally`` takes after its client leaves), ``hostile`` (the fuzz strategies and property),
  ``v2_oracle`` (what a valid V2 request is, written from the protocol: the fuzz's oracle).
"""

from .paths import DEMO, DOCUMENT, ROOT, TEST_MODELS, TESTS
from .servers import StartServer, free_port, served_in_subprocess

__all__ = [
    "DEMO",
    "DOCUMENT",
    "ROOT",
    "TESTS",
    "TEST_MODELS",
    "StartServer",
    "free_port",
    "served_in_subprocess",
]
