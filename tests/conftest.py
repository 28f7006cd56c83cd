"""Test-wide settings: hypothesis profiles.

``ci`` (the default) keeps example counts small enough for every CI run;
``long`` digs much deeper. Pick one with ``SOKKA_HYPOTHESIS_PROFILE=long``.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=100, deadline=None)
settings.register_profile(
    "long",
    max_examples=5_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("SOKKA_HYPOTHESIS_PROFILE", "ci"))
