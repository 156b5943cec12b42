"""The OpenAI-compatible API (docs/openai.md), with the official ``openai`` client, against
real servers: the document's text model as it is, and small test models
(tests/models/openai-words, slow-stream, fail-mid-stream).

The client is the synchronous one, in a thread (``trio.to_thread``): the async one works on
trio, but leaves its stream's async generators to the garbage collector, which trio
reports as a ResourceWarning (an error here, as every warning)."""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import openai
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from streamwise import ServerInfo, load_settings
from streamwise.errors import ConfigError
from streamwise.protocol.openai import StopCutter
from tests.support import DEMO, DOCUMENT, TEST_MODELS, StartServer, probe

WORDS = "openai-words"
T = TypeVar("T")


def client_of(info: ServerInfo, prefix: str = "", api_key: str = "unused") -> openai.OpenAI:
    # no retries: a 503 must reach the test, not be tried again
    return openai.OpenAI(
        base_url=f"{info.http_url}{prefix}/v1", api_key=api_key, max_retries=0, timeout=60
    )


async def in_thread(fn: Callable[[], T]) -> T:
    """``fn`` (the client's calls) in a thread, while the server runs in this one."""
    return await trio.to_thread.run_sync(fn)


async def finally_of(request_id: str) -> bool:
    """Whether the model was cancelled, once its ``finally`` has run (waited for; the
    bound only turns a model never cancelled into a failure instead of a hang)."""
    with trio.fail_after(60):
        while request_id not in probe.cancelled:  # noqa: ASYNC110 - the model writes a dict
            await trio.sleep(0.01)
    return probe.cancelled[request_id]


# -- the document's text model, with no change -------------------------------------------
async def test_the_document_text_model_streams_chat_and_completions(
    start_server: StartServer,
) -> None:
    info = await start_server(DOCUMENT)

    def run() -> tuple[Any, list[Any], Any]:
        with client_of(info) as client:
            models = client.models.list()
            stream = client.chat.completions.create(
                model="text-model",
                messages=[{"role": "user", "content": "hello there"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = list(stream)
            completion = client.completions.create(model="text-model", prompt="one two")
            return models, chunks, completion

    models, chunks, completion = await in_thread(run)
    assert [m.id for m in models.data] == ["text-model"]
    # the default template: "user: hello there\nassistant:", streamed back word by word
    texts = [c.choices[0].delta.content for c in chunks if c.choices]
    assert "".join(t or "" for t in texts) == "user: hello there\nassistant:"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == chunks[0].id and c.id.startswith("chatcmpl-") for c in chunks)
    assert all(c.object == "chat.completion.chunk" and c.model == "text-model" for c in chunks)
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == "stop" and set(finals[:-1]) == {None}
    assert chunks[-1].choices == []  # the usage chunk, as OpenAI's
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 3)
    assert chunks[-1].usage.total_tokens == 7

    assert completion.id.startswith("cmpl-") and completion.object == "text_completion"
    assert completion.choices[0].text == "one two"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 2)


# -- streaming and not, chat and completions ---------------------------------------------
async def test_completions_stream_and_not(models: ServerInfo) -> None:
    def run() -> tuple[list[Any], Any]:
        with client_of(models) as client:
            stream = client.completions.create(model=WORDS, prompt="a b c", stream=True)
            return list(stream), client.completions.create(model=WORDS, prompt=["x y"])

    chunks, whole = await in_thread(run)
    assert "".join(c.choices[0].text for c in chunks) == "a b c"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)  # no include_usage: no usage chunk
    assert all(c.object == "text_completion" for c in chunks)
    assert whole.choices[0].text == "x y"
    assert whole.usage is not None and whole.usage.completion_tokens == 2


async def test_chat_not_streamed_uses_the_models_template(models: ServerInfo) -> None:
    def run() -> Any:
        with client_of(models) as client:
            return client.chat.completions.create(
                model=WORDS,
                messages=[
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                ],
            )

    answer = await in_thread(run)
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert probe.prompts[answer.id] == "<s>[system] be brief [user] hi [assistant]"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == probe.prompts[answer.id]
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == 6


