"""One driver per experiment: `search`, `resume` and `leaderboard` hold a lock file in the
experiment folder for their whole life, so a second driver is refused, naming the holder,
instead of marking the first one's trials lost or ranking half a search.

The lock is an exclusive `flock` on `driver.lock`, which says who holds it (pid, host,
command, since). The kernel drops a flock when its process ends, however it ends (even
SIGKILL), so a lock left by a dead driver on this machine is stale and taken over. A file
naming another machine cannot be checked from here: it is refused until that driver ends
or the user, knowing it is gone, deletes the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from samplegan_tune.core.errors import UserInputError

LOCK_FILE = "driver.lock"


@contextlib.contextmanager
def driver_lock(folder: Path, command: str) -> Iterator[None]:
    """Hold `folder`'s driver lock for the block; UserInputError naming the holder if
    another live driver has it. Released (the file removed) however the block ends."""
    path = Path(folder) / LOCK_FILE
    fd = _acquire(path)
    try:
        try:
            _write_holder(fd, command)
        except OSError as err:
            raise UserInputError(f"{path}: cannot write the experiment's lock ({err})") from err
        yield
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.unlink(path)  # before the flock goes, so nobody locks a removed file
        os.close(fd)


def holder(folder: Path) -> str | None:
    """Who drives the experiment in `folder` now ("search, pid 12 on host h since 10:02"),
    or None when no driver holds it."""
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if _try_flock(fd):
            info = _read_holder(fd)
            return _describe(info) if info and info.get("host") != _host() else None
        return _describe(_read_holder(fd))
    finally:
        os.close(fd)


def _acquire(path: Path) -> int:
    """An open descriptor of `path`, exclusively flocked, naming no driver elsewhere."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise UserInputError(f"{path}: cannot take the experiment's lock ({err})") from err
        if not _try_flock(fd):
            info = _read_holder(fd)
            os.close(fd)
            raise UserInputError(
                f"{path.parent}: another driver holds this experiment ({_describe(info)}); "
                "wait for it to end, or stop it, then run this again"
            )
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)  # its holder removed the file as we opened it: lock the new one
    info = _read_holder(fd)
    if info and info.get("host") != _host():
        os.close(fd)
        raise UserInputError(
            f"{path.parent}: a driver on another machine holds this experiment "
            f"({_describe(info)}); if it has ended, delete {path} and run this again"
        )
    return fd  # a lock of a driver on this machine that has ended is stale: ours now


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_holder(fd: int, command: str) -> None:
    info = {"pid": os.getpid(), "host": _host(), "command": command, "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    os.fsync(fd)


def _read_holder(fd: int) -> dict[str, Any] | None:
    """The holder the file names; None if it names none (new, or being written)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "a driver just starting"
    since = info.get("since")
    when = ""
    if isinstance(since, (int, float)):
        when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since))
    return f"{info.get('command')}, pid {info.get('pid')} on host {info.get('host')}{when}"


def _host() -> str:
    return socket.gethostname()
