"""XGBoost models in its JSON or UBJ formats (MLServer's ``mlserver_xgboost``).

Loaded as MLServer loads them: into an ``XGBRegressor``, or an ``XGBClassifier`` when the
file says it is a classifier (a file saved from a ``Booster`` is a regressor: ``predict``
gives the booster's output). Outputs ``predict`` (the default) and ``predict_proba``
(classifiers); one input tensor, or one per column with content type ``pd``.
"""

from __future__ import annotations

import pathlib
from types import ModuleType

from ..codecs import NumpyCodec, NumpyRequestCodec
from ..errors import InferenceError
from ..types import Datatype, InferenceRequest, MetadataTensor, ResponseOutput
from ._files import FileModel, tensor

__all__ = ["XGBoostModel"]

PREDICT_OUTPUT = "predict"
PREDICT_PROBA_OUTPUT = "predict_proba"
VALID_OUTPUTS = (PREDICT_OUTPUT, PREDICT_PROBA_OUTPUT)


def _short(message: str) -> str:
    """XGBoost's messages end with a native stack trace: not for a model's status."""
    return message.split("Stack trace:")[0].strip()


class XGBoostModel(FileModel):
    """An XGBoost model from ``model.bst`` / ``model.json`` / ``model.ubj`` (JSON when the
    file name ends in ``.json``, else UBJ: XGBoost's rule)."""

    library = ("xgboost",)
    package = "xgboost"
    extra = "xgboost"
    format = "an XGBoost model (JSON / UBJ)"
    wellknown = ("model.bst", "model.json", "model.ubj")
    runtime = "XGBoostModel"

    def _load_file(self, path: pathlib.Path, *modules: ModuleType) -> None:
        (xgb,) = modules
        try:
            try:
                model = xgb.XGBRegressor()
                model.load_model(str(path))
            except TypeError:  # "Loading an estimator with different type": a classifier
                model = xgb.XGBClassifier()
                model.load_model(str(path))
        except xgb.core.XGBoostError as exc:
            raise ValueError(_short(str(exc))) from None
        self._model = model
        self._classifier = isinstance(model, xgb.XGBClassifier)
        self._bad_input = (ValueError, TypeError, xgb.core.XGBoostError)

    def _forget(self) -> None:
        self._model = None

    def _describe(self) -> tuple[list[MetadataTensor], list[MetadataTensor]]:
        booster = self._model.get_booster()
        names = booster.feature_names
        if names:
            inputs = [tensor(str(n), Datatype.FP32, [-1, 1]) for n in names]
        else:
            inputs = [tensor("input-0", Datatype.FP32, [-1, int(booster.num_features())])]
        outputs = [tensor(PREDICT_OUTPUT, Datatype.INT64 if self._classifier else Datatype.FP32,
                          [-1])]  # fmt: skip
        if self._classifier:
            n_classes = int(getattr(self._model, "n_classes_", 0) or -1)
            outputs.append(tensor(PREDICT_PROBA_OUTPUT, Datatype.FP32, [-1, n_classes]))
        return inputs, outputs

    def _predict(self, payload: InferenceRequest) -> list[ResponseOutput]:
        requested = self._requested(payload, VALID_OUTPUTS, PREDICT_OUTPUT)
        if PREDICT_PROBA_OUTPUT in [o.name for o in requested] and not self._classifier:
            raise InferenceError(f"XGBRegressor models do not support '{PREDICT_PROBA_OUTPUT}'")
        self._check_one_input(payload)
        features = self.decode_request(payload, default_codec=NumpyRequestCodec)
        outputs = []
        for request_output in requested:
            y = getattr(self._model, request_output.name)(features)
            outputs.append(self.encode(y, request_output, default_codec=NumpyCodec))
        return outputs
