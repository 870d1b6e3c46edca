"""/metrics and /metrics/per-object, read with the Prometheus project's own text-format parser, and
the rate windows behind every ``X_details.rate``.

Covered: both endpoints parse; they carry rabbitmq_prometheus's metric names (and router's own
``router_*``); values follow real pika traffic (ready/unacked, published, routed, connections,
each dead-lettering reason, binding matches, scheduled messages); per-object series carry queue
labels; no credentials are needed (as with rabbitmq_prometheus); aggregated counters never go
down when a queue, channel or connection goes away; label values with quotes, backslashes and
newlines are escaped and still parse. Then a sans-IO test of ``router.broker.stats.RateWindow`` and
``Rates`` with made-up times: rates over the window, old samples dropped, deleted objects
forgotten by ``sample_all``.
"""

from __future__ import annotations

import urllib.request

import pika
import pytest
from conftest import RunningServer, wait_for
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from prometheus_client.parser import text_string_to_metric_families

from router.broker.stats import Rates, RateWindow, details

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# ---------------------------------------------------------------------------------------------
# helpers and fixtures


def scrape_text(running: RunningServer, path: str = "/metrics") -> str:
    with urllib.request.urlopen(running.http_url + path, timeout=10) as response:
        return response.read().decode()


def parse(text: str) -> Series:
    """Every sample as {(name, sorted labels): value}, through prometheus_client's parser."""
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return series


def scrape(running: RunningServer, path: str = "/metrics") -> Series:
    return parse(scrape_text(running, path))


def total(series: Series, name: str) -> float:
    """A metric summed over its series (the aggregated endpoint has one per metric)."""
    found = [value for (sample, _labels), value in series.items() if sample == name]
    assert found, f"no {name} in the scrape"
    return sum(found)


def labelled(series: Series, name: str, **labels: str) -> float:
    return series[(name, tuple(sorted(labels.items())))]


def counter_names(text: str) -> set[str]:
    return {
        line.split()[2]
        for line in text.splitlines()
        if line.startswith("# TYPE") and line.endswith(" counter")
    }


def publish(channel: BlockingChannel, routing_key: str, count: int, exchange: str = "") -> None:
    for index in range(count):
        channel.basic_publish(exchange, routing_key, b"m%d" % index)


# ---------------------------------------------------------------------------------------------
# format and names


def test_metrics_parse_with_the_prometheus_parser(running, channel):
    channel.queue_declare("q")
    publish(channel, "q", 2)
    families = list(text_string_to_metric_families(scrape_text(running)))
    assert len(families) > 20
    assert all(family.type in ("counter", "gauge", "unknown") for family in families)


def test_per_object_metrics_parse_with_the_prometheus_parser(running, channel):
    channel.queue_declare("q")
    publish(channel, "q", 2)
    families = list(text_string_to_metric_families(scrape_text(running, "/metrics/per-object")))
    assert len(families) > 20


