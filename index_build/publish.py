"""Write an index so that readers only ever see a complete one.

The new index is written into a hidden temp dir beside the target, every file
fsynced, and then swapped in with one atomic rename (Linux `renameat2` with
RENAME_EXCHANGE where available: the target path never disappears, even for an
instant).  A failed, interrupted or killed build leaves the old index as it was;
its leftover temp dir is removed by the next build, which holds the same lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from qa.errors import BuildError, BuildRunningError

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def check_target(index_dir: Path) -> None:
    """Fail early, with the fix, when the index cannot be written at all."""
    if index_dir.exists() and not index_dir.is_dir():
        raise BuildError(
            f"--index {index_dir} is a file, not a directory: choose another --index path or move the file away"
        )
    parent = index_dir.parent if str(index_dir.parent) else Path(".")
    if not parent.exists():
        raise BuildError(f"the folder {parent} for --index does not exist: create it or choose another --index path")
    for p, what in ((index_dir, "index directory"), (parent, "folder holding the index")):
        if not p.exists():
            continue
        mode = p.stat().st_mode
        # Mode bits, not os.access: root may write anywhere, but a folder made
        # read-only by its owner is a "do not touch" we respect.
        if not (mode & stat.S_IWUSR) or not os.access(p, os.W_OK):
            raise BuildError(
                f"the {what} {p} is read-only: make it writable (chmod u+w {p}) or choose another --index path"
            )


@contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """One build per index directory at a time."""
    lock_path = index_dir.parent / f".{index_dir.name}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise BuildError(
            f"cannot create the lock file {lock_path} ({e.strerror}): make {index_dir.parent} writable"
        ) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise BuildRunningError(f"another build of {index_dir} is running: wait for it to finish") from e
        yield
    finally:
        os.close(fd)


def remove_stale(index_dir: Path) -> int:
    """Delete temp dirs left by killed builds (call while holding the lock)."""
    n = 0
    for p in index_dir.parent.glob(f".{index_dir.name}.building-*"):
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


def temp_dir(index_dir: Path) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{index_dir.name}.building-", dir=index_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; an index is an ordinary folder
    return tmp


def write_error(index_dir: Path, e: BaseException) -> BuildError:
    """The one-line error of a failed write (disk full, permissions), saying the previous index is intact."""
    text = str(e).strip()
    why = getattr(e, "strerror", None) or (text.splitlines()[0] if text else type(e).__name__)
    return BuildError(
        f"cannot write the new index beside {index_dir} ({why}); nothing was changed, the previous "
        "index is as it was: free some disk space (or fix the folder's permissions) and build again"
    )


def fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False where the kernel/libc cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish(tmp: Path, index_dir: Path) -> None:
    """Make `tmp` the index at `index_dir`; the old one is deleted afterwards."""
    fsync_tree(tmp)
    if index_dir.exists():
        if not _exchange(tmp, index_dir):
            old = index_dir.parent / f".{index_dir.name}.building-old-{os.getpid()}"
            os.rename(index_dir, old)
            os.rename(tmp, index_dir)
            tmp = old
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old index
    else:
        os.rename(tmp, index_dir)
    _fsync_dir(index_dir.parent)