async def test_request_fields_travel_to_the_model_as_parameters(models: ServerInfo) -> None:
    def run() -> Any:
        with client_of(models) as client:
            return client.completions.create(
                model=WORDS,
                prompt="p",
                max_tokens=7,
                temperature=0.5,
                top_p=0.9,
                stop=["zz"],
                seed=3,
                user="u1",
                extra_body={"top_k": 40, "mirostat": {"tau": 5}},
            )

    answer = await in_thread(run)
    assert probe.parameters_seen[answer.id] == {
        "max_tokens": 7,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["zz"],
        "seed": 3,
        "user": "u1",
        "top_k": 40,
        "mirostat": {"tau": 5},
    }


# -- enforced by the server: stop, max_tokens ----------------------------------------------
async def test_stop_cuts_the_text_even_across_responses(models: ServerInfo) -> None:
    def run() -> tuple[list[Any], Any]:
        with client_of(models) as client:
            stream = client.completions.create(
                model=WORDS, prompt="alpha beta gamma delta", stop="ta gam", stream=True
            )
            chunks = list(stream)
            whole = client.chat.completions.create(
                model=WORDS, messages=[{"role": "user", "content": "x y z"}], stop=["y", "] x"]
            )
            return chunks, whole

    chunks, whole = await in_thread(run)
    assert "".join(c.choices[0].text for c in chunks) == "alpha be"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert whole.choices[0].message.content == "<s>[user"
    assert whole.choices[0].finish_reason == "stop"


