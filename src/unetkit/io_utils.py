"""Safe output: atomic writes, run-directory locks and checks that name the path at fault.

A crash or kill never leaves a half-written checkpoint, artifact or output (temp file, then
rename); a full disk or a read-only folder ends in one sentence naming the file, with the
previous version of it intact.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from unetkit.errors import UnetkitError
from unetkit.progress import first_process

TEMP_SUFFIX = ".tmp"
LOCK_NAME = ".unetkit.lock"
_HOST = socket.gethostname().split(".")[0] or "host"  # temps name their writer: host-pid


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (the folder is read-only)"
    return exc.strerror or type(exc).__name__


def ensure_dir(path: str | Path, label: str | None = None) -> Path:
    """Create `path` as a folder, or say in one sentence (naming `label`) why it cannot be."""
    path = Path(path)
    label = label or str(path)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise UnetkitError(f"{label} cannot be created: {parent} is a file, not a folder.")
        if parent.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnetkitError(f"{label} cannot be created: {_why(exc)}.") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise UnetkitError(f"{label} is not writable: permission denied.")
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it over `path`, else delete it.

    An OSError while writing (disk full, read-only folder) becomes one UnetkitError naming
    `path`; whatever `path` held before is left as it was.
    """
    path = Path(path)
    try:
        ensure_dir(path.parent, f"The folder for {path}")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.",
                                   suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise UnetkitError(f"Could not write {path}: {_why(exc)}.") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp_path, path)
        _remove_dead_writers_temps(path)
    except OSError as exc:
        raise UnetkitError(f"Could not write {path}: {_why(exc)}; nothing was replaced.") \
            from exc
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def _remove_dead_writers_temps(path: Path) -> None:
    """Delete temps for `path` that a killed process on this machine left (a re-run's rewrite).

    A temp's name carries its writer's host and pid; only temps of this host whose process
    is gone are removed, so a live writer (here or on another node) never loses its file.
    """
    mine = f".{path.name}.{_HOST}-"
    for tmp in path.parent.glob(f"{glob.escape(mine)}*{TEMP_SUFFIX}"):
        pid = tmp.name[len(mine):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate it there; keep the temp
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def remove_stale_temps(*folders: Path) -> list[Path]:
    """Delete the temp files a killed process left beside its outputs (never read)."""
    removed = []
    for folder in folders:
        if folder.is_dir():
            for p in folder.glob(f".*{TEMP_SUFFIX}"):
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
    return removed


@contextlib.contextmanager
def run_lock(run_dir: str | Path, *subfolders: str) -> Iterator[Path]:
    """Hold an exclusive lock on a run directory; a second holder fails at once, naming it.

    An OS lock (flock): released when the process ends, even by SIGKILL, so no stale lock.
    Once held, the temp files a killed run left in the directory and `subfolders` are
    deleted. Only the first process of a distributed run locks and clears: the others may
    be writing while they start.
    """
    run_dir = ensure_dir(run_dir, f"--out {run_dir}")
    lock = run_dir / LOCK_NAME
    if not first_process():
        yield lock
        return
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; proceed unlocked
        remove_stale_temps(run_dir, *(run_dir / s for s in subfolders))
        yield lock
        return
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise UnetkitError(f"{run_dir} is in use by another unetkit fit ({holder}); wait "
                               f"for it to end or choose another --out (lock: {lock}).") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}")
        f.flush()
        remove_stale_temps(run_dir, *(run_dir / s for s in subfolders))
        try:
            yield lock
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
