"""The on-disk index format, defined once for the builder (writer) and the
retriever (reader).

An index is a directory::

    manifest.json          format version, model, dtype, counts, file hashes
    meta.sqlite            documents, unique sentences, occurrences, passages
    sentences.faiss        inner-product index over unique-sentence vectors: exact
                           (flat) when small, IVF over 8-bit codes when large
                           (manifest "vector_index" says which, and its settings)
    sentence_vectors.npy   the same vectors, float32 (embedding cache, MMR)
    passage_vectors.npy    each passage's vector, float32, read by row (indexes
                           built before 2026-12-04 also hold a passages.faiss,
                           which nothing reads any more)
    doc_vectors.npy        each document's normalised mean sentence vector, float32
                           (manifest "vector_index.documents"; indexes built before
                           it lack both, and the loader computes them instead)
    bm25/                  bm25s index over unique sentences (numpy arrays + JSON)

Nothing here is pickled: JSON, SQLite, .npy (loaded with allow_pickle=False)
and FAISS's own binary format.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from qa.errors import IndexLoadError

FORMAT_VERSION = 2  # 2: documents carry published, outlet, author, url
MANIFEST = "manifest.json"
META_DB = "meta.sqlite"
SENTENCE_FAISS = "sentences.faiss"
SENTENCE_VECTORS = "sentence_vectors.npy"
PASSAGE_VECTORS = "passage_vectors.npy"
DOC_VECTORS = "doc_vectors.npy"
BM25_DIR = "bm25"
REBUILD_HINT = "rebuild it with: python -m index_build --full"

SCHEMA = """
CREATE TABLE documents (
    doc_idx INTEGER PRIMARY KEY,      -- row order = build order
    doc_id TEXT NOT NULL UNIQUE,      -- path relative to its source folder, no extension
    title TEXT NOT NULL,
    path TEXT NOT NULL,
    text TEXT NOT NULL,               -- extracted text; all spans index into it
    sha256 TEXT NOT NULL,             -- of the file's bytes
    encoding TEXT NOT NULL,
    n_sentences INTEGER NOT NULL,
    published TEXT,                   -- ISO 8601 date the article declares; NULL when unknown
    outlet TEXT,
    author TEXT,
    url TEXT                          -- http(s) only
);
CREATE TABLE sentences (              -- unique sentences; sent_idx = FAISS/BM25 row
    sent_idx INTEGER PRIMARY KEY,
    text TEXT NOT NULL,               -- canonical text, verbatim from its first source
    hash TEXT NOT NULL,               -- text_hash(text): embedding cache key
    n_occurrences INTEGER NOT NULL,
    n_variants INTEGER NOT NULL       -- distinct wordings merged into it (near-dups)
);
CREATE TABLE doc_sentences (          -- every sentence of every document, in order
    doc_idx INTEGER NOT NULL,
    sent_no INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    sent_idx INTEGER,                 -- NULL for headlines/captions (not answers)
    PRIMARY KEY (doc_idx, sent_no)
);
CREATE INDEX doc_sentences_by_sent ON doc_sentences(sent_idx);
CREATE TABLE passages (               -- passage_idx = FAISS row
    passage_idx INTEGER PRIMARY KEY,
    doc_idx INTEGER NOT NULL,
    first_sent_no INTEGER NOT NULL,
    last_sent_no INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX passages_by_doc ON passages(doc_idx, first_sent_no);
CREATE TABLE index_info (              -- the manifest's identity, kept where editing
    key TEXT PRIMARY KEY,              -- manifest.json cannot reach: a manifest that
    value TEXT NOT NULL                -- disagrees with it was edited or is another index's
);
"""
# Manifest fields copied into meta.sqlite's index_info at build time and
# compared on every load.
IDENTITY_FIELDS = ("build_id", "format_version", "model", "dimension", "precision", "normalized", "max_seq_length")


def write_identity(index_dir: Path, manifest: "Manifest") -> None:
    """The manifest's identity into meta.sqlite's index_info, replacing any
    earlier one (an append build starts from a copy of the previous index's):
    the loader refuses a manifest that was edited or belongs to another build."""
    con = connect(index_dir, readonly=False)
    try:
        con.execute("DELETE FROM index_info")
        con.executemany("INSERT INTO index_info VALUES (?,?)", sorted(manifest.identity().items()))
        con.commit()
    finally:
        con.close()


@dataclass
class Manifest:
    """What an index holds and how it was made; checked on every load."""

    format_version: int
    package_version: str
    model: str
    dimension: int
    dtype: str  # of stored vectors
    precision: str  # encoder precision used: "fp32" or "bf16"
    normalized: bool
    max_seq_length: int
    built_at: str
    build_seconds: float
    segmenter: dict[str, Any]
    passages: dict[str, Any]
    dedup: dict[str, Any]
    lexical: dict[str, Any]
    counts: dict[str, int]
    files: dict[str, dict[str, Any]]  # doc_id -> path, sha256, bytes, encoding
    bf16_check: dict[str, Any] = field(default_factory=dict)
    build_id: str = ""  # random per build; also in meta.sqlite (index_info), so parts of two builds never mix
    # {"sentences": {...}, "passages": {...}}: FAISS index type and its build and
    # search parameters (qa.vector_index); empty (older indexes) means both flat.
    # "documents": {"file": DOC_VECTORS, "rows": n}: the stored document vectors
    # (absent in older indexes: the loader computes them from the sentence vectors)
    vector_index: dict[str, Any] = field(default_factory=dict)
    # where the sentence vectors are searched (qa.vector_store): empty or
    # {"kind": "faiss"} = sentences.faiss here; {"kind": "milvus", "uri",
    # "alias", "collection", "index", "rows"} = that Milvus collection
    store: dict[str, Any] = field(default_factory=dict)
    # dump path (as in `files`) -> where its read ended (index_build.dumps.DumpState:
    # bytes, sha256, lines, keys, ends_line) and its row counts (articles,
    # rows_skipped, first_skipped): how a later build finds that a dump only grew
    # and reads just its new rows (index_build.append); absent in older indexes
    dumps: dict[str, Any] = field(default_factory=dict)
    # path -> bytes, sha256, reason of each file found but unusable (skipped while
    # reading): unchanged, it does not stop a later build from appending to dumps
    unreadable: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, str]:
        """What meta.sqlite's index_info holds (as text)."""
        return {k: json.dumps(getattr(self, k)) for k in IDENTITY_FIELDS}

    def to_json(self) -> str:
        """Indented for people, but `files` and `dumps` (one entry per article
        or dump: 100,000 in a big dump) one compact entry a line, written by
        json's C encoder: indenting them all took seconds (docs/performance.md,
        "Dumps")."""
        parts = []
        compact = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
        for f in fields(self):
            key, value = json.dumps(f.name), getattr(self, f.name)
            if f.name in ("files", "dumps", "unreadable") and isinstance(value, dict) and value:
                rows = ",\n".join(f"    {compact(k)}: {compact(v)}" for k, v in value.items())
                parts.append(f"  {key}: {{\n{rows}\n  }}")
            else:
                parts.append(f"  {key}: " + json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n  "))
        return "{\n" + ",\n".join(parts) + "\n}"

    @classmethod
    def read(cls, index_dir: Path) -> "Manifest":
        path = Path(index_dir) / MANIFEST
        if not Path(index_dir).exists():
            raise IndexLoadError(f"no index at {index_dir}: build one with: python -m index_build --index {index_dir}")
        if not path.is_file():
            raise IndexLoadError(f"{path} is missing, so {index_dir} is not a complete index: {REBUILD_HINT}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise IndexLoadError(f"{path} is unreadable ({e}): {REBUILD_HINT}") from e
        if not isinstance(data, dict):
            raise IndexLoadError(f"{path} is not an index manifest: {REBUILD_HINT}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            newer = isinstance(version, int) and version > FORMAT_VERSION
            why = "a newer source-qa; upgrade source-qa or" if newer else "an unknown format;"
            raise IndexLoadError(
                f"{path} has format version {version!r}, this source-qa reads {FORMAT_VERSION} ({why} {REBUILD_HINT})"
            )
        missing = [
            k
            for k, f in cls.__dataclass_fields__.items()
            if k not in data and f.default is MISSING and f.default_factory is MISSING
        ]
        if missing:
            raise IndexLoadError(f"{path} lacks the field(s) {', '.join(missing)}: {REBUILD_HINT}")
        m = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        problems = m.type_problems()
        if problems:
            raise IndexLoadError(f"{path} is not a valid manifest ({'; '.join(problems)}): {REBUILD_HINT}")
        return m

    def type_problems(self) -> list[str]:
        """Fields of the wrong type or out of range (an edited manifest)."""
        want = {
            "package_version": str,
            "model": str,
            "dtype": str,
            "precision": str,
            "built_at": str,
            "segmenter": dict,
            "passages": dict,
            "dedup": dict,
            "lexical": dict,
            "counts": dict,
            "files": dict,
            "bf16_check": dict,
            "build_id": str,
            "vector_index": dict,
            "store": dict,
            "dumps": dict,
            "unreadable": dict,
        }
        out = [f"{k} must be a {t.__name__}" for k, t in want.items() if not isinstance(getattr(self, k), t)]
        out += self.vector_index_problems()
        out += self.store_problems()
        for k in ("dimension", "max_seq_length"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                out.append(f"{k} must be a positive whole number, not {v!r}")
        if not isinstance(self.normalized, bool):
            out.append("normalized must be true or false")
        if self.dtype != "float32":
            out.append(f"dtype {self.dtype!r} is not float32")
        counts = self.counts if isinstance(self.counts, dict) else {}
        for k in ("documents", "sentences", "unique_sentences", "passages"):
            v = counts.get(k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                out.append(f"counts.{k} must be a whole number, not {v!r}")
        return out

    def vector_params(self, which: str) -> dict[str, Any]:
        """The FAISS index settings of "sentences"."""
        vi = self.vector_index if isinstance(self.vector_index, dict) else {}
        return dict(vi.get(which) or {"type": "flat"})

    def vector_index_problems(self) -> list[str]:
        from qa.vector_index import KINDS

        vi = self.vector_index if isinstance(self.vector_index, dict) else {}
        out = []
        # (an older index's "passages" entry describes a file nothing reads)
        for which in ("sentences",):
            p = vi.get(which, {"type": "flat"})
            if not isinstance(p, dict) or p.get("type") not in KINDS:
                out.append(f"vector_index.{which} must name an index type of {', '.join(KINDS)}, not {p!r}")
            elif p["type"] != "flat":
                for k in ("ef_search" if p["type"] == "hnsw_sq8" else "nprobe", "rerank"):
                    v = p.get(k)
                    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                        out.append(f"vector_index.{which}.{k} must be a positive whole number, not {v!r}")
            if isinstance(p, dict) and "file_bytes" in p:
                v = p["file_bytes"]
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    out.append(f"vector_index.{which}.file_bytes must be a whole number, not {v!r}")
        if "documents" in vi:
            p = vi["documents"]
            rows = p.get("rows") if isinstance(p, dict) else None
            if (
                not isinstance(p, dict)
                or p.get("file") != DOC_VECTORS
                or isinstance(rows, bool)
                or not isinstance(rows, int)
                or rows < 0
            ):
                out.append(f'vector_index.documents must be {{"file": "{DOC_VECTORS}", "rows": <count>}}, not {p!r}')
        return out

    def store_problems(self) -> list[str]:
        st = self.store if isinstance(self.store, dict) else {}
        kind = st.get("kind", "faiss")
        if kind == "faiss":
            return []
        if kind != "milvus":
            return [f"store.kind must be faiss or milvus, not {kind!r}"]
        out = [
            f"store.{k} must be a non-empty text"
            for k in ("uri", "alias", "collection")
            if not isinstance(st.get(k), str) or not st.get(k)
        ]
        rows = st.get("rows")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            out.append(f"store.rows must be a whole number, not {rows!r}")
        return out

    def store_kind(self) -> str:
        st = self.store if isinstance(self.store, dict) else {}
        return str(st.get("kind", "faiss"))

    def doc_vectors_file(self) -> str | None:
        """The stored document vectors' file name, None in an index built before them."""
        vi = self.vector_index if isinstance(self.vector_index, dict) else {}
        return DOC_VECTORS if isinstance(vi.get("documents"), dict) else None


def connect(index_dir: Path, readonly: bool = True) -> sqlite3.Connection:
    """Open the metadata database (read-only unless writing a new index)."""
    path = Path(index_dir) / META_DB
    if readonly:
        if not path.is_file():
            raise IndexLoadError(f"{path} is missing: {REBUILD_HINT}")
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        con = sqlite3.connect(path)
    return con
