"""The builder's embedding path: chunked encoding, the fast precision, the cache.

Real model, real SQuAD-dev sentences; one fake encoder only where the point is
memory (what embed_texts holds), not numbers.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

from index_build.embed import VectorCache, embed_texts
from qa.encoder import Encoder, cpu_has_fast_bf16, load_encoder
from qa.textnorm import text_hash
from tests.conftest import REPO, bench_path


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """300 SQuAD-dev sentences in a shuffled order (so the builder's length sort
    really reorders them), lengths from a few words to a paragraph."""
    out: list[str] = []
    with bench_path("squad_v1.1", "squad_dev_v1.1_paragraphs.jsonl").open(encoding="utf-8") as f:
        for line in f:
            p = json.loads(line)
            out += [p["context"][a:b].strip() for a, b in p["sentence_spans"]]
            if len(out) >= 300:
                break
    out = [s for s in out[:300] if s]
    random.Random(7).shuffle(out)
    return out


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder(precision="bf16")  # falls back to fp32 on CPUs without native bf16


@pytest.fixture(scope="module")
def reference(encoder: Encoder, sentences: list[str]) -> np.ndarray:
    """Plain fp32 sentence-transformers encode, one call: the ground truth."""
    return encoder.model.encode(
        sentences, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )


def _fp32(encoder: Encoder) -> Encoder:
    return Encoder(encoder.model_id, encoder.model, "fp32")


def test_chunked_embed_texts_equals_one_shot_fp32(
    encoder: Encoder, sentences: list[str], reference: np.ndarray
) -> None:
    fp32 = _fp32(encoder)
    out, hashes, stats = embed_texts(
        lambda: fp32,
        fp32.dim,
        sentences,
        VectorCache(),
        batch_size=16,
        progress=False,
        label="sentences",
        chunk_size=37,
    )
    assert stats.encoded == len(sentences) and stats.reused == 0
    assert hashes == [text_hash(s) for s in sentences]
    assert out.shape == reference.shape and out.dtype == np.float32
    # row i is sentence i: chunking and the length sort never misplace a row
    assert float(np.max(np.abs(out - reference))) < 1e-5
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_fast_path_stays_within_cosine_0995_of_fp32(
    encoder: Encoder, sentences: list[str], reference: np.ndarray
) -> None:
    """The precision the builder picks on this CPU ("auto": bf16 where native)."""
    fast = "bf16" if cpu_has_fast_bf16() else "fp32"
    assert encoder.precision == fast
    out, _, _ = embed_texts(
        lambda: encoder, encoder.dim, sentences, VectorCache(), batch_size=32, progress=False, label="sentences"
    )
    cos = np.sum(out * reference, axis=1)
    assert float(cos.min()) >= 0.995, f"min cosine {cos.min():.5f} to fp32"
    assert float(cos.mean()) >= 0.999
    if fast == "bf16":
        # it really ran in bf16 (else this test proves nothing about the fast path)
        assert float(cos.min()) < 0.999999


def test_cache_reuse_encodes_only_new_texts(encoder: Encoder, sentences: list[str]) -> None:
    fp32 = _fp32(encoder)
    old, new = sentences[:200], sentences[200:260]
    old_vecs, old_hashes, _ = embed_texts(lambda: fp32, fp32.dim, old, VectorCache(), 32, False, "sentences")
    cache = VectorCache(old_hashes, old_vecs)

    def no_model() -> Encoder:
        raise AssertionError("everything is cached: the model must not be loaded")

    again, _, stats = embed_texts(no_model, fp32.dim, old[::-1], cache, 32, False, "sentences")
    assert (stats.encoded, stats.reused) == (0, 200)
    assert np.array_equal(again, old_vecs[::-1])

    texts = new[:30] + old[:100] + new[30:]
    out, _, stats = embed_texts(lambda: fp32, fp32.dim, texts, cache, 32, False, "sentences", chunk_size=16)
    assert (stats.encoded, stats.reused) == (60, 100)
    assert np.array_equal(out[30:130], old_vecs[:100])  # reused rows are the cached vectors, bit for bit
    fresh = fp32.encode(new)
    assert float(np.max(np.abs(np.concatenate([out[:30], out[130:]]) - fresh))) < 1e-5


class _FakeEncoder:
    """Returns deterministic vectors; records how it was called."""

    precision = "fp32"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.calls: list[int] = []

    def encode(self, texts, batch_size=32, precision=None, on_batch=None, pool=None):
        assert pool is None
        self.calls.append(len(texts))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = float(len(t))
        for i in range(0, len(texts), batch_size):
            if on_batch is not None:
                on_batch(min(batch_size, len(texts) - i))
        return out


def test_embed_texts_never_holds_a_second_full_copy() -> None:
    """Peak memory of embedding N texts is the output array plus one chunk, not 2x."""
    dim, n = 384, 20_000
    texts = [f"sentence number {i} " + "x" * (i % 97) for i in range(n)]
    enc = _FakeEncoder(dim)
    full = n * dim * 4  # 30.7 MB
    tracemalloc.start()
    try:
        out, hashes, stats = embed_texts(
            lambda: enc, dim, texts, VectorCache(), 64, False, "sentences", chunk_size=2048, processes=1
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.encoded == n and max(enc.calls) <= 2048 and sum(enc.calls) == n
    assert np.array_equal(out[:, 0], np.array([len(t) for t in texts], dtype=np.float32))
    assert peak < 1.4 * full, f"peak {peak / 1e6:.1f} MB for a {full / 1e6:.1f} MB output"


def test_process_pool_gives_the_same_vectors(
    encoder: Encoder, sentences: list[str], reference: np.ndarray, monkeypatch
) -> None:
    """embed_texts with 2 processes (this one + a spawned worker) = one-shot fp32,
    every text counted once by the progress callback."""
    import index_build.embed as embed_mod

    monkeypatch.setattr(embed_mod, "POOL_MIN_TEXTS", 0)
    fp32 = _fp32(encoder)
    out, _, stats = embed_texts(
        lambda: fp32, fp32.dim, sentences, VectorCache(), 16, False, "sentences", chunk_size=100, processes=2
    )
    assert stats.encoded == len(sentences)
    assert float(np.max(np.abs(out - reference))) < 1e-5

    from qa.encoder import EncoderPool

    counted: list[int] = []
    with EncoderPool(fp32, processes=2) as pool:
        assert pool.wait_ready(300)  # the worker really takes part
        worker = pool.workers[0]
        got = fp32.encode(sentences, batch_size=16, on_batch=counted.append, pool=pool)
    assert not worker.is_alive()  # stopped on exit
    assert sum(counted) == len(sentences)
    assert float(np.max(np.abs(got - reference))) < 1e-5


def test_process_pool_survives_a_dead_worker(encoder: Encoder, sentences: list[str], reference: np.ndarray) -> None:
    from qa.encoder import EncoderPool

    fp32 = _fp32(encoder)
    with EncoderPool(fp32, processes=2) as pool:
        assert pool.wait_ready(300)
        os.kill(pool.workers[0].pid, signal.SIGKILL)  # e.g. the OOM killer
        pool.workers[0].join(10)
        got = fp32.encode(sentences, batch_size=16, pool=pool)
    assert float(np.max(np.abs(got - reference))) < 1e-5


_ORPHAN = """
import sys, time
sys.path.insert(0, sys.argv[1])
from qa.encoder import EncoderPool, load_encoder
if __name__ == "__main__":
    pool = EncoderPool(load_encoder(precision="fp32"), processes=2)
    pool.wait_ready(300)
    print(pool.workers[0].pid, flush=True)
    time.sleep(600)
