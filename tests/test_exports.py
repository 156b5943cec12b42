"""The public API is exactly what `streamwise.__all__` says, and every name exists."""

import streamwise


def test_public_api() -> None:
    assert sorted(streamwise.__all__) == sorted(
        [
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
    )
    for name in streamwise.__all__:
        assert getattr(streamwise, name) is not None


def test_mlserver_module_names_exist() -> None:
    from streamwise.codecs import Base64Codec, NumpyCodec, StringCodec  # noqa: F401
    from streamwise.errors import InferenceError  # noqa: F401
    from streamwise.types import InferenceRequest, InferenceResponse  # noqa: F401
