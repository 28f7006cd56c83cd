"""Adapters: one module per store, all behind the ``TaskStore`` protocol."""
