"""Writing outputs so that a failure never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from samplegan_tune.core.errors import OutputError, UserInputError


def check_output_file(path: str | Path, force: bool) -> Path:
    """Check that `path` may be written: refuse an existing file unless `force`, and an
    unwritable or missing parent folder. Returns the path; creates nothing."""
    path = Path(path)
    if path.exists() and not force:
        raise UserInputError(f"{path}: output exists; pass --force to overwrite it")
    if path.is_dir():
        raise UserInputError(f"{path}: is a folder, expected a file path")
    parent = path.parent if str(path.parent) else Path(".")
    _check_writable_dir(parent, what=str(path))
    return path


def _check_writable_dir(folder: Path, what: str) -> None:
    """Refuse unless `folder` exists as a writable folder or can be created.

    Tries for real (a probe folder made and removed in the nearest existing ancestor):
    permission bits say nothing to root, nor about a read-only or virtual file system.
    """
    existing = folder
    while not existing.exists():
        existing = existing.parent
    reason = f"{existing} is not a folder"
    if existing.is_dir():
        try:
            os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".samplegan-probe-"))
            return
        except OSError as err:
            reason = f"{existing} is not writable: {err.strerror or err}"
    raise UserInputError(f"{what}: cannot write there ({reason})")


def check_output_dir(path: str | Path) -> Path:
    """Check that folder `path` can be created or written into; creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{path}: exists and is not a folder")
    _check_writable_dir(path, what=str(path))
    return path


_RENAME_EXCHANGE = 2  # linux/fs.h


def exchange(a: Path, b: Path) -> None:
    """Swap two existing paths in one step (Linux renameat2 RENAME_EXCHANGE), so a reader or
    a kill never finds either missing. Where the call is missing (another OS, an old kernel,
    a file system without it), falls back to two renames, `b` moved aside first."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        at_cwd = -100  # AT_FDCWD
        done = renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), _RENAME_EXCHANGE)
        if done == 0:
            return
        if ctypes.get_errno() not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))
    aside = b.with_name(f".{b.name}.aside-{os.getpid()}")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def swap_in(staging: Path, target: Path) -> None:
    """Put the folder `staging` in place as `target` in one step: exchanged with an existing
    `target` (whose old content `staging` then holds, for the caller to remove), else renamed."""
    if target.exists():
        exchange(staging, target)
    else:
        os.replace(staging, target)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds.

    The file is created as any other (mode 0666 less the umask: mkstemp's 0600 kept other
    users from reading outputs, e.g. a served listening page's audio).
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path)
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        with writing(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def as_any_new_file(path: Path) -> None:
    """Give `path` the mode any new file gets (0666 less the umask): for a file a library
    wrote through its own private (0600) temporary file, e.g. safetensors' save_file."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a write to `path` that the file system refuses (full disk, quota, read-only,
    I/O error) into an OutputError naming `path` and the cause; other errors pass."""
    try:
        yield
    except UserInputError:
        raise
    except Exception as err:
        cause = _refused_by_file_system(err, path)
        if cause is None:
            raise
        raise OutputError(
            f"{path}: cannot write it ({cause}); nothing half-written is left"
        ) from err


_REFUSALS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG, errno.EACCES)


def _refused_by_file_system(err: Exception, path: Path) -> str | None:
    """The cause, when `err` is the file system refusing a write; None otherwise."""
    if isinstance(err, OSError) and err.errno in _REFUSALS:
        return os.strerror(err.errno)
    # Writers in C (torch's zip writer, libsndfile, safetensors) raise their own errors and
    # seldom say why ("unexpected pos", "System error"); a full file system can be checked.
    if "No space left on device" in str(err) or _full(path.parent):
        return os.strerror(errno.ENOSPC)
    return None


def _full(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


_TEMP = ".tmp+"  # a temporary sibling: .{name}.tmp+{host}+{pid}+{token}{suffix}


def temp_sibling(path: Path) -> Path:
    """A new name beside `path` for a file or folder to build and then move into place.

    It names the host and process that made it, so that once that process is gone (killed
    mid-write: nothing else would remove it) the next one here removes it first.
    """
    remove_stale_temps(path)
    token = secrets.token_hex(4)
    return path.with_name(
        f".{path.name}{_TEMP}{socket.gethostname()}+{os.getpid()}+{token}{path.suffix}"
    )


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temporary siblings of `path` whose process, on this host, has ended;
    returns them. Another host's are left alone (their process cannot be checked here)."""
    prefix, host, removed = f".{path.name}{_TEMP}", socket.gethostname(), []
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if not entry.name.startswith(prefix):
                continue
            owner, _, rest = entry.name[len(prefix) :].partition("+")
            pid = rest.partition("+")[0]
            if owner == host and pid.isdigit() and not _running(int(pid)):
                stale = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
                removed.append(stale)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a mapping naming one key twice (YAML lets the last win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` may override, as meant
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue  # an unhashable key: YAML's own constructor reports it
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(f"duplicate key {key!r} on lines {seen[key]} and {line}")
            seen[key] = line
        return super().construct_mapping(node, deep)


class DuplicateKeyError(yaml.YAMLError):
    """A YAML mapping with the same key twice."""


def read_yaml(path: Path, what: str) -> Any:
    """Parse a YAML file; UserInputError naming `path` if it is missing, not YAML, or names
    a key twice in one mapping."""
    if not path.is_file():
        raise UserInputError(f"{path}: {what} not found")
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader
    except DuplicateKeyError as err:
        raise UserInputError(f"{path}: {err}; each key may appear once") from err
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserInputError(f"{path}: not valid YAML ({err})") from err