"""


def test_pool_worker_exits_when_its_parent_is_killed(tmp_path) -> None:
    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(REPO)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        worker = int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            status = open(f"/proc/{worker}/status", encoding="ascii").read()
        except FileNotFoundError:
            return
        if "\nState:\tZ" in status:  # exited; only its new parent has not reaped it yet
            return
        time.sleep(0.2)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError("an EncoderPool worker outlived its SIGKILLed parent")


def test_pool_with_no_model_here_encodes_in_its_workers_and_survives_their_death(
    encoder: Encoder, sentences: list[str], reference: np.ndarray
) -> None:
    """The warm pool of an incremental build: this process holds no model;
    the workers do all of it, and if they die the model is loaded here."""
    from qa.encoder import EncoderPool

    fp32 = _fp32(encoder)
    loads: list[int] = []

    def load() -> Encoder:
        loads.append(1)
        return fp32

    with EncoderPool(encoder.model_id, processes=2, precision="fp32") as pool:
        got = np.zeros_like(reference)
        pool.encode(None, sentences, got, 16, "fp32", None, load=load)
        assert not loads  # the worker did everything (it loaded while we waited)
        assert float(np.max(np.abs(got - reference))) < 1e-5
        os.kill(pool.workers[0].pid, signal.SIGKILL)
        pool.workers[0].join(10)
        again = np.zeros_like(reference)
        pool.encode(None, sentences, again, 16, "fp32", None, load=load)
    assert loads == [1]
    assert float(np.max(np.abs(again - reference))) < 1e-5


_UNGUARDED = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from index_build import build
from qa.config import BuildConfig
print("script body runs", flush=True)
src, idx = Path(sys.argv[2]), Path(sys.argv[3])
if idx.exists():
    (src / "new.txt").write_text("Harbour reopens\\n\\nThe old harbour reopened on Monday after two years of "
                                 "repairs. Fishing boats were the first to return.\\n", encoding="utf-8")
report = build([src], idx, BuildConfig(progress=False), log=lambda m: None)
print("embedded", report.sentences_embedded, "torch here", "torch" in sys.modules, flush=True)
"""


