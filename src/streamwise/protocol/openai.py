"""The OpenAI-compatible API's protocol, sans-IO (docs/openai.md): requests, how a model
takes them, the chunks and answers OpenAI's clients expect, stop strings.

A V2 model is exposed with no change to it: the prompt (or the chat messages, through a
template) goes into one BYTES input, and the text comes out of one BYTES output of each
response the model streams. Which input and output is said in the model's settings,
``parameters.extra.openai`` (a free-form field MLServer leaves to models, so the file stays
valid for MLServer), or found from the model's declared inputs and outputs.

One response of the model's stream is one *token*: ``max_tokens`` and the usage counts
count responses, since the server has no tokenizer (a model that streams words counts
words). The prompt's tokens are its whitespace-separated words, for the same reason.
"""

from __future__ import annotations

import string
import time
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pydantic
from pydantic import ConfigDict, Field
from pydantic_core import to_json

from ..codecs import StringCodec
from ..errors import (
    ConfigError,
    InvalidRequest,
    ModelNotFound,
    ModelOverloaded,
    RequestTimeout,
    StreamwiseError,
    Unauthenticated,
)
from ..settings import ModelSettings
from ..types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestInput,
    TensorData,
)

__all__ = [
    "BadParam",
    "ChatRequest",
    "ChatTemplate",
    "Chunks",
    "CompletionRequest",
    "StopCutter",
    "Target",
    "error_body",
    "error_type",
    "parse",
    "render_chat",
    "target_of",
]

DONE = b"data: [DONE]\n\n"
DEFAULT_PROMPT_INPUT = "prompt"
"""The prompt's input when a model declares no inputs: the MLServer streaming document's."""


class BadParam(InvalidRequest):
    """A request OpenAI's API would refuse: 400, with the field it is about (``param``)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class NotATextModel(InvalidRequest):
    """The model has no input a prompt can go in (nor a setting naming one)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.param = "model"


