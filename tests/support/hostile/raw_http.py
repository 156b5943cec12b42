"""Raw HTTP/1.1: what httpx will not send (lengths that lie, broken chunks, bad request
lines), sent over a socket."""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from .common import MODELS, TIMEOUT, Outcome, _cut, squeeze
from .json_text import dumps
from .rest import GARBAGE, model_path, valid_body
from .rest_paths import METHODS, _guard


@dataclass
class RawCase:
    data: bytes
    complete: bool
    """False when the request cannot end (Content-Length beyond the body, an open chunked
    body): the client then closes its side."""
    framing: str = "length"
    """How the body's end is told: ``length`` (a true Content-Length), ``less`` (shorter
    than the body), ``more``, ``bad`` (not a number), ``twice`` (two that differ),
    ``none``, ``chunked``, ``badchunk``."""
    well_formed: bool = True
    """The request line and every header line are HTTP/1.1 syntax (RFC 9112) and nothing
    but Content-Length or chunked frames the body: the server can tell where the request
    ends, so a complete one must get an answer (a silent close is allowed only otherwise)."""
    trailing: bool = False
    """Bytes follow the request's end (``less``; ``none`` with a body), after its
    ``Connection: close``. RFC 9112 9.6 wants the request answered and the rest ignored;
    Hypercorn (h11) often closes without an answer instead (or answers the bytes after):
    not asserted."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        text = f"RawCase(complete={self.complete}, framing={self.framing}, "
        text += f"well_formed={self.well_formed}, trailing={self.trailing}, data={self.data!r})"
        return _cut(squeeze(text))


# extra header lines that are HTTP/1.1 syntax, and frame nothing (obs-text is allowed in a
# field value; a long one is an answer too, 431)
_WELL_FORMED_LINES = {
    b"X-High: \xff\xfe",
    b"X-Long: " + b"x" * 20_000,
    b"Content-Type: application/json",
    b"Expect: 100-continue",
    b"Connection: keep-alive",
}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@st.composite
def raw_cases(draw: st.DrawFn) -> RawCase:
    method = draw(METHODS | st.sampled_from(["BREW", "G ET", "", "get", "POST\x00"]))
    if draw(st.booleans()):
        path, _ = draw(model_path())
        path += draw(st.sampled_from(["/infer", "/generate_stream", ""]))
    else:
        path = draw(
            st.sampled_from(
                ["*", "http://127.0.0.1/v2", "v2", "/v2/health/live", "//", "/v2/models/%"]
            )
        )
    path = _guard(path)
    version = draw(
        st.sampled_from(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2.0", "HTTP/9.9", "JUNK", ""])
    )
    if draw(st.booleans()):
        body = dumps(draw(valid_body(MODELS["identity"])))
    else:
        body = draw(GARBAGE.filter(lambda b: len(b) < 4096))
    lines = [f"{method} {path} {version}".encode("latin-1", "replace")]
    if draw(st.integers(0, 5)):
        lines.append(b"Host: 127.0.0.1")
    complete = True
    framing = draw(
        st.sampled_from(
            ["length"] * 4 + ["less", "more", "bad", "twice", "none", "chunked", "badchunk"]
        )
    )
    if framing == "length":
        lines.append(b"Content-Length: %d" % len(body))
    elif framing == "less":
        lines.append(b"Content-Length: %d" % max(0, len(body) - draw(st.integers(1, 10))))
    elif framing == "more":
        lines.append(b"Content-Length: %d" % (len(body) + draw(st.integers(1, 10**6))))
        complete = False
    elif framing == "bad":
        lines.append(
            b"Content-Length: "
            + draw(
                st.sampled_from(
                    [b"-1", b"abc", b"1e3", b"", b"99999999999999999999999", b"0x10", b" 5 "]
                )
            )
        )
        complete = False  # the server may well wait for that many bytes
    elif framing == "twice":
        lines += [b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + 1)]
    elif framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        body = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    elif framing == "badchunk":
        lines.append(b"Transfer-Encoding: chunked")
        body = draw(
            st.sampled_from(
                [b"zz\r\n", b"5\r\nab", b"-1\r\n", b"ffffffffffffffffff\r\n", b"3\r\nabcX\r\n"]
            )
        )
        complete = False
    well_formed = (
        _TOKEN.fullmatch(method) is not None
        and version in ("HTTP/1.1", "HTTP/1.0")
        # RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing
        and not (framing == "chunked" and version == "HTTP/1.0")
    )
    for _ in range(draw(st.integers(0, 3))):
        lines.append(
            draw(
                st.sampled_from([b"X-No-Colon", b": empty-name", b"X-Bad\x00: v", b"X-High: \xff\xfe", b" folded: v",
                                 b"X-Long: " + b"x" * 20_000, b"Content-Type: application/json", b"Expect: 100-continue",
                                 b"Connection: keep-alive", b"Transfer-Encoding: gzip"])
                | st.binary(max_size=40)
            )
        )  # fmt: skip
        well_formed = well_formed and lines[-1] in _WELL_FORMED_LINES
    if complete:
        lines.append(b"Connection: close")
    trailing = framing == "less" or (framing == "none" and body != b"")
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    return RawCase(data, complete, framing, well_formed, trailing)


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def _first_response(data: bytes, head_only: bool) -> tuple[int, bytes] | None:
    """(status, body) of the first complete final response in ``data``; None until there
    is one. 1xx interim responses are skipped."""
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return None
        match = _STATUS_LINE.match(head)
        if not match:
            return (-1, data)  # not HTTP: reported as such
        status = int(match.group(1))
        if 100 <= status < 200:
            data = rest
            continue
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        }
        if head_only or status in (204, 304):
            return status, b""
        if b"content-length" in headers:
            n = int(headers[b"content-length"])
            return (status, rest[:n]) if len(rest) >= n else None
        if headers.get(b"transfer-encoding") == b"chunked":
            return (status, rest) if rest.endswith(b"0\r\n\r\n") else None
        return None  # delimited by the close


def send_raw(port: int, case: RawCase, timeout: float = TIMEOUT) -> Outcome:
    """Send the bytes, read until the first response is complete (Hypercorn keeps the
    connection open after ``Connection: close``), or until the server closes."""
    data = b""
    head_only = case.data.startswith(b"HEAD ")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(case.data)
            if not case.complete:
                sock.shutdown(socket.SHUT_WR)
            while (first := _first_response(data, head_only)) is None or not case.complete:
                chunk = sock.recv(65536)  # when the client closed its side: to the server's
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            if not data:
                return Outcome("hang", f"no answer in {timeout} s")
            return Outcome("hang", f"an answer that does not end in {timeout} s: {data[:300]!r}")
        except (ConnectionResetError, BrokenPipeError):
            first = _first_response(data, head_only)
    try:  # the server must still be listening (Hypercorn's trio worker can die of a request)
        if not case.complete:
            time.sleep(0.02)  # what the server does with the close comes after it
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
    except ConnectionRefusedError:
        return Outcome("server gone", "the server stopped listening (refused) after this request")
    if first is None:
        if not data:
            if case.complete and case.well_formed and not case.trailing:
                return Outcome("closed", "closed without an answer to a complete request")
            return Outcome("closed")  # the server gave up on it: fine for broken framing
        return (
            Outcome("cut", f"the answer was cut: {data[:300]!r}")
            if case.complete
            else Outcome("cut")
        )
    status, body = first
    if status < 0:
        return Outcome("?", f"not an HTTP response: {body[:300]!r}")
    if status == 501 and b"transfer-encoding:" in case.data.partition(b"\r\n\r\n")[0].lower():
        # RFC 9112 6.1: a transfer coding the server does not know ("gzip", or "chunked"
        # with an obsolete folded line after it, which h11 joins to the value)
        return Outcome("501")
    if status >= 500:
        return Outcome(str(status), f"server error {status}: {body[:300]!r}")
    if case.framing == "twice" and case.well_formed and status != 400:
        # RFC 9112 6.3: Content-Length values that differ are invalid framing, which a
        # server MUST answer with 400 (and then close)
        return Outcome(str(status), f"{status} for two Content-Lengths that differ, not 400")
    return Outcome(str(status))
