"""MLModel's MLServer-style helpers: decode and encode through the content types."""

from __future__ import annotations

import numpy as np
import pytest

from streamwise import MLModel, ModelSettings
from streamwise.codecs import NumpyCodec, NumpyRequestCodec, StringCodec
from streamwise.errors import InferenceError, MethodNotImplemented
from streamwise.types import InferenceRequest, RequestInput, RequestOutput


def model(**extra: object) -> MLModel:
    return MLModel(ModelSettings.model_validate({"name": "m", "implementation": "x.M", **extra}))


def test_decode_by_input_metadata_and_model_default_content_types() -> None:
    inp = RequestInput(name="a", shape=[2], datatype="BYTES", data=["x", "y"])
    assert model().decode(inp).root == ["x", "y"]  # nothing says how: the raw data
    assert model().decode(inp, default_codec=StringCodec) == ["x", "y"]
    meta = {
        "inputs": [
            {"name": "a", "datatype": "BYTES", "shape": [2], "parameters": {"content_type": "str"}}
        ]
    }
    assert model(**meta).decode(inp) == ["x", "y"]
    assert model(parameters={"content_type": "str"}).decode(inp) == ["x", "y"]
    fp = RequestInput(
        name="b", shape=[2], datatype="FP32", data=[1, 2], parameters={"content_type": "np"}
    )
    np.testing.assert_array_equal(model().decode(fp), np.array([1, 2], dtype=np.float32))


def test_decode_request_and_encode() -> None:
    request = InferenceRequest(
        inputs=[RequestInput(name="a", shape=[1], datatype="BYTES", data=["x"])],
        parameters={"content_type": "str"},
    )
    m = model()
    assert m.decode_request(request) == ["x"]
    out = m.encode(np.array([1.5], dtype=np.float64), RequestOutput(name="o"), NumpyCodec)
    assert (out.name, out.datatype, out.shape, out.data.root) == ("o", "FP64", [1], [1.5])
    response = m.encode_response(np.array([[1, 2]], dtype=np.int32))
    assert response.model_name == "m" and response.outputs[0].datatype == "INT32"
    with pytest.raises(InferenceError, match="cannot encode"):
        m.encode_response(object())


def test_decode_request_falls_back_to_the_default_codec() -> None:
    """As MLServer's: a request no content type decodes goes to ``default_codec`` (its
    runtimes pass NumpyRequestCodec); without one, the request itself comes back."""
    request = InferenceRequest(
        inputs=[RequestInput(name="a", shape=[1, 2], datatype="FP64", data=[1.5, 2.5])]
    )
    decoded = model().decode_request(request, default_codec=NumpyRequestCodec)
    np.testing.assert_array_equal(decoded, np.array([[1.5, 2.5]]))
    assert model().decode_request(request) is request


async def test_default_predict_is_not_implemented() -> None:
    m = model()
    with pytest.raises(MethodNotImplemented):
        await m.predict(InferenceRequest(inputs=[]))
