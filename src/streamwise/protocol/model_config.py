"""Triton's model configuration of a model, derived from its model-settings (sans-IO).

Triton clients ask a model's configuration (``GET /v2/models/NAME/config``, gRPC
``ModelConfig``) before they call it: tools read its tensors' types and shapes, and
whether it is *decoupled* (may send any number of responses per request: it streams).
streamwise has no ``config.pbtxt``; what it can say truthfully comes from the model's
settings, the subset of Triton's ``ModelConfig`` below, in Triton's JSON form (field names
as in ``model_config.proto``, integers as numbers):

- ``name``, ``platform`` (the settings'), ``backend``: ``"streamwise"``;
- ``max_batch_size``: the settings' (0 unless set: streamwise does not batch, and the
  dims are then whole shapes; above 0, the first dimension of each declared shape is the
  batch's and is left out of ``dims``, as Triton's are);
- ``input`` / ``output``: each declared tensor's name, ``data_type`` (``TYPE_*``; V2's
  ``BYTES`` is Triton's ``TYPE_STRING``) and ``dims`` (-1: any size); an input whose
  parameters say ``"optional": true`` has ``optional: true``;
- ``model_transaction_policy.decoupled``: the model streams, i.e. its class overrides
  :meth:`~streamwise.MLModel.predict_stream` (:func:`streams`).
"""

from __future__ import annotations

from typing import Any

from ..model import MLModel
from ..settings import ModelSettings
from ..types import MetadataTensor

__all__ = ["BACKEND", "model_config", "streams", "triton_datatype"]

BACKEND = "streamwise"


def triton_datatype(datatype: str) -> str:
    """Triton's ``DataType`` name of a V2 datatype (``FP32`` -> ``TYPE_FP32``)."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def streams(model_class: type[MLModel]) -> bool:
    """Whether a model streams: its class overrides ``predict_stream`` (the base's gives
    one response per request, through ``predict``)."""
    return model_class.predict_stream is not MLModel.predict_stream


def _tensor(meta: MetadataTensor, batched: bool, is_input: bool) -> dict[str, Any]:
    dims = list(meta.shape[1:] if batched else meta.shape)
    tensor: dict[str, Any] = {
        "name": meta.name,
        "data_type": triton_datatype(str(meta.datatype)),
        "dims": dims,
    }
    if is_input:
        tensor["optional"] = bool(
            meta.parameters and getattr(meta.parameters, "optional", False) is True
        )
    return tensor


def model_config(settings: ModelSettings, decoupled: bool) -> dict[str, Any]:
    """The configuration of the model ``settings`` describe, as Triton's JSON."""
    batched = settings.max_batch_size > 0
    return {
        "name": settings.name,
        "platform": settings.platform,
        "backend": BACKEND,
        "max_batch_size": max(settings.max_batch_size, 0),
        "input": [_tensor(t, batched, True) for t in settings.inputs],
        "output": [_tensor(t, batched, False) for t in settings.outputs],
        "model_transaction_policy": {"decoupled": decoupled},
    }