def test_metrics_are_served_as_the_prometheus_text_format(running):
    with urllib.request.urlopen(running.http_url + "/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_metrics_need_no_credentials_as_with_rabbitmq_prometheus(running):
    for path in ("/metrics", "/metrics/per-object"):
        request = urllib.request.Request(running.http_url + path)  # no Authorization header
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200


RABBITMQ_NAMES = [
    "rabbitmq_queue_messages_ready",
    "rabbitmq_queue_messages_unacked",
    "rabbitmq_queue_consumers",
    "rabbitmq_channel_messages_published_total",
    "rabbitmq_global_messages_dead_lettered_expired_total",
    "rabbitmq_global_messages_dead_lettered_rejected_total",
    "rabbitmq_global_messages_dead_lettered_maxlen_total",
    "rabbitmq_global_messages_dead_lettered_delivery_limit_total",
    "rabbitmq_global_messages_routed_total",
    "rabbitmq_connections",
]


@pytest.mark.parametrize("name", RABBITMQ_NAMES)
def test_metrics_carry_the_rabbitmq_prometheus_metric(running, name):
    assert any(sample == name for sample, _labels in scrape(running))


def test_metrics_carry_routers_binding_matches_once_a_binding_matched(running, channel):
    channel.exchange_declare("events", "topic")
    channel.queue_declare("q")
    channel.queue_bind("q", "events", routing_key="#")
    publish(channel, "any.key", 1, exchange="events")
    assert any(sample == "router_binding_messages_matched_total" for sample, _ in scrape(running))


def test_metrics_carry_routers_scheduled_messages_gauge(running):
    assert any(sample == "router_queue_messages_scheduled" for sample, _ in scrape(running))


def test_each_metric_has_a_type_line_before_its_samples(running, channel):
    channel.queue_declare("q")
    typed: set[str] = set()
    for line in scrape_text(running).splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif line and not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            assert name in typed


# ---------------------------------------------------------------------------------------------
# values follow real traffic


def test_ready_and_unacked_gauges_follow_the_queues(running, channel):
    channel.queue_declare("q")
    publish(channel, "q", 5)
    for _ in range(2):
        channel.basic_get("q", auto_ack=False)
    series = scrape(running)
    assert total(series, "rabbitmq_queue_messages_ready") == 3
    assert total(series, "rabbitmq_queue_messages_unacked") == 2


def test_queue_consumers_count_the_consumers(running, channel):
    channel.queue_declare("q")
    channel.basic_consume("q", lambda *args: None)
    channel.basic_consume("q", lambda *args: None)
    assert total(scrape(running), "rabbitmq_queue_consumers") == 2


def test_published_and_routed_totals_count_pika_publishes(running, channel):
    channel.queue_declare("q")
    publish(channel, "q", 4)
    publish(channel, "nowhere", 1)
    series = scrape(running)
    assert total(series, "rabbitmq_channel_messages_published_total") == 5
    assert total(series, "rabbitmq_global_messages_received_total") == 5
    assert total(series, "rabbitmq_global_messages_routed_total") == 4
    assert total(series, "rabbitmq_global_messages_unroutable_dropped_total") == 1


def test_connections_gauge_counts_open_connections(running, connect):
    connect()
    connect()
    assert total(scrape(running), "rabbitmq_connections") == 2


@pytest.fixture
def dead_letters(channel: BlockingChannel) -> BlockingChannel:
    """A fanout dead-letter exchange "dlx" into queue "dead"."""
    channel.exchange_declare("dlx", "fanout")
    channel.queue_declare("dead")
    channel.queue_bind("dead", "dlx")
    return channel


def test_rejected_messages_count_as_dead_lettered_rejected(running, amqp, dead_letters):
    channel = dead_letters
    channel.queue_declare("work", arguments={"x-dead-letter-exchange": "dlx"})
    publish(channel, "work", 3)
    for _ in range(3):
        method, _props, _body = channel.basic_get("work", auto_ack=False)
        channel.basic_nack(method.delivery_tag, requeue=False)
    wait_for(lambda: channel.queue_declare("dead", passive=True).method.message_count == 3)
    assert total(scrape(running), "rabbitmq_global_messages_dead_lettered_rejected_total") == 3


def test_expired_messages_count_as_dead_lettered_expired(running, dead_letters):
    channel = dead_letters
    channel.queue_declare("work", arguments={"x-dead-letter-exchange": "dlx", "x-message-ttl": 0})
    publish(channel, "work", 2)
    wait_for(lambda: channel.queue_declare("dead", passive=True).method.message_count == 2)
    assert total(scrape(running), "rabbitmq_global_messages_dead_lettered_expired_total") == 2


def test_messages_dropped_by_a_length_limit_count_as_dead_lettered_maxlen(running, dead_letters):
    channel = dead_letters
    channel.queue_declare("work", arguments={"x-dead-letter-exchange": "dlx", "x-max-length": 1})
    publish(channel, "work", 3)
    wait_for(lambda: channel.queue_declare("dead", passive=True).method.message_count == 2)
    assert total(scrape(running), "rabbitmq_global_messages_dead_lettered_maxlen_total") == 2


def test_messages_past_the_delivery_limit_count_as_dead_lettered_delivery_limit(
    running, dead_letters
):
    channel = dead_letters
    channel.queue_declare(
        "work", arguments={"x-dead-letter-exchange": "dlx", "x-delivery-limit": 1}
    )
    publish(channel, "work", 1)
    for _ in range(5):  # requeue until the broker gives up on it
        method, _props, _body = channel.basic_get("work", auto_ack=False)
        if method is None:
            break
        channel.basic_nack(method.delivery_tag, requeue=True)
    wait_for(lambda: channel.queue_declare("dead", passive=True).method.message_count == 1)
    series = scrape(running)
    assert total(series, "rabbitmq_global_messages_dead_lettered_delivery_limit_total") == 1


def test_binding_matches_are_counted_per_binding(running, channel):
    channel.exchange_declare("events", "topic")
    channel.queue_declare("orders")
    channel.queue_declare("all")
    channel.queue_bind("orders", "events", routing_key="order.*")
    channel.queue_bind("all", "events", routing_key="#")
    publish(channel, "order.created", 2, exchange="events")
    publish(channel, "user.created", 1, exchange="events")
    series = scrape(running)
    name = "router_binding_messages_matched_total"
    common = {"vhost": "/", "exchange": "events"}
    assert labelled(series, name, destination="orders", routing_key="order.*", **common) == 2
    assert labelled(series, name, destination="all", routing_key="#", **common) == 3


def test_scheduled_messages_are_counted_until_due(running, channel):
    channel.exchange_declare("later", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    channel.queue_declare("q")
    channel.queue_bind("q", "later", routing_key="k")
    channel.basic_publish("later", "k", b"x", pika.BasicProperties(headers={"x-delay": 60000}))
    assert total(scrape(running), "router_queue_messages_scheduled") == 1


def test_per_object_series_are_labelled_with_vhost_and_queue(running, channel):
    channel.queue_declare("a")
    channel.queue_declare("b")
    publish(channel, "a", 2)
    series = scrape(running, "/metrics/per-object")
    assert labelled(series, "rabbitmq_queue_messages_ready", vhost="/", queue="a") == 2
    assert labelled(series, "rabbitmq_queue_messages_ready", vhost="/", queue="b") == 0


def test_aggregated_series_carry_no_queue_labels(running, channel):
    channel.queue_declare("a")
    channel.queue_declare("b")
    series = scrape(running)
    assert [labels for name, labels in series if name == "rabbitmq_queue_messages_ready"] == [()]


# ---------------------------------------------------------------------------------------------
# counters never go down


def counters(running: RunningServer) -> Series:
    text = scrape_text(running)
    names = counter_names(text)
    return {key: value for key, value in parse(text).items() if key[0] in names}


def went_down(before: Series, after: Series) -> dict[str, tuple[float, float]]:
    return {
        f"{name}{dict(labels)}": (before[(name, labels)], after[(name, labels)])
        for name, labels in before
        if (name, labels) in after and after[(name, labels)] < before[(name, labels)]
    }


@pytest.fixture
def traffic(amqp: BlockingConnection, channel: BlockingChannel) -> BlockingChannel:
    """Queue "q" that saw publishes, deliveries and acks on ``channel``."""
    channel.queue_declare("q")
    publish(channel, "q", 5)
    for _ in range(3):
        method, _props, _body = channel.basic_get("q", auto_ack=False)
        channel.basic_ack(method.delivery_tag)
    channel.basic_get("q", auto_ack=True)
    return channel


def test_counters_do_not_go_down_when_a_queue_is_deleted(running, amqp, traffic):
    before = counters(running)
    other = amqp.channel()
    other.queue_delete("q")
    assert went_down(before, counters(running)) == {}


def test_counters_do_not_go_down_when_a_channel_is_closed(running, amqp, traffic):
    before = counters(running)
    traffic.close()
    amqp.channel().queue_declare("q", passive=True)  # a round trip after the close
    assert went_down(before, counters(running)) == {}


def test_counters_do_not_go_down_when_a_connection_is_closed(running, amqp, traffic):
    before = counters(running)
    amqp.close()
    wait_for(lambda: total(scrape(running), "rabbitmq_connections") == 0)
    assert went_down(before, counters(running)) == {}


# ---------------------------------------------------------------------------------------------
# label escaping


def test_label_values_with_quotes_backslashes_and_newlines_are_escaped(running, channel):
    name = 'odd "quoted" \\ back\nslash'
    channel.queue_declare(name)
    publish(channel, name, 1)
    series = scrape(running, "/metrics/per-object")
    assert labelled(series, "rabbitmq_queue_messages_ready", vhost="/", queue=name) == 1


def test_binding_keys_with_quotes_are_escaped_in_binding_labels(running, channel):
    channel.exchange_declare("ex", "direct")
    channel.queue_declare("q")
    channel.queue_bind("q", "ex", routing_key='say "hi"\\now')
    publish(channel, 'say "hi"\\now', 1, exchange="ex")
    series = scrape(running)
    assert (
        labelled(
            series,
            "router_binding_messages_matched_total",
            vhost="/",
            exchange="ex",
            destination="q",
            routing_key='say "hi"\\now',
        )
        == 1
    )


# ---------------------------------------------------------------------------------------------
# rate windows (sans-IO: made-up times)


def test_a_rate_window_divides_the_growth_by_the_time_it_took():
    window = RateWindow()
    window.add(100.0, [0, 10], 5.0)
    window.add(102.0, [30, 10], 5.0)
    assert window.rates() == [15.0, 0.0]


def test_a_rate_window_with_one_sample_has_zero_rates():
    window = RateWindow()
    window.add(0.0, [7, 8], 5.0)
    assert window.rates() == [0.0, 0.0]


def test_a_rate_window_drops_samples_older_than_the_window():
    window = RateWindow()
    window.add(0.0, [0], 5.0)
    window.add(1.0, [1000], 5.0)  # a burst long ago
    for second in range(2, 21):
        window.add(float(second), [1000 + 2 * second], 5.0)
    assert window.history()[0][0] == 15.0  # one sample just before the window
    assert window.rates() == [2.0]


def test_a_rate_window_keeps_the_sample_just_before_the_window():
    window = RateWindow()
    for second in (0.0, 3.0, 6.0):
        window.add(second, [int(second)], 5.0)
    assert [t for t, _values in window.history()] == [0.0, 3.0, 6.0]
    window.add(9.0, [9], 5.0)
    assert [t for t, _values in window.history()] == [3.0, 6.0, 9.0]


def test_samples_at_the_same_instant_replace_each_other():
    window = RateWindow()
    window.add(0.0, [0], 5.0)
    window.add(1.0, [10], 5.0)
    window.add(1.01, [20], 5.0)
    assert len(window.history()) == 2
    assert window.rates() == [20.0]


def test_a_counter_that_went_back_gives_a_zero_rate_not_a_negative_one():
    window = RateWindow()
    window.add(0.0, [50], 5.0)
    window.add(1.0, [10], 5.0)
    assert window.rates() == [0.0]


def test_rates_are_kept_per_kind_and_object():
    rates = Rates(window=5.0)
    rates.sample("queue", "a", [0], 0.0)
    rates.sample("queue", "a", [10], 2.0)
    rates.sample("exchange", "a", [0], 0.0)
    assert rates.rates("queue", "a") == [5.0]
    assert rates.rates("exchange", "a") == [0.0]
    assert rates.rates("queue", "never-sampled") is None


def test_sample_all_forgets_objects_that_are_gone():
    rates = Rates(window=5.0)
    rates.sample_all("queue", [("a", [0]), ("b", [0])], 0.0)
    rates.sample_all("queue", [("a", [4]), ("b", [8])], 1.0)
    assert rates.count("queue") == 2
    rates.sample_all("queue", [("a", [6])], 2.0)  # b was deleted
    assert rates.count("queue") == 1
    assert rates.rates("queue", "b") is None
    assert rates.rates("queue", "a") == [3.0]


def test_an_object_sampled_again_after_being_forgotten_starts_a_fresh_window():
    rates = Rates(window=5.0)
    rates.sample_all("queue", [("a", [0])], 0.0)
    rates.sample_all("queue", [], 1.0)
    rates.sample_all("queue", [("a", [100])], 2.0)
    assert rates.rates("queue", "a") == [0.0]


def test_details_pair_each_counter_with_its_rate_rounded_to_a_tenth():
    assert details(("publish", "ack"), (7, 3), (1.26, 0.0)) == {
        "publish": 7,
        "publish_details": {"rate": 1.3},
        "ack": 3,
        "ack_details": {"rate": 0.0},
    }


def test_details_without_rates_give_zero_rates():
    assert details(("publish",), (7,), None) == {"publish": 7, "publish_details": {"rate": 0.0}}
