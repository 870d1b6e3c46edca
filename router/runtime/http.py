"""The management API's HTTP server: h11 over trio, one task per connection.

It only moves bytes: each complete request becomes a ``management.api.Request``, the API answers
it synchronously against the model (which never waits), and the answer goes out. Keep-alive is
h11's; a request body over ``MAX_BODY`` is refused with 413. A background task samples the
counters every ``SAMPLE_INTERVAL`` seconds, steps message moves, and logs dead-letter bursts.
"""

from __future__ import annotations

import logging
import math

import h11
import trio

from router.management.api import ManagementAPI, Request, Response
from router.management.sampling import DeadLetterWatch

log = logging.getLogger("router.management")

MAX_BODY = 16 * 1024 * 1024
READ_SIZE = 64 * 1024
IDLE_TIMEOUT = 120.0  # a keep-alive connection that sends nothing for this long is closed
SAMPLE_INTERVAL = 5.0  # RabbitMQ's collect_statistics_interval
DEAD_LETTER_LOG_INTERVAL = 1.0


class ManagementServer:
    def __init__(self, api: ManagementAPI, *, metrics_only: bool = False) -> None:
        self.api = api
        # a Prometheus-only listener (its own port): /metrics and nothing else, no sampling
        self.metrics_only = metrics_only
        self._wake = trio.Event()
        self._watch = DeadLetterWatch()

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        if self.metrics_only:
            log.info("Prometheus metrics on http://%s:%d/metrics", host, bound)
        else:
            log.info("management API on http://%s:%d/ (metrics at /metrics)", host, bound)
        async with trio.open_nursery() as nursery:
            if not self.metrics_only:
                nursery.start_soon(self._background)
            task_status.started(bound)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _background(self) -> None:
        api = self.api
        next_sample = trio.current_time()
        next_watch = next_sample + DEAD_LETTER_LOG_INTERVAL
        while True:
            now = trio.current_time()
            if now >= next_sample:
                api.resample(now, force=True)
                next_sample = now + SAMPLE_INTERVAL
            if now >= next_watch:
                for line in self._watch.bursts(api.broker):
                    log.info("%s", line)
                next_watch = now + DEAD_LETTER_LOG_INTERVAL
            try:
                api.tick(now)
            except Exception:  # a bug in one move must not stop the broker: that move fails
                log.exception("internal error while moving messages; the move is stopped")
                api.fail_moves("internal error, see the broker log")
            deadline = min(next_sample, next_watch, api.next_deadline() or math.inf)
            with trio.move_on_at(deadline):
                await self._wake.wait()
                self._wake = trio.Event()

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            while True:
                request = await self._read_request(stream, conn)
                if request is None:
                    return
                if isinstance(request, Response):
                    response = request
                elif self.metrics_only and request.path.rstrip("/") not in (
                    "/metrics",
                    "/metrics/per-object",
                ):
                    response = Response.json(
                        {"error": "Object Not Found", "reason": "only /metrics is served here"},
                        404,
                    )
                else:
                    try:
                        response = self.api.handle(request, trio.current_time())
                    except Exception:
                        log.exception(
                            "internal error answering %s %s", request.method, request.target
                        )
                        response = Response.json(
                            {"error": "internal_error", "reason": "see the broker log"}, 500
                        )
                    if self.api.next_deadline() is not None:
                        self._wake.set()  # a move started: the background task steps it
                await self._send(
                    stream, conn, response, head=getattr(request, "method", "") == "HEAD"
                )
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, trio.TooSlowError):
            return
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass

    async def _read_request(
        self, stream: trio.SocketStream, conn: h11.Connection
    ) -> Request | Response | None:
        head: h11.Request | None = None
        body: list[bytes] = []
        size = 0
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as error:
                return _error_response(conn, error)
            if event is h11.NEED_DATA:
                with trio.fail_after(IDLE_TIMEOUT):
                    data = await stream.receive_some(READ_SIZE)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    return Response.json(
                        {"error": "bad_request", "reason": f"request body over {MAX_BODY} bytes"},
                        413,
                        (("connection", "close"),),
                    )
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return Request(
                    head.method.decode("ascii", "replace"),
                    head.target.decode("utf-8", "replace"),
                    {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers},
                    b"".join(body),
                )
            elif isinstance(event, (h11.ConnectionClosed, h11.PAUSED)):
                return None

    async def _send(
        self, stream: trio.SocketStream, conn: h11.Connection, response: Response, *, head: bool
    ) -> None:
        headers = [(k, v) for k, v in response.headers]
        headers.append(("content-length", str(len(response.body))))
        headers.append(("server", "router"))
        if response.status == 204:
            headers = [(k, v) for k, v in headers if k != "content-length"]
        data = conn.send(h11.Response(status_code=response.status, headers=headers))
        if response.body and not head and response.status != 204:
            data = (data or b"") + (conn.send(h11.Data(data=response.body)) or b"")
        data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
        await stream.send_all(data)


def _error_response(conn: h11.Connection, error: h11.RemoteProtocolError) -> Response | None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return None
    return Response.json(
        {"error": "bad_request", "reason": f"malformed HTTP request: {error}"},
        error.error_status_hint,
        (("connection", "close"),),
    )
