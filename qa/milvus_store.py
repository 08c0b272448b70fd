"""The sentence vectors in Milvus (pymilvus; Milvus Lite for a file, a
server or cluster for a URI), behind the same search the FAISS index offers.

One build writes one collection, `<alias>__<build id>`, and only when the
index directory is published does the alias move to it: a reader follows
the collection its own manifest names (so its vectors always match its
metadata), a failed or interrupted build drops its half-written collection,
and the previous collection is kept one build longer for readers that
loaded it (a running chat) until they reload.

Rows: the sentence id of this build (primary key), its vector, and the
document it first appears in (a scalar field, for delete-by-document and
filtered search).  Up to EXACT_LIMIT rows the collection is searched
exactly (FLAT); above it through HNSW.

Milvus Lite is embedded: one process at a time may open a .db file (a
running chat holds it; build while it is stopped, or use a server).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import BuildError, IndexLoadError, QAError
from qa.vector_store import MILVUS, StoreSpec

KIND = MILVUS
VEC, DOC = "vec", "doc_idx"
INSERT_BATCH = 5_000
# the same size limit as the FAISS side (qa.vector_index.EXACT_LIMIT)
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF = 32, 200, 256
CONNECT_TIMEOUT = 10.0  # seconds before an unreachable server is an error, not a hang
ENV_TIMEOUT = "SOURCE_QA_MILVUS_TIMEOUT"  # overrides it
INSTALL_HINT = 'install the Milvus client with: pip install "source-qa[milvus]"'


class MilvusUnavailable(QAError):
    """pymilvus is missing, or the database / server cannot be reached."""


def _pymilvus():
    try:
        import pymilvus
    except ImportError as e:
        raise MilvusUnavailable(f"the Milvus store needs pymilvus, which is not installed: {INSTALL_HINT}") from e
    # pymilvus logs every failed call with a traceback; the error raised says it in one line
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    logging.getLogger("milvus_lite").setLevel(logging.CRITICAL)
    return pymilvus


def _one_line(e: BaseException) -> str:
    text = getattr(e, "message", None) or str(e)
    return re.sub(r"\s+", " ", str(text)).strip()[:300] or type(e).__name__


def _timeout() -> float:
    import os

    try:
        return max(0.1, float(os.environ.get(ENV_TIMEOUT, CONNECT_TIMEOUT)))
    except ValueError:
        return CONNECT_TIMEOUT


def connect(spec: StoreSpec, create: bool = False, timeout: float | None = None) -> Any:
    """A MilvusClient for `spec`; MilvusUnavailable (one line, with the fix)
    when it cannot be opened.  `create`: a Lite file may be made (builds).
    Milvus Lite serves a file from inside the process that opened it (a
    thread), shared by every client of this process."""
    pm = _pymilvus()
    timeout = _timeout() if timeout is None else timeout
    if spec.is_lite:
        path = Path(spec.uri)
        if not create and not path.exists():
            raise MilvusUnavailable(
                f"the Milvus Lite database {path} does not exist: build the index with --store milvus:{path}"
            )
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise MilvusUnavailable(
                    f"cannot create the folder of {path} ({e.strerror}): choose a writable place for the .db"
                ) from e
        try:
            import milvus_lite  # noqa: F401
        except ImportError as e:
            raise MilvusUnavailable(
                f"a Milvus Lite file needs milvus-lite, which is not installed: {INSTALL_HINT}"
            ) from e
    try:
        try:
            return pm.MilvusClient(uri=spec.uri, timeout=timeout)
        except pm.exceptions.MilvusException:
            if not spec.is_lite:
                raise
            # this process's embedded server for the file can have gone away
            # (its gRPC side closes idle connections): start it afresh, once
            release(spec)
            return pm.MilvusClient(uri=spec.uri, timeout=timeout)
    except pm.exceptions.MilvusException as e:
        if spec.is_lite:
            raise MilvusUnavailable(
                f"cannot open the Milvus Lite database {spec.uri} ({_one_line(e)}): it may be open in another "
                "process (Milvus Lite allows one: stop the running chat or build), or not a Milvus Lite "
                "database"
            ) from e
        raise MilvusUnavailable(
            f"cannot reach Milvus at {spec.uri} within {timeout:g} s ({_one_line(e)}): "
            "start the server or fix the address"
        ) from e


def release(spec: StoreSpec) -> None:
    """Let another process open a Lite file this one used (no-op for a
    server).  Every client of the file in this process stops working."""
    if not spec.is_lite:
        return
    try:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(spec.uri)
    except Exception:  # noqa: BLE001 - best effort: the lock goes with the process anyway
        pass


def physical_name(alias: str, build_id: str) -> str:
    return f"{alias}__{build_id[:16]}"


class MilvusStore:
    """One collection: VectorStore (qa.vector_store) over Milvus."""

    kind = KIND

    def __init__(
        self, client: Any, spec: StoreSpec, collection: str, dim: int, index_type: str, n: int | None = None
    ) -> None:
        self.client, self.spec, self.collection, self.dim, self.index_type = client, spec, collection, dim, index_type
        self._n = n
        self.params: dict[str, str | int] = {"type": KIND, "index": index_type}

    # -- writing (a build) ------------------------------------------------
    @classmethod
    def create(
        cls, spec: StoreSpec, build_id: str, dim: int, expected_rows: int, exact_limit: int | None = None
    ) -> "MilvusStore":
        """A new, empty collection for this build (exact search up to
        `exact_limit` rows, HNSW above)."""
        from qa.vector_index import exact_limit as default_limit

        pm = _pymilvus()
        client = connect(spec, create=True)
        name = physical_name(spec.collection, build_id)
        limit = default_limit() if exact_limit is None else exact_limit
        index_type = "FLAT" if expected_rows <= limit else "HNSW"
        try:
            if client.has_collection(name):
                client.drop_collection(name)
            schema = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", pm.DataType.INT64, is_primary=True)
            schema.add_field(VEC, pm.DataType.FLOAT_VECTOR, dim=int(dim))
            schema.add_field(DOC, pm.DataType.INT64)
            ip = client.prepare_index_params()
            params = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION} if index_type == "HNSW" else {}
            ip.add_index(field_name=VEC, index_type=index_type, metric_type="IP", params=params)
            client.create_collection(name, schema=schema, index_params=ip)
        except pm.exceptions.MilvusException as e:
            raise BuildError(
                f"cannot create the Milvus collection {name} at {spec.uri} ({_one_line(e)}); "
                "nothing was changed: check the server and build again"
            ) from e
        store = cls(client, spec, name, int(dim), index_type, n=0)
        if index_type == "HNSW":
            store.params["ef"] = HNSW_EF
        return store

    def add(self, ids: np.ndarray, vectors: np.ndarray, doc_idx: np.ndarray) -> None:
        pm = _pymilvus()
        ids, doc_idx = np.asarray(ids, dtype=np.int64), np.asarray(doc_idx, dtype=np.int64)
        for lo in range(0, len(ids), INSERT_BATCH):
            hi = min(lo + INSERT_BATCH, len(ids))
            block = np.asarray(vectors[lo:hi], dtype=np.float32)
            rows = [{"id": int(i), VEC: v, DOC: int(d)} for i, v, d in zip(ids[lo:hi], block, doc_idx[lo:hi])]
            try:
                self.client.insert(self.collection, rows)
            except pm.exceptions.MilvusException as e:
                raise BuildError(
                    f"writing vectors to the Milvus collection {self.collection} failed "
                    f"({_one_line(e)}); the previous index is unchanged: build again"
                ) from e
        self._n = None

    def delete_docs(self, doc_idx: list[int]) -> int:
        docs = ",".join(str(int(d)) for d in doc_idx)
        if not docs:
            return 0
        res = self.client.delete(self.collection, filter=f"{DOC} in [{docs}]")
        self._n = None
        return len(res) if isinstance(res, list) else int(res.get("delete_count", 0))

    def count(self) -> int:
        stats = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(stats[0]["count(*)"])

    def persist(self) -> dict:
        """Flush the rows; returns the manifest's `store` entry."""
        self.client.flush(self.collection)
        self._n = self.count()
        out = {
            "kind": KIND,
            "uri": self.spec.uri,
            "alias": self.spec.collection,
            "collection": self.collection,
            "index": self.index_type,
            "rows": self._n,
        }
        if "ef" in self.params:
            out["ef"] = self.params["ef"]
        return out

    def drop(self) -> None:
        """Remove this (unpublished) collection; errors are left unsaid: the
        next build removes leftovers too (drop_stale)."""
        try:
            self.client.drop_collection(self.collection)
        except Exception:  # noqa: BLE001
            pass

    # -- reading ----------------------------------------------------------
    @classmethod
    def open(cls, spec: StoreSpec, entry: dict, dim: int, rows: int, index_dir: Path) -> "MilvusStore":
        """The collection a manifest's `store` entry names, checked: it exists,
        holds `rows` rows of `dim` dimensions.  IndexLoadError otherwise."""
        hint = f"rebuild the index with: python -m index_build --index {index_dir} --store {spec}"
        try:
            client = connect(spec)
        except MilvusUnavailable as e:
            raise IndexLoadError(str(e)) from e
        pm = _pymilvus()
        name = str(entry.get("collection", ""))
        try:
            if not client.has_collection(name):
                raise IndexLoadError(
                    f"the Milvus collection {name} that {index_dir} was built with is not in "
                    f"{spec.uri} (dropped, or another database): {hint}"
                )
            desc = client.describe_collection(name)
            got_dim = next(
                (int(f.get("params", {}).get("dim", 0)) for f in desc.get("fields", []) if f.get("name") == VEC), 0
            )
            if got_dim != dim:
                raise IndexLoadError(
                    f"the Milvus collection {name} holds {got_dim}-d vectors, the index {dim}-d ones: {hint}"
                )
            client.load_collection(name)  # a reopened Lite file starts released
            store = cls(client, spec, name, dim, str(entry.get("index", "FLAT")))
            if "ef" in entry:
                store.params["ef"] = int(entry["ef"])
            n = store.count()
        except pm.exceptions.MilvusException as e:
            raise IndexLoadError(
                f"the Milvus collection {name} at {spec.uri} cannot be read ({_one_line(e)}): {hint}"
            ) from e
        if n != rows:
            raise IndexLoadError(f"the Milvus collection {name} holds {n} vectors, the index {rows} sentences: {hint}")
        store._n = n
        return store

    @property
    def ntotal(self) -> int:
        if self._n is None:
            self._n = self.count()
        return self._n

    @property
    def d(self) -> int:
        return self.dim

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.atleast_2d(np.asarray(q, dtype=np.float32))
        k = max(1, int(k))
        limit = min(k, max(self.ntotal, 1))  # as FAISS: k columns, -1 past the last row
        params: dict[str, Any] = {"metric_type": "IP"}
        if "ef" in self.params:
            params["params"] = {"ef": max(int(self.params["ef"]), limit)}
        res = self.client.search(
            self.collection, data=[row for row in q], limit=limit, output_fields=[DOC], search_params=params
        )
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        for r, hits in enumerate(res):
            for j, h in enumerate(hits[:k]):
                ids[r, j] = int(h["id"])
                scores[r, j] = float(h["distance"])
        return scores, ids

    def reconstruct(self, i: int) -> np.ndarray:
        got = self.client.get(self.collection, ids=[int(i)], output_fields=[VEC])
        if not got:
            raise KeyError(i)
        return np.asarray(got[0][VEC], dtype=np.float32)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass


def publish_alias(spec: StoreSpec, collection: str, keep: set[str]) -> list[str]:
    """Point the alias at the published collection and drop this alias's
    other collections except `keep` (the previous build's, still loaded by
    running readers).  Returns the dropped names.  Raises MilvusUnavailable /
    pymilvus errors; the caller treats them as warnings: readers follow the
    manifest, not the alias."""
    client = connect(spec)
    pm = _pymilvus()
    alias = spec.collection
    if client.has_collection(alias) and alias not in set(client.list_aliases().get("aliases", [])):
        raise MilvusUnavailable(
            f"{alias} is a collection, not an alias, in {spec.uri}: choose another "
            f"name with --store milvus:{spec.uri}#NAME"
        )
    try:
        client.alter_alias(collection, alias)
    except pm.exceptions.MilvusException:
        client.create_alias(collection, alias)
    dropped = []
    for name in client.list_collections():
        if name.startswith(alias + "__") and name != collection and name not in keep:
            client.drop_collection(name)
            dropped.append(name)
    return dropped