# -- the model's side: parameters.extra.openai ---------------------------------------------
class _Strict(pydantic.BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChatTemplate(_Strict):
    """How chat messages become one prompt: ``start``, then ``message`` for each message
    (``str.format`` with ``{role}`` and ``{content}``), then ``end``, which asks the model
    to answer as the assistant."""

    start: str = ""
    message: str = "{role}: {content}\n"
    end: str = "assistant:"

    @pydantic.field_validator("message")
    @classmethod
    def _fields_known(cls, value: str) -> str:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as exc:
            raise ValueError(f"not a format string: {exc}") from None
        unknown = fields - {"role", "content"}
        if unknown:
            raise ValueError(f"only {{role}} and {{content}} may be used, not {sorted(unknown)}")
        return value


class OpenAIModelSettings(_Strict):
    """``parameters.extra.openai`` of a model's settings; every key optional."""

    prompt_input: str | None = None
    text_output: str | None = None
    chat_template: ChatTemplate = ChatTemplate()


@dataclass(frozen=True, slots=True)
class Target:
    """Where a model takes its prompt and gives its text."""

    prompt_input: str
    text_output: str | None
    """None: each response's first BYTES output (the model declares no outputs)."""
    template: ChatTemplate


def target_of(settings: ModelSettings) -> Target:
    """The model's prompt input and text output: the settings' ``openai`` keys, else its one
    declared BYTES input and output, else (none declared) the input ``prompt`` and the first
    BYTES output of each response."""
    extra = settings.parameters.extra if settings.parameters else None
    raw = (extra or {}).get("openai") or {}
    try:
        config = OpenAIModelSettings.model_validate(raw)
    except pydantic.ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ConfigError(
            f"{settings.origin}: parameters.extra.openai: {where} (docs/openai.md)"
        ) from None
    prompt_input = config.prompt_input
    if prompt_input is None:
        if not settings.inputs:
            prompt_input = DEFAULT_PROMPT_INPUT
        else:
            texts = [t.name for t in settings.inputs if t.datatype == "BYTES"]
            if len(texts) != 1:
                raise NotATextModel(
                    f"model {settings.name!r} cannot take a prompt: it declares "
                    f"{len(texts)} BYTES inputs, not one, and its settings name none "
                    "(parameters.extra.openai.prompt_input)"
                )
            prompt_input = texts[0]
    text_output = config.text_output
    if text_output is None and settings.outputs:
        texts = [t.name for t in settings.outputs if t.datatype == "BYTES"]
        if len(texts) != 1:
            raise NotATextModel(
                f"model {settings.name!r} gives no text: it declares {len(texts)} BYTES "
                "outputs, not one, and its settings name none "
                "(parameters.extra.openai.text_output)"
            )
        text_output = texts[0]
    return Target(prompt_input, text_output, config.chat_template)


def text_reader(target: Target) -> Any:
    """``read(response) -> str``: the text of one response of the model (its elements
    joined). A response without the text output fails the stream, as a model failure."""
    name = target.text_output

    def read(response: InferenceResponse) -> str:
        for output in response.outputs:
            if output.name == name if name is not None else output.datatype == "BYTES":
                return "".join(StringCodec.decode_output(output))
        wanted = f"output {name!r}" if name is not None else "BYTES output"
        raise ValueError(f"the model's response has no {wanted} (docs/openai.md)")

    return read


# -- the client's side: requests -----------------------------------------------------------
class StreamOptions(pydantic.BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class _Request(pydantic.BaseModel):
    # unknown fields are kept: they travel to the model as request parameters
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    user: str | None = None

    NOT_PARAMETERS: ClassVar[frozenset[str]] = frozenset({"model", "stream", "stream_options", "n"})
    """What the server acts on alone; every other field is passed to the model too."""

    @property
    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def limit(self) -> int | None:
        """The most tokens (model responses) to stream."""
        return self.max_tokens

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def parameters(self, leave: frozenset[str]) -> dict[str, Any]:
        """The request's fields for the model (``parameters``), those given only."""
        given = self.model_dump(exclude_none=True, exclude_unset=True)
        return {k: v for k, v in given.items() if k not in self.NOT_PARAMETERS | leave}


class CompletionRequest(_Request):
    prompt: str | list[str]

    def text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise BadParam(
                f"prompt: one prompt per request, got {len(self.prompt)} (send one each)",
                "prompt",
            )
        return self.prompt[0]


class ContentPart(pydantic.BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class Message(pydantic.BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = Field(min_length=1)
    content: str | list[ContentPart] | None = None

    def text(self, index: int) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        texts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise BadParam(
                    f"messages[{index}].content: only text parts can be sent, not {part.type!r}",
                    f"messages[{index}].content",
                )
            texts.append(part.text)
        return "".join(texts)


class ChatRequest(_Request):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    """OpenAI's newer name for ``max_tokens``; the smaller one wins when both are given."""

    @property
    def limit(self) -> int | None:
        given = [v for v in (self.max_tokens, self.max_completion_tokens) if v is not None]
        return min(given) if given else None


Kind = Literal["completion", "chat"]


def parse(kind: Kind, body: bytes) -> CompletionRequest | ChatRequest:
    """The request, checked: malformed or refused fields are :class:`BadParam`."""
    cls: type[CompletionRequest | ChatRequest] = (
        CompletionRequest if kind == "completion" else ChatRequest
    )
    try:
        request = cls.model_validate_json(body or b"{}")
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise BadParam(
            f"invalid request: {loc + ': ' if loc else ''}{err['msg']}", loc or None
        ) from None
    if request.n != 1:
        raise BadParam(f"n: only one choice per request is supported, got n={request.n}", "n")
    if any(not stop for stop in request.stops):
        raise BadParam("stop: a stop sequence cannot be empty", "stop")
    return request


def render_chat(messages: list[Message], template: ChatTemplate) -> str:
    """The messages as one prompt, through the model's template."""
    body = "".join(
        template.message.format(role=m.role, content=m.text(i)) for i, m in enumerate(messages)
    )
    return template.start + body + template.end


def inference_request(
    request: CompletionRequest | ChatRequest, target: Target, prompt: str, request_id: str
) -> InferenceRequest:
    """The V2 request the model gets: the prompt in its input, the rest as parameters."""
    leave = frozenset({"prompt"} if isinstance(request, CompletionRequest) else {"messages"})
    return InferenceRequest(
        id=request_id,
        parameters=Parameters(**request.parameters(leave)),
        inputs=[
            RequestInput(
                name=target.prompt_input,
                shape=[1],
                datatype=Datatype.BYTES,
                parameters=Parameters(content_type="str"),
                data=TensorData([prompt]),
            )
        ],
    )


def prompt_tokens(prompt: str) -> int:
    """The prompt's tokens, as the server counts them: its whitespace-separated words."""
    return len(prompt.split())


def new_id(kind: Kind) -> str:
    return ("cmpl-" if kind == "completion" else "chatcmpl-") + uuid.uuid4().hex


# -- stop strings --------------------------------------------------------------------------
class StopCutter:
    """Cuts the text at the first stop string, even one split across responses: text that
    may be the start of a stop string is held back until the next piece says whether it is.
    """

    __slots__ = ("stops", "held")

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.held = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """The text that can go out now, and whether a stop string was met (the text ends
        before it; nothing more is to be sent)."""
        if not self.stops:
            return piece, False
        text = self.held + piece
        found = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if found:
            self.held = ""
            return text[: min(found)], True
        keep = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), keep, -1):
                if text.endswith(stop[:k]):
                    keep = k
                    break
        self.held = text[len(text) - keep :]
        return text[: len(text) - keep], False

    def flush(self) -> str:
        """What was held back, once the text has ended without its stop string."""
        held, self.held = self.held, ""
        return held


# -- the answers ---------------------------------------------------------------------------
def usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class Chunks:
    """One answer's JSON, chunks and whole: a chunk's fixed part is serialised once, so
    each token costs the JSON of its text alone."""

    __slots__ = ("kind", "id", "model", "created", "include_usage", "_head", "_tail")

    def __init__(self, kind: Kind, answer_id: str, model: str, include_usage: bool) -> None:
        self.kind = kind
        self.id = answer_id
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        head = self._header(streamed=True)
        self._head = b"data: " + to_json(head)[:-1] + b',"choices":[{"index":0,'
        self._tail = b',"logprobs":null,"finish_reason":null}]'
        self._tail += (b',"usage":null' if include_usage else b"") + b"}\n\n"

    def _header(self, streamed: bool) -> dict[str, Any]:
        if self.kind == "completion":
            kind = "text_completion"
        else:
            kind = "chat.completion.chunk" if streamed else "chat.completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def text(self, text: str) -> bytes:
        """One ``data:`` chunk carrying ``text``."""
        if self.kind == "completion":
            return self._head + b'"text":' + to_json(text) + self._tail
        return self._head + b'"delta":{"content":' + to_json(text) + b"}" + self._tail

    def role(self) -> bytes:
        """A chat stream's first chunk: the assistant's role, as OpenAI's."""
        return self._head + b'"delta":{"role":"assistant","content":""}' + self._tail

    def finish(self, reason: str) -> bytes:
        """The last chunk with a choice: its ``finish_reason``."""
        said: dict[str, Any] = {"text": ""} if self.kind == "completion" else {"delta": {}}
        choice = {"index": 0, **said, "logprobs": None, "finish_reason": reason}
        return self._event({"choices": [choice]} | self._null_usage())

    def usage(self, prompt: int, completion: int) -> bytes:
        """``stream_options.include_usage``'s chunk: usage, and no choices."""
        return self._event({"choices": [], "usage": usage(prompt, completion)})

    def _null_usage(self) -> dict[str, Any]:
        return {"usage": None} if self.include_usage else {}

    def _event(self, fields: dict[str, Any]) -> bytes:
        return b"data: " + to_json(self._header(streamed=True) | fields) + b"\n\n"

    def whole(self, text: str, reason: str, prompt: int, completion: int) -> bytes:
        """A non-streaming answer."""
        said: dict[str, Any] = (
            {"text": text}
            if self.kind == "completion"
            else {"message": {"role": "assistant", "content": text}}
        )
        choice = {"index": 0, **said, "logprobs": None, "finish_reason": reason}
        return to_json(
            self._header(streamed=False) | {"choices": [choice], "usage": usage(prompt, completion)}
        )


# -- errors --------------------------------------------------------------------------------
def error_type(status: int) -> str:
    """OpenAI's ``type`` for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    if status == 504:
        return "timeout"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_code(exc: BaseException | None) -> str | None:
    """OpenAI's ``code`` where it has one for our error."""
    if isinstance(exc, ModelNotFound):
        return "model_not_found"
    if isinstance(exc, Unauthenticated):
        return "invalid_api_key"
    if isinstance(exc, ModelOverloaded):
        return "model_overloaded"
    if isinstance(exc, RequestTimeout):
        return "timeout"
    return None


def error_body(
    message: str, status: int, exc: BaseException | None = None, param: str | None = None
) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}``, OpenAI's error shape."""
    if param is None and isinstance(exc, StreamwiseError):
        param = getattr(exc, "param", None)
    return to_json(
        {
            "error": {
                "message": message,
                "type": error_type(status),
                "param": param,
                "code": error_code(exc),
            }
        }
    )


def error_chunk(failure: StreamwiseError) -> bytes:
    """A stream's failure after it started: one ``data:`` chunk holding ``error`` (OpenAI's
    python client raises ``APIError`` on it), and no ``[DONE]``."""
    return b"data: " + error_body(str(failure), failure.http_status, failure) + b"\n\n"
