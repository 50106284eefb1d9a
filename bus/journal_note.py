"""Where a journal stopped, in a file that can be written on a full disk.

When writing the journal fails (a full disk, a file-size limit), the database
often cannot take even the line that says so. So beside `journal.sqlite` lies
`journal.sqlite.stopped`, made when the journal opens: 4 KiB of spaces,
overwritten in place (no new blocks are needed, so it works on a full disk and
under a file-size limit). It holds a JSON list of the newest stops:

    [{"run": "...", "after": 1234, "error": "the disk is full ...", "at": 1733000000.0,
      "stopped": 1733000060.0, "code": 1}]

`after` is the last gseq of that run committed to the journal; `stopped` and
`code` are filled in when the run ends (a journal that failed takes no more
writes). The next writer to open the journal moves the records into its `runs`
table and blanks the file. Readers show both (`bus runs`, replay).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SIZE = 4096
KEEP = 10  # stops kept (the newest), as many as fit


class StopNote:
    def __init__(self, journal: Path) -> None:
        self.path = journal.with_name(journal.name + ".stopped")

    def prepare(self) -> None:
        """Make the file (4 KiB of spaces) if it is not there, while there is room."""
        try:
            if self.path.stat().st_size == SIZE:
                return
        except OSError:
            pass
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, b" " * SIZE, 0)
            finally:
                os.close(fd)
        except OSError:
            pass  # no room even for this: a stop is then said only while the run lasts

    def read(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_bytes().strip()
        except OSError:
            return []
        try:
            records = json.loads(text) if text else []
        except ValueError:
            return []
        return [r for r in records if isinstance(r, dict) and isinstance(r.get("run"), str)] if isinstance(records, list) else []

    def record(self, run: str, **fields: Any) -> bool:
        """Add (or update) the stop of `run`; False if the file cannot be written."""
        known = self.read()
        mine = next((r for r in known if r["run"] == run), {"run": run})
        records = [r for r in known if r["run"] != run] + [{**mine, **fields}]
        return self._write(records[-KEEP:])

    def clear(self) -> bool:
        return self._write([])

    def _write(self, records: list[dict[str, Any]]) -> bool:
        while True:
            data = json.dumps(records, separators=(",", ":")).encode() if records else b""
            if len(data) <= SIZE or not records:
                break
            records = records[1:]  # the oldest goes first
        try:
            fd = os.open(self.path, os.O_WRONLY)  # in place: never O_TRUNC, never a new block
        except OSError:
            return False
        try:
            os.pwrite(fd, data.ljust(SIZE), 0)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)
