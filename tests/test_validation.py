"""Request validation (sans-IO): hypothesis properties plus the edge cases by name."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamwise.errors import InvalidRequest, PayloadTooLarge
from streamwise.protocol.validation import (
    INT_RANGES,
    MAX_ELEMENTS,
    element_count,
    show,
    validate_request,
)
from streamwise.types import InferenceRequest, MetadataTensor

DATATYPES = ["BOOL", *INT_RANGES, "FP16", "FP32", "FP64", "BYTES"]


def elements(datatype: str) -> st.SearchStrategy[object]:
    if datatype == "BOOL":
        return st.booleans()
    if datatype == "BYTES":
        return st.text(max_size=8)
    if datatype.startswith("FP"):
        return st.floats(allow_nan=False, allow_infinity=False, width=32) | st.integers(-9, 9)
    lo, hi = INT_RANGES[datatype]
    return st.integers(lo, hi)


@st.composite
def tensors(draw: st.DrawFn) -> dict[str, object]:
    datatype = draw(st.sampled_from(DATATYPES))
    shape = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    flat = draw(st.lists(elements(datatype), min_size=math.prod(shape), max_size=math.prod(shape)))
    nested = draw(st.booleans()) and len(shape) == 2
    data: list[object] = flat
    if nested and shape[1]:
        data = [flat[i : i + shape[1]] for i in range(0, len(flat), shape[1])]
    return {"name": "x", "shape": shape, "datatype": datatype, "data": data}


def request(*inputs: dict[str, object]) -> InferenceRequest:
    return InferenceRequest.model_validate({"inputs": list(inputs)})


@given(tensors())
def test_well_formed_tensors_are_accepted(tensor: dict[str, object]) -> None:
    validate_request(request(tensor))


@given(tensors(), st.integers(1, 3))
def test_element_count_must_match_the_shape(tensor: dict[str, object], extra: int) -> None:
    shape = [math.prod(tensor["shape"]) + extra]  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="needs .* elements"):
        validate_request(request(tensor | {"shape": shape}))


@given(st.sampled_from([d for d in DATATYPES if d != "BYTES"]), st.text(min_size=1, max_size=5))
def test_strings_in_numeric_tensors_are_refused(datatype: str, text: str) -> None:
    with pytest.raises(InvalidRequest, match=f"{datatype} data must be"):
        validate_request(request({"name": "x", "shape": [1], "datatype": datatype, "data": [text]}))


@given(st.sampled_from(list(INT_RANGES)), st.booleans())
def test_integers_out_of_range_are_refused(datatype: str, above: bool) -> None:
    lo, hi = INT_RANGES[datatype]
    value = hi + 1 if above else lo - 1
    with pytest.raises(InvalidRequest, match="integers in"):
        validate_request(
            request({"name": "x", "shape": [1], "datatype": datatype, "data": [value]})
        )


def test_huge_declared_shape_is_refused_without_allocating() -> None:
    with pytest.raises(InvalidRequest, match="needs 1000000000000 elements, data has 1"):
        validate_request(request({"name": "x", "shape": [10**12], "datatype": "FP32", "data": [1]}))
    nested = [[1.0]] * 3
    with pytest.raises(InvalidRequest, match="more than 2"):
        validate_request(request({"name": "x", "shape": [2], "datatype": "FP32", "data": nested}))


def test_bool_is_not_an_integer_and_floats_are_not_integers() -> None:
    for bad in (True, 1.5):
        with pytest.raises(InvalidRequest):
            validate_request(
                request({"name": "x", "shape": [1], "datatype": "INT32", "data": [bad]})
            )
    with pytest.raises(InvalidRequest):
        validate_request(request({"name": "x", "shape": [1], "datatype": "FP32", "data": [True]}))
    with pytest.raises(InvalidRequest):
        validate_request(request({"name": "x", "shape": [1], "datatype": "BOOL", "data": [1]}))


def test_negative_dimension_and_duplicate_names() -> None:
    with pytest.raises(InvalidRequest, match="negative"):
        validate_request(request({"name": "x", "shape": [-1], "datatype": "FP32", "data": []}))
    t = {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}
    with pytest.raises(InvalidRequest, match="duplicate input"):
        validate_request(request(t, t))


def test_lone_value_fits_a_one_element_shape() -> None:
    validate_request(request({"name": "x", "shape": [1], "datatype": "BYTES", "data": "hello"}))
    validate_request(request({"name": "x", "shape": [], "datatype": "FP64", "data": 2.5}))


META = [
    MetadataTensor(name="prompt", datatype="BYTES", shape=[1]),
    MetadataTensor(name="temp", datatype="FP32", shape=[1], parameters={"optional": True}),
]
OUTPUTS = [MetadataTensor(name="output", datatype="BYTES", shape=[1])]
PROMPT = {"name": "prompt", "shape": [1, 1], "datatype": "BYTES", "data": ["hi"]}


def test_against_declared_metadata() -> None:
    validate_request(request(PROMPT), META, OUTPUTS)  # batch dim allowed, optional input absent
    with pytest.raises(InvalidRequest, match="unexpected input 'other'"):
        validate_request(request(PROMPT, PROMPT | {"name": "other"}), META)
    with pytest.raises(InvalidRequest, match="datatype FP32 given, the model takes BYTES"):
        validate_request(request(PROMPT | {"datatype": "FP32", "data": [1.0]}), META)
    with pytest.raises(InvalidRequest, match="missing input 'prompt'"):
        validate_request(
            request({"name": "temp", "shape": [1], "datatype": "FP32", "data": [1]}), META
        )
    bad_output = InferenceRequest.model_validate(
        {"inputs": [PROMPT], "outputs": [{"name": "nope"}]}
    )
    with pytest.raises(InvalidRequest, match="unknown output 'nope'"):
        validate_request(bad_output, META, OUTPUTS)


# -- hostile shapes and names (found by tests/test_fuzz_slice.py) -------------------------------
def test_a_product_beyond_python_int_str_limit_is_a_client_error() -> None:
    # prod of 300 x 10**18 has 5,400 digits: formatting it raised ValueError (a 500)
    tensor = {"name": "x", "shape": [10**18] * 300, "datatype": "FP32", "data": []}
    with pytest.raises(InvalidRequest, match=f"needs more than {MAX_ELEMENTS} elements"):
        validate_request(request(tensor))


class Dim(int):
    """A dimension that records the magnitude of every product it takes part in."""

    products: list[int] = []

    def __rmul__(self, other: int) -> int:
        product = int(other) * int(self)
        Dim.products.append(abs(product))
        return product

    __mul__ = __rmul__


def test_element_count_never_builds_a_big_integer() -> None:
    # math.prod of 50,000 x 2**62 builds a 3-million-bit integer: 7 s of the event loop.
    # The count stops multiplying once past MAX_ELEMENTS: no product beyond int64 x int64.
    Dim.products.clear()
    assert element_count([Dim(2**62)] * 50_000) == MAX_ELEMENTS + 1
    assert Dim.products and max(Dim.products) < 2**126
    assert len(Dim.products) <= 2  # it stopped at the first product past the limit
    Dim.products.clear()
    assert element_count([Dim(3)] * 10) == 3**10 and len(Dim.products) == 10


def counting_calls(monkeypatch: pytest.MonkeyPatch, module: object) -> list[int]:
    """The shapes' lengths ``module`` hands to the bounded counter, element_count."""
    lengths: list[int] = []

    def spy(shape: list[int]) -> int:
        lengths.append(len(shape))
        return element_count(shape)

    monkeypatch.setattr(module, "element_count", spy)
    return lengths


