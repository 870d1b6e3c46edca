"""pika's callback-style SelectConnection (its own ioloop) against router over real TCP.

Each scenario is a chain of callbacks that ends by closing the connection, which stops the
ioloop; a watchdog timer stops it too, so a broker that stays silent fails the test instead of
hanging it.
"""

from __future__ import annotations

from collections.abc import Callable

import pika
import pika.exceptions
import pytest
from pika.adapters.select_connection import SelectConnection
from pika.channel import Channel

WATCHDOG_SECONDS = 10.0


class Scenario:
    """Runs ``on_channel(scenario, channel)`` on a fresh connection until ``finish()``."""

    def __init__(self, url: str, on_channel: Callable[[Scenario, Channel], None]) -> None:
        self.on_channel = on_channel
        self.log: list[object] = []
        self.error: BaseException | None = None
        self.timed_out = False
        self.connection = SelectConnection(
            pika.URLParameters(url),
            on_open_callback=self._opened,
            on_open_error_callback=self._open_failed,
            on_close_callback=self._closed,
        )

    def run(self) -> None:
        self.connection.ioloop.call_later(WATCHDOG_SECONDS, self._watchdog)
        try:
            self.connection.ioloop.start()
        finally:
            if self.connection.is_open:  # a callback raised: close, and let the close finish
                self.connection.close()
                self.connection.ioloop.start()
        if self.timed_out:
            raise AssertionError(f"scenario timed out; log so far: {self.log}")

    def finish(self) -> None:
        if self.connection.is_open:
            self.connection.close()

    def _watchdog(self) -> None:
        self.timed_out = True
        if self.connection.is_open:
            self.connection.close()
        else:
            self.connection.ioloop.stop()

    def _opened(self, connection: SelectConnection) -> None:
        connection.channel(on_open_callback=lambda channel: self.on_channel(self, channel))

    def _open_failed(self, connection: SelectConnection, error: BaseException) -> None:
        self.error = error
        connection.ioloop.stop()

    def _closed(self, connection: SelectConnection, reason: BaseException) -> None:
        connection.ioloop.stop()


def test_select_connection_publishes_with_confirms_and_consumes_every_message(
    router_url: str,
) -> None:
    count = 100
    acked: set[int] = set()
    nacked: list[int] = []
    received: list[bytes] = []
    pending = set(range(1, count + 1))

    def on_channel(scenario: Scenario, channel: Channel) -> None:
        def on_confirm(frame) -> None:  # type: ignore[no-untyped-def]
            method = frame.method
            if method.multiple:
                tags = sorted(t for t in pending if t <= method.delivery_tag)
            else:
                tags = [method.delivery_tag]
            pending.difference_update(tags)
            if isinstance(method, pika.spec.Basic.Ack):
                acked.update(tags)
            else:
                nacked.extend(tags)
            if not pending:
                channel.basic_qos(prefetch_count=10, callback=lambda _: start_consuming())

        def start_consuming() -> None:
            channel.basic_consume(queue, on_message)

        def on_message(ch: Channel, method, props, body: bytes) -> None:  # type: ignore[no-untyped-def]
            received.append(body)
            ch.basic_ack(method.delivery_tag)
            if len(received) == count:
                ch.close()
                scenario.finish()

        def on_declared(frame) -> None:  # type: ignore[no-untyped-def]
            nonlocal queue
            queue = frame.method.queue
            for i in range(count):
                channel.basic_publish(
                    "", queue, str(i).encode(), pika.BasicProperties(delivery_mode=2)
                )

        queue = ""
        channel.confirm_delivery(
            on_confirm,
            callback=lambda _: channel.queue_declare("", exclusive=True, callback=on_declared),
        )

    Scenario(router_url, on_channel).run()
    assert sorted(acked) == list(range(1, count + 1))
    assert nacked == []
    assert received == [str(i).encode() for i in range(count)]


def test_select_connection_on_return_callback_gets_an_unroutable_mandatory_message(
    router_url: str,
) -> None:
    events: list[tuple[str, object]] = []

    def on_channel(scenario: Scenario, channel: Channel) -> None:
        def on_return(ch, method, props, body) -> None:  # type: ignore[no-untyped-def]
            events.append(("return", (method.reply_code, method.reply_text, body)))

        def on_confirm(frame) -> None:  # type: ignore[no-untyped-def]
            events.append(("confirm", type(frame.method).__name__))
            scenario.finish()

        channel.add_on_return_callback(on_return)
        channel.confirm_delivery(
            on_confirm,
            callback=lambda _: channel.basic_publish(
                "amq.direct", "nobody-home", b"bounce", mandatory=True
            ),
        )

    Scenario(router_url, on_channel).run()
    # RabbitMQ sends basic.return before the basic.ack that confirms it
    assert events == [("return", (312, "NO_ROUTE", b"bounce")), ("confirm", "Ack")]


def test_select_connection_on_cancel_callback_fires_when_the_queue_is_deleted(
    router_url: str,
) -> None:
    cancelled: list[str] = []
    tags: list[str] = []

    def on_channel(scenario: Scenario, channel: Channel) -> None:
        def on_cancel(frame) -> None:  # type: ignore[no-untyped-def]
            cancelled.append(frame.method.consumer_tag)
            scenario.finish()

        def on_declared(frame) -> None:  # type: ignore[no-untyped-def]
            queue = frame.method.queue
            tags.append(channel.basic_consume(queue, lambda *args: None))
            scenario.connection.channel(on_open_callback=lambda other: other.queue_delete(queue))

        channel.add_on_cancel_callback(on_cancel)
        channel.queue_declare("", auto_delete=False, callback=on_declared)

    Scenario(router_url, on_channel).run()
    assert cancelled == tags


def test_select_connection_reports_a_wrong_password_to_the_open_error_callback(
    router_server,  # type: ignore[no-untyped-def]
) -> None:
    url = f"amqp://guest:wrong@127.0.0.1:{router_server.port}/%2F"
    scenario = Scenario(url, lambda scenario, channel: pytest.fail("should not open"))
    scenario.run()
    assert isinstance(scenario.error, pika.exceptions.ProbableAuthenticationError)
    assert "ACCESS_REFUSED" in str(scenario.error)
