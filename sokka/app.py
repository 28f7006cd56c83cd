"""``sokka.App``: handlers by topic, ``enqueue``, and ``run_worker`` for every topic
(the implementation is ``sokka.shell.app``)."""

from sokka.shell.app import App, TopicHandler

__all__ = ["App", "TopicHandler"]
