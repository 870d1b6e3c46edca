"""aio-pika (on aiormq) against router over real TCP on loopback.

pytest-trio owns ``async def`` tests here, so each test is sync and runs its asyncio scenario with
``asyncio.run``; every scenario closes its connection in a ``finally`` (``async with``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions
import pytest
from aio_pika import ExchangeType, Message
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

TIMEOUT = 10.0


def run(scenario: Callable[[], Awaitable[object]]) -> object:
    async def guarded() -> object:
        return await asyncio.wait_for(scenario(), TIMEOUT)

    return asyncio.run(guarded())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def connect(url: str) -> AbstractConnection:
    return await aio_pika.connect(url)


async def ready_count(channel: AbstractChannel, queue: str) -> int:
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(queue, passive=True)
    return declared.message_count  # type: ignore[no-any-return]


def test_aio_pika_connects_opens_a_channel_and_closes(router_url: str) -> None:
    async def scenario() -> None:
        connection = await aio_pika.connect(router_url)
        try:
            channel = await connection.channel()
            assert not channel.is_closed
            await channel.close()
        finally:
            await connection.close()
        assert connection.is_closed

    run(scenario)


def test_aio_pika_publishes_and_consumes_in_order_with_a_queue_iterator(router_url: str) -> None:
    async def scenario() -> list[bytes]:
        async with await connect(router_url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            for i in range(20):
                await channel.default_exchange.publish(Message(str(i).encode()), queue.name)
            received = []
            async with queue.iterator() as messages:
                async for message in messages:
                    async with message.process():
                        received.append(message.body)
                    if len(received) == 20:
                        break
            return received

    assert run(scenario) == [str(i).encode() for i in range(20)]


def test_aio_pika_publisher_confirm_is_a_basic_ack(router_url: str) -> None:
    async def scenario() -> object:
        async with await connect(router_url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            queue = await channel.declare_queue(exclusive=True)
            confirmation = await channel.default_exchange.publish(
                Message(b"confirmed", delivery_mode=aio_pika.DeliveryMode.PERSISTENT), queue.name
            )
            assert await ready_count(channel, queue.name) == 1
            return confirmation

    assert isinstance(run(scenario), aiormq.spec.Basic.Ack)


def test_aio_pika_confirms_many_concurrent_publishes(router_url: str) -> None:
    async def scenario() -> list[object]:
        async with await connect(router_url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            queue = await channel.declare_queue(exclusive=True)
            confirmations = await asyncio.gather(
                *(
                    channel.default_exchange.publish(Message(str(i).encode()), queue.name)
                    for i in range(200)
                )
            )
            assert await ready_count(channel, queue.name) == 200
            return confirmations

    assert all(isinstance(c, aiormq.spec.Basic.Ack) for c in run(scenario))  # type: ignore[attr-defined]


def test_aio_pika_mandatory_unroutable_publish_raises_publish_error(router_url: str) -> None:
    async def scenario() -> None:
        async with await connect(router_url) as connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            with pytest.raises(aio_pika.exceptions.PublishError):
                await channel.default_exchange.publish(
                    Message(b"nowhere", message_id="m-1"), unique("missing"), mandatory=True
                )

    run(scenario)


def test_aio_pika_wrong_password_raises_probable_authentication_error(router_server) -> None:  # type: ignore[no-untyped-def]
    url = f"amqp://guest:wrong@127.0.0.1:{router_server.port}/%2F"

    async def scenario() -> None:
        with pytest.raises(aiormq.exceptions.ProbableAuthenticationError) as caught:
            await aio_pika.connect(url)
        assert "ACCESS_REFUSED" in str(caught.value)

    run(scenario)


def test_aio_pika_topic_exchange_routes_to_matching_bindings(router_url: str) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        async with await connect(router_url) as connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                unique("topic"), ExchangeType.TOPIC, auto_delete=True
            )
            errors = await channel.declare_queue(exclusive=True)
            everything = await channel.declare_queue(exclusive=True)
            await errors.bind(exchange, "*.error")
            await everything.bind(exchange, "#")
            for key in ("app.error", "app.info", "db.error.fatal"):
                await exchange.publish(Message(key.encode()), key)

            async def bodies(queue: aio_pika.abc.AbstractQueue) -> list[str]:
                out = []
                while (message := await queue.get(no_ack=True, fail=False)) is not None:
                    out.append(message.body.decode())
                return out

            return await bodies(errors), await bodies(everything)

    assert run(scenario) == (["app.error"], ["app.error", "app.info", "db.error.fatal"])


def test_aio_pika_rejected_message_is_redelivered_with_the_redelivered_flag(
    router_url: str,
) -> None:
    async def scenario() -> tuple[bool, bool]:
        async with await connect(router_url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            await channel.default_exchange.publish(Message(b"again"), queue.name)
            first = await queue.get()
            await first.reject(requeue=True)
            second = await queue.get()
            await second.ack()
            assert second.body == b"again"
            return first.redelivered, second.redelivered

    assert run(scenario) == (False, True)


def test_aio_pika_get_on_an_empty_queue_raises_queue_empty(router_url: str) -> None:
    async def scenario() -> None:
        async with await connect(router_url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            with pytest.raises(aio_pika.exceptions.QueueEmpty):
                await queue.get()

    run(scenario)


def test_aio_pika_prefetch_limits_unacked_deliveries(router_url: str) -> None:
    async def scenario() -> int:
        async with await connect(router_url) as connection:
            publisher = await connection.channel(publisher_confirms=True)
            consumer = await connection.channel()
            await consumer.set_qos(prefetch_count=3)
            queue = await consumer.declare_queue(exclusive=True)
            for i in range(10):
                await publisher.default_exchange.publish(Message(str(i).encode()), queue.name)
            got: list[AbstractIncomingMessage] = []
            three = asyncio.Event()

            async def on_message(message: AbstractIncomingMessage) -> None:
                got.append(message)
                if len(got) == 3:
                    three.set()

            await queue.consume(on_message)
            await three.wait()
            return await ready_count(publisher, queue.name)

    assert run(scenario) == 7


def test_aio_pika_consumer_is_told_when_its_queue_is_deleted(router_url: str) -> None:
    async def scenario() -> tuple[str, str]:
        async with await connect(router_url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(unique("doomed"))
            cancelled: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            (await channel.get_underlay_channel()).on_consumer_cancel_callbacks.add(
                lambda frame: cancelled.set_result(frame.consumer_tag)
            )
            tag = await queue.consume(lambda message: asyncio.sleep(0))
            other = await connection.channel()
            await other.queue_delete(queue.name)
            return await cancelled, tag

    cancelled_tag, tag = run(scenario)  # type: ignore[misc]
    assert cancelled_tag == tag


def test_aio_pika_unacked_messages_return_to_the_queue_when_the_channel_closes(
    router_url: str,
) -> None:
    async def scenario() -> tuple[bytes, bool]:
        async with await connect(router_url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            await channel.default_exchange.publish(Message(b"held"), queue.name)
            other = await connection.channel()
            other_queue = await other.get_queue(queue.name, ensure=False)
            await other_queue.get()  # unacked
            await other.close()
            message = await queue.get(no_ack=True)
            return message.body, message.redelivered

    assert run(scenario) == (b"held", True)


def test_aio_pika_passive_declare_of_a_missing_queue_raises_channel_not_found(
    router_url: str,
) -> None:
    async def scenario() -> None:
        async with await connect(router_url) as connection:
            channel = await connection.channel()
            with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
                await channel.declare_queue(unique("missing"), passive=True)

    run(scenario)


def test_aio_pika_headers_exchange_routes_on_any_header(router_url: str) -> None:
    async def scenario() -> list[bytes]:
        async with await connect(router_url) as connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                unique("headers"), ExchangeType.HEADERS, auto_delete=True
            )
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, arguments={"x-match": "any", "a": 1, "b": 2})
            await exchange.publish(Message(b"a", headers={"a": 1}), "")
            await exchange.publish(Message(b"c", headers={"c": 3}), "")
            await exchange.publish(Message(b"b", headers={"b": 2, "a": 0}), "")
            out = []
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                out.append(message.body)
            return out

    assert run(scenario) == [b"a", b"b"]


def test_aio_pika_rpc_pattern_calls_a_remote_function(router_url: str) -> None:
    from aio_pika.patterns import RPC

    async def scenario() -> int:
        async with await connect(router_url) as connection:
            channel = await connection.channel()
            rpc = await RPC.create(channel)

            async def multiply(*, x: int, y: int) -> int:
                return x * y

            await rpc.register("multiply", multiply, auto_delete=True)
            result = await rpc.proxy.multiply(x=6, y=7)
            await rpc.close()
            return result  # type: ignore[no-any-return]

    assert run(scenario) == 42


def test_aio_pika_robust_connection_round_trips_a_message(router_url: str) -> None:
    async def scenario() -> bytes:
        async with await aio_pika.connect_robust(router_url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            await channel.default_exchange.publish(Message(b"robust"), queue.name)
            message = await queue.get(no_ack=True)
            return message.body

    assert run(scenario) == b"robust"
