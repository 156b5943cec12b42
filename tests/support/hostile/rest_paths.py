"""REST paths, methods and headers: any route, any method, odd headers."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import strategies as st

from .common import MODELS, Outcome, _cut, squeeze
from .rest import GARBAGE, _connection_problem, _error_body_problem

SEGMENTS = st.one_of(
    st.sampled_from(
        [
            "v2",
            "models",
            "health",
            "live",
            "ready",
            "infer",
            "generate",
            "generate_stream",
            "infer_stream",
            "versions",
            "repository",
            "index",
            "load",
            *MODELS,
            "..",
            ".",
            "",
            "%2e%2e",
            "%2F",
            "%00",
            "%ff",
            "%",
            "%zz",
            "%25",
            "?",
            "#",
            ";x=1",
            "~",
        ]
    ),
    st.text(max_size=12).map(lambda s: urllib.parse.quote(s, safe="")),
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#"),
        max_size=12,
    ),
    st.integers(100, 20_000).map(lambda n: "s" * n),
)
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
HEADER_NAMES = st.sampled_from(
    ["accept", "accept-encoding", "content-type", "authorization", "x-request-id", "origin",
     "transfer-encoding-x", "expect-x", "cookie", "range", "if-none-match", "te-x", "upgrade-x"]
) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)  # fmt: skip
HEADER_VALUES = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
) | st.integers(1, 6000).map(lambda n: "v" * n)


def _guard(path: str) -> str:
    """No case may unload a demo model: the rest of the run needs them."""
    if "unload" in urllib.parse.unquote(path).lower():
        return "/v2/repository/models/no-such-model/unload"
    return path


@dataclass
class PathCase:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        text = (
            f"PathCase({self.method} {self.path!r}, headers={self.headers!r}, body={self.body!r})"
        )
        return _cut(squeeze(text))


@st.composite
def path_cases(draw: st.DrawFn) -> PathCase:
    segments = draw(st.lists(SEGMENTS, max_size=7))
    prefix = draw(st.sampled_from(["/v2/", "/v2/models/", "/", "/v2/repository/models/"]))
    path = prefix + "/".join(segments)
    if draw(st.integers(0, 3)) == 0:
        path += "?" + draw(st.text(max_size=20).map(urllib.parse.quote))
    headers = draw(st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4))
    body = draw(st.sampled_from([b"", b"{}", b'{"inputs": []}']) | GARBAGE)
    return PathCase(draw(METHODS), _guard(path), headers, body)


def send_path(http: httpx.Client, case: PathCase) -> Outcome:
    try:
        headers = {k: v.encode("latin-1") for k, v in case.headers.items()}  # as they are
        response = http.request(case.method, case.path, content=case.body, headers=headers)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError, UnicodeError):
        return Outcome("not sent")  # the client refuses to send it
    status = response.status_code
    if status >= 500:
        return Outcome(str(status), f"server error {status}: {response.content[:300]!r}")
    if status >= 400 and case.method != "HEAD" and (problem := _error_body_problem(response)):
        return Outcome(str(status), problem)
    return _connection_problem(http, case.body, Outcome(str(status)))
