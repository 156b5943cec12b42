"""Helpers for BYTES data that may be a lone str/bytes, a list, or a nested list."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["ListElement", "ListPayload", "is_list_of", "as_list", "as_items", "flatten"]

ListElement = bytes | str
ListPayload = ListElement | list[ListElement]


def is_list_of(payload: Any, instance_type: type | tuple[type, ...]) -> bool:
    """True for a list whose elements are all ``instance_type`` (an empty list too)."""
    if not isinstance(payload, list):
        return False
    return all(isinstance(elem, instance_type) for elem in payload)


def as_list(payload: Any) -> Iterator[Any]:
    """Iterate a list's elements, or a lone value as a one-element list."""
    if isinstance(payload, list):
        yield from payload
    else:
        yield payload


def as_items(payload: Any) -> list[Any]:
    """A payload as a list: lists as they are, a lone str/bytes wrapped, iterables listed."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, str | bytes):
        return [payload]
    try:
        return list(payload)
    except TypeError:
        return [payload]


def flatten(data: Any) -> list[Any]:
    """Row-major flattening of nested lists (or of an array a model gave); a lone value
    becomes a one-element list. A list that is already flat is returned as it is."""
    if not isinstance(data, list):
        if isinstance(data, np.ndarray):
            return data.reshape(-1).tolist()
        return [data]
    if not any(isinstance(elem, list) for elem in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for elem in stack[-1]:
            if isinstance(elem, list):
                stack.append(iter(elem))
                break
            out.append(elem)
        else:
            stack.pop()
    return out
