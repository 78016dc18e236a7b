"""Who holds a TCP port: so "port in use" can name the program (Linux /proc; else unknown)."""

from __future__ import annotations

import os
from pathlib import Path


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    return inodes


def program_on_port(port: int) -> str | None:
    """``"name (pid N)"`` of a process listening on ``port``, if this system lets us see it."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    name = Path(f"/proc/{pid}/comm").read_text().strip()
                    return f"{name} (pid {pid})"
            except OSError:
                continue
    return None
