"""HTTP/1.1 for `serve`: an asyncio Protocol driving httptools' request parser (llhttp, C) directly.

No ASGI layer: a request is parsed into a `Request` (method, path, the few headers the server
reads, the body) and handed to one handler coroutine, whose `Response` is written as one buffer
with headers prepared once. Under uvicorn the same server spent ~85% of its time in the HTTP path
(bench/serving); this is what is left of it.

What it does, as HTTP/1.1 (RFC 9112) asks of a server:
- keep-alive (HTTP/1.1 by default, HTTP/1.0 with `Connection: keep-alive`), idle connections
  closed after `keep_alive_seconds`;
- pipelining: requests already received are answered one after the other, in order; reading
  pauses while `MAX_PIPELINED` wait (and while the client is not reading its answers);
- bodies by Content-Length or chunked; `Expect: 100-continue` is answered before the body is read;
- limits: a body over `max_body_bytes` gets 413 before it is read (Content-Length) or as soon as
  it passes the limit (chunked); a request line and headers over `MAX_HEAD_BYTES` get 431; bytes
  that are not HTTP (bad request line, bad header, Content-Length with Transfer-Encoding, an
  upgrade) get 400; each then closes the connection, never parsing what follows;
- `shutdown()`: the listening socket closes (new connections are refused), idle connections
  close, requests in flight finish (their answer says `Connection: close`), and after
  `graceful_seconds` whatever is left is closed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

import httptools

log = logging.getLogger("model_server.http")

MAX_HEAD_BYTES = 64 * 1024  # request line + headers
LINGER_SECONDS = 2.0  # after a refusal: how long the client's remaining bytes are read and discarded
MAX_PIPELINED = 16  # requests read ahead of their answers before reading pauses
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_REASONS = {s.value: s.phrase.encode("latin-1") for s in HTTPStatus}


@dataclass
class Request:
    method: str
    path: str
    content_type: str | None
    accept: str | None
    body: bytes
    keep_alive: bool


@dataclass
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    close: bool = False


Handler = Callable[[Request], Awaitable[Response]]
# A response built without the handler: the server's own refusals (413, 431, 400).
Refusal = Callable[[int, str], Response]


class HttpServer:
    """The connections of one listening socket; `handler` answers each request."""

    def __init__(
        self,
        handler: Handler,
        refusal: Refusal,
        headers: Callable[[], bytes],
        *,
        max_body_bytes: int,
        keep_alive_seconds: float,
    ) -> None:
        self.handler = handler
        self.refusal = refusal
        self.headers = headers  # extra header lines (each ending in CRLF) on every response
        self.max_body_bytes = max_body_bytes
        self.keep_alive_seconds = keep_alive_seconds
        self.connections: set[HttpConnection] = set()
        self.closing = False  # shutdown began: every answer closes its connection
        self._listener: asyncio.AbstractServer | None = None

    async def start(self, sock: socket.socket) -> None:
        """Serve on a bound, listening socket."""
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(lambda: HttpConnection(self), sock=sock)

    async def shutdown(self, graceful_seconds: float) -> bool:
        """Stop accepting, finish in-flight requests (at most `graceful_seconds`), close every
        connection; True when none had to be cut short."""
        self.closing = True
        if self._listener is not None:
            self._listener.close()  # new connections are refused from here on
        for connection in list(self.connections):
            connection.close_when_idle()
        deadline = time.monotonic() + graceful_seconds
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        cut = len(self.connections)
        for connection in list(self.connections):
            connection.abort()
        if self._listener is not None:
            await self._listener.wait_closed()
        if cut:
            log.warning("%d connection(s) still busy after %.1fs: closed", cut, graceful_seconds)
        return cut == 0


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing: the request is answered with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[Request | Response] = deque()
        self.busy = False  # a task is answering the queue
        self.reading = True
        self.writable = asyncio.Event()
        self.writable.set()
        # One timer per connection, not one per request: it closes the connection once it has
        # been idle (or a request has stalled half-sent) for keep_alive_seconds since idle_since.
        self.timer: asyncio.TimerHandle | None = None
        self.idle_since = 0.0
        self.closed = False
        self.refused = False  # a refusal is queued: the bytes that follow are never parsed
        self.eof = False  # the client half-closed: close once its requests are answered
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.head = 0
        self.content_type: str | None = None
        self.accept: str | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.expect_continue = False
        self.length = 0  # Content-Length (llhttp checks its syntax and refuses duplicates)

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        if self.server.closing:
            self.abort()
            return
        self._idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self._cancel_timer()
        self.writable.set()  # a task waiting to write gives up

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # lingering after a refusal: what the client still sends is discarded
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if not isinstance(refused, _Refused):
                raise
            self._refuse(refused.status, refused.message)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "connection upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed HTTP request: {exc}")
        if not self.busy and not self.closed:
            self._idle_timer()  # a request still arriving: bounded like an idle connection

    def eof_received(self) -> bool:
        """The client finished sending: answer what it asked, then close (a half-close is how
        some clients end their last request)."""
        self.eof = True
        return self.busy or bool(self.queue)  # True keeps the transport open for the answers

    def pause_writing(self) -> None:
        self.writable.clear()  # the client is not reading its answers: stop reading its requests
        self._pause()

    def resume_writing(self) -> None:
        self.writable.set()
        self._resume()

    # --- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        name = name.lower()
        if name == b"content-type":
            self.content_type = value.decode("latin-1")
        elif name == b"accept":
            self.accept = value.decode("latin-1").lower()
        elif name == b"content-length":
            try:
                self.length = int(value)
            except ValueError:
                raise _Refused(400, f"Content-Length {value.decode('latin-1')!r} is not a number") from None
        elif name == b"expect":
            if value.lower() != b"100-continue":
                raise _Refused(417, f"Expect: {value.decode('latin-1')} is not supported")
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        length = self.length
        if length > self.server.max_body_bytes:
            raise _Refused(413, f"body of {length} bytes exceeds the {self.server.max_body_bytes}-byte limit")
        if self.parser.should_upgrade():
            raise _Refused(400, "connection upgrades are not supported")
        if self.expect_continue and self.parser.get_http_version() == "1.1":
            assert self.transport is not None
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.server.max_body_bytes:
            raise _Refused(413, f"body exceeds the {self.server.max_body_bytes}-byte limit")
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        chunks = self.chunks
        url = self.url
        path = url.split(b"?", 1)[0] if url.startswith(b"/") else httptools.parse_url(url).path or b"/"
        self.queue.append(
            Request(
                method=self.parser.get_method().decode("latin-1"),
                path=path.decode("latin-1"),
                content_type=self.content_type,
                accept=self.accept,
                body=chunks[0] if len(chunks) == 1 else b"".join(chunks),
                keep_alive=self.parser.should_keep_alive(),
            )
        )
        self._next()

    # --- answering ------------------------------------------------------------------------------

    def _count_head(self, size: int) -> None:
        self.head += size
        if self.head > MAX_HEAD_BYTES:
            raise _Refused(431, f"request line and headers exceed {MAX_HEAD_BYTES} bytes")

    def _refuse(self, status: int, message: str) -> None:
        self.refused = True
        self._pause()
        self.queue.append(self.server.refusal(status, message))
        self._next()

    def _next(self) -> None:
        if len(self.queue) >= MAX_PIPELINED:
            self._pause()
        if not self.busy:
            self.busy = True
            self.loop.create_task(self._answer())

    async def _answer(self) -> None:
        try:
            while self.queue and not self.closed:
                item = self.queue.popleft()
                if isinstance(item, Response):
                    self._write_refusal(item)
                    break
                try:
                    response = await self.server.handler(item)
                except Exception as exc:  # a handler bug answers 500 and closes; the server goes on
                    log.exception("request %s %s failed", item.method, item.path)
                    response = self.server.refusal(500, f"internal error: {type(exc).__name__}: {exc}")
                    response.close = True
                if self.closed:
                    break
                keep_alive = item.keep_alive and not response.close and not self.server.closing
                self._write(response, keep_alive=keep_alive)
                if not keep_alive:
                    break
                if not self.writable.is_set():
                    await self.writable.wait()
                if len(self.queue) < MAX_PIPELINED and not self.refused:
                    self._resume()
        finally:
            self.busy = False
            if not self.closed and not self.queue:
                if self.server.closing or self.eof:
                    self.close_when_idle()
                else:
                    self._idle_timer()

    def _write(self, response: Response, *, keep_alive: bool, close: bool = True) -> None:
        assert self.transport is not None
        status = response.status
        head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s%s\r\n" % (
            status,
            _REASONS.get(status, b""),
            response.content_type,
            len(response.body),
            self.server.headers(),
            b"" if keep_alive else b"connection: close\r\n",
        )
        self.transport.write(head + response.body)
        if not keep_alive and close:
            self.closed = True
            self.transport.close()  # after the buffered answer is written

    def _write_refusal(self, response: Response) -> None:
        """Answer, then close gently: the write side at once, the connection once the client
        stops sending (at most LINGER_SECONDS later). Closing with its bytes still unread would
        reset the connection, and a reset can destroy the answer before the client reads it."""
        assert self.transport is not None
        if not self.transport.can_write_eof():
            self._write(response, keep_alive=False)
            return
        self._write(response, keep_alive=False, close=False)
        self.transport.write_eof()
        self.closed = True
        self._resume_lingering()
        self._cancel_timer()
        self.timer = self.loop.call_later(LINGER_SECONDS, self.abort)

    def _resume_lingering(self) -> None:
        if not self.reading and self.transport is not None:
            self.reading = True
            self.transport.resume_reading()

    # --- connection state -----------------------------------------------------------------------

    def close_when_idle(self) -> None:
        """Close now if no request is being answered; else the answer in flight closes it."""
        if not self.busy and self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        self._cancel_timer()
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    def _idle_timer(self) -> None:
        """Idle from now on (or waiting for the rest of a request)."""
        self.idle_since = self.loop.time()
        if self.timer is None:
            self.timer = self.loop.call_at(self.idle_since + self.server.keep_alive_seconds, self._check_idle)

    def _check_idle(self) -> None:
        self.timer = None
        if self.closed:
            return
        if self.busy:  # answering: idle again only after that
            self.timer = self.loop.call_later(self.server.keep_alive_seconds, self._check_idle)
            return
        due = self.idle_since + self.server.keep_alive_seconds
        if self.loop.time() >= due:
            self.close_when_idle()
        else:
            self.timer = self.loop.call_at(due, self._check_idle)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _pause(self) -> None:
        if self.reading and self.transport is not None and not self.closed:
            self.reading = False
            self.transport.pause_reading()

    def _resume(self) -> None:
        if not self.reading and self.transport is not None and not self.closed and not self.refused:
            self.reading = True
            self.transport.resume_reading()
