"""The model, sans-IO: virtual hosts, exchanges, queues, channels and sessions.

Imports only ``router.amqp``, the standard library and sortedcontainers. Never waits, never reads
the clock: time comes in as ``now``.
"""
