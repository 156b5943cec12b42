"""scikit-learn models saved with joblib or pickle (MLServer's ``mlserver_sklearn``).

The outputs a request names choose the estimator's methods: ``predict`` (the default, or
``parameters.extra.predict_fn``), ``predict_proba`` (classifiers; the last step of a
Pipeline decides) and ``transform``. The input is one tensor (decoded as a NumPy array),
or, with content type ``pd``, one input per column (a DataFrame, for estimators fitted
on one). A DataFrame the estimator returns is encoded as MLServer does, one output per
column; an array, as one output named after the method.
"""

from __future__ import annotations

import pathlib
from types import ModuleType
from typing import Any

from ..codecs import NumpyCodec, NumpyRequestCodec, PandasCodec
from ..errors import InferenceError
from ..types import Datatype, InferenceRequest, MetadataTensor, ResponseOutput
from ._files import FileModel, tensor

__all__ = ["SKLearnModel"]

PREDICT_FN_KEY = "predict_fn"
PREDICT_OUTPUT = "predict"
PREDICT_PROBA_OUTPUT = "predict_proba"
PREDICT_TRANSFORM = "transform"
VALID_OUTPUTS = (PREDICT_OUTPUT, PREDICT_PROBA_OUTPUT, PREDICT_TRANSFORM)


class SKLearnModel(FileModel):
    """A scikit-learn estimator (or Pipeline) from ``model.joblib`` / ``.pickle`` / ``.pkl``."""

    library = ("joblib", "sklearn")
    package = "scikit-learn"
    extra = "sklearn"
    format = "a scikit-learn model (joblib / pickle)"
    wellknown = ("model.joblib", "model.pickle", "model.pkl")
    runtime = "SKLearnModel"
    unpickles = True

    def _load_file(self, path: pathlib.Path, *modules: ModuleType) -> None:
        joblib, _ = modules
        model = joblib.load(path)  # plain pickles too
        if not callable(getattr(model, "predict", None)) and not callable(
            getattr(model, "transform", None)
        ):
            raise TypeError(f"a {type(model).__name__} has neither predict nor transform")
        self._model = model
        self._bad_input = (ValueError, TypeError)

    def _forget(self) -> None:
        self._model = None

    def _final_step(self) -> Any:
        model = self._model
        steps = getattr(model, "steps", None)  # a Pipeline: its last step predicts
        return steps[-1][-1] if steps else model

    def _describe(self) -> tuple[list[MetadataTensor], list[MetadataTensor]]:
        model, last = self._model, self._final_step()
        inputs: list[MetadataTensor] = []
        names = getattr(model, "feature_names_in_", None)
        n_features = getattr(model, "n_features_in_", None)
        if names is not None:  # fitted on a DataFrame: one column each
            inputs = [tensor(str(n), Datatype.FP64, [-1, 1]) for n in names]
        elif n_features is not None:
            inputs = [tensor("input-0", Datatype.FP64, [-1, int(n_features)])]
        outputs = []
        classes = getattr(last, "classes_", None)
        if callable(getattr(model, PREDICT_OUTPUT, None)):
            datatype = Datatype.FP64
            if classes is not None:
                try:
                    datatype = NumpyCodec.encode_output("x", classes[:1]).datatype
                except Exception:  # classes of an odd type: the metadata says FP64
                    datatype = Datatype.FP64
            outputs.append(tensor(PREDICT_OUTPUT, datatype, [-1]))
        if hasattr(last, PREDICT_PROBA_OUTPUT) and classes is not None:
            outputs.append(tensor(PREDICT_PROBA_OUTPUT, Datatype.FP64, [-1, len(classes)]))
        if callable(getattr(model, PREDICT_TRANSFORM, None)):
            outputs.append(tensor(PREDICT_TRANSFORM, Datatype.FP64, [-1, -1]))
        return inputs, outputs

    def _default_output(self) -> str:
        params = self._settings.parameters
        extra = params.extra if params is not None else None
        predict_fn = extra.get(PREDICT_FN_KEY) if extra else None
        return str(predict_fn) if predict_fn else PREDICT_OUTPUT

    def _predict(self, payload: InferenceRequest) -> list[ResponseOutput]:
        requested = self._requested(payload, VALID_OUTPUTS, self._default_output())
        names = [o.name for o in requested]
        if PREDICT_PROBA_OUTPUT in names and not hasattr(self._final_step(), "predict_proba"):
            raise InferenceError(
                f"{type(self._final_step()).__name__} models do not support "
                f"'{PREDICT_PROBA_OUTPUT}'"
            )
        self._check_one_input(payload)
        features = self.decode_request(payload, default_codec=NumpyRequestCodec)
        outputs = []
        for request_output in requested:
            method = getattr(self._model, request_output.name, None)
            if method is None:
                raise InferenceError(
                    f"{type(self._model).__name__} models do not support {request_output.name!r}"
                )
            y = method(features)
            if PandasCodec.can_encode(y):
                if len(requested) > 1:
                    raise InferenceError(
                        f"{request_output.name} returned a DataFrame and {names} were "
                        "requested: a DataFrame is a response of its own (ask for it alone)"
                    )
                return PandasCodec.encode_outputs(y)
            outputs.append(self.encode(y, request_output, default_codec=NumpyCodec))
        return outputs
