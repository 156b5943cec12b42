"""The conformance suite's self-test: its checks must be able to fail.

``conformance/selftest/server.py`` is a deliberately simple V2 server; each of its
``--break NAME`` switches breaks one behaviour the suite checks. For every breakage the
suite runs (``pytest conformance --target ...``, in a subprocess, as a user would run it
against any server) on the checks about that behaviour, and each of them must *fail*
(for ``cut-stream``, which the protocol tolerates, be a *deviation*) for the reason it
names, not pass, skip or error. The same checks must all pass on the unbroken server:
then each failure is the breakage's doing. Outcomes are read from the suite's own
``--conformance-report`` JSON.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SERVER = ROOT / "conformance" / "selftest" / "server.py"

HEALTH = "conformance/test_health.py::"
METADATA = "conformance/test_metadata.py::"
SSE = "conformance/test_sse.py::"
STREAM_ERRORS = "conformance/test_stream_errors.py::"
ERRORS = "conformance/test_errors.py::"
INFER = "conformance/test_infer.py::"
FLAT = "conformance/test_generate_flat.py::"
REFERENCE_MODELS = (
    "echo-stream", "fail-mid-stream", "identity", "slow-stream", "text-generator",
    "text-model", "token-streamer", "word-streamer",
)  # fmt: skip
FAILURE_IN_A_STREAM = [
    STREAM_ERRORS + "test_failure_mid_stream_is_never_a_clean_end",
    STREAM_ERRORS + "test_failure_before_the_first_response",
    STREAM_ERRORS + "test_failure_is_reported_to_an_httpx_sse_client",
]

# breakage -> the checks about it (each must fail unless said otherwise)
EXPECTED: dict[str, dict[str, str]] = {
    name: {check: "failed" for check in checks} if isinstance(checks, list) else checks
    for name, checks in {
        "hidden-failure": FAILURE_IN_A_STREAM,
        "cut-stream": {check: "deviation" for check in FAILURE_IN_A_STREAM},
        "no-sse-id": [
            SSE + "test_one_generated_id_for_the_whole_stream",
            SSE + "test_same_request_id_on_every_event",
        ],
        "id-per-event": [SSE + "test_one_generated_id_for_the_whole_stream"],
        "ignore-request-id": [
            INFER + "test_id_is_echoed",
            SSE + "test_same_request_id_on_every_event",
        ],
        "bare-metadata": [
            *(f"{METADATA}test_model_metadata_shape[{m}]" for m in REFERENCE_MODELS),
            METADATA + "test_model_metadata_matches_the_model_settings",
        ],
        "not-live": [HEALTH + "test_live"],
        "unknown-model-500": [
            METADATA + "test_unknown_model_ready",
            METADATA + "test_unknown_model_metadata",
            ERRORS + "test_unknown_model",
            STREAM_ERRORS + "test_unknown_model",
        ],
        "detail-error-body": [
            METADATA + "test_unknown_model_metadata",
            ERRORS + "test_unknown_model",
            ERRORS + "test_malformed_body[malformed]",
            ERRORS + "test_model_failure_in_infer",
            STREAM_ERRORS + "test_malformed_json",
        ],
        "errors-inside-stream": [
            STREAM_ERRORS + "test_unknown_model",
            STREAM_ERRORS + "test_malformed_json",
            STREAM_ERRORS + "test_invalid_datatype",
            STREAM_ERRORS + "test_data_not_fitting_the_shape",
            STREAM_ERRORS + "test_input_the_model_does_not_declare",
        ],
        "buffered-stream": [
            SSE + "test_content_type_and_status",
            SSE + "test_events_arrive_at_the_models_pace[None]",
            SSE + "test_events_arrive_at_the_models_pace[gzip]",
        ],
        "wrong-datatype": [
            INFER + "test_every_datatype_round_trips[INT8]",
            INFER + "test_every_datatype_round_trips[UINT64]",
            INFER + "test_nested_data_is_accepted",
        ],
        "wrong-shape": [
            INFER + "test_nested_data_is_accepted",
            INFER + "test_multidimensional_flat_data",
        ],
        "shape-unchecked": [
            ERRORS + "test_data_not_fitting_the_shape[too-few]",
            ERRORS + "test_data_not_fitting_the_shape[too-many]",
            ERRORS + "test_data_not_fitting_the_shape[ragged]",
            STREAM_ERRORS + "test_data_not_fitting_the_shape",
        ],
        "wrapped-values": [
            ERRORS + "test_value_out_of_range[INT8-300]",
            ERRORS + "test_value_out_of_range[UINT8--1]",
            ERRORS + "test_value_out_of_range[UINT16-70000]",
        ],
        "flat-as-v2": [
            FLAT + "test_generate_answers_one_flat_object",
            FLAT + "test_generate_without_an_id_answers_none",
            FLAT + "test_generate_stream_events_are_flat_objects",
        ],
        "flat-v2-error-event": [
            FLAT + "test_keys_that_are_no_input_are_parameters[top-level]",
            FLAT + "test_keys_that_are_no_input_are_parameters[parameters]",
        ],
    }.items()
}
HEALTHY = "no-breakage"
ALL_CHECKS = sorted({check for checks in EXPECTED.values() for check in checks})

# The suite as a user runs it, without this repository's trio and hypothesis plugins
# (no check here needs them; importing them costs a second or two per run). The
# pyproject's `trio_mode` is then an unknown option: that warning is not the point.
PYTEST = [
    sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:trio",
    "-p", "no:hypothesispytest", "-W", "ignore::pytest.PytestConfigWarning",
]  # fmt: skip


def _server_breakages() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("conformance_selftest_server", SERVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.BREAKAGES)


Outcomes = dict[str, tuple[str, str]]


def run_suite(breakage: str, checks: list[str], tmp: pathlib.Path) -> Outcomes:
    """Start the server with ``breakage`` (none for HEALTHY), run ``checks`` against it;
    the outcome of each check, and why. A check that failed outside its call (the target
    never became ready, say) is an "error", not a "failed"."""
    argv = [sys.executable, str(SERVER), "--port", "0"]
    argv += [] if breakage == HEALTHY else ["--break", breakage]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    report = tmp / "report.json"
    with (
        (tmp / "server.log").open("w") as log,
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True) as server,
    ):
        try:
            assert server.stdout is not None
            line = server.stdout.readline()  # "listening on http://127.0.0.1:PORT"
            assert line.startswith("listening on "), f"the server did not start: {line!r}"
            command = [*PYTEST, *checks, "--target", line.split()[-1]]
            command += ["--conformance-report", str(report)]
            done = subprocess.run(
                command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
            )
        finally:
            server.kill()
    assert report.exists(), f"no report; the suite said:\n{done.stdout}\n{done.stderr}"
    outcomes = {}
    for result in json.loads(report.read_text())["results"]:
        outcome = result["outcome"]
        if outcome == "failed" and not all(m.startswith("[call]") for m in result["messages"]):
            outcome = "error"
        outcomes[result["nodeid"]] = (outcome, "; ".join(result["messages"])[:300])
    return outcomes


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Outcomes]]]:
    """One run of the suite per breakage selected in this session, started together (a
    run is mostly waiting: interpreter start-up, paced streams)."""
    selected = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if getattr(item, "module", None) is request.module and callspec is not None:
            selected.append(callspec.params["breakage"])
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield {
            name: pool.submit(
                run_suite,
                name,
                ALL_CHECKS if name == HEALTHY else list(EXPECTED[name]),
                tmp_path_factory.mktemp(name),
            )
            for name in dict.fromkeys(selected)
        }


def test_every_breakage_is_checked() -> None:
    assert sorted(_server_breakages()) == sorted(EXPECTED)


def test_the_server_needs_only_the_standard_library() -> None:
    """It runs wherever the suite does, and proves nothing about streamwise."""
    imported = set()
    for node in ast.walk(ast.parse(SERVER.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - sys.stdlib_module_names == set()


@pytest.mark.parametrize("breakage", [HEALTHY, *EXPECTED])
def test_the_checks_fail_on_their_breakage(
    runs: dict[str, Future[Outcomes]], breakage: str
) -> None:
    outcomes = runs[breakage].result()
    if breakage == HEALTHY:
        expected = dict.fromkeys(ALL_CHECKS, "passed")
    else:
        expected = EXPECTED[breakage]
    found = {check: outcomes.get(check, ("not run", ""))[0] for check in expected}
    why = "\n".join(f"{check}: {outcomes[check]}" for check in expected if check in outcomes)
    assert found == expected, why
