"""Large vector files are read row by row (pread), not mapped in: same
values as the memory map, same answers from the engine (the resident memory
it saves is measured by benchmarks/scale.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qa.vector_rows import ENV_PREAD_MIN_BYTES, RowFile, open_rows


@pytest.fixture()
def npy(tmp_path: Path) -> tuple[Path, np.ndarray]:
    a = np.random.default_rng(0).standard_normal((1000, 16)).astype(np.float32)
    p = tmp_path / "v.npy"
    np.save(p, a)
    return p, a


def test_rows_read_like_the_array(npy, monkeypatch) -> None:
    path, a = npy
    monkeypatch.setenv(ENV_PREAD_MIN_BYTES, "0")
    r = open_rows(path, np.load(path, mmap_mode="r"))
    assert isinstance(r, RowFile) and r.shape == a.shape and len(r) == 1000
    for key in (np.array([5, 3, 3, 999, 0, 4]), np.array([], dtype=np.int64), np.arange(10, 20), [7, -1]):
        np.testing.assert_array_equal(r[key], a[np.asarray(key, dtype=np.int64)])
    np.testing.assert_array_equal(r[42], a[42])
    np.testing.assert_array_equal(r[100:300], a[100:300])
    np.testing.assert_array_equal(r[::97], a[::97])
    np.testing.assert_array_equal(np.asarray(r), a)
    with pytest.raises(IndexError):
        r[np.array([1000])]
    r.close()


def test_small_files_stay_memory_mapped(npy, monkeypatch) -> None:
    path, _ = npy
    monkeypatch.delenv(ENV_PREAD_MIN_BYTES, raising=False)
    mapped = np.load(path, mmap_mode="r")
    rows = open_rows(path, mapped)
    # a plain array over the mapped pages: no copy, no np.memmap per-slice cost
    assert type(rows) is np.ndarray and np.shares_memory(rows, mapped) and not rows.flags.owndata


def test_a_file_cut_short_after_load_is_an_error_not_garbage(npy, monkeypatch) -> None:
    path, _ = npy
    monkeypatch.setenv(ENV_PREAD_MIN_BYTES, "0")
    r = open_rows(path, np.load(path, mmap_mode="r"))
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 64 * 16)
    with pytest.raises(OSError, match="short read"):
        r[np.array([999])]
    r.close()


def test_engine_answers_the_same_reading_rows(seed_index: Path, monkeypatch) -> None:
    import qa

    mapped = qa.load(seed_index)
    monkeypatch.setenv(ENV_PREAD_MIN_BYTES, "0")
    pread = qa.load(seed_index)
    assert isinstance(pread.data.sentence_vectors, RowFile) and isinstance(pread.data.passage_vectors, RowFile)
    for q in (
        "How long did Biden and Netanyahu talk on Sunday?",
        "Which city is Israel expected to launch a ground offensive on?",
    ):
        a, b = mapped.ask(q).to_dict(), pread.ask(q).to_dict()
        assert a == b and a["answers"]
    pread.data.close()
