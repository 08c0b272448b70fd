"""The embedding step on a Ray cluster (`index-build --ray [ADDRESS]`).

Only the encoding moves: the texts the embedding cache does not hold go out
as a Ray Dataset, `map_batches` hands them to actors that each load the
model once (qa.encoder, the same precision and sequence length as a local
build, so the vectors agree with a local build's: docs/scaling.md), and the
vectors stream back into the builder's array by row number.  Everything
else -- reading, dedup, BM25, the index and its atomic publish -- stays in
the builder's process, so a failed Ray job leaves the previous index as it
was, like any failed build.

No address: a local Ray instance on this machine's CPUs (no gain on 2 cores:
the point is the path).  An address: `HOST:PORT` of a running cluster (its
nodes need source-qa and the model installed), checked with a plain TCP
connect first, because Ray itself retries an unreachable head for a long
time (docs/scaling.md, encoding on Ray).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Callable

import numpy as np

from qa.errors import BuildError

LOCAL = "local"
# texts per map_batches call: larger batches pad more and overlap less;
# chosen on this machine (docs/evaluation.md, decision log)
BATCH = 64
CONNECT_TIMEOUT = 10.0
ENV_TIMEOUT = "SOURCE_QA_RAY_TIMEOUT"
INSTALL_HINT = 'install Ray with: pip install "source-qa[ray]"'


def _timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(ENV_TIMEOUT, CONNECT_TIMEOUT)))
    except ValueError:
        return CONNECT_TIMEOUT


def check_reachable(address: str, timeout: float | None = None) -> None:
    """BuildError (one line, with the fix) unless HOST:PORT accepts a TCP
    connection within `timeout` seconds."""
    timeout = _timeout() if timeout is None else timeout
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise BuildError(
            f"--ray {address!r} is not HOST:PORT: give the Ray head's address, e.g. --ray 10.0.0.5:6379, "
            "or no address for a local Ray instance"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise BuildError(
            f"cannot reach the Ray cluster at {address} within {timeout:g} s ({why}); nothing was "
            "changed: start the cluster (ray start --head) or fix the address"
        ) from e


class _Embedder:
    """A Ray actor: loads the model once, embeds batches of rows."""

    def __init__(self, model_id: str, precision: str, batch_size: int) -> None:
        import torch

        from qa.encoder import load_encoder

        torch.set_num_threads(1)  # one CPU per actor: actors, not threads, use the cores
        self.encoder = load_encoder(model_id, precision=precision)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vecs = self.encoder.encode([str(t) for t in batch["text"]], batch_size=self.batch_size)
        return {"row": batch["row"], "vec": vecs}


@dataclass
class RayEncoder:
    """Encodes lists of texts on Ray; a context manager that starts (or
    joins) Ray and shuts down what it started."""

    address: str
    model_id: str
    precision: str
    batch_size: int = 32
    actors: int | None = None  # default: one per CPU of the cluster
    _started: bool = False

    def __enter__(self) -> "RayEncoder":
        try:
            import ray
            import ray.data  # noqa: F401
        except ImportError as e:
            raise BuildError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from e
        import logging

        # no usage reports (offline), and none of Ray's start-up chatter: the
        # build prints its own progress
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        for name in ("ray", "ray.data", "ray._private", "ray.runtime_env"):
            logging.getLogger(name).setLevel(logging.ERROR)
        env = {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
        }
        quiet = dict(
            include_dashboard=False, log_to_driver=False, logging_level="warning", runtime_env={"env_vars": env}
        )
        if self.address == LOCAL:
            # "local": always a new instance of our own, never a cluster some
            # other program left running on this machine (ray.init() with no
            # address would join that one)
            ray.init(address="local", num_cpus=os.cpu_count() or 1, **quiet)
        else:
            check_reachable(self.address)
            try:
                ray.init(address=self.address, **quiet)
            except (ConnectionError, RuntimeError) as e:
                raise BuildError(
                    f"cannot join the Ray cluster at {self.address} ({str(e).splitlines()[0][:200]}); "
                    "nothing was changed: check that it runs the same Ray version"
                ) from e
        self._started = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        if self.actors is None:
            self.actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def encode(self, texts: list[str], out: np.ndarray, on_batch: Callable[[int], None] | None = None) -> None:
        """Vectors of `texts` into `out` (row-aligned), as they arrive."""
        import ray.data

        if not texts:
            return
        ds = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)])
        vecs = ds.map_batches(
            _Embedder,
            batch_size=BATCH,
            batch_format="numpy",
            num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=self.actors),
            fn_constructor_kwargs={
                "model_id": self.model_id,
                "precision": self.precision,
                "batch_size": self.batch_size,
            },
        )
        seen = 0
        for batch in vecs.iter_batches(batch_size=None, batch_format="numpy"):
            out[batch["row"]] = batch["vec"]
            seen += len(batch["row"])
            if on_batch is not None:
                on_batch(len(batch["row"]))
        if seen != len(texts):
            raise BuildError(
                f"the Ray job returned {seen} vectors for {len(texts)} texts; nothing was changed: build again"
            )
