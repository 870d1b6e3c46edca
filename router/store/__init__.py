"""Durability behind ``broker.ports.Store``: the SQLite store and recovery at start."""
