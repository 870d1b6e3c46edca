"""``router dashboard``: a live terminal view of a broker, read from its management API."""
