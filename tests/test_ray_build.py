"""Encoding on Ray (a local 2-CPU instance here): the same vectors as a local
build, into either store, and a clear error for a cluster that is down."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from tests.conftest import SEEDS, run_cli

pytestmark = pytest.mark.slow


def test_a_ray_build_into_milvus_matches_the_local_faiss_build(tmp_path, seed_index, engine):
    import qa
    from index_build import build
    from qa.config import BuildConfig
    from tests.test_milvus_store import _same_results, _seed_questions

    index = tmp_path / "index"
    report = build(
        [SEEDS],
        index,
        BuildConfig(progress=False, ray="local", store=f"milvus:{tmp_path / 'v.db'}"),
        log=lambda m: None,
    )
    assert report.sentences_embedded == report.unique_sentences > 40
    local = np.load(seed_index / "sentence_vectors.npy")
    remote = np.load(index / "sentence_vectors.npy")
    assert local.shape == remote.shape
    cos = np.einsum("ij,ij->i", local, remote)
    assert cos.min() >= 0.9999, cos.min()
    ray_engine = qa.load(index, warm=False)
    assert ray_engine.data.sentence_index.kind == "milvus"
    for q, history in _seed_questions():
        _same_results(engine.ask(q, history=history), ray_engine.ask(q, history=history))


def test_a_ray_cluster_that_is_down_fails_fast_and_writes_nothing(tmp_path, monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    port = silent.getsockname()[1]
    monkeypatch.setenv("SOURCE_QA_RAY_TIMEOUT", "2")
    try:
        t0 = time.monotonic()
        r = run_cli(
            "index_build",
            str(SEEDS),
            "--index",
            str(tmp_path / "i"),
            "--no-progress",
            "--ray",
            f"127.0.0.1:{port}",
            timeout=180,
        )
        took = time.monotonic() - t0
    finally:
        silent.close()
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port} within 2 s" in last and "nothing was changed" in last
    assert "Traceback" not in r.stderr and not (tmp_path / "i").exists()
    assert took < 90  # model load and a refused connection, never Ray's own 40 s of retries
    r = run_cli("index_build", str(SEEDS), "--index", str(tmp_path / "i"), "--ray", "nonsense", "--no-progress")
    assert r.returncode == 1 and "is not HOST:PORT" in r.stderr
