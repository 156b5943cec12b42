"""Codec errors, with MLServer's names (``mlserver.codecs.errors``).

Payload problems are :class:`~streamwise.errors.InferenceError` (400); a missing codec for
a model's own type hints or outputs is a server-side problem (500).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import InferenceError, StreamwiseError

__all__ = ["CodecError", "CodecNotFound", "InputsNotFound", "OutputNotFound"]


class CodecError(InferenceError):
    """A payload that a codec cannot encode or decode."""


class CodecNotFound(StreamwiseError):
    """No codec matches a field's name / type (MLServer's constructor and message)."""

    def __init__(
        self,
        name: str | None = None,
        payload_type: str | None = None,
        is_input: bool = False,
        is_request: bool = False,
    ) -> None:
        what = ""
        if name:
            what = f"with name '{name}'"
            if payload_type:
                what = f"{what} and type {payload_type}"
        elif payload_type:
            what = f"with type {payload_type}"
        if is_input:
            category = "input request" if is_request else "input field"
        else:
            category = "output response" if is_request else "output field"
        super().__init__(f"Codec not found for {category} {what}".rstrip())


class InputsNotFound(InferenceError):
    """The request holds inputs that the model's signature does not name."""

    def __init__(self, inputs: Iterable[Any], input_hints: Mapping[str, Any]) -> None:
        names = ", ".join(f"'{inp.name}'" for inp in inputs)
        available = ", ".join(f"'{name}'" for name in input_hints)
        super().__init__(f"Input {names} was not found. Available inputs are {available}.")


class OutputNotFound(StreamwiseError):
    """The model returned a value that its return type hints do not describe."""

    def __init__(self, output_idx: int, output_type: type, output_hints: Iterable[Any]) -> None:
        expected = ", ".join(f"'{hint}'" for hint in output_hints)
        super().__init__(
            f"Unexpected output value at position '{output_idx}' ({output_type}). "
            f"Expected outputs are {expected} outputs."
        )
