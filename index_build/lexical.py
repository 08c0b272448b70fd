"""BM25 over the unique sentences (bm25s: sparse matrices, plain numpy, saved
as .npy + JSON, never pickled)."""

from __future__ import annotations

from pathlib import Path

from qa.config import LexicalConfig
from qa.textnorm import lexical_terms


def build_bm25(texts: list[str], cfg: LexicalConfig, out_dir: Path) -> int:
    """Index `texts` (row i = unique sentence i) into `out_dir`; returns vocabulary size."""
    import bm25s

    corpus = [lexical_terms(t, cfg.language, cfg.stopwords) for t in texts]
    retriever = bm25s.BM25(k1=cfg.k1, b=cfg.b)
    retriever.index(corpus, show_progress=False)
    retriever.save(str(out_dir), show_progress=False)
    return len(retriever.vocab_dict)
