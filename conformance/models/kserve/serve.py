"""The conformance suite's reference models on KServe's Python model server (kserve 0.21).

    python conformance/models/kserve/serve.py --http_port 8080 --grpc_port 8081

Any argument of ``kserve.model_server.parser`` works (``--http_port``, ``--grpc_port``,
``--enable_grpc false``, ...); KServe parses them itself when ``kserve.model_server`` is
imported. conformance/scripts/run_kserve.py starts this on free ports and runs the suite.

KServe's V2 dataplane is unary only: no ``generate``/``generate_stream``/``infer_stream``
routes and no gRPC ``ModelStreamInfer``. So the models are:

- ``identity``: every input back as an output (name, datatype, shape, data, parameters)
  and the request's parameters as the response's.
- ``fail-mid-stream``: predict raises (KServe answers 500 ``{"error": ...}``).
- ``slow-stream``: predict answers the stream counts started/ended/completed/stopped as
  INT64 [1] outputs; nothing can stream here, so they stay 0.
- ``text-model``, ``token-streamer``, ``word-streamer``, ``echo-stream`` only stream. They
  are served for the readiness and metadata checks only; their predict raises
  ``NotImplementedError`` (KServe: 501 over REST).

Inputs and outputs for model metadata come from ../streamwise/<name>/model-settings.json.
KServe always answers ``platform: ""`` and no ``versions``.

Models unloaded through ``POST /v2/repository/models/{name}/unload`` can be loaded again:
``Repository`` knows how to build each one (KServe's base repository cannot reload).
"""

from __future__ import annotations

import argparse
import json
import pathlib
from collections.abc import Callable

from kserve import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    Model,
    ModelRepository,
    ModelServer,
    model_server,
)
from kserve.utils.utils import generate_uuid

SETTINGS = pathlib.Path(__file__).resolve().parent.parent / "streamwise"


def _declared(name: str, key: str) -> list[dict]:
    """The inputs or outputs model-settings.json declares for model `name`."""
    path = SETTINGS / name / "model-settings.json"
    if not path.exists():
        return []
    return [
        {"name": t["name"], "datatype": t["datatype"], "shape": t["shape"]}
        for t in json.loads(path.read_text()).get(key, [])
    ]


class ReferenceModel(Model):
    """Ready at once; metadata from the reference model-settings.json."""

    def __init__(self, name: str):
        super().__init__(name)
        self.load()

    def get_input_types(self) -> list[dict]:
        return _declared(self.name, "inputs")

    def get_output_types(self) -> list[dict]:
        return _declared(self.name, "outputs")


def _echo(tensor: InferInput, binary: bool) -> InferOutput:
    """`tensor` as an output: its data as sent, or, if it came as gRPC
    raw_input_contents (no `data`), decoded and set the way KServe's own servers do."""
    parameters = dict(tensor.parameters) if tensor.parameters else None
    out = InferOutput(tensor.name, list(tensor.shape), tensor.datatype, parameters=parameters)
    if tensor.data:
        out.data = tensor.data
    else:
        out.set_data_from_numpy(tensor.as_numpy(), binary_data=binary)
    return out


class Identity(ReferenceModel):
    async def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        return InferResponse(
            response_id=payload.id or generate_uuid(),
            model_name=self.name,
            infer_outputs=[_echo(i, payload.use_binary_outputs) for i in payload.inputs],
            parameters=dict(payload.parameters) if payload.parameters else None,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


class FailMidStream(ReferenceModel):
    async def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        raise RuntimeError("fail-mid-stream: this model always fails")


class SlowStream(ReferenceModel):
    def load(self) -> bool:
        self.counts = {"started": 0, "ended": 0, "completed": 0, "stopped": 0}
        return super().load()

    async def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        return InferResponse(
            response_id=payload.id or generate_uuid(),
            model_name=self.name,
            infer_outputs=[
                InferOutput(name=name, shape=[1], datatype="INT64", data=[count])
                for name, count in self.counts.items()
            ],
        )


class StreamOnly(ReferenceModel):
    async def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        raise NotImplementedError(
            f"model {self.name!r} only streams, and KServe has no V2 streaming endpoint"
        )


FACTORIES: dict[str, Callable[[], Model]] = {
    "text-model": lambda: StreamOnly("text-model"),
    "token-streamer": lambda: StreamOnly("token-streamer"),
    "word-streamer": lambda: StreamOnly("word-streamer"),
    "identity": lambda: Identity("identity"),
    "fail-mid-stream": lambda: FailMidStream("fail-mid-stream"),
    "slow-stream": lambda: SlowStream("slow-stream"),
    "echo-stream": lambda: StreamOnly("echo-stream"),
}


class Repository(ModelRepository):
    """A model repository that can (re)load the reference models by name."""

    def __init__(self) -> None:
        super().__init__(models_dir=str(SETTINGS))

    def load(self, name: str) -> bool:
        if name not in FACTORIES:
            raise KeyError(f"no reference model named {name!r}")
        model = FACTORIES[name]()
        self.update(model)
        return model.ready

    def load_model(self, name: str) -> bool:
        return self.load(name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], parents=[model_server.parser]
    )
    parser.parse_args(argv)  # for --help and typos; KServe already read its own flags
    ModelServer(registered_models=Repository()).start([f() for f in FACTORIES.values()])


if __name__ == "__main__":
    main()
