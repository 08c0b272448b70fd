"""The offline build: sources -> documents -> sentences/passages -> embeddings
-> FAISS + BM25 + metadata, published atomically."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import shutil
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, overload

import numpy as np

from index_build import append, dumps, publish
from index_build import documents as docs_mod
from index_build.dedup import DedupResult, deduplicate
from index_build.embed import EmbedStats, VectorCache, embed_texts, warm_pool, write_mean_vectors
from index_build.lexical import build_bm25
from index_build.passages import Passage, make_passages
from index_build.readers import Unreadable
from index_build.report import BuildReport
from qa import index_format as fmt
from qa.config import BuildConfig
from qa.encoder import Encoder, EncoderPool, bf16_agreement, cpu_has_fast_bf16, load_encoder, resolve_model
from qa.errors import BuildError, IndexLoadError
from qa.vector_store import MILVUS, StoreSpec, parse_store

_PROBE_SIZE = 64


def _log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _package_version() -> str:
    from qa.version import __version__

    return __version__


def _old_manifest(index_dir: Path) -> fmt.Manifest | None:
    try:
        return fmt.Manifest.read(index_dir)
    except IndexLoadError:
        return None


def _model_key(model_id: str, precision: str, max_seq_length: int) -> str:
    return f"{model_id}|{precision}|{max_seq_length}"


@dataclass
class _Embedding:
    """The model settings this build's vectors are made with, and the vectors."""

    model_id: str
    precision: str
    max_len: int
    dim: int
    bf16_check: dict
    key: str  # _model_key of this build
    old_key: str | None  # _model_key of the index being replaced
    sentences: np.ndarray | None = None
    passages: np.ndarray | None = None  # None once written (mean vectors go straight to disk)


