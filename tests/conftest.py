"""Shared fixtures. Async tests use anyio's pytest plugin on asyncio."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis profiles: "ci" when the CI variable is set, "dev" otherwise
# (``pytest --hypothesis-profile NAME`` picks one by hand). The machines are shared and
# busy, so nothing may depend on wall time: no per-example deadline, and no too_slow
# health check (it fails when generating examples takes over a second, which a loaded
# machine causes). The other health checks are about the strategies themselves and stay.
# CI runs the same examples every time (derandomize) and prints how to reproduce a
# failure; at a desk each run explores new examples and replays saved failures first.
settings.register_profile(
    "dev", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("ci", settings.get_profile("dev"), derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


from tests.support.redis import (  # noqa: E402, F401
    cluster_url,
    own_cluster,
    redis_cluster,
    redis_server,
    redis_url,
)
from tests.support.server import pytest_pycollect_makemodule, server_wire  # noqa: E402, F401
