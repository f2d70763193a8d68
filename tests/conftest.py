"""Shared test configuration."""

from hypothesis import settings

# Property tests run a moderate number of examples with no per-example deadline: CI machines are
# small and shared, and timing is not what these tests check.
settings.register_profile("cka-sim", max_examples=30, deadline=None)
settings.load_profile("cka-sim")
