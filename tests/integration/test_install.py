"""bus installs beside supervisord (PyPI's `supervisor`) in one venv, in either order.

Both packages once wanted the top-level import name `supervisor`; now bus installs
everything under `bus` (docs/ARCHITECTURE.md, "One namespace"). Each test builds a
wheel of this tree, makes a fresh venv, installs both (supervisor from the
package registry), checks that `bus run` and `supervisord --version` work, then
uninstalls one and checks the other still works. The venvs see this venv's
dependencies (pyzmq, msgpack, click, rich) through a path file, so only the two
packages under test are installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)], cwd=out)
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("bus_orchestrator-*.whl")
    return found


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # only what the venv has
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env={**env, **kwargs.pop("env", {})}, **kwargs)  # type: ignore[arg-type]


def _venv(path: Path) -> Path:
    made = _run([sys.executable, "-m", "venv", str(path)])
    assert made.returncode == 0, made.stderr
    python = path / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    (Path(site) / "bus-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # this venv's pyzmq, msgpack, click, rich
    return path / "bin"


def _pip(bin_dir: Path, *args: str) -> None:
    done = _run([str(bin_dir / "python"), "-m", "pip", "-q", "--disable-pip-version-check", *args])
    assert done.returncode == 0, f"pip {' '.join(args)}: {done.stderr[-2000:]}"


def _bus_works(bin_dir: Path, runtime: Path) -> None:
    ran = _run([str(bin_dir / "bus"), "run", "-q", "--no-journal", "--", "python", "-c", "from bus.engine import Engine\nwith Engine() as e: e.result(ok=1)"],
               cwd=runtime, env={"BUS_RUNTIME_DIR": str(runtime), "BUS_STATE_DIR": str(runtime / "state")})
    assert ran.returncode == 0, ran.stderr
    imports = _run([str(bin_dir / "python"), "-c", "import bus.supervisor, bus.engine; print(bus.supervisor.__file__)"], cwd="/")
    assert imports.returncode == 0 and "/site-packages/bus/supervisor/" in imports.stdout, imports.stderr


def _supervisord_works(bin_dir: Path) -> None:
    version = _run([str(bin_dir / "supervisord"), "--version"], cwd="/")
    assert version.returncode == 0 and version.stdout.strip()[:1].isdigit(), version.stderr
    imports = _run([str(bin_dir / "python"), "-c", "import supervisor.supervisord, supervisor.options"], cwd="/")
    assert imports.returncode == 0, imports.stderr


@pytest.mark.parametrize("first", ["bus", "supervisor"])
def test_bus_and_supervisord_in_one_venv_in_either_order(first: str, wheel: Path, tmp_path: Path, runtime_dir: Path) -> None:
    bin_dir = _venv(tmp_path / "venv")
    packages = {"bus": ["--no-deps", str(wheel)], "supervisor": ["supervisor"]}
    second = "supervisor" if first == "bus" else "bus"
    _pip(bin_dir, "install", *packages[first])
    _pip(bin_dir, "install", *packages[second])
    _bus_works(bin_dir, runtime_dir)
    _supervisord_works(bin_dir)
    _pip(bin_dir, "uninstall", "-y", "bus-orchestrator" if first == "bus" else "supervisor")
    if first == "bus":
        _supervisord_works(bin_dir)
    else:
        _bus_works(bin_dir, runtime_dir)
