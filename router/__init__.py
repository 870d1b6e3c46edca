"""router: an AMQP 0-9-1 routing broker on trio."""

__version__ = "0.1.0"
