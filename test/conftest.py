"""Test environment: ROS 2 on loopback only, a private ROS_DOMAIN_ID per test, CPU torch."""

import itertools
import os
import sys

import pytest

# Fast DDS would otherwise multicast on the external interface (Kilted ignores ROS_LOCALHOST_ONLY).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_LOCALHOST_ONLY", None)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
# Full camera frames exceed Fast DDS's default shared-memory segment; without this profile they are
# fragmented over UDP and a lost fragment waits 3 s for repair (config/fastdds_shm.xml explains).
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(REPO, "config", "fastdds_shm.xml"))

# Valid Linux domain ids are 0-101 and 215-232; spread test processes over 1-100 by pid.
_domains = itertools.count()


def _next_domain_id() -> int:
    return 1 + (os.getpid() * 37 + next(_domains)) % 100


@pytest.fixture(autouse=True)
def ros_domain_id(monkeypatch) -> int:
    """Each test gets its own ROS_DOMAIN_ID (inherited by the processes it starts)."""
    dom = _next_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(dom))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return dom


@pytest.fixture
def ros_env(ros_domain_id) -> dict:
    """Environment for child processes that run rclpy: loopback discovery, this test's domain."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(ros_domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env