def test_many_huge_dimensions_are_counted_by_the_bounded_counter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import streamwise.protocol.validation as validation

    counted = counting_calls(monkeypatch, validation)
    tensor = {"name": "x", "shape": [2**62] * 200_000, "datatype": "FP32", "data": [1]}
    with pytest.raises(InvalidRequest, match="needs more than"):
        validate_request(request(tensor))
    assert counted == [200_000]
    zero = {"name": "x", "shape": [2**62] * 200_000 + [0], "datatype": "FP32", "data": []}
    validate_request(request(zero))  # a 0 anywhere: no elements, whatever comes before


def test_dimensions_beyond_int64_are_refused() -> None:
    for shape in ([2**63], [2**64 + 1, 0], [0, 10**30]):
        with pytest.raises(InvalidRequest, match="a dimension over"):
            validate_request(request({"name": "x", "shape": shape, "datatype": "FP32", "data": []}))
    validate_request(
        request({"name": "x", "shape": [MAX_ELEMENTS, 0], "datatype": "FP32", "data": []})
    )


@given(st.lists(st.integers(-(2**70), 2**70), max_size=6))
def test_element_count_is_the_product_within_int64(shape: list[int]) -> None:
    product = math.prod(shape)
    count = element_count(shape)
    if abs(product) <= MAX_ELEMENTS:
        assert count == product
    else:
        assert count == MAX_ELEMENTS + 1