def build(
    sources: list[Path] | None = None,
    index_dir: Path | None = None,
    config: BuildConfig | None = None,
    log: Callable[[str], None] = _log_stderr,
) -> BuildReport:
    """Build (or incrementally rebuild) the index at `index_dir` from `sources`.

    The steps: read and segment, deduplicate, words (BM25 + metadata), embed,
    vectors + manifest, publish.  Everything is written into a temp dir and
    swapped in at the end, so a failure at any step (BuildError /
    ModelUnavailableError with a one-line message on bad input;
    KeyboardInterrupt passes through) leaves the previous index as it was.
    """
    from qa.config import DEFAULT_INDEX, DEFAULT_SOURCES

    cfg = config or BuildConfig()
    sources = [Path(s) for s in (sources or [DEFAULT_SOURCES])]
    index_dir = Path(index_dir or DEFAULT_INDEX)
    t0 = time.perf_counter()
    report = BuildReport(index=str(index_dir))

    publish.check_target(index_dir)
    try:
        store = parse_store(cfg.store)
    except ValueError as e:
        raise BuildError(str(e)) from e
    report.vector_store = str(store)
    milvus = None  # this build's Milvus collection, dropped unless published
    with publish.build_lock(index_dir), contextlib.ExitStack() as stack:
        model_id, _ = resolve_model(cfg.model)
        old = None if cfg.full else _old_manifest(index_dir)
        reuse = old if old is not None and old.model == model_id and cfg.precision in ("auto", old.precision) else None
        files, skipped = docs_mod.discover(sources, cfg.max_file_bytes)
        growth = (
            None if reuse is None else append.plan(files, index_dir, reuse, cfg, model_id, store, _package_version())
        )
        report.stale_temp_dirs_removed = publish.remove_stale(index_dir)
        if growth is not None and reuse is not None:  # only rows appended to dumps: add them to a copy
            for path, reason in skipped + growth.unreadable:
                _skip(report, cfg, path, reason, log)
            try:
                append.append(growth, files, index_dir, reuse, cfg, report, log, t0)
                report.seconds = time.perf_counter() - t0
                return report
            except append.NotAppendable as e:
                log(f"reading every file ({e})")
                report = BuildReport(
                    index=str(index_dir),
                    vector_store=str(store),
                    stale_temp_dirs_removed=report.stale_temp_dirs_removed,
                )
        # An incremental build loads the model in worker processes while this
        # one reads, deduplicates and indexes words (embed.warm_pool), and
        # only if some file looks new.
        pool = (
            warm_pool(model_id, reuse.precision)
            if reuse is not None and not cfg.ray and _expects_new_text(files, reuse)
            else None
        )
        if pool is not None:
            stack.callback(pool.close)

        documents, dump_states = _read_sources(files, skipped, index_dir, old, cfg, report, log)
        unreadable = _unreadable(files, report)
        _check_readable(documents, sources, cfg, report)
        dd, passages = _deduplicate(documents, cfg, report)
        try:
            tmp = publish.temp_dir(index_dir)
        except OSError as e:
            raise publish.write_error(index_dir, e) from e
        build_id = uuid.uuid4().hex
        try:
            unique_texts = [u.text for u in dd.unique]
            s_hashes = [_hash(u) for u in unique_texts]
            # passage hashes key the vectors an encoded passage reuses; with mean vectors they are
            # only stored, hashed one at a time as meta.sqlite is written (docs/performance.md, "Dumps")
            p_hashes = [_hash(p.text_in(documents)) for p in passages] if cfg.passage_embedding == "encode" else None
            vocab = _write_words(tmp, index_dir, cfg, documents, dd, passages, unique_texts, s_hashes, p_hashes)
            if cfg.passage_embedding != "encode":
                _release_texts(documents)
            emb = _embed(
                tmp, index_dir, old, reuse, model_id, cfg, documents, dd, passages, unique_texts, s_hashes, p_hashes,
                pool, stack, report, log,
            )  # fmt: skip
            passages.clear()  # each passage's span: needed no more (docs/performance.md, "Dumps")
            if pool is not None:
                pool.stop()  # its model's memory goes to the vector index below (docs/performance.md, build memory)
            first_doc, store_entry = _first_doc(dd), None
            if store.kind == MILVUS:
                assert emb.sentences is not None
                milvus, store_entry = _write_milvus(store, build_id, emb.sentences, first_doc, log)
            _write_index(
                tmp,
                index_dir,
                old,
                cfg,
                emb,
                first_doc,
                store_entry,
                documents,
                dump_states,
                unreadable,
                vocab,
                build_id,
                report,
                t0,
            )
            publish.publish(tmp, index_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if milvus is not None:
                milvus.drop()
            raise
    if milvus is not None:
        _publish_milvus(store, milvus, old, log)
    report.seconds = time.perf_counter() - t0
    return report


def _read_sources(
    files: list[docs_mod.SourceFile],
    skipped: list[tuple[Path, str]],
    index_dir: Path,
    old: fmt.Manifest | None,
    cfg: BuildConfig,
    report: BuildReport,
    log: Callable[[str], None],
) -> tuple[list[docs_mod.Document], dict[str, dict]]:
    """Step 1, read and segment: every usable article, in order, and where
    the read of each dump ended (the manifest's `dumps`).  An unchanged
    file (same path, same sha256) is taken as the previous index segmented it,
    unless --full; an unusable file is a skip in the report, not an error."""
    documents: list[docs_mod.Document] = []
    dump_states: dict[str, dict] = {}
    for path, reason in skipped:
        _skip(report, cfg, path, reason, log)
    previous = (
        None
        if cfg.full
        else docs_mod.PreviousDocuments.from_index(
            index_dir, old, docs_mod.segmenter_settings(cfg.max_sentence_chars), _package_version()
        )
    )
    for src in files:
        if dumps.is_dump(src.path):
            _read_dump(src, cfg, previous, documents, dump_states, report, log)
            continue
        try:
            doc = docs_mod.load(
                src, max_bytes=cfg.max_file_bytes, max_sentence_chars=cfg.max_sentence_chars, previous=previous
            )
        except Unreadable as e:
            _skip(report, cfg, src.path, str(e), log)
            continue
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 - e.g. a panic in the segmenter: skip the file, not the build
            _skip(report, cfg, src.path, f"cannot be split into sentences ({type(e).__name__}: {str(e)[:200]})", log)
            continue
        documents.append(doc)
        if doc.encoding not in ("utf-8", "pdf"):
            report.legacy_encodings.append({"path": doc.path, "encoding": doc.encoding})
        report.metadata_warnings.extend({"path": doc.path, "warning": w} for w in doc.warnings)
    if previous is not None:
        previous.close()
    report.files_read = len(documents)
    report.metadata = {
        k: sum(getattr(d, k) is not None for d in documents) for k in ("published", "outlet", "author", "url")
    }
    return documents, dump_states


def _unreadable(files: list[docs_mod.SourceFile], report: BuildReport) -> dict[str, dict]:
    """The files found but skipped while reading (not for their type or size),
    by path: their size, sha256 and reason, for the manifest (a later build
    that finds them unchanged may still append to dumps: index_build.append)."""
    import hashlib

    found = {str(f.path): f for f in files}
    out: dict[str, dict] = {}
    for s in report.files_skipped:
        src = found.get(s["path"])
        if src is None:
            continue
        try:
            data = src.path.read_bytes()
        except OSError:
            continue  # gone or unreadable: a later build reads everything
        out[docs_mod.readable_name(str(src.path))] = {
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "reason": s["reason"],
        }
    return out


def _check_readable(
    documents: list[docs_mod.Document], sources: list[Path], cfg: BuildConfig, report: BuildReport
) -> None:
    """Stop before writing anything when --strict met an unusable file, or when
    nothing at all was readable."""
    if cfg.strict and report.files_skipped:
        bad = "; ".join(f"{s['path']}: {s['reason']}" for s in report.files_skipped)
        raise BuildError(
            f"{len(report.files_skipped)} unusable file(s) with --strict: {bad} "
            "(fix or remove them, or drop --strict to skip them)"
        )
    if not documents:
        where = ", ".join(str(s) for s in sources)
        raise BuildError(
            f"no readable articles in {where} ({len(report.files_skipped)} files skipped): "
            "add .txt, .md, .html, .pdf, .docx articles or .jsonl/.csv/.rss dumps, or point SOURCES at the folder that holds them"
        )


def _deduplicate(
    documents: list[docs_mod.Document], cfg: BuildConfig, report: BuildReport
) -> tuple[DedupResult, list[Passage]]:
    """Step 2: the unique answerable sentences (exact and near duplicates
    merged, each with every place it occurs) and the passages."""
    answer_sents = _AnswerSentences(documents)
    report.documents = len(documents)
    report.sentences = len(answer_sents)
    report.non_answer_lines = sum(len(d.sentences) for d in documents) - len(answer_sents)
    dd = deduplicate(answer_sents, cfg.near_dup_similarity, cfg.near_dup_min_words)
    report.unique_sentences = len(dd.unique)
    report.exact_duplicates_merged = dd.exact_merged
    report.near_duplicates_merged = dd.near_merged
    passages = make_passages(documents, cfg.passage_size, cfg.passage_stride)
    report.passages = len(passages)
    return dd, passages


class _AnswerSentences(Sequence[tuple[int, int, str]]):
    """(doc_idx, sent_no, text) of every answerable sentence, the text sliced
    when asked for: a list of them would be every sentence's text once more
    (docs/performance.md, "Dumps")."""

    def __init__(self, documents: list[docs_mod.Document]) -> None:
        self.documents = documents
        pairs = [(d, n) for d, doc in enumerate(documents) for n, s in enumerate(doc.sentences) if s.is_answer]
        self.doc = np.fromiter((d for d, _ in pairs), dtype=np.int32, count=len(pairs))
        self.sent = np.fromiter((n for _, n in pairs), dtype=np.int32, count=len(pairs))

    def __len__(self) -> int:
        return len(self.doc)

    @overload
    def __getitem__(self, i: int) -> tuple[int, int, str]: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[tuple[int, int, str]]: ...
    def __getitem__(self, i: int | slice) -> tuple[int, int, str] | Sequence[tuple[int, int, str]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        d, n = int(self.doc[i]), int(self.sent[i])
        return d, n, self.documents[d].sentence_text(n)


def _release_texts(documents: list[docs_mod.Document]) -> None:
    """Once meta.sqlite holds the articles, the build needs only their names
    and hashes: drop each text and its sentence spans, memory the embedding
    and the vector index can use (docs/performance.md, "Dumps").  Not when
    passages are encoded, which reads their text."""
    for d in documents:
        d.text = ""
        d.sentences = []


def _write_words(
    tmp: Path,
    index_dir: Path,
    cfg: BuildConfig,
    documents: list[docs_mod.Document],
    dd: DedupResult,
    passages: list[Passage],
    unique_texts: list[str],
    s_hashes: list[str],
    p_hashes: list[str] | None,
) -> int:
    """Step 3, BM25 and the metadata, before any vector exists to share the
    memory with (BM25 is large: docs/performance.md, build memory); in an
    incremental build the model is still loading in the warm pool meanwhile.
    Returns the BM25 vocabulary size."""
    try:
        vocab = build_bm25(unique_texts, cfg.lexical, tmp / fmt.BM25_DIR)
        _write_metadata(tmp, documents, dd, passages, s_hashes, p_hashes)
    except (OSError, sqlite3.Error, RuntimeError) as e:
        raise publish.write_error(index_dir, e) from e
    return vocab


def _embed(
    tmp: Path,
    index_dir: Path,
    old: fmt.Manifest | None,
    reuse: fmt.Manifest | None,
    model_id: str,
    cfg: BuildConfig,
    documents: list[docs_mod.Document],
    dd: DedupResult,
    passages: list[Passage],
    unique_texts: list[str],
    s_hashes: list[str],
    p_hashes: list[str] | None,
    pool: EncoderPool | None,
    stack: contextlib.ExitStack,
    report: BuildReport,
    log: Callable[[str], None],
) -> _Embedding:
    """Step 4: sentence and passage vectors, encoding only what the previous
    index (same model, precision and length) does not already hold.  With
    `reuse` (the previous manifest, same model) its precision is kept and the
    model is loaded only if something needs encoding."""
    old_key = _model_key(old.model, old.precision, old.max_seq_length) if old else None
    encoder: Encoder | None = None
    if reuse is not None:
        precision, max_len, dim = reuse.precision, reuse.max_seq_length, reuse.dimension
        bf16_check = reuse.bf16_check
    else:
        log(f"loading model {cfg.model} ...")
        encoder = load_encoder(cfg.model)
        precision, bf16_check = _choose_precision(encoder, unique_texts, cfg)
        max_len, dim = encoder.max_seq_length, encoder.dim
    emb = _Embedding(model_id, precision, max_len, dim, bf16_check, _model_key(model_id, precision, max_len), old_key)
    s_cache = VectorCache.from_index(index_dir, "sentences", fmt.SENTENCE_VECTORS, emb.key, old_key)
    p_cache = VectorCache.from_index(index_dir, "passages", fmt.PASSAGE_VECTORS, emb.key, old_key)

    def need_encoder() -> Encoder:
        nonlocal encoder
        if encoder is None:
            log(f"loading model {cfg.model} ...")
            encoder = load_encoder(cfg.model)
        encoder.precision = precision
        return encoder

    remote = None
    if cfg.ray:
        from index_build.ray_encode import RayEncoder

        log(f"starting Ray ({cfg.ray}) ...")
        remote = stack.enter_context(RayEncoder(cfg.ray, model_id, precision, cfg.batch_size))
    s_vecs, _, s_stats = embed_texts(
        need_encoder, dim, unique_texts, s_cache, cfg.batch_size, cfg.progress, "sentences", log,
        pool=pool, hashes=s_hashes, remote=remote,
    )  # fmt: skip
    report.sentences_embedded, report.sentences_reused = s_stats.encoded, s_stats.reused
    if cfg.passage_embedding == "encode":
        p_vecs, _, p_stats = embed_texts(
            need_encoder, dim, [p.text_in(documents) for p in passages], p_cache, cfg.batch_size, cfg.progress,
            "passages", log, pool=pool, hashes=p_hashes, remote=remote,
        )  # fmt: skip
    else:  # each passage's mean sentence vector, written straight into the new index
        groups = (
            [
                dd.assignment[(p.doc_idx, n)]
                for n in range(p.first_sent_no, p.last_sent_no + 1)
                if (p.doc_idx, n) in dd.assignment
            ]
            for p in passages
        )
        try:
            write_mean_vectors(tmp / fmt.PASSAGE_VECTORS, groups, len(passages), s_vecs)
        except OSError as e:
            raise publish.write_error(index_dir, e) from e
        p_vecs = None
        p_stats = EmbedStats()
    report.passages_embedded, report.passages_reused = p_stats.encoded, p_stats.reused
    report.precision = precision
    report.bf16_min_cosine = bf16_check.get("min_cosine")
    emb.sentences, emb.passages = s_vecs, p_vecs
    return emb


def _write_index(
    tmp: Path,
    index_dir: Path,
    old: fmt.Manifest | None,
    cfg: BuildConfig,
    emb: _Embedding,
    first_doc: np.ndarray,
    store_entry: dict | None,
    documents: list[docs_mod.Document],
    dump_states: dict[str, dict],
    unreadable: dict[str, dict],
    vocab: int,
    build_id: str,
    report: BuildReport,
    t0: float,
) -> None:
    """Step 5: the vectors (a FAISS index unless Milvus holds the sentences:
    `store_entry`), then the manifest, all flushed to disk in `tmp`, ready to
    publish."""
    assert emb.sentences is not None
    try:
        # the previous index's IVF training is kept when it is of the same model
        same_model = old is not None and emb.key == emb.old_key and old.dimension == emb.dim
        vector_index = _write_vectors(
            tmp,
            emb.sentences,
            emb.passages,
            first_doc,
            previous=(index_dir, old) if same_model and old is not None else None,
            sentence_index=store_entry is None,
        )
        emb.sentences = emb.passages = None
        report.seconds = time.perf_counter() - t0
        manifest = _manifest(
            cfg, emb.model_id, emb.precision, emb.max_len, emb.dim, emb.bf16_check, documents, report, vocab, build_id
        )
        manifest.vector_index = vector_index
        manifest.dumps = dump_states
        manifest.unreadable = unreadable
        if store_entry is not None:
            manifest.store = store_entry
        fmt.write_identity(tmp, manifest)
        (tmp / fmt.MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        publish.fsync_tree(tmp)
    except (OSError, sqlite3.Error, RuntimeError) as e:  # disk full, quota, I/O error (FAISS: RuntimeError)
        raise publish.write_error(index_dir, e) from e


def _first_doc(dd: DedupResult) -> np.ndarray:
    """The document each unique sentence first appears in (a store's delete-by-document key)."""
    return np.fromiter((u.occurrences[0].doc_idx for u in dd.unique), dtype=np.int64, count=len(dd.unique))


def _read_dump(
    src,
    cfg: BuildConfig,
    previous,
    documents: list,
    dump_states: dict[str, dict],
    report: BuildReport,
    log: Callable[[str], None],
) -> None:
    """Every article of a dump or feed into `documents`, and where the read
    ended into `dump_states`; unusable rows are counted in the report (with
    the first few line numbers), an unreadable dump is a skipped file."""
    skipped: list[dumps.Skipped] = []
    n = 0
    state = dumps.DumpState()
    try:
        for item in docs_mod.load_rows(
            src,
            max_bytes=cfg.max_file_bytes,
            max_sentence_chars=cfg.max_sentence_chars,
            previous=previous,
            columns=cfg.columns,
            state=state,
        ):
            if isinstance(item, dumps.Skipped):
                skipped.append(item)
                continue
            documents.append(item)
            report.metadata_warnings.extend({"path": f"{item.path}#{item.doc_id}", "warning": w} for w in item.warnings)
            n += 1
    except (dumps.DumpError, OSError, UnicodeDecodeError) as e:
        _skip(report, cfg, src.path, str(e), log)
        return
    name = docs_mod.readable_name(str(src.path))
    rows = {
        "path": name,
        "articles": n,
        "rows_skipped": len(skipped),
        "first_skipped": [{"line": k.line, "reason": k.reason} for k in skipped[:5]],
    }
    report.dump_rows.append(rows)
    if n:
        dump_states[name] = {
            **state.to_dict(),
            **{k: v for k, v in rows.items() if k != "path"},
            "columns": cfg.columns or {},
            "max_bytes": cfg.max_file_bytes,
        }
    if not n:
        _skip(
            report,
            cfg,
            src.path,
            "no usable rows" + (f" ({skipped[0].reason} on line {skipped[0].line}, ...)" if skipped else ""),
            log,
        )


def _expects_new_text(files: list[docs_mod.SourceFile], old: fmt.Manifest) -> bool:
    """Whether a file is new or changed, judged before reading any (path and
    size against the previous manifest): then the build will almost surely
    encode something, and a warm pool pays.  A change that keeps the size is
    missed here and only costs the model load after reading."""
    known = {(f.get("path"), f.get("bytes")) for f in old.files.values()}
    return any((docs_mod.readable_name(str(f.path)), f.size) not in known for f in files)


def _hash(text: str) -> str:
    from qa.textnorm import text_hash

    return text_hash(text)


def _skip(report: BuildReport, cfg: BuildConfig, path: Path, reason: str, log: Callable[[str], None]) -> None:
    report.files_skipped.append({"path": str(path), "reason": reason})
    if not cfg.strict:
        log(f"warning: skipping {path}: {reason}")


def _choose_precision(encoder: Encoder, texts: list[str], cfg: BuildConfig) -> tuple[str, dict]:
    """bf16 only where the CPU runs it natively *and* a probe on this corpus
    shows it agrees with fp32; the evidence goes into the manifest."""
    if cfg.precision == "fp32" or not cpu_has_fast_bf16():
        return "fp32", {}
    step = max(1, len(texts) // _PROBE_SIZE)
    probe = texts[::step][:_PROBE_SIZE]
    cos = bf16_agreement(encoder, probe, cfg.batch_size)
    check = {"probe_sentences": len(probe), "min_cosine": round(cos, 6), "threshold": cfg.bf16_min_cosine}
    if cfg.precision == "bf16" or cos >= cfg.bf16_min_cosine:
        return "bf16", check
    return "fp32", check


def _write_metadata(
    tmp: Path,
    documents: list[docs_mod.Document],
    dd: DedupResult,
    passages: list[Passage],
    s_hashes: list[str],
    p_hashes: list[str] | None,
) -> None:
    con = fmt.connect(tmp, readonly=False)
    try:
        con.executescript(fmt.SCHEMA)
        con.executemany("INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", docs_mod.document_rows(documents))
        con.executemany(
            "INSERT INTO sentences VALUES (?,?,?,?,?)",
            ((i, u.text, s_hashes[i], len(u.occurrences), u.variants) for i, u in enumerate(dd.unique)),
        )
        con.executemany(
            "INSERT INTO doc_sentences VALUES (?,?,?,?,?)",
            (
                (d_idx, s_no, s.start, s.end, dd.assignment.get((d_idx, s_no)))
                for d_idx, d in enumerate(documents)
                for s_no, s in enumerate(d.sentences)
            ),
        )
        con.executemany(
            "INSERT INTO passages VALUES (?,?,?,?,?)",
            (
                (
                    i,
                    p.doc_idx,
                    p.first_sent_no,
                    p.last_sent_no,
                    p_hashes[i] if p_hashes else _hash(p.text_in(documents)),
                )
                for i, p in enumerate(passages)
            ),
        )
        con.commit()
    finally:
        con.close()


def _write_milvus(
    store: StoreSpec, build_id: str, s_vecs: np.ndarray, first_doc: np.ndarray, log: Callable[[str], None]
):
    """This build's collection, filled and flushed (not yet what the alias
    names): (the MilvusStore, the manifest's `store` entry)."""
    from qa.errors import QAError
    from qa.milvus_store import MilvusStore

    n, dim = int(s_vecs.shape[0]), int(s_vecs.shape[1])
    log(f"writing {n} sentence vectors to Milvus ({store.uri}) ...")
    try:
        ms = MilvusStore.create(store, build_id, dim, n)
    except QAError as e:
        raise BuildError(f"{e} (nothing was changed)") from e
    try:
        ms.add(np.arange(n, dtype=np.int64), s_vecs, first_doc)
        entry = ms.persist()
    except BaseException:
        ms.drop()
        raise
    return ms, entry


def _publish_milvus(store: StoreSpec, ms, old: fmt.Manifest | None, log: Callable[[str], None]) -> None:
    """After the index directory is swapped in: the alias follows the new
    collection; collections older than the previous build's are dropped.
    Failures here are warnings: readers follow their manifest, not the alias."""
    from qa.milvus_store import publish_alias

    keep = set()
    if old is not None and isinstance(old.store, dict) and old.store.get("kind") == MILVUS:
        keep.add(str(old.store.get("collection")))
    try:
        dropped = publish_alias(store, ms.collection, keep)
        if dropped:
            log(f"dropped {len(dropped)} old Milvus collection(s): {', '.join(dropped)}")
    except Exception as e:  # noqa: BLE001
        log(
            f"warning: the index is built, but the Milvus alias {store.collection} was not moved to "
            f"{ms.collection} ({str(e).splitlines()[0][:200]}); readers of this index are not affected"
        )
    finally:
        ms.close()


def _write_vectors(
    tmp: Path,
    s_vecs: np.ndarray,
    p_vecs: np.ndarray | None,
    first_doc: np.ndarray,
    previous: tuple[Path, fmt.Manifest] | None = None,
    sentence_index: bool = True,
) -> dict:
    """sentence vectors (.npy) and their FAISS index (exact when small, IVF
    over 8-bit codes, tuned on this data, when large), passage and document
    vectors (.npy; meta.sqlite must be written already): returns the
    manifest's `vector_index` (index type and parameters of the sentence
    index, the document vectors' file).

    Passages get no FAISS index: the retriever reads a candidate's passage
    vectors by row and never searches them; searching them added nothing a
    sentence's neighbours do not, and cost a second index to train, tune,
    store and page in (docs/index-format.md, vector search).

    `sentence_index=False`: the sentences are searched in Milvus, so no
    FAISS file is written for them.

    `previous`: the index being replaced and its manifest (same model): an IVF
    index of it whose trained count is near the new one lends its training
    and tuned nprobe (qa.vector_index.reusable_training), so adding a few
    articles does not train and tune again."""
    from qa import vector_index as vi
    from qa.doc_map import document_vectors
    from qa.faiss_store import FaissStore

    params = {}
    if p_vecs is not None:  # else written already (embed.write_mean_vectors)
        np.save(tmp / fmt.PASSAGE_VECTORS, np.asarray(p_vecs, dtype=np.float32), allow_pickle=False)
    # The index is built from the vectors in memory: reading the .npy back
    # memory-mapped would put a second copy of every vector in the resident
    # set (its pages; docs/performance.md, build memory).
    mapped = np.asarray(s_vecs, dtype=np.float32)
    np.save(tmp / fmt.SENTENCE_VECTORS, mapped, allow_pickle=False)
    if sentence_index:
        trained = None
        if previous is not None:
            old_dir, old_manifest = previous
            trained = vi.reusable_training(
                old_dir / fmt.SENTENCE_FAISS,
                old_manifest.vector_params("sentences"),
                int(mapped.shape[0]),
                int(mapped.shape[1]),
            )
        store = FaissStore(tmp, previous=trained)
        del trained
        store.add(np.arange(len(mapped), dtype=np.int64), mapped, first_doc)
        params["sentences"] = store.persist()
        del store  # its FAISS index in memory
    else:  # searched in another store (the manifest's `store`): no FAISS file
        params["sentences"] = {"type": vi.FLAT}
    # each document's mean sentence vector, computed once here instead of at
    # every load (where it would read every sentence vector)
    con = fmt.connect(tmp, readonly=False)
    try:
        doc_vecs = document_vectors(con, mapped)
    finally:
        con.close()
    np.save(tmp / fmt.DOC_VECTORS, doc_vecs, allow_pickle=False)
    params["documents"] = {"file": fmt.DOC_VECTORS, "rows": int(len(doc_vecs))}
    del mapped, doc_vecs
    return params


def _manifest(
    cfg: BuildConfig,
    model_id: str,
    precision: str,
    max_len: int,
    dim: int,
    bf16_check: dict,
    documents,
    report: BuildReport,
    vocab: int,
    build_id: str,
) -> fmt.Manifest:
    from importlib.metadata import version

    import sentencex  # noqa: F401

    return fmt.Manifest(
        format_version=fmt.FORMAT_VERSION,
        package_version=_package_version(),
        model=model_id,
        dimension=int(dim),
        dtype="float32",
        precision=precision,
        normalized=True,
        max_seq_length=int(max_len),
        built_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        build_seconds=round(report.seconds, 3),
        segmenter=docs_mod.segmenter_settings(cfg.max_sentence_chars),
        passages={"size": cfg.passage_size, "stride": cfg.passage_stride, "embedding": cfg.passage_embedding},
        dedup={
            "normalisation": "NFKC, whitespace, quote/dash style, casefold",
            "near_dup_similarity": cfg.near_dup_similarity,
            "near_dup_min_words": cfg.near_dup_min_words,
        },
        lexical={
            "library": "bm25s",
            "version": version("bm25s"),
            "k1": cfg.lexical.k1,
            "b": cfg.lexical.b,
            "stemmer": cfg.lexical.language,
            "stopwords": cfg.lexical.stopwords,
            "vocabulary": vocab,
        },
        counts={
            "documents": report.documents,
            "sentences": report.sentences,
            "unique_sentences": report.unique_sentences,
            "passages": report.passages,
            "non_answer_lines": report.non_answer_lines,
            "exact_duplicates_merged": report.exact_duplicates_merged,
            "near_duplicates_merged": report.near_duplicates_merged,
            "skipped_files": len(report.files_skipped),
            **{f"with_{k}": int(v) for k, v in report.metadata.items()},
        },
        files={
            d.doc_id: {"path": d.path, "sha256": d.sha256, "bytes": d.size, "encoding": d.encoding} for d in documents
        },
        bf16_check=bf16_check,
        build_id=build_id,  # also names the build's Milvus collection
    )


def report_json(report: BuildReport) -> str:
    return json.dumps(report.to_dict(), indent=2)
