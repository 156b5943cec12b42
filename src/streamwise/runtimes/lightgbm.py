"""LightGBM models in its text format (MLServer's ``mlserver_lightgbm``): a ``Booster``,
whose ``predict`` is the one output, ``predict`` (a class's probabilities for a
multiclass model)."""

from __future__ import annotations

import pathlib
from types import ModuleType

from ..codecs import NumpyCodec, NumpyRequestCodec
from ..types import Datatype, InferenceRequest, MetadataTensor, ResponseOutput
from ._files import FileModel, tensor

__all__ = ["LightGBMModel"]

PREDICT_OUTPUT = "predict"


class LightGBMModel(FileModel):
    """A LightGBM Booster from ``model.bst`` (MLServer's name) or ``model.txt``."""

    library = ("lightgbm",)
    package = "lightgbm"
    extra = "lightgbm"
    format = "a LightGBM model (text format)"
    wellknown = ("model.bst", "model.txt")
    runtime = "LightGBMModel"

    def _load_file(self, path: pathlib.Path, *modules: ModuleType) -> None:
        (lgb,) = modules
        self._model = lgb.Booster(model_file=str(path))
        self._bad_input = (ValueError, TypeError, lgb.basic.LightGBMError)

    def _forget(self) -> None:
        self._model = None

    def _describe(self) -> tuple[list[MetadataTensor], list[MetadataTensor]]:
        booster = self._model
        n_features = int(booster.num_feature())
        names = [str(n) for n in booster.feature_name()]
        if names and names != [f"Column_{i}" for i in range(n_features)]:
            inputs = [tensor(n, Datatype.FP64, [-1, 1]) for n in names]
        else:  # LightGBM's names for unnamed features
            inputs = [tensor("input-0", Datatype.FP64, [-1, n_features])]
        per_row = int(booster.num_model_per_iteration())
        shape = [-1] if per_row == 1 else [-1, per_row]
        return inputs, [tensor(PREDICT_OUTPUT, Datatype.FP64, shape)]

    def _predict(self, payload: InferenceRequest) -> list[ResponseOutput]:
        [request_output] = self._requested(payload, (PREDICT_OUTPUT,), PREDICT_OUTPUT)
        self._check_one_input(payload)
        features = self.decode_request(payload, default_codec=NumpyRequestCodec)
        y = self._model.predict(features)
        return [self.encode(y, request_output, default_codec=NumpyCodec)]
