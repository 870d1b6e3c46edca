"""The edges: listeners, per-connection tasks, timers, signals. The only package importing trio."""
