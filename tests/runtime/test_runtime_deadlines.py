"""The broker timer: queue deadlines fire on time in the runtime (trio's mock clock, exact)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from test_runtime_server import RawClient

from router.amqp import spec
from router.amqp.frames import content_frames, method_frame
from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldTable
from router.broker.broker import Broker
from router.runtime.server import AMQPServer


@pytest.fixture
async def client(nursery: trio.Nursery) -> RawClient:
    server = AMQPServer(Broker())
    nursery.start_soon(server.run_broker_timer)
    client_stream, server_stream = trio.testing.memory_stream_pair()
    nursery.start_soon(server.handle_connection, server_stream)
    raw = RawClient(client_stream)
    await raw.handshake(heartbeat=0)
    await raw.open_channel(1)
    return raw


async def _publish(raw: RawClient, queue: str, body: bytes, expiration: str) -> None:
    properties = BasicProperties(expiration=expiration).encode()
    await raw.send(
        method_frame(1, spec.BasicPublish(exchange="", routing_key=queue)),
        *content_frames(1, 60, properties, body, 131072),
    )


async def test_a_100ms_message_behind_a_10s_message_is_dead_lettered_at_its_deadline(
    client: RawClient, autojump_clock: trio.testing.MockClock
) -> None:
    await client.send_method(1, spec.ExchangeDeclare(exchange="dlx", type="fanout"))
    await client.expect(spec.ExchangeDeclareOk, 1)
    await client.declare_queue("dead")
    await client.send_method(1, spec.QueueBind(queue="dead", exchange="dlx"))
    await client.expect(spec.QueueBindOk, 1)
    arguments = FieldTable({"x-dead-letter-exchange": "dlx"})
    await client.send_method(1, spec.QueueDeclare(queue="work", arguments=arguments))
    await client.expect(spec.QueueDeclareOk, 1)
    await _publish(client, "work", b"slow", "10000")
    await _publish(client, "work", b"fast", "100")
    await client.send_method(1, spec.QueueDeclare(queue="work", passive=True))
    await client.expect(spec.QueueDeclareOk, 1)  # both publishes are in
    published = trio.current_time()
    await client.send_method(2, spec.ChannelOpen())
    await client.expect(spec.ChannelOpenOk, 2)
    await client.send_method(2, spec.BasicConsume(queue="dead", consumer_tag="d", no_ack=True))
    await client.expect(spec.BasicConsumeOk, 2)
    deliver = await client.expect(spec.BasicDeliver, 2)
    body = await client.expect_content(2)
    assert body == b"fast"
    assert deliver.exchange == "dlx"
    # the runtime's broker timer woke at the deadline itself, not a polling interval later
    assert trio.current_time() - published == pytest.approx(0.1, abs=0.01)
