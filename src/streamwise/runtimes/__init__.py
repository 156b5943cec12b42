"""Inference runtimes: MLModel classes that serve a model file, so that a model needs a
``model-settings.json`` and no code (docs/runtimes.md).

Each runtime's library is an optional extra (``pip install "streamwise[sklearn]"``...):
nothing here imports it before a model of that kind loads, and a model whose library is
missing fails to load with the ``pip install`` that fixes it, while the others serve.

MLServer's ``implementation`` values name ours (:data:`ALIASES`), so its model-settings
files for its runtimes load unchanged.
"""

from __future__ import annotations

__all__ = ["ALIASES"]

ALIASES: dict[str, str] = {
    "mlserver_sklearn.SKLearnModel": "streamwise.runtimes.sklearn.SKLearnModel",
    "mlserver_xgboost.XGBoostModel": "streamwise.runtimes.xgboost.XGBoostModel",
    "mlserver_lightgbm.LightGBMModel": "streamwise.runtimes.lightgbm.LightGBMModel",
}
"""MLServer's runtime classes -> ours, looked up before the implementation is imported.
(MLServer has no ONNX runtime: ours is ``streamwise.runtimes.onnx.OnnxModel``.)"""