def test_messages_quote_client_names_and_shapes_cut_short() -> None:
    # a 200,000-character name went whole into the gRPC status message: seconds of HPACK
    # encoding on the event loop, and over grpcio's metadata limit
    long = "é" * 200_000
    cases = [
        {"name": long, "shape": [2], "datatype": "FP32", "data": [1]},
        {"name": long, "shape": [1], "datatype": "INT8", "data": [long]},
        {"name": "x", "shape": [1] * 100_000 + [2], "datatype": "FP32", "data": [1]},
        {"name": "x", "shape": [-1] * 100_000, "datatype": "FP32", "data": []},
    ]
    for tensor in cases:
        with pytest.raises(InvalidRequest) as info:
            validate_request(request(tensor))
        assert len(str(info.value)) < 300
    t = {"name": long, "shape": [1], "datatype": "FP32", "data": [1]}
    with pytest.raises(InvalidRequest, match="duplicate input name 'éé") as info:
        validate_request(request(t, t))
    assert len(str(info.value)) < 300
    with pytest.raises(InvalidRequest, match="unexpected input") as info:
        validate_request(request(PROMPT, t), META)
    assert len(str(info.value)) < 300


def test_max_elements_is_payload_too_large_before_the_data_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # runtime/dataplane.py's own check formatted math.prod(shape): the same ValueError (a
    # 500 / UNKNOWN) and the same quadratic product as above; this one is bounded
    import streamwise.protocol.validation as validation

    counted = counting_calls(monkeypatch, validation)
    for shape in ([10**6, 10**6], [10**18] * 300, [2**62] * 100_000):
        tensor = {"name": "é" * 100_000, "shape": shape, "datatype": "FP32", "data": [1]}
        with pytest.raises(
            PayloadTooLarge, match="over the limit of 1000 .max_tensor_elements"
        ) as info:
            validate_request(request(tensor), max_elements=1000)
        assert len(str(info.value)) < 300
    assert counted == [2, 300, 100_000]
    with pytest.raises(InvalidRequest, match="negative"):  # a 400, not a 413
        validate_request(
            request({"name": "x", "shape": [-1, -(10**9)], "datatype": "FP32", "data": []}),
            max_elements=10,
        )
    validate_request(
        request({"name": "x", "shape": [10], "datatype": "FP32", "data": [1] * 10}), max_elements=10
    )


def test_show_cuts_and_survives_what_repr_cannot_write() -> None:
    assert show("x" * 100, 10) == "'xxxxxx..."
    assert show([10**5000]) == "<list too large to show>"
    assert show(10**5000) == "<int too large to show>"
