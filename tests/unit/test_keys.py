"""Key files, the [security] section, roles, and the listen check."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import zmq
import zmq.auth

from bus.errors import BusError
from bus.keys import KeyFileError, Security, client_keys, is_loopback, keygen, keys_dir, load_public
from bus.runtime import local_session
from bus.supervisor.config import ConfigError, SupervisorConfig, load_config


@pytest.fixture
def keyring(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    keygen(keys, "server")
    for name in ("w1", "w2", "viewer", "ops"):
        keygen(tmp_path / "clients", name)
    for role, names in {"engines": ["w1", "w2"], "subscribers": ["viewer"], "admins": ["ops"]}.items():
        (keys / role).mkdir()
        for name in names:
            (keys / role / f"{name}.key").write_bytes((tmp_path / "clients" / f"{name}.key").read_bytes())
    return keys


def public(tmp_path: Path, name: str) -> bytes:
    return load_public(tmp_path / "clients" / f"{name}.key")


def write(tmp_path: Path, security: str, supervisor: str = "") -> Path:
    path = tmp_path / "bus.toml"
    path.write_text(f"[supervisor]\n{supervisor}\n[security]\n{security}\n[engines.a]\ncommand = ['x']\n")
    return path


def test_keygen_writes_an_owner_only_secret_and_a_public_key(tmp_path: Path) -> None:
    public_file, secret_file = keygen(tmp_path / "k", "me")
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600 and stat.S_IMODE(public_file.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700
    assert "secret-key" in secret_file.read_text() and "secret-key" not in public_file.read_text()
    assert load_public(public_file) == load_public(secret_file)
    with pytest.raises(KeyFileError, match="already exists"):
        keygen(tmp_path / "k", "me")
    with pytest.raises(KeyFileError, match="is not valid"):
        keygen(tmp_path / "k", "../me")


def test_a_config_names_keys_by_role(tmp_path: Path, keyring: Path) -> None:
    literal = load_public(tmp_path / "clients" / "w2.key").decode()
    path = write(tmp_path, f'server_key = "keys/server.key_secret"\nengines = ["keys/engines/"]\nsubscribers = ["keys/subscribers/viewer.key", "{literal}"]\nadmins = "keys/admins"', 'listen = "tcp://0.0.0.0:7010"')
    _, settings = load_config(path)
    security: Security = settings["security"]
    assert settings["listen"] == "tcp://0.0.0.0:7010"
    roles = {c.name: sorted(c.roles) for c in security.clients.values()}
    assert roles == {"w1": ["engines"], "w2": ["engines", "subscribers"], "viewer": ["subscribers"], "ops": ["admins"]}
    SupervisorConfig(engines=(), **settings)  # keys given: a non-loopback listen is fine

    viewer, ops, w1 = (public(tmp_path, n).decode() for n in ("viewer", "ops", "w1"))
    assert security.may(viewer, "status") and security.may(viewer, "history") and not security.may(viewer, "stop")
    assert all(security.may(ops, op) for op in ("status", "stop", "restart", "start", "down"))
    assert not security.may(w1, "status")  # engine keys push; they ask nothing
    assert not security.may("x" * 40, "hello")
    assert security.may(None, "down")  # a local (ipc) client is the owner
    assert {c.name: sorted(c.roles) for c in keys_dir(keyring).clients.values()} == {**roles, "w2": ["engines"]}  # --keys DIR: the same layout


@pytest.mark.parametrize(
    "security, words",
    [
        ('engines = ["keys/engines/"]', "server_key is missing"),
        ('server_key = "keys/server.key"', "holds only a public key: give the NAME.key_secret file"),
        ('server_key = "keys/none.key_secret"', "no such file (make one with `bus keygen NAME`)"),
        ('server_key = "bus.toml"', "is not a ZeroMQ key file"),
        ('server_key = "keys/server.key_secret"\nadmins = [1]', "admins must be a list of key files or directories"),
        ('server_key = "keys/server.key_secret"\nsubscriber = []', "[security]: unknown key 'subscriber'; did you mean 'subscribers'?"),
        ('server_key = "keys/server.key_secret"\nengines = ["keys/engines/w1.key", "clients/w1.key"]', ""),  # the same key twice is fine
        ('server_key = "keys/server.key_secret"\nengines = ["keys/engines/w1.key", "other/w1.key"]', "two different keys are named 'w1'"),
    ],
)
def test_bad_security_sections_are_refused_in_one_line(tmp_path: Path, keyring: Path, security: str, words: str) -> None:
    (tmp_path / "other").mkdir()
    keygen(tmp_path / "other", "w1")
    path = write(tmp_path, security)
    if not words:
        load_config(path)
        return
    with pytest.raises(BusError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: [security]") and words in message and "\n" not in message


def test_a_secret_others_can_read_is_refused(tmp_path: Path, keyring: Path) -> None:
    os.chmod(keyring / "server.key_secret", 0o640)
    with pytest.raises(KeyFileError, match=r"can be read by others \(mode 640\): chmod 600"):
        load_config(write(tmp_path, 'server_key = "keys/server.key_secret"'))


@pytest.mark.parametrize(
    "listen, insecure, refused",
    [
        ("tcp://127.0.0.1:7010", False, False),
        ("tcp://localhost:7010", False, False),
        ("tcp://[::1]:7010", False, False),
        ("tcp://0.0.0.0:7010", False, True),
        ("tcp://10.1.2.3:7010", False, True),
        ("tcp://myhost:7010", False, True),  # a name may resolve anywhere
        ("tcp://0.0.0.0:7010", True, False),
    ],
)
def test_listening_beyond_loopback_needs_keys_or_insecure(listen: str, insecure: bool, refused: bool) -> None:
    if refused:
        with pytest.raises(ConfigError, match="is not a loopback address"):
            SupervisorConfig(engines=(), listen=listen, insecure=insecure)
    else:
        config = SupervisorConfig(engines=(), listen=listen, insecure=insecure)
        assert config.exposed == insecure


def test_loopback_check() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.1") and is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.1") and not is_loopback("example.org")


def test_client_keys_come_in_pairs(tmp_path: Path, keyring: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUS_KEY", raising=False)
    monkeypatch.delenv("BUS_SERVER_KEY", raising=False)
    assert client_keys() is None
    monkeypatch.setenv("BUS_SERVER_KEY", str(keyring / "server.key"))
    with pytest.raises(KeyFileError, match=r"your own key \(--key, BUS_KEY\) is missing"):
        client_keys()
    monkeypatch.setenv("BUS_KEY", str(tmp_path / "clients" / "viewer.key_secret"))
    keys = client_keys()
    assert keys is not None and keys.name == "viewer" and keys.server == load_public(keyring / "server.key")
    assert (keys.public, keys.secret) == tuple(zmq.auth.load_certificate(tmp_path / "clients" / "viewer.key_secret"))


def test_the_run_directory_is_owner_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUS_RUNTIME_DIR", str(tmp_path / "rt"))
    (tmp_path / "rt" / "s1").mkdir(parents=True, mode=0o755)
    os.chmod(tmp_path / "rt" / "s1", 0o755)
    session = local_session("s1", create=True)
    assert stat.S_IMODE(session.dir.stat().st_mode) == 0o700  # made private even when it existed open
    assert stat.S_IMODE((tmp_path / "rt").stat().st_mode) == 0o700
