"""Open an index directory for reading, checking that every part agrees with
the manifest, so a damaged or foreign index fails loudly at load time instead
of answering wrongly later.
"""

from __future__ import annotations

import importlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa import index_format as fmt
from qa.errors import IndexLoadError
from qa.vector_rows import RowFile, Rows, open_rows


@dataclass
class IndexData:
    """Everything the retriever needs from disk (vectors memory-mapped)."""

    path: Path
    manifest: fmt.Manifest
    db: sqlite3.Connection
    sentence_index: Any  # qa.vector_index.VectorIndex (.search(q, k), .ntotal, .kind, .params)
    sentence_vectors: Rows  # a RowFile for a large file (read with pread)
    passage_vectors: Rows
    bm25: Any  # bm25s.BM25
    # each document's normalised mean sentence vector (memory-mapped); None in
    # an index built before they were stored (qa.doc_map computes them then)
    doc_vectors: Rows | None = None

    @property
    def n_sentences(self) -> int:
        return int(self.sentence_index.ntotal)

    def close(self) -> None:
        self.db.close()
        if hasattr(self.sentence_index, "close"):  # a Milvus client
            self.sentence_index.close()
        for v in (self.sentence_vectors, self.passage_vectors, self.doc_vectors):
            if isinstance(v, RowFile):
                v.close()


def _count(db: sqlite3.Connection, table: str) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _one(db: sqlite3.Connection, sql: str) -> tuple:
    return tuple(db.execute(sql).fetchone())


def _check_identity(root: Path, db: sqlite3.Connection, manifest: fmt.Manifest, hint: str) -> None:
    """manifest.json must be the one written with this meta.sqlite (indexes
    built before index_info existed have no copy to compare with)."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='index_info'").fetchone():
        return
    stored = dict(db.execute("SELECT key, value FROM index_info").fetchall())
    for key, value in manifest.identity().items():
        if key in stored and stored[key] != value:
            raise IndexLoadError(
                f"{root / fmt.MANIFEST} says {key} {value}, but {root / fmt.META_DB} was built with {stored[key]} "
                f"(the manifest was edited, or comes from another index): {hint}"
            )


def _check_metadata(root: Path, db: sqlite3.Connection, manifest: fmt.Manifest, hint: str) -> tuple[int, int]:
    """Row counts and references of meta.sqlite against the manifest:
    (unique sentences, passages).  A row too many or too few would shift
    every id after it -- a wrong answer, not an error -- so it is an error here."""
    where = root / fmt.META_DB
    n_docs, n_sent, n_pass = _count(db, "documents"), _count(db, "sentences"), _count(db, "passages")
    c = manifest.counts
    want = (c.get("documents"), c.get("unique_sentences"), c.get("passages"))
    if (n_docs, n_sent, n_pass) != want:
        raise IndexLoadError(
            f"{where} holds {n_docs} documents / {n_sent} sentences / {n_pass} passages but the manifest says "
            f"{want[0]} / {want[1]} / {want[2]}: {hint}"
        )
    occ, answers, max_doc, max_sent = _one(
        db, "SELECT COUNT(*), COUNT(sent_idx), MAX(doc_idx), MAX(sent_idx) FROM doc_sentences"
    )
    declared = _one(db, "SELECT COALESCE(SUM(n_sentences), 0) FROM documents")[0]
    if answers != c.get("sentences") or occ != declared:
        raise IndexLoadError(
            f"{where} holds {occ} sentence occurrences ({answers} answers) but its documents declare {declared} "
            f"and the manifest {c.get('sentences')} answers: {hint}"
        )
    # ids are row numbers: they must run 0..n-1 and every reference must land
    for table, key, n in (
        ("documents", "doc_idx", n_docs),
        ("sentences", "sent_idx", n_sent),
        ("passages", "passage_idx", n_pass),
    ):
        lo, hi = _one(db, f"SELECT MIN({key}), MAX({key}) FROM {table}")
        if n and (lo, hi) != (0, n - 1):
            raise IndexLoadError(f"{where}: {table}.{key} runs {lo}..{hi}, expected 0..{n - 1}: {hint}")
    max_pdoc = _one(db, "SELECT MAX(doc_idx) FROM passages")[0]
    for what, v, n in (
        ("doc_sentences.doc_idx", max_doc, n_docs),
        ("doc_sentences.sent_idx", max_sent, n_sent),
        ("passages.doc_idx", max_pdoc, n_docs),
    ):
        if v is not None and v >= n:
            raise IndexLoadError(f"{where}: {what} refers to row {v}, but there are only {n}: {hint}")
    return n_sent, n_pass


def _refuse_objects(path: Path, hint: str) -> None:
    """A .npy whose dtype holds Python objects can only be read by unpickling:
    say so plainly (it is never loaded) instead of numpy's error."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                _, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                _, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:  # np.load(allow_pickle=False) still refuses objects
                return
    except (ValueError, OSError, EOFError) as e:
        raise IndexLoadError(f"{path} is damaged (not a numpy array file: {e}): {hint}") from e
    if dtype.hasobject:
        raise IndexLoadError(
            f"{path} holds pickled Python objects, which source-qa never loads (unpickling can run code): {hint}"
        )


