"""The bus supervisor: runs engines, relays what they push to subscribers."""

from __future__ import annotations

from .config import EngineSpec, SupervisorConfig, load_config
from .core import Supervisor

__all__ = ["EngineSpec", "Supervisor", "SupervisorConfig", "load_config"]
