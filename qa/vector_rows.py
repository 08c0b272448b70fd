"""Rows of a large vector file read on demand, without mapping the file in.

A question reads a few hundred scattered rows of `sentence_vectors.npy` and
`passage_vectors.npy` (candidate scores, exact re-scoring of the ANN
results).  Through a memory map each of those reads faults in the page *and
its neighbours* (the kernel's fault-around and read-ahead), so a
long-running engine ends up with every page of both files in its resident
set.  Reading exactly the rows wanted with `pread` goes through the same page
cache (no slower once warm, and the kernel may still evict it) but leaves the
process's own memory at what it uses (measured: docs/performance.md, "Serving
1M sentences").

Small files stay memory-mapped (`open_rows`): mapping all of a small file is
harmless, and a memory map is the fastest way to read it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

# Files at least this big are read row by row (pread) instead of memory-mapped.
# 256 MB is ~175k vectors of 384 float32: below that, the whole file in the
# resident set costs less than the model does.
PREAD_MIN_BYTES = 256 * 2**20
ENV_PREAD_MIN_BYTES = "SOURCE_QA_PREAD_MIN_BYTES"


class RowFile:
    """A read-only (rows, dim) float32 matrix in a .npy file, indexed like an
    array (`r[ids]`, `r[i]`, `r[lo:hi]`, `np.asarray(r)`) and read with pread.

    Thread-safe: pread takes its offset per call, so threads share the fd."""

    def __init__(self, path: str | Path, mapped: np.memmap) -> None:
        self.path = Path(path)
        self.shape = tuple(mapped.shape)
        self.dtype = mapped.dtype
        self.ndim = 2
        self._row_bytes = int(mapped.shape[1]) * mapped.dtype.itemsize
        self._offset = int(mapped.offset)
        self._fd = os.open(self.path, os.O_RDONLY)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __del__(self) -> None:  # noqa: D105
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _read_runs(self, out: np.ndarray, rows: np.ndarray) -> None:
        """Fill out[j] with row rows[j] (rows sorted, unique): one pread per
        run of consecutive rows."""
        if not len(rows):
            return
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        starts = np.r_[0, breaks]
        ends = np.r_[breaks, len(rows)]
        flat = out.reshape(len(rows), -1)
        for a, z in zip(starts.tolist(), ends.tolist()):
            buf = memoryview(flat[a:z]).cast("B")  # type: ignore[arg-type]  # numpy arrays are buffers
            want = len(buf)
            got = os.preadv(self._fd, [buf], self._offset + int(rows[a]) * self._row_bytes)
            if got != want:
                raise OSError(f"{self.path}: short read ({got} of {want} bytes): the file was cut short")

    def rows(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        n = self.shape[0]
        if len(ids) and (ids.min() < -n or ids.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        ids = np.where(ids < 0, ids + n, ids)
        uniq, inv = np.unique(ids, return_inverse=True)
        out = np.empty((len(uniq), self.shape[1]), dtype=self.dtype)
        self._read_runs(out, uniq)
        return out if len(uniq) == len(ids) and np.array_equal(uniq, ids) else out[inv]

    def __getitem__(self, key):
        if isinstance(key, slice):
            lo, hi, step = key.indices(self.shape[0])
            if step != 1:
                return self.rows(np.arange(lo, hi, step))
            out = np.empty((max(0, hi - lo), self.shape[1]), dtype=self.dtype)
            self._read_runs(out, np.arange(lo, hi))
            return out
        if isinstance(key, (int, np.integer)):
            return self.rows(np.array([int(key)]))[0]
        return self.rows(np.asarray(key))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self[:]
        return a if dtype is None else a.astype(dtype, copy=False)


# A vector matrix as the engine holds it: an array (in memory or memory-mapped) or a RowFile.
Rows = np.ndarray | RowFile


def pread_min_bytes() -> int:
    v = os.environ.get(ENV_PREAD_MIN_BYTES, "").strip()
    return int(v) if v else PREAD_MIN_BYTES


def open_rows(path: str | Path, mapped: np.memmap) -> Rows:
    """`mapped` itself for a small file, a RowFile over the same file for a
    large one (see the module docstring)."""
    if Path(path).stat().st_size < pread_min_bytes():
        return np.asarray(mapped)  # the mapped memory, without np.memmap's per-slice overhead
    return RowFile(path, mapped)
