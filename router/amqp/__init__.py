"""The wire: AMQP 0-9-1 codec, sans-IO. Imports nothing from the rest of router."""
