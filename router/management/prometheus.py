"""Prometheus text exposition (format 0.0.4) of the broker's state and counters.

Names follow the rabbitmq_prometheus plugin of RabbitMQ 3.10, so Grafana dashboards made for it
work: ``/metrics`` gives the aggregated form (one series per metric, summed over queues,
channels and connections, as the plugin does by default) and ``/metrics/per-object`` labels each
series with its queue (``vhost``, ``queue``), channel or connection. ``router_*`` metrics are
router's own: per-binding matches, scheduled messages, fsync batches, dead-lettering by queue.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from router import __version__
from router.broker.stats import CHANNEL_FIELDS, CONNECTION_FIELDS
from router.management import sampling

if TYPE_CHECKING:
    from router.broker.broker import Broker
    from router.broker.stats import Rates

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CLASSIC = 'queue_type="rabbit_classic_queue"'
DEAD_LETTER_REASONS = ("expired", "rejected", "maxlen", "delivery_limit")

Sample = tuple[dict[str, str], float]

# rabbitmq_prometheus's name and help for each counter of Channel.counters() (CHANNEL_FIELDS)
CHANNEL_COUNTERS = (
    (
        "rabbitmq_channel_messages_published_total",
        "Total number of messages published into an exchange on a channel",
    ),
    (
        "rabbitmq_channel_messages_confirmed_total",
        "Total number of messages published into an exchange and confirmed on the channel",
    ),
    (
        "rabbitmq_channel_messages_unroutable_returned_total",
        "Total number of messages published as mandatory into an exchange and returned to the "
        "publisher as unroutable",
    ),
    (
        "rabbitmq_channel_messages_delivered_total",
        "Total number of messages delivered to consumers or fetched with basic.get",
    ),
    (
        "rabbitmq_channel_messages_redelivered_total",
        "Total number of messages redelivered to consumers",
    ),
    (
        "rabbitmq_channel_messages_acked_total",
        "Total number of messages acknowledged by consumers",
    ),
)
# ... and of Session.counters() (CONNECTION_FIELDS)
CONNECTION_COUNTERS = (
    ("rabbitmq_connection_incoming_bytes_total", "Total number of bytes received on a connection"),
    ("rabbitmq_connection_outgoing_bytes_total", "Total number of bytes sent on a connection"),
    (
        "rabbitmq_connection_incoming_packets_total",
        "Total number of packets received on a connection",
    ),
    ("rabbitmq_connection_outgoing_packets_total", "Total number of packets sent on a connection"),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        self.lines.append(f"# TYPE {name} {kind}")
        self.lines.append(f"# HELP {name} {help_text}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(
    broker: Broker, rates: Rates, store: dict[str, Any] | None = None, *, per_object: bool = False
) -> str:
    out = _Writer()
    totals = broker.totals
    queues = list(sampling.queues(broker))
    channels = list(sampling.channels(broker))
    sessions = list(broker.sessions.values())

    out.metric(
        "rabbitmq_build_info",
        "untyped",
        "RabbitMQ-compatible build info",
        [({"rabbitmq_version": "3.10.8", "product": "router", "product_version": __version__}, 1)],
    )
    out.metric(
        "rabbitmq_identity_info",
        "untyped",
        "Node and cluster names",
        [
            (
                {
                    "rabbitmq_node": "router@localhost",
                    "rabbitmq_cluster": broker.config.cluster_name,
                },
                1,
            )
        ],
    )

    # --- object counts and churn
    out.metric("rabbitmq_connections", "gauge", "Connections currently open", [({}, len(sessions))])
    out.metric("rabbitmq_channels", "gauge", "Channels currently open", [({}, len(channels))])
    out.metric(
        "rabbitmq_consumers",
        "gauge",
        "Consumers currently connected",
        [({}, sum(q.consumer_count for q in queues))],
    )
    out.metric("rabbitmq_queues", "gauge", "Queues available", [({}, len(queues))])
    out.metric(
        "rabbitmq_connections_opened_total",
        "counter",
        "Total number of connections opened",
        [({}, totals.connections_opened)],
    )
    out.metric(
        "rabbitmq_connections_closed_total",
        "counter",
        "Total number of connections closed or terminated",
        [({}, totals.connections_closed)],
    )
    out.metric(
        "rabbitmq_channels_opened_total",
        "counter",
        "Total number of channels opened",
        [({}, totals.channels_opened)],
    )
    out.metric(
        "rabbitmq_channels_closed_total",
        "counter",
        "Total number of channels closed",
        [({}, totals.channels_closed)],
    )
    out.metric(
        "rabbitmq_queues_deleted_total",
        "counter",
        "Total number of queues deleted",
        [({}, totals.queues_deleted)],
    )

    # --- queues
    def per_queue(value: Any, retired: str | None = None) -> list[Sample]:
        if per_object:
            return [({"vhost": q.vhost, "queue": q.name}, value(q)) for q in queues]
        total = sum(value(q) for q in queues)
        if retired is not None:  # a counter: what deleted queues counted stays in it
            total += totals.queue[retired]
        return [({}, total)]

    out.metric(
        "rabbitmq_queue_messages_ready",
        "gauge",
        "Messages ready to be delivered to consumers",
        per_queue(lambda q: q.ready_count),
    )
    out.metric(
        "rabbitmq_queue_messages_unacked",
        "gauge",
        "Messages delivered to consumers but not yet acknowledged",
        per_queue(lambda q: q.unacked),
    )
    out.metric(
        "rabbitmq_queue_messages",
        "gauge",
        "Sum of ready and unacknowledged messages",
        per_queue(lambda q: q.ready_count + q.unacked),
    )
    out.metric(
        "rabbitmq_queue_messages_ready_bytes",
        "gauge",
        "Size in bytes of ready messages",
        per_queue(lambda q: q.ready_bytes),
    )
    out.metric(
        "rabbitmq_queue_consumers",
        "gauge",
        "Consumers on a queue",
        per_queue(lambda q: q.consumer_count),
    )
    out.metric(
        "rabbitmq_queue_messages_published_total",
        "counter",
        "Total number of messages published to queues",
        per_queue(lambda q: q.stats.published, "publish"),
    )

    # --- channels (aggregated: live channels plus what closed ones counted)
    def per_channel(value: Any, retired: str | None = None) -> list[Sample]:
        if per_object:
            return [({"channel": f"{c.session.name} ({c.number})"}, value(c)) for c in channels]
        total = sum(value(c) for c in channels)
        if retired is not None:
            total += totals.channel[retired]
        return [({}, total)]

    out.metric(
        "rabbitmq_channel_consumers",
        "gauge",
        "Consumers on a channel",
        per_channel(lambda c: len(c.consumers)),
    )
    out.metric(
        "rabbitmq_channel_messages_unacked",
        "gauge",
        "Delivered but not yet acknowledged messages",
        per_channel(lambda c: len(c.unacked)),
    )
    out.metric(
        "rabbitmq_channel_messages_unconfirmed",
        "gauge",
        "Published but not yet confirmed messages",
        per_channel(lambda c: c.publish_seq - c.confirmed_upto if c.confirm else 0),
    )
    out.metric(
        "rabbitmq_channel_prefetch",
        "gauge",
        "Total limit of unacknowledged messages for all consumers on a channel",
        per_channel(lambda c: c.global_prefetch),
    )
    for index, (name, help_text) in enumerate(CHANNEL_COUNTERS):
        retired = CHANNEL_FIELDS[index]
        out.metric(
            name, "counter", help_text, per_channel(lambda c, i=index: c.counters()[i], retired)
        )

    # --- connections
    def per_connection(index: int, retired: str) -> list[Sample]:
        if per_object:
            return [({"connection": s.name}, s.counters()[index]) for s in sessions]
        return [({}, sum(s.counters()[index] for s in sessions) + totals.connection[retired])]

    for index, (name, help_text) in enumerate(CONNECTION_COUNTERS):
        out.metric(name, "counter", help_text, per_connection(index, CONNECTION_FIELDS[index]))

    # --- global counters
    (published, confirmed, delivered, redelivered, acked, returned, dropped, _dead) = (
        sampling.overview_values(broker)
    )
    amqp = {"protocol": "amqp091"}
    amqp_classic = {"protocol": "amqp091", "queue_type": "rabbit_classic_queue"}
    out.metric(
        "rabbitmq_global_messages_received_total",
        "counter",
        "Total number of messages received from publishers",
        [(amqp, published)],
    )
    out.metric(
        "rabbitmq_global_messages_routed_total",
        "counter",
        "Total number of messages routed to queues or streams",
        [(amqp, published - returned - dropped)],
    )
    out.metric(
        "rabbitmq_global_messages_unroutable_dropped_total",
        "counter",
        "Total number of messages published as non-mandatory into an exchange and dropped as "
        "unroutable",
        [(amqp, dropped)],
    )
    out.metric(
        "rabbitmq_global_messages_unroutable_returned_total",
        "counter",
        "Total number of messages published as mandatory into an exchange and returned to the "
        "publisher as unroutable",
        [(amqp, returned)],
    )
    out.metric(
        "rabbitmq_global_messages_confirmed_total",
        "counter",
        "Total number of messages confirmed to publishers",
        [(amqp, confirmed)],
    )
    out.metric(
        "rabbitmq_global_messages_delivered_total",
        "counter",
        "Total number of messages delivered to consumers",
        [(amqp_classic, delivered)],
    )
    out.metric(
        "rabbitmq_global_messages_redelivered_total",
        "counter",
        "Total number of messages redelivered to consumers",
        [(amqp_classic, redelivered)],
    )
    out.metric(
        "rabbitmq_global_messages_acknowledged_total",
        "counter",
        "Total number of messages acknowledged by consumers",
        [(amqp_classic, acked)],
    )
    dead: dict[str, int] = {}
    for vhost in broker.vhosts.values():
        for reason, count in vhost.dead_lettered.items():
            dead[reason] = dead.get(reason, 0) + count
    for reason in DEAD_LETTER_REASONS:
        out.metric(
            f"rabbitmq_global_messages_dead_lettered_{reason}_total",
            "counter",
            f"Total number of messages dead-lettered with reason {reason}",
            [
                (
                    {"queue_type": "rabbit_classic_queue", "dead_letter_strategy": "at_most_once"},
                    dead.get(reason, 0),
                )
            ],
        )
    out.metric(
        "rabbitmq_global_consumers",
        "gauge",
        "Current number of consumers",
        [(amqp, sum(q.consumer_count for q in queues))],
    )
    out.metric(
        "rabbitmq_alarms_memory_used_watermark",
        "gauge",
        "Is the memory alarm in effect (1) or not (0)",
        [({}, int("memory" in broker.alarms))],
    )

    # --- router's own
    out.metric(
        "router_queue_messages_scheduled",
        "gauge",
        "Messages held back until a due time (scheduled delivery, retry backoff)",
        per_queue(lambda q: q.waiting),
    )
    if per_object:
        ages = [
            ({"vhost": q.vhost, "queue": q.name}, age)
            for q in queues
            if (age := q.oldest_ready_age()) is not None
        ]
    else:
        oldest = [age for q in queues if (age := q.oldest_ready_age()) is not None]
        ages = [({}, max(oldest) if oldest else 0)]
    out.metric(
        "router_queue_oldest_message_age_seconds",
        "gauge",
        "Age of the oldest ready message (to within a second)",
        ages,
    )
    dead_by_queue = [
        ({"vhost": q.vhost, "queue": q.name, "reason": reason}, count)
        for q in queues
        for reason, count in sorted(q.stats.dead_lettered.items())
    ]
    out.metric(
        "router_queue_messages_dead_lettered_total",
        "counter",
        "Messages dead-lettered from each queue, by reason",
        dead_by_queue,
    )
    out.metric(
        "router_binding_messages_matched_total",
        "counter",
        "Messages each binding matched (the live routing stats); bindings that never matched "
        "are left out",
        [
            (
                {
                    "vhost": vhost,
                    "exchange": b.source.name,
                    "destination": b.destination.name,
                    "routing_key": b.routing_key,
                },
                b.matched,
            )
            for vhost, b in sampling.bindings(broker)
            if b.matched
        ],
    )
    out.metric(
        "router_exchange_messages_published_in_total",
        "counter",
        "Messages published into each exchange",
        [
            ({"vhost": vhost, "exchange": x.name}, x.published_in)
            for vhost, x in sampling.exchanges(broker)
            if x.published_in
        ],
    )
    out.metric(
        "router_exchange_messages_unroutable_total",
        "counter",
        "Messages each exchange could route nowhere",
        [
            ({"vhost": vhost, "exchange": x.name}, x.unroutable)
            for vhost, x in sampling.exchanges(broker)
            if x.unroutable
        ],
    )
    if store:
        out.metric(
            "router_store_batches_total",
            "counter",
            "Store transactions committed (one fsync each)",
            [({}, store.get("batches", 0))],
        )
        out.metric(
            "router_store_batch_rows_total",
            "counter",
            "Rows written by all store transactions",
            [({}, store.get("rows", 0))],
        )
        out.metric(
            "router_store_write_seconds_total",
            "counter",
            "Time spent writing store transactions (fsync included)",
            [({}, store.get("write_seconds", 0.0))],
        )
        out.metric(
            "router_store_recent_batch_rows",
            "gauge",
            "Median rows per store transaction over the recent ones",
            [({}, store.get("recent_median_rows", 0))],
        )
    return out.text()
