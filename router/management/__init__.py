"""The management API (RabbitMQ's HTTP API for what router has), Prometheus metrics, and the
sampling of counters into rates. Plain request → response; the socket loop is in
router/runtime/http.py."""
