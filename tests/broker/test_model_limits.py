"""Limits a client cannot talk its way past: the maximum message size."""

from __future__ import annotations

from model_helpers import FakeClient

from router.amqp import spec
from router.amqp.frames import FRAME_HEAD, method_frame
from router.amqp.properties import encode_content_header
from router.broker.broker import Broker, BrokerConfig
from router.broker.ports import CountingIds


def _client(max_message_size: int) -> FakeClient:
    broker = Broker(BrokerConfig(max_message_size=max_message_size), ids=CountingIds())
    client = FakeClient(broker)
    client.open_channel(1)
    client.declare_queue(1, "q")
    return client


def test_a_message_over_the_size_limit_closes_its_channel_with_406_before_its_body_arrives():
    client = _client(max_message_size=1000)
    header = encode_content_header(60, 5000, b"\x00\x00")
    client.send(method_frame(1, spec.BasicPublish(0, "", "q")))
    client.send(FRAME_HEAD.pack(2, 1, len(header)) + header + b"\xce")
    closes = client.methods(1, spec.ChannelClose)
    assert [(c.reply_code, c.class_id, c.method_id) for c in closes] == [(406, 60, 40)]
    assert "message size 5000 is larger than configured max size 1000" in closes[0].reply_text


def test_the_refused_message_body_is_dropped_and_the_connection_stays_usable():
    client = _client(max_message_size=1000)
    client.send(client.publish_bytes(1, "", "q", b"x" * 5000))
    assert client.methods(1, spec.ChannelClose)[0].reply_code == 406
    client.call(1, spec.ChannelCloseOk())
    client.open_channel(2)
    client.publish(2, "", "q", b"small")
    assert client.session.vhost is not None
    assert client.session.vhost.queues["q"].message_count == 1


def test_a_message_at_the_size_limit_is_accepted():
    client = _client(max_message_size=1000)
    client.publish(1, "", "q", b"x" * 1000)
    assert client.session.vhost is not None
    assert client.session.vhost.queues["q"].message_count == 1
