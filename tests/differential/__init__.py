"""Differential tests: the same scenario against router and RabbitMQ 3.10."""
