"""Engine SDK: report phases, progress, logs, screenshots, findings and results to a bus supervisor."""

from __future__ import annotations

import logging

from .sdk import Engine

__all__ = ["Engine", "LogHandler"]

_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error"}


class LogHandler(logging.Handler):
    """Send `logging` records as log events: `logging.getLogger().addHandler(LogHandler(eng))`."""

    def __init__(self, engine: Engine, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.engine = engine

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.levelno >= logging.CRITICAL:
                level = "critical"
            else:
                level = next((name for no, name in sorted(_LEVELS.items(), reverse=True) if record.levelno >= no), "debug")
            self.engine.log(self.format(record), level=level)
        except Exception:
            self.handleError(record)
