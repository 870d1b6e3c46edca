"""Exchange types, one module each. ``EXCHANGE_TYPES`` maps a declare's type name to its class."""

from router.broker.exchanges.base import Binding, Destination, Exchange
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

__all__ = [
    "EXCHANGE_TYPES",
    "Binding",
    "Destination",
    "DirectExchange",
    "Exchange",
    "FanoutExchange",
    "HeadersExchange",
    "TopicExchange",
]