async def test_max_tokens_ends_with_length(models: ServerInfo) -> None:
    def run() -> tuple[list[Any], Any]:
        with client_of(models) as client:
            stream = client.chat.completions.create(
                model=WORDS,
                messages=[{"role": "user", "content": "one two three four five"}],
                max_tokens=3,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = list(stream)
            return chunks, client.completions.create(model=WORDS, prompt="a b c d", max_tokens=2)

    chunks, whole = await in_thread(run)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "<s>[user] one two"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert whole.choices[0].text == "a b" and whole.choices[0].finish_reason == "length"


@pytest.mark.parametrize("limit", [{"max_tokens": 2}, {"stop": "1"}])
async def test_the_server_ending_a_stream_cancels_the_model(
    models: ServerInfo, limit: dict[str, Any]
) -> None:
    """slow-stream gives two tokens, then one a minute: cut at the second, the model is
    cancelled, its ``finally`` run, before the answer ends."""

    def run() -> Any:
        with client_of(models) as client:
            return client.completions.create(model="slow-stream", prompt="x", **limit)

    answer = await in_thread(run)
    assert probe.cancelled[answer.id] is True
    assert answer.choices[0].text == ("t0t1" if "max_tokens" in limit else "t0t")
    assert answer.choices[0].finish_reason == ("length" if "max_tokens" in limit else "stop")


# -- refusals and failures ---------------------------------------------------------------
async def test_n_above_one_is_refused(models: ServerInfo) -> None:
    def run() -> None:
        with client_of(models) as client:
            client.completions.create(model=WORDS, prompt="x", n=2)

    with pytest.raises(openai.BadRequestError) as caught:
        await in_thread(run)
    assert caught.value.status_code == 400
    assert caught.value.param == "n" and caught.value.type == "invalid_request_error"
    assert "n=2" in caught.value.message


async def test_bad_requests_are_400_in_openais_shape(models: ServerInfo) -> None:
    def run() -> list[str | None]:
        params = []
        with client_of(models) as client:
            for bad in [
                lambda: client.chat.completions.create(model=WORDS, messages=[]),
                lambda: client.completions.create(model=WORDS, prompt="x", stop=[""]),
                lambda: client.completions.create(model=WORDS, prompt=["a", "b"]),
            ]:
                with pytest.raises(openai.BadRequestError) as caught:
                    bad()
                params.append(caught.value.param)
        return params

    assert await in_thread(run) == ["messages", "stop", "prompt"]
    async with httpx.AsyncClient() as raw:  # and a body that is not JSON, a wrong method
        r = await raw.post(f"{models.http_url}/v1/completions", content=b"{nope")
        assert r.status_code == 400
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        r = await raw.get(f"{models.http_url}/v1/completions")
        assert r.status_code == 405 and r.headers["allow"] == "POST"


async def test_unknown_model_is_not_found(models: ServerInfo) -> None:
    def run() -> tuple[str | None, str]:
        with client_of(models) as client:
            with pytest.raises(openai.NotFoundError) as caught:
                client.chat.completions.create(
                    model="nope", messages=[{"role": "user", "content": "x"}]
                )
            with pytest.raises(openai.NotFoundError):
                client.models.retrieve("nope")
            return caught.value.code, client.models.retrieve(WORDS).id

    assert await in_thread(run) == ("model_not_found", WORDS)


async def test_a_model_that_takes_no_prompt_is_refused_and_not_listed(demo: ServerInfo) -> None:
    def run() -> tuple[set[str], openai.BadRequestError]:
        with client_of(demo) as client:
            listed = {m.id for m in client.models.list().data}
            with pytest.raises(openai.BadRequestError) as caught:
                client.completions.create(model="token-streamer", prompt="x")
            return listed, caught.value

    listed, refused = await in_thread(run)
    assert "text-model" in listed and "token-streamer" not in listed
    assert refused.param == "model" and "BYTES inputs" in refused.message


async def test_wrong_token_is_authentication_error(start_server: StartServer) -> None:
    info = await start_server(TEST_MODELS, auth_token="s3cret")

    def run() -> tuple[openai.AuthenticationError, str]:
        with client_of(info, api_key="wrong") as client:
            with pytest.raises(openai.AuthenticationError) as caught:
                client.completions.create(model=WORDS, prompt="x")
            with pytest.raises(openai.AuthenticationError):
                client.models.list()
        with client_of(info, api_key="s3cret") as client:
            return caught.value, client.completions.create(model=WORDS, prompt="x").choices[0].text

    refused, text = await in_thread(run)
    assert refused.status_code == 401 and refused.code == "invalid_api_key"
    assert text == "x"


async def test_a_model_failing_mid_stream_makes_the_client_raise(models: ServerInfo) -> None:
    def run() -> tuple[list[str], openai.APIError, openai.InternalServerError]:
        texts = []
        with client_of(models) as client:
            stream = client.completions.create(model="fail-mid-stream", prompt="x", stream=True)
            with pytest.raises(openai.APIError) as caught:
                for chunk in stream:
                    texts.append(chunk.choices[0].text)
            # not streamed: the error is the answer
            with pytest.raises(openai.InternalServerError) as failed:
                client.completions.create(model="fail-mid-stream", prompt="x")
        return texts, caught.value, failed.value

    texts, streamed, whole = await in_thread(run)
    assert texts == ["t0", "t1"]  # what came before the failure, then the error
    assert "boom after two tokens" in streamed.message
    assert isinstance(streamed.body, dict) and streamed.body["type"] == "server_error"
    assert whole.status_code == 500 and "boom" in whole.message


async def test_closing_a_stream_early_cancels_the_model(models: ServerInfo) -> None:
    def run() -> tuple[list[str | None], str]:
        seen = []
        with client_of(models) as client:
            stream = client.chat.completions.create(
                model="slow-stream", messages=[{"role": "user", "content": "x"}], stream=True
            )
            for chunk in stream:
                seen.append(chunk.choices[0].delta.content)
                if len(seen) == 3:  # the role's chunk, t0, t1; then t2 is a minute away
                    break
            stream.close()
        return seen, chunk.id

    seen, answer_id = await in_thread(run)
    assert seen == ["", "t0", "t1"]
    assert await finally_of(answer_id) is True
    with client_of(models) as client:  # and the server serves on
        assert (await in_thread(lambda: client.models.retrieve("slow-stream"))).id == "slow-stream"


async def test_the_concurrency_limit_applies(start_server: StartServer) -> None:
    info = await start_server(TEST_MODELS, model_max_concurrency=1)

    def run() -> openai.InternalServerError:
        with client_of(info) as client:
            first = client.completions.create(model="slow-stream", prompt="x", stream=True)
            next(iter(first))  # the model runs: a second request is over the limit
            with pytest.raises(openai.InternalServerError) as refused:
                client.completions.create(model="slow-stream", prompt="x")
            first.close()
        return refused.value

    refused = await in_thread(run)
    assert refused.status_code == 503
    assert refused.response.headers["retry-after"] == "1"
    assert refused.code == "model_overloaded"


async def test_the_request_timeout_ends_a_stream_with_an_error(
    start_server: StartServer,
) -> None:
    info = await start_server(TEST_MODELS, request_timeout_s=0.5)

    def run() -> tuple[list[str], str, openai.APIError]:
        texts = []
        with client_of(info) as client:
            stream = client.completions.create(model="slow-stream", prompt="x", stream=True)
            with pytest.raises(openai.APIError) as timed_out:
                for chunk in stream:
                    texts.append(chunk.choices[0].text)
        return texts, chunk.id, timed_out.value

    texts, answer_id, timed_out = await in_thread(run)
    assert texts == ["t0", "t1"] and "timed out" in timed_out.message
    assert isinstance(timed_out.body, dict) and timed_out.body["code"] == "timeout"
    assert probe.cancelled[answer_id] is True


async def test_the_drain_ends_an_open_stream_with_an_error(start_server: StartServer) -> None:
    """A stream still open when the grace period runs out ends with the error chunk: the
    client raises, never sees a clean [DONE]; its model is cancelled."""
    info = await start_server(TEST_MODELS, graceful_timeout=0.3)
    streaming = trio.Event()

    def run() -> tuple[list[str], str, openai.APIError]:
        texts = []
        with client_of(info) as client:
            stream = client.completions.create(model="slow-stream", prompt="x", stream=True)
            with pytest.raises(openai.APIError) as ended:
                for chunk in stream:
                    texts.append(chunk.choices[0].text)
                    if len(texts) == 2:  # t2 is a minute away: the drain comes first
                        trio.from_thread.run_sync(streaming.set)
        return texts, chunk.id, ended.value

    results = []
    async with trio.open_nursery() as nursery:

        async def client_side() -> None:
            results.append(await in_thread(run))

        nursery.start_soon(client_side)
        await streaming.wait()
        info.shutdown()
    [(texts, answer_id, ended)] = results
    assert texts == ["t0", "t1"] and ended.message == "server shutting down"
    assert probe.cancelled[answer_id] is True


# -- settings --------------------------------------------------------------------------------
async def test_route_prefix_and_switch(start_server: StartServer) -> None:
    prefixed = await start_server(DEMO, openai_route_prefix="/openai")
    off = await start_server(DEMO, openai_enabled=False)

    def run() -> set[str]:
        with client_of(prefixed, prefix="/openai") as client:
            listed = {m.id for m in client.models.list().data}
        with client_of(prefixed) as client, pytest.raises(openai.NotFoundError):
            client.models.list()
        with client_of(off) as client, pytest.raises(openai.NotFoundError):
            client.completions.create(model="text-model", prompt="x")
        return listed

    assert "text-model" in await in_thread(run)


async def test_wrong_openai_model_settings_are_a_clear_500(
    start_server: StartServer, tmp_path: pathlib.Path
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    source = TEST_MODELS / WORDS
    (folder / "openai_words.py").write_text((source / "openai_words.py").read_text())
    (folder / "model-settings.json").write_text(
        '{"name": "m", "implementation": "openai_words.OpenAIWords",'
        ' "parameters": {"extra": {"openai": {"chat_template": {"message": "{who}"}}}}}'
    )
    info = await start_server(tmp_path)

    def run() -> None:
        with client_of(info) as client:
            client.completions.create(model="m", prompt="x")

    with pytest.raises(openai.InternalServerError) as caught:
        await in_thread(run)
    assert "parameters.extra.openai" in caught.value.message
    assert "['who']" in caught.value.message


# -- metrics ---------------------------------------------------------------------------------
async def test_an_openai_stream_is_counted_in_the_stream_metrics(models: ServerInfo) -> None:
    def streams(text: str) -> dict[str, float]:
        return {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if (s.labels.get("transport") == "openai" and s.labels.get("model") == WORDS
                and s.name in ("streamwise_streams_ended_total", "streamwise_stream_responses_total")
                and s.labels.get("outcome", "completed") == "completed")
            or (s.name == "rest_server_requests_total" and s.labels["path"] == "/v1/completions"
                and s.labels["status_code"] == "200")
        }  # fmt: skip

    def run() -> list[Any]:
        with client_of(models) as client:
            return list(client.completions.create(model=WORDS, prompt="a b c", stream=True))

    url = f"http://127.0.0.1:{models.metrics_port}/metrics"
    async with httpx.AsyncClient() as scraper:
        before = streams((await scraper.get(url)).text)
        assert len(await in_thread(run)) == 4  # three words, then the finish
        after = streams((await scraper.get(url)).text)
    grew = {k: after[k] - before.get(k, 0.0) for k in after}
    assert grew == {
        "streamwise_streams_ended_total": 1.0,
        "streamwise_stream_responses_total": 3.0,
        "rest_server_requests_total": 1.0,  # its route, not "unmatched"
    }


# -- the access log -----------------------------------------------------------------------------
async def test_an_openai_stream_is_one_access_line(
    models: ServerInfo, caplog: pytest.LogCaptureFixture
) -> None:
    def run() -> list[Any]:
        with client_of(models) as client:
            return list(client.completions.create(model=WORDS, prompt="a b c", stream=True))

    with caplog.at_level(logging.INFO, logger="streamwise.access"):
        chunks = await in_thread(run)
        with trio.fail_after(10):
            while not (records := [r for r in caplog.records if r.name == "streamwise.access"]):  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.01)
    [record] = records
    fields = record.__dict__["access"]
    assert (fields["method"], fields["path"], fields["status"]) == ("POST", "/v1/completions", 200)
    assert (fields["model"], fields["request_id"]) == (WORDS, chunks[0].id)
    assert (fields["responses"], fields["outcome"]) == (3, "completed")


# -- stop strings, sans-IO -----------------------------------------------------------------
def test_stop_cutter_holds_back_what_may_start_a_stop_string() -> None:
    cutter = StopCutter(["END", "xyz"])
    assert cutter.feed("abc E") == ("abc ", False)  # "E" may start "END"
    assert cutter.feed("x") == ("E", False)  # it did not; "x" may start "xyz"
    assert cutter.feed("yz!") == ("", True)  # "xyz": cut before it
    other = StopCutter(["END"])
    assert other.feed("EN") == ("", False)
    assert other.flush() == "EN"  # the text ended without its stop string
    assert StopCutter([]).feed("anything") == ("anything", False)


def test_the_route_prefix_is_checked() -> None:
    assert load_settings(overrides={"openai_route_prefix": "/openai"}, environ={})
    env = {"STREAMWISE_OPENAI_ROUTE_PREFIX": "/openai/v2"}
    assert load_settings(environ=env).openai_route_prefix == "/openai/v2"
    for bad in ["openai", "/openai/", "/"]:
        with pytest.raises(ConfigError, match="openai_route_prefix"):
            load_settings(overrides={"openai_route_prefix": bad}, environ={})
