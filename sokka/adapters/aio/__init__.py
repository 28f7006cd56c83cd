"""Stores for the asyncio runtime: ``AsyncTaskStore``, the async twin of ``TaskStore``."""
