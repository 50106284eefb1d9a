"""What a supervised engine's environment holds of the supervisor's CURVE keys."""

import pytest

from bus.supervisor import EngineSpec
from supervisor.children import Child, engine_env
from supervisor.restart import RestartTracker


def child(**env: str) -> Child:
    spec = EngineSpec(name="e", command=("true",), env=env)
    return Child(spec=spec, name="e", instance=1, tracker=RestartTracker(spec.restart))


@pytest.fixture
def keys_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUS_SERVER_KEY", "/keys/server.key")
    monkeypatch.setenv("BUS_KEY", "/keys/me.key_secret")


def test_keys_the_supervisor_was_started_with_do_not_reach_engines_of_a_local_tcp_endpoint(keys_in_environment: None) -> None:
    # (no ipc: the local endpoint is keyless TCP on 127.0.0.1; with these keys the engine's handshake failed)
    env = engine_env(child(), endpoint="tcp://127.0.0.1:50003", session_dir="/run/s")
    assert "BUS_SERVER_KEY" not in env and "BUS_KEY" not in env
    assert env["BUS_ENDPOINT"] == "tcp://127.0.0.1:50003"


def test_over_ipc_and_in_the_engine_s_own_env_they_stay(keys_in_environment: None) -> None:
    assert engine_env(child(), endpoint="ipc:///run/s/pull", session_dir="/run/s")["BUS_SERVER_KEY"] == "/keys/server.key"
    own = engine_env(child(BUS_KEY="/elsewhere.key_secret"), endpoint="tcp://127.0.0.1:50003", session_dir="/run/s")
    assert own["BUS_KEY"] == "/elsewhere.key_secret"  # (its config says so: a client of another supervisor)
