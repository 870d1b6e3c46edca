"""Clients built on router.amqp: a blocking load-generation client for ``router bench``."""