def test_incremental_build_from_a_script_without_a_main_guard(tmp_path) -> None:
    """A user's script calls build() with no `if __name__ == "__main__"`:
    an incremental build's encoder workers must not run the script again (as
    multiprocessing's spawn would), and its model loads in them, not here."""
    import shutil

    from tests.conftest import SEEDS

    shutil.copytree(SEEDS, tmp_path / "src")
    script = tmp_path / "user_script.py"
    script.write_text(_UNGUARDED, encoding="utf-8")
    runs = [
        subprocess.run(
            [sys.executable, str(script), str(REPO), str(tmp_path / "src"), str(tmp_path / "idx")],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        for _ in range(2)
    ]
    for got in runs:
        assert got.returncode == 0, got.stderr[-2000:]
        assert got.stdout.count("script body runs") == 1
        assert "Traceback" not in got.stderr
    assert "torch here True" in runs[0].stdout  # the full build loads the model here
    assert "embedded 2 torch here False" in runs[1].stdout  # the 2 new sentences, encoded by the warm worker


def test_engine_encode_path_gives_sentence_transformers_vectors(
    encoder: Encoder, sentences: list[str], reference: np.ndarray
) -> None:
    """Encoder.encode runs the model's own modules without the per-call
    overhead of SentenceTransformer.encode; it must give the same vectors,
    for one question as for a batch of mixed lengths."""
    fp32 = _fp32(encoder)
    assert float(np.max(np.abs(fp32.encode(sentences, batch_size=32) - reference))) < 1e-5
    q = "How long did the call between Biden and Netanyahu last?"
    one = fp32.encode([q])
    want = encoder.model.encode([q], normalize_embeddings=True, convert_to_numpy=True)
    assert one.shape == (1, fp32.dim) and float(np.max(np.abs(one - want))) < 1e-6
