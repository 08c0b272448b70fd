"""Where the sentence vectors are searched: the embedded FAISS index (the
default, a file in the index directory) or a Milvus collection (Milvus Lite
file, or a Milvus server / cluster by URI).

Everything else about an index -- metadata, BM25, the float32 vectors the
retriever re-scores and the incremental build reuses -- stays in the index
directory either way; only the nearest-neighbour search moves, because that
is the part that outgrows one machine first.

A store is named by one string, the same for `index-build --store`,
`qa.load(..., store=)` and `qa chat --store`:

    faiss                               the default
    milvus:PATH.db[#collection]         Milvus Lite, an embedded file
    milvus:http://HOST:19530[#collection]   a Milvus standalone or cluster server

The manifest records the store a build wrote, so a reader needs no option;
`store=` lets a reader reach the same collection by another address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

FAISS = "faiss"
MILVUS = "milvus"
DEFAULT_COLLECTION = "source_qa"
_COLLECTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
_REMOTE = ("http://", "https://", "tcp://", "grpc://", "unix:")


@runtime_checkable
class SentenceSearch(Protocol):
    """The read side the retriever uses: top-k sentence rows by inner product."""

    kind: str

    @property
    def ntotal(self) -> int: ...

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, row ids) of shape (len(q), k), best first; id -1 pads."""
        ...


@runtime_checkable
class VectorStore(SentenceSearch, Protocol):
    """The write side a build fills, then persists; both stores implement it."""

    def add(self, ids: np.ndarray, vectors: np.ndarray, doc_idx: np.ndarray) -> None:
        """Rows `ids` (the sentence ids of this build) with their vectors and
        the document each sentence first appears in."""
        ...

    def delete_docs(self, doc_idx: list[int]) -> int:
        """Drop the rows first seen in these documents; returns how many."""
        ...

    def count(self) -> int: ...

    def persist(self) -> dict:
        """Make the rows durable; returns what the manifest records."""
        ...


@dataclass(frozen=True)
class StoreSpec:
    """A parsed `--store` value."""

    kind: str = FAISS
    uri: str = ""  # Milvus: an absolute .db path (Lite) or a server URI
    collection: str = DEFAULT_COLLECTION  # Milvus: the alias readers follow

    @property
    def is_lite(self) -> bool:
        return self.kind == MILVUS and not self.uri.startswith(_REMOTE)

    def __str__(self) -> str:
        if self.kind == FAISS:
            return FAISS
        return f"{MILVUS}:{self.uri}#{self.collection}"


def parse_store(text: str | None) -> StoreSpec:
    """A `--store` value -> StoreSpec; ValueError (one line, with the fix)
    for anything else.  A Lite path is made absolute: the index directory
    records it, and a reader may start elsewhere."""
    if text is None or str(text).strip() in ("", FAISS):
        return StoreSpec()
    text = str(text).strip()
    usage = "use --store faiss, --store milvus:PATH.db[#collection] or --store milvus:http://HOST:19530[#collection]"
    if not text.startswith(MILVUS + ":"):
        raise ValueError(f"unknown vector store {text!r}: {usage}")
    rest = text[len(MILVUS) + 1 :]
    target, _, collection = rest.partition("#")
    collection = collection or DEFAULT_COLLECTION
    if not target:
        raise ValueError(f"--store {text!r} names no Milvus database or server: {usage}")
    if not _COLLECTION.match(collection):
        raise ValueError(
            f"Milvus collection name {collection!r} is not valid: use letters, digits and _ (not starting with a digit)"
        )
    if target.startswith(_REMOTE):
        return StoreSpec(MILVUS, target, collection)
    path = Path(target).expanduser()
    if path.suffix != ".db":
        raise ValueError(f"Milvus Lite database {target!r} must end in .db: e.g. --store milvus:vectors.db")
    return StoreSpec(MILVUS, str(path.resolve()), collection)


def spec_from_manifest(store: dict | None) -> StoreSpec:
    """The StoreSpec a manifest's `store` entry describes (absent: FAISS)."""
    if not store or store.get("kind", FAISS) == FAISS:
        return StoreSpec()
    return StoreSpec(MILVUS, str(store.get("uri", "")), str(store.get("alias", DEFAULT_COLLECTION)))