def _check_graph(index: Any, path: Path, hint: str) -> None:
    """An HNSW graph whose links point outside the index would make FAISS
    read out of bounds (a crash, not an error): every link is checked once,
    on the memory-mapped array, without copying it."""
    import faiss

    h = index.hnsw
    n = int(index.ntotal)
    try:
        nb = faiss.rev_swig_ptr(h.neighbors.data(), h.neighbors.size()) if h.neighbors.size() else np.zeros(0, np.int32)
        offsets = faiss.vector_to_array(h.offsets)
        levels = faiss.vector_to_array(h.levels)
    except (AttributeError, TypeError):  # another FAISS build: nothing to check with
        return
    step = 1 << 24
    bad = (
        len(levels) != n
        or len(offsets) != n + 1
        or (n and int(offsets[-1]) != len(nb))
        or not (0 <= int(h.entry_point) < n or (n == 0 and h.entry_point == -1))
        or (n and (levels.min() < 1 or levels.max() > h.max_level + 1))
        or any(len(c) and (c.min() < -1 or c.max() >= n) for c in (nb[i : i + step] for i in range(0, len(nb), step)))
    )
    if bad:
        raise IndexLoadError(f"{path} is damaged (its HNSW graph links outside the index): {hint}")


def open_index(index_dir: Path | str, store: str | None = None) -> IndexData:
    """Load and cross-check an index; IndexLoadError names the bad file and the fix.

    `store` (a `--store` value) reaches the vector store the manifest names
    by another address: the same Milvus collection through another URI."""
    root = Path(index_dir)
    manifest = fmt.Manifest.read(root)
    hint = fmt.REBUILD_HINT
    db = fmt.connect(root)
    try:
        try:
            _check_identity(root, db, manifest, hint)
            n_sent, n_pass = _check_metadata(root, db, manifest, hint)
        except sqlite3.DatabaseError as e:
            raise IndexLoadError(f"{root / fmt.META_DB} is damaged ({e}): {hint}") from e
        return _open_rest(root, manifest, db, n_sent, n_pass, hint, store)
    except BaseException:
        db.close()
        raise


