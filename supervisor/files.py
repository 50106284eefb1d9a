"""The open-files limit: raised for the supervisor, given back to its engines.

The supervisor holds a descriptor per connection, so it raises its soft limit
to the hard one at start (status shows both). Its engines get the limit the
supervisor was started with (Linux: prlimit right after the spawn), because
programs that use select() break on descriptors past 1024. Elsewhere they
inherit the raised one.
"""

from __future__ import annotations

import os
import sys

_STARTED_WITH: tuple[int, int] | None = None  # (soft, hard) before we raised it


def raise_files_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one (POSIX); returns (soft, hard) as they are then."""
    if sys.platform == "win32":  # pragma: no cover - no such limit to raise; the bound uses a nominal one
        return 8192, 8192
    import resource

    global _STARTED_WITH
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if _STARTED_WITH is None:
        _STARTED_WITH = (soft, hard)
    # An infinite hard limit is not a soft limit every system takes (macOS wants at most
    # kern.maxfilesperproc, OPEN_MAX 10240 being safe): the largest that is taken wins.
    targets = [hard] if hard != resource.RLIM_INFINITY else [1 << 20, 1 << 16, 10240]
    for target in targets:
        if soft == resource.RLIM_INFINITY or soft >= target:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
            break
        except (ValueError, OSError):
            continue
    return int(soft if soft != resource.RLIM_INFINITY else 1 << 20), int(hard if hard != resource.RLIM_INFINITY else 1 << 20)


def open_files() -> int | None:
    """Descriptors this process has open (Linux, else None)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # (listing it opens one)
    except OSError:
        return None


def give_back(pid: int) -> None:
    """Give an engine the limit the supervisor started with (Linux; a no-op elsewhere)."""
    if _STARTED_WITH is None or not sys.platform.startswith("linux"):
        return
    import resource

    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, _STARTED_WITH)
    except (OSError, ValueError):
        pass  # it is gone already, or not ours to change
