"""PandasCodec (content type ``pd``): DataFrames of int, float, bool and str columns come
back as they went, through requests and responses, as Python objects, as REST's JSON and
as gRPC's protobuf; and the codec imports without pandas, asking for the extra when used."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pd = pytest.importorskip("pandas")

from streamwise.codecs import PandasCodec, find_request_codec  # noqa: E402
from streamwise.grpc.convert import (  # noqa: E402
    request_from_proto,
    request_to_proto,
    response_from_proto,
    response_to_proto,
)
from streamwise.types import InferenceRequest, InferenceResponse  # noqa: E402
from tests.support import ROOT  # noqa: E402

INT64 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(allow_infinity=False)  # NaN included: null on the wire
COLUMN_KINDS = {
    "int": (INT64, "INT64"),
    "float": (FLOATS, "FP64"),
    "bool": (st.booleans(), "BOOL"),
    "str": (st.text(max_size=8), "BYTES"),
}


@st.composite
def frames(draw: Any) -> tuple[Any, list[str]]:
    """A DataFrame of 1-8 rows and 1-5 columns of the kinds above; (frame, its datatypes)."""
    rows = draw(st.integers(1, 8))
    names = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=5, unique=True))
    columns: dict[str, Any] = {}
    datatypes = []
    for name in names:
        elements, datatype = COLUMN_KINDS[draw(st.sampled_from(sorted(COLUMN_KINDS)))]
        values = draw(st.lists(elements, min_size=rows, max_size=rows))
        columns[name] = pd.Series(values, dtype="int64" if datatype == "INT64" else None)
        datatypes.append(datatype)
    return pd.DataFrame(columns), datatypes


def check_encoding(tensors: list[Any], frame: Any, datatypes: list[str], use_bytes: bool) -> None:
    assert [t.name for t in tensors] == list(frame.columns)
    assert [str(t.datatype) for t in tensors] == datatypes
    for tensor, datatype in zip(tensors, datatypes, strict=True):
        assert tensor.shape == [len(frame), 1]
        if datatype == "BYTES":  # as MLServer: str content type, bytes elements for gRPC
            assert tensor.parameters.content_type == "str"
            assert all(isinstance(v, bytes if use_bytes else str) for v in tensor.data.root)


@given(frames(), st.booleans())
def test_requests_round_trip(drawn: tuple[Any, list[str]], use_bytes: bool) -> None:
    frame, datatypes = drawn
    request = PandasCodec.encode_request(frame, use_bytes=use_bytes)
    assert request.parameters is not None and request.parameters.content_type == "pd"
    check_encoding(request.inputs, frame, datatypes, use_bytes)
    pd.testing.assert_frame_equal(PandasCodec.decode_request(request), frame)
    # as a REST client sends it, and as a gRPC client does
    over_json = InferenceRequest.model_validate_json(request.model_dump_json())
    pd.testing.assert_frame_equal(PandasCodec.decode_request(over_json), frame)
    if not frame.isna().any().any():  # null (NaN) has no place in gRPC's typed contents
        over_grpc, _ = request_from_proto(request_to_proto(request, "m"))
        pd.testing.assert_frame_equal(PandasCodec.decode_request(over_grpc), frame)


@given(frames(), st.booleans())
def test_responses_round_trip(drawn: tuple[Any, list[str]], use_bytes: bool) -> None:
    frame, datatypes = drawn
    response = PandasCodec.encode_response("m", frame, "v2", use_bytes=use_bytes)
    assert (response.model_name, response.model_version) == ("m", "v2")
    assert response.parameters is not None and response.parameters.content_type == "pd"
    check_encoding(response.outputs, frame, datatypes, use_bytes)
    pd.testing.assert_frame_equal(PandasCodec.decode_response(response), frame)
    over_json = InferenceResponse.model_validate_json(response.model_dump_json())
    pd.testing.assert_frame_equal(PandasCodec.decode_response(over_json), frame)
    if not frame.isna().any().any():
        over_grpc = response_from_proto(response_to_proto(response))
        pd.testing.assert_frame_equal(PandasCodec.decode_response(over_grpc), frame)


def test_it_is_mlservers_pd_codec() -> None:
    assert find_request_codec("pd") is PandasCodec
    assert PandasCodec.TypeHint is pd.DataFrame
    assert PandasCodec.can_encode(pd.DataFrame({"a": [1]}))
    assert not PandasCodec.can_encode([1])


def test_objects_are_json_and_nan_is_null() -> None:
    frame = pd.DataFrame({"obj": [{"k": [1, 2]}, None], "x": [1.5, float("nan")]})
    [obj, x] = PandasCodec.encode_outputs(frame, use_bytes=False)
    assert (obj.datatype, obj.parameters.content_type) == ("BYTES", "pd_json")
    assert obj.data.root == ['{"k":[1,2]}', "null"]
    assert x.data.root == [1.5, None]
    back = PandasCodec.decode_response(InferenceResponse(model_name="m", outputs=[obj, x]))
    assert back["obj"].tolist() == [{"k": [1, 2]}, None]


def test_a_column_is_one_dimensional() -> None:
    request = InferenceRequest.model_validate(
        {"inputs": [{"name": "a", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
    )
    with pytest.raises(Exception, match=r"input 'a': a DataFrame column has shape \[N\] or \[N, 1\], not \[2, 2\]"):  # fmt: skip
        PandasCodec.decode_request(request)


WITHOUT_PANDAS = """
import sys
sys.modules["pandas"] = None  # as if it were not installed: import pandas raises
from streamwise.codecs import PandasCodec, find_request_codec
from streamwise.errors import ExtraNotInstalled
from streamwise.types import InferenceRequest
assert find_request_codec("pd") is PandasCodec and not PandasCodec.can_encode([1])
request = InferenceRequest.model_validate(
    {"inputs": [{"name": "a", "shape": [1], "datatype": "INT64", "data": [1]}]}
)
try:
    PandasCodec.decode_request(request)
except ExtraNotInstalled as exc:
    print(exc.http_status, exc)
"""


def test_it_imports_without_pandas_and_says_what_to_install() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PANDAS],
        cwd=ROOT / "src",
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == (
        "501 the 'pd' content type (PandasCodec) needs pandas, which is not installed: "
        'pip install "streamwise[pandas]"\n'
    )