def _open_rest(
    root: Path,
    manifest: fmt.Manifest,
    db: sqlite3.Connection,
    n_sent: int,
    n_pass: int,
    hint: str,
    store: str | None = None,
) -> IndexData:
    from qa import vector_index as vi

    faiss: Any = importlib.import_module("faiss")  # untyped: its generated stubs miss SWIG's overloads

    # codes, lists and graph stay in the page cache, shared, instead of a
    # second private copy of the vectors (older FAISS: read into memory)
    io_flags = getattr(faiss, "IO_FLAG_MMAP_IFC", 0)

    def load_faiss(name: str, rows: int, params: dict) -> Any:
        path = root / name
        if not path.is_file():
            raise IndexLoadError(f"{path} is missing: {hint}")
        kind = params["type"]
        # a flat index is a small header plus the vectors (an HNSW or IVF one,
        # their 8-bit codes plus a graph or lists): a file too small to hold them is
        # truncated, and FAISS is not even asked to read it
        need = vi.bytes_per_vector(kind, manifest.dimension) * rows
        size = path.stat().st_size
        if size < need:
            raise IndexLoadError(f"{path} is truncated ({size} bytes, the vectors alone need {need}): {hint}")
        # memory-mapped only when the file has exactly the size the build
        # recorded: FAISS's mapped reader can miss a few bytes cut off the
        # end (it reads the rest of the last page), the plain one never does
        recorded = params.get("file_bytes")
        try:
            index = faiss.read_index(str(path), io_flags if size == recorded else 0)
        except (RuntimeError, MemoryError) as e:
            raise IndexLoadError(f"{path} is damaged (FAISS could not read it): {hint}") from e
        if index.d != manifest.dimension or index.ntotal != rows:
            raise IndexLoadError(
                f"{path} has {index.ntotal} vectors of dimension {index.d}, the manifest says "
                f"{rows} of dimension {manifest.dimension}: {hint}"
            )
        # another index type or metric (L2 distances read as similarities) would rank silently wrong
        sq8 = faiss.ScalarQuantizer.QT_8bit
        if kind == vi.FLAT:
            ok, what = isinstance(index, faiss.IndexFlat), "flat inner-product index"
        elif kind == vi.HNSW_SQ8:
            storage = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSWSQ) else None
            ok = (
                isinstance(storage, faiss.IndexScalarQuantizer)
                and storage.sq.qtype == sq8
                and storage.metric_type == faiss.METRIC_INNER_PRODUCT
            )
            what = "HNSW inner-product index over 8-bit codes the manifest names"
        else:
            ok = (
                isinstance(index, faiss.IndexIVFScalarQuantizer)
                and index.sq.qtype == sq8
                and index.nlist == params.get("nlist", index.nlist)
            )
            what = "IVF inner-product index over 8-bit codes the manifest names"
        if not ok or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise IndexLoadError(
                f"{path} holds a FAISS {type(index).__name__} (metric {index.metric_type}), "
                f"not the {what} source-qa writes: {hint}"
            )
        if recorded is not None and size != recorded:
            raise IndexLoadError(
                f"{path} has {size} bytes, but the build wrote {recorded} (it was cut short, "
                f"or comes from a different build): {hint}"
            )
        if kind == vi.HNSW_SQ8:
            _check_graph(index, path, hint)
        elif kind == vi.IVF_SQ8:
            # row -> list position, for reconstruct(); FAISS refuses ids outside 0..n-1
            try:
                index.make_direct_map()
            except (RuntimeError, MemoryError) as e:
                raise IndexLoadError(
                    f"{path} is damaged (its inverted lists do not hold rows 0..{rows - 1}): {hint}"
                ) from e
        return index

    def load_vectors(name: str, rows: int, what: str = "") -> Rows:
        path = root / name
        if not path.is_file():
            raise IndexLoadError(f"{path} is missing{what}: {hint}")
        _refuse_objects(path, hint)
        try:
            vecs = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise IndexLoadError(f"{path} is damaged ({e}): {hint}") from e
        if vecs.shape != (rows, manifest.dimension) or vecs.dtype != np.float32:
            raise IndexLoadError(
                f"{path} has shape {vecs.shape} {vecs.dtype}, expected ({rows}, {manifest.dimension}) float32: {hint}"
            )
        return open_rows(path, vecs)

    def same_vectors(index: Any, vecs: Rows, kind: str, faiss_name: str, npy_name: str) -> None:
        """The FAISS file and the .npy hold the same vectors (sampled rows):
        two files from different builds would give dense scores for one
        sentence and MMR/passage scores for another.  8-bit codes decode far
        closer to their vector than another sentence's vector is
        (docs/index-format.md#measurements-behind-the-settings)."""
        n = len(vecs)
        for i in sorted({0, n // 2, n - 1} if n else set()):
            row = np.asarray(vecs[i], dtype=np.float32)
            if not np.all(np.isfinite(row)):
                raise IndexLoadError(f"{root / npy_name} holds a non-finite vector (row {i}): {hint}")
            got = index.reconstruct(int(i))
            if kind == vi.FLAT:
                same = np.allclose(got, row, atol=1e-6)
            else:
                # (a component outside the range the quantiser was trained on is
                # clipped, so only the direction is compared, loosely per component)
                same = float(np.max(np.abs(got - row))) <= 0.1 and float(got @ row) >= 0.99 * float(row @ row)
            if not same:
                raise IndexLoadError(
                    f"{root / faiss_name} and {root / npy_name} hold different vectors "
                    f"(row {i}): they come from different builds: {hint}"
                )

    def unit_rows(vecs: Rows, name: str, what: str, zero_ok: bool) -> None:
        """Vectors of unit length, checked on a sample of rows as the
        sentence vectors are (reading all of them would cost the load)."""
        n = len(vecs)
        for i in sorted({0, n // 2, n - 1} if n else set()):
            norm = float(np.linalg.norm(np.asarray(vecs[i], dtype=np.float32)))
            if not np.isfinite(norm) or not ((zero_ok and norm < 1e-6) or abs(norm - 1.0) < 1e-3):
                raise IndexLoadError(f"{root / name} holds a damaged {what} vector (row {i}, length {norm}): {hint}")

    s_params = manifest.vector_params("sentences")
    spec = _store_spec(root, manifest, store)
    s_vecs = load_vectors(fmt.SENTENCE_VECTORS, n_sent)
    if spec.kind == "milvus":
        s_index = _open_milvus(root, manifest, spec, n_sent, s_vecs)
    else:
        s_index = load_faiss(fmt.SENTENCE_FAISS, n_sent, s_params)
        same_vectors(s_index, s_vecs, s_params["type"], fmt.SENTENCE_FAISS, fmt.SENTENCE_VECTORS)
        s_index = vi.VectorIndex(s_index, s_vecs, s_params, coarse_scan=True)
    p_vecs = load_vectors(fmt.PASSAGE_VECTORS, n_pass)
    # passage vectors are unit length (normalised means, or normalised embeddings)
    unit_rows(p_vecs, fmt.PASSAGE_VECTORS, "passage", zero_ok=False)

    import bm25s

    bm_dir = root / fmt.BM25_DIR
    if not bm_dir.is_dir():
        raise IndexLoadError(f"{bm_dir} is missing: {hint}")
    for npy in sorted(bm_dir.glob("*.npy")):
        _refuse_objects(npy, hint)
    try:
        bm25 = bm25s.BM25.load(str(bm_dir), mmap=True, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - bm25s raises whatever numpy/json raise
        raise IndexLoadError(f"{bm_dir} is damaged ({type(e).__name__}: {str(e)[:200]}): {hint}") from e
    if int(bm25.scores["num_docs"]) != n_sent:
        raise IndexLoadError(f"{bm_dir} covers {bm25.scores['num_docs']} sentences, expected {n_sent}: {hint}")
    d_vecs = None
    if manifest.doc_vectors_file():
        n_docs = int(manifest.counts["documents"])  # = the documents table's rows (checked above)
        recorded = manifest.vector_index["documents"]["rows"]
        if recorded != n_docs:
            raise IndexLoadError(
                f"{root / fmt.MANIFEST} records {recorded} document vectors for {n_docs} documents: {hint}"
            )
        d_vecs = load_vectors(fmt.DOC_VECTORS, n_docs, " (the manifest says the build wrote it)")
        # unit length or zero (a document without answer sentences)
        unit_rows(d_vecs, fmt.DOC_VECTORS, "document", zero_ok=True)
    _prefetch(
        [
            *([root / fmt.SENTENCE_FAISS] if spec.kind != "milvus" else []),
            *sorted(bm_dir.glob("*.npy")),
            root / fmt.SENTENCE_VECTORS,
            root / fmt.PASSAGE_VECTORS,
            root / fmt.META_DB,
        ]
    )
    return IndexData(root, manifest, db, s_index, s_vecs, p_vecs, bm25, d_vecs)


def _store_spec(root: Path, manifest: fmt.Manifest, store: str | None):
    """The store to read: the manifest's, or the same kind at the address `store` gives."""
    from qa.vector_store import MILVUS, StoreSpec, parse_store, spec_from_manifest

    built = spec_from_manifest(manifest.store)
    if store is None:
        return built
    try:
        given = parse_store(store)
    except ValueError as e:
        raise IndexLoadError(str(e)) from e
    if given.kind != built.kind:
        raise IndexLoadError(
            f"{root} keeps its sentence vectors in {built.kind}, not {given.kind}: drop --store, "
            f"or rebuild with: python -m index_build --index {root} --store {store}"
        )
    return StoreSpec(MILVUS, given.uri, built.collection) if given.kind == MILVUS else built


def _open_milvus(root: Path, manifest: fmt.Manifest, spec, n_sent: int, s_vecs: Rows):
    """The Milvus collection of this build, checked against the local vectors
    on sampled rows (a collection of another build would rank silently wrong)."""
    from qa.milvus_store import MilvusStore

    st = manifest.store
    s_index = MilvusStore.open(spec, st, manifest.dimension, n_sent, root)
    try:
        for i in sorted({0, n_sent // 2, n_sent - 1} if n_sent else set()):
            try:
                got = s_index.reconstruct(i)
            except KeyError:
                got = None
            if got is None or not np.allclose(got, np.asarray(s_vecs[i], dtype=np.float32), atol=1e-5):
                raise IndexLoadError(
                    f"the Milvus collection {st.get('collection')} and {root / fmt.SENTENCE_VECTORS} hold different "
                    f"vectors (row {i}): rebuild with: python -m index_build --index {root} --store {spec}"
                )
    except BaseException:
        s_index.close()
        raise
    return s_index


# Set to 0 to skip the page-cache warm-up of a freshly loaded index.
ENV_PREFETCH = "SOURCE_QA_PREFETCH"


def _prefetch(paths: list[Path]) -> None:
    """Read the files a question reads at random once, front to back, so they
    are in the page cache when questions come: from a daemon thread (the load
    does not wait), through one small buffer.  An index that sat unused has
    left the cache, and the first questions after a load would wait on the
    disk; one sequential pass costs far less than the same pages read
    scattered, a question at a time.  posix_fadvise(WILLNEED) read next to
    nothing here, so the files are read.  The page cache is the kernel's to
    evict, and none of it counts in this process's RSS.  Measured:
    docs/performance.md, "Ask p50 at 1M"."""
    import os
    import threading

    if os.environ.get(ENV_PREFETCH, "").strip() == "0":
        return

    def run() -> None:
        buf = bytearray(8 << 20)
        for path in paths:
            try:
                with open(path, "rb", buffering=0) as f:
                    while f.readinto(buf):
                        pass
            except OSError:  # gone (a rebuild swapped the index) or unreadable: the questions will say
                continue

    threading.Thread(target=run, name="source-qa-prefetch", daemon=True).start()
