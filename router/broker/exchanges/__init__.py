"""Exchange types, one module each. ``EXCHANGE_TYPES`` maps a declare's type name to its class."""

from router.broker.exchanges.base import Binding, Destination, Exchange
from router.broker.exchanges.delayed import DelayedExchange
from router.broker.exchanges.direct import DirectExchange
from router.broker.exchanges.fanout import FanoutExchange
from router.broker.exchanges.headers import HeadersExchange
from router.broker.exchanges.topic import TopicExchange

EXCHANGE_TYPES: dict[str, type[Exchange]] = {
    "direct": DirectExchange,
    "fanout": FanoutExchange,
    "topic": TopicExchange,
    "headers": HeadersExchange,
}
DelayedExchange.INNER_TYPES = dict(EXCHANGE_TYPES)
EXCHANGE_TYPES["x-delayed-message"] = DelayedExchange

__all__ = [
    "EXCHANGE_TYPES",
    "Binding",
    "DelayedExchange",
    "Destination",
    "DirectExchange",
    "Exchange",
    "FanoutExchange",
    "HeadersExchange",
    "TopicExchange",
]
