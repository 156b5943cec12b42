"""streamwise: a streaming-first V2 / Open Inference Protocol server on trio.

The public API is what this module exports; everything else is an implementation detail.
"""

from . import codecs, errors, types
from .metrics import log, register
from .model import MLModel
from .server import ServerInfo, serve
from .settings import ModelParameters, ModelSettings, Settings, load_settings

__version__ = "0.1.0"

__all__ = [
    "MLModel",
    "ModelParameters",
    "ModelSettings",
    "ServerInfo",
    "Settings",
    "codecs",
    "errors",
    "load_settings",
    "log",
    "register",
    "serve",
    "types",
    "__version__",
]
