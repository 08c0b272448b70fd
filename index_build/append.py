"""Growing an index by the rows appended to its dumps, instead of rebuilding it.

A news archive grows at its end: an export or a JSONL feed gains the day's
rows.  An ordinary incremental build reuses each unchanged row's sentences
and vectors but still reads every row, deduplicates every sentence and
rewrites every file, so adding 100 rows to a 100,000-row dump cost 45% of a
full build (docs/performance.md, "Dumps").  When the only change since the
previous index is rows appended to JSONL or CSV dumps (the bytes it read are
still the file's first bytes, by sha256), this reads just the new rows and
adds them to a copy of the previous index, published like any build.

Where the result differs from a full build of the same files (both are
complete, correct indexes; docs/building.md, "Appending to a dump"):

- a new sentence joins an existing unique sentence when it is the same after
  normalisation as the wording that sentence is shown in, or a near-duplicate
  of it by the same rules (dedup.match_known); that shown wording stays (a
  full build shows a merged group's longest wording);
- the new articles come after every earlier one in the index's order.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import os
import shutil
import sqlite3
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from index_build import documents as docs_mod
from index_build import dumps, publish
from index_build.dedup import DedupResult, UniqueSentence, deduplicate, match_known
from index_build.embed import VectorCache, embed_texts, mean_vectors
from index_build.lexical import build_bm25
from index_build.passages import Passage, make_passages
from index_build.report import BuildReport
from qa import index_format as fmt
from qa.config import BuildConfig
from qa.textnorm import dedup_key, text_hash
from qa.vector_store import FAISS, StoreSpec

_HASH_CHUNK = 1 << 20


class NotAppendable(Exception):
    """The new rows cannot be read on their own (the file changed under the
    build, or is unreadable now): the build reads every file instead."""


@dataclass
class Growth:
    """A dump that grew: where its previous read ended, checked and hashed."""

    source: docs_mod.SourceFile
    resume: dumps.Resume


@dataclass
class Plan:
    """What an append build does: the dumps that grew (possibly none), and the
    files still unusable as they were last time (skipped again)."""

    growths: list[Growth]
    unreadable: list[tuple[Path, str]]


def plan(
    files: list[docs_mod.SourceFile],
    index_dir: Path,
    old: fmt.Manifest,
    cfg: BuildConfig,
    model_id: str,
    store: StoreSpec,
    package_version: str,
) -> Plan | None:
    """The dumps that grew (possibly none) when nothing else changed since
    `old`; None when the build must read everything: any setting changed, a
    file added, removed or edited, a dump that shrank or changed before its
    end, a feed that grew, an index from before dumps were recorded.  A file
    unusable last time and unchanged since is no change."""
    if not old.dumps or store.kind != FAISS or cfg.ray or cfg.passage_embedding != "mean":
        return None
    if cfg.strict and old.unreadable:
        return None  # --strict makes them an error, which the ordinary path raises
    lex = cfg.lexical
    same_settings = (
        old.model == model_id
        and cfg.precision in ("auto", old.precision)
        and old.package_version == package_version
        and old.segmenter == docs_mod.segmenter_settings(cfg.max_sentence_chars)
        and old.passages == {"size": cfg.passage_size, "stride": cfg.passage_stride, "embedding": "mean"}
        and old.dedup.get("near_dup_similarity") == cfg.near_dup_similarity
        and old.dedup.get("near_dup_min_words") == cfg.near_dup_min_words
        and [old.lexical.get(k) for k in ("k1", "b", "stemmer", "stopwords")]
        == [lex.k1, lex.b, lex.language, lex.stopwords]
        and not (isinstance(old.store, dict) and old.store.get("kind", FAISS) != FAISS)
    )
    if not same_settings:
        return None
    single = {f["path"]: (doc_id, f) for doc_id, f in old.files.items() if f.get("path") not in old.dumps}
    growths: list[Growth] = []
    unreadable: list[tuple[Path, str]] = []
    seen_dumps, seen_files = 0, 0
    for src in files:
        name = docs_mod.readable_name(str(src.path))
        entry = old.dumps.get(name)
        try:
            if entry is not None:
                if entry.get("columns") != (cfg.columns or {}) or entry.get("max_bytes") != cfg.max_file_bytes:
                    return None
                state = dumps.DumpState.from_dict(entry)
                size = src.path.stat().st_size
                if size < state.bytes:
                    return None
                hasher = _prefix_hash(src.path, state.bytes)
                if hasher.hexdigest() != state.sha256:
                    return None
                seen_dumps += 1
                if size > state.bytes:
                    if not dumps.appendable(src.path) or not state.ends_line:
                        return None
                    growths.append(Growth(src, dumps.Resume(state, hasher)))
                continue
            bad = old.unreadable.get(name)
            if bad is not None:
                data = src.path.read_bytes()
                if len(data) != bad.get("bytes") or hashlib.sha256(data).hexdigest() != bad.get("sha256"):
                    return None  # it changed: it may be readable now
                unreadable.append((src.path, str(bad.get("reason", "unusable"))))
                continue
            known = single.get(name)
            if known is None or known[0] != src.doc_id or dumps.is_dump(src.path):
                return None
            data = src.path.read_bytes()
            if len(data) != known[1].get("bytes") or hashlib.sha256(data).hexdigest() != known[1].get("sha256"):
                return None
            seen_files += 1
        except (OSError, KeyError, TypeError, ValueError):
            return None
    if seen_dumps != len(old.dumps) or seen_files != len(single):
        return None  # a file of the previous index is gone
    return Plan(growths, unreadable)


def _name(path: Path) -> str:
    return docs_mod.readable_name(str(path))


def _prefix_hash(path: Path, n: int):
    """sha256 of the first `n` bytes of `path` (the object, to hash on)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = n
        while left > 0:
            chunk = f.read(min(_HASH_CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h


def append(
    plan: Plan,
    files: list[docs_mod.SourceFile],
    index_dir: Path,
    old: fmt.Manifest,
    cfg: BuildConfig,
    report: BuildReport,
    log: Callable[[str], None],
    t0: float,
) -> None:
    """Read the new rows of `plan`'s dumps, add them to a copy of the index at
    `index_dir` and publish it (the caller holds the build lock).  Fills
    `report` with the totals of the grown index."""
    new_docs, states = _read_new_rows(plan.growths, old, cfg, report, log)
    n_docs, n_unique = old.counts["documents"], old.counts["unique_sentences"]
    answers = [
        (n_docs + i, n, d.sentence_text(n))
        for i, d in enumerate(new_docs)
        for n, s in enumerate(d.sentences)
        if s.is_answer
    ]
    dd = deduplicate(answers, cfg.near_dup_similarity, cfg.near_dup_min_words)
    con_old = fmt.connect(index_dir)
    try:
        known = [t for (t,) in con_old.execute("SELECT text FROM sentences ORDER BY sent_idx")]
    finally:
        con_old.close()
    target = match_known([u.text for u in dd.unique], known, cfg.near_dup_similarity, cfg.near_dup_min_words)
    uid: list[int] = []  # new unique sentence -> sent_idx in the grown index
    added: list[UniqueSentence] = []  # the new unique sentences that join none
    joined: Counter[int] = Counter()  # sent_idx -> occurrences added
    variants: Counter[int] = Counter()  # sent_idx -> wordings added
    near_joins = 0
    for u, t in zip(dd.unique, target):
        if t >= 0:
            uid.append(t)
            joined[t] += len(u.occurrences)
            extra = u.variants - (dedup_key(u.text) == dedup_key(known[t]))
            variants[t] += extra
            near_joins += extra
        else:
            uid.append(n_unique + len(added))
            added.append(u)
    passages = make_passages(new_docs, cfg.passage_size, cfg.passage_stride)

    tmp = _temp_dir(index_dir)
    try:
        shutil.copyfile(index_dir / fmt.META_DB, tmp / fmt.META_DB)
        _write_metadata(
            tmp, new_docs, n_docs, n_unique, dd, uid, added, joined, variants, passages, old.counts["passages"]
        )
        texts = [u.text for u in added]
        if texts:
            vocab = build_bm25(known + texts, cfg.lexical, tmp / fmt.BM25_DIR)
        else:
            _link_tree(index_dir / fmt.BM25_DIR, tmp / fmt.BM25_DIR)
            vocab = int(old.lexical.get("vocabulary", 0))
        del known
        new_vecs = _encode(texts, old, cfg, log)
        old_vecs = np.load(index_dir / fmt.SENTENCE_VECTORS, mmap_mode="r", allow_pickle=False)
        vectors = np.concatenate([np.asarray(old_vecs, dtype=np.float32), new_vecs]) if len(new_vecs) else old_vecs
        del old_vecs
        if len(new_vecs):
            np.save(tmp / fmt.SENTENCE_VECTORS, np.asarray(vectors), allow_pickle=False)
        else:
            _link(index_dir / fmt.SENTENCE_VECTORS, tmp / fmt.SENTENCE_VECTORS)
        sentence_params = _sentence_index(tmp, index_dir, old, vectors, bool(len(new_vecs)))
        final = np.asarray(uid, dtype=np.int64)

        def group(doc: int, first: int, last: int) -> list[int]:
            return [int(final[dd.assignment[doc, n]]) for n in range(first, last + 1) if (doc, n) in dd.assignment]

        p_groups = [group(n_docs + p.doc_idx, p.first_sent_no, p.last_sent_no) for p in passages]
        _append_rows(index_dir / fmt.PASSAGE_VECTORS, tmp / fmt.PASSAGE_VECTORS, _means(p_groups, vectors))
        d_groups = [group(n_docs + i, 0, len(d.sentences) - 1) for i, d in enumerate(new_docs)]
        _append_rows(index_dir / fmt.DOC_VECTORS, tmp / fmt.DOC_VECTORS, _means(d_groups, vectors))
        del vectors

        counts = dict(old.counts)
        counts["documents"] = n_docs + len(new_docs)
        counts["sentences"] = old.counts["sentences"] + len(answers)
        counts["non_answer_lines"] = (
            old.counts.get("non_answer_lines", 0) + sum(len(d.sentences) for d in new_docs) - len(answers)
        )
        counts["unique_sentences"] = n_unique + len(added)
        counts["passages"] = old.counts["passages"] + len(passages)
        counts["near_duplicates_merged"] = old.counts.get("near_duplicates_merged", 0) + dd.near_merged + near_joins
        counts["exact_duplicates_merged"] = (
            counts["sentences"] - counts["unique_sentences"] - counts["near_duplicates_merged"]
        )
        for k in ("published", "outlet", "author", "url"):
            counts[f"with_{k}"] = old.counts.get(f"with_{k}", 0) + sum(getattr(d, k) is not None for d in new_docs)
        counts["skipped_files"] = len(report.files_skipped)
        report.seconds = time.perf_counter() - t0
        manifest = dataclasses.replace(
            old,
            built_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            build_seconds=round(report.seconds, 3),
            lexical={**old.lexical, "vocabulary": vocab},
            counts=counts,
            files={
                **old.files,
                **{
                    d.doc_id: {"path": d.path, "sha256": d.sha256, "bytes": d.size, "encoding": d.encoding}
                    for d in new_docs
                },
            },
            vector_index={
                **old.vector_index,
                "sentences": sentence_params,
                "documents": {"file": fmt.DOC_VECTORS, "rows": counts["documents"]},
            },
            dumps={**old.dumps, **states},
            unreadable={name: old.unreadable[name] for name in map(_name, (p for p, _ in plan.unreadable))},
            build_id=uuid.uuid4().hex,
        )
        fmt.write_identity(tmp, manifest)
        (tmp / fmt.MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        publish.fsync_tree(tmp)
        publish.publish(tmp, index_dir)
    except (OSError, sqlite3.Error, RuntimeError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise publish.write_error(index_dir, e) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fill_report(report, old, counts, files, states, len(added), new_docs)


def _read_new_rows(
    growths: list[Growth], old: fmt.Manifest, cfg: BuildConfig, report: BuildReport, log: Callable[[str], None]
) -> tuple[list[docs_mod.Document], dict[str, dict]]:
    """The articles of every grown dump's new rows, and each dump's new
    manifest entry (its state and row counts, earlier rows included)."""
    new_docs: list[docs_mod.Document] = []
    states: dict[str, dict] = {}
    for g in growths:
        name = docs_mod.readable_name(str(g.source.path))
        entry = old.dumps[name]
        state = dumps.DumpState()
        skipped: list[dumps.Skipped] = []
        n = 0
        rows = docs_mod.load_rows(
            g.source,
            max_bytes=cfg.max_file_bytes,
            max_sentence_chars=cfg.max_sentence_chars,
            columns=cfg.columns,
            state=state,
            resume=g.resume,
            taken=old.files,
        )
        try:
            for item in rows:
                if isinstance(item, dumps.Skipped):
                    skipped.append(item)
                    continue
                new_docs.append(item)
                report.metadata_warnings.extend(
                    {"path": f"{item.path}#{item.doc_id}", "warning": w} for w in item.warnings
                )
                n += 1
        except (dumps.DumpError, OSError, UnicodeDecodeError) as e:
            raise NotAppendable(f"{name}: {e}") from e
        first = list(entry.get("first_skipped", [])) + [{"line": k.line, "reason": k.reason} for k in skipped]
        states[name] = {
            **state.to_dict(),
            "articles": int(entry.get("articles", 0)) + n,
            "rows_skipped": int(entry.get("rows_skipped", 0)) + len(skipped),
            "first_skipped": first[:5],
            "columns": cfg.columns or {},
            "max_bytes": cfg.max_file_bytes,
        }
        log(f"{name}: {n} new articles from the rows added since the last build")
    return new_docs, states


def _write_metadata(
    tmp: Path,
    docs: list[docs_mod.Document],
    n_docs: int,
    n_unique: int,
    dd: DedupResult,
    uid: list[int],
    added: list[UniqueSentence],
    joined: Counter[int],
    variants: Counter[int],
    passages: list[Passage],
    n_passages: int,
) -> None:
    """The new articles, sentences and passages, into the copy of meta.sqlite."""
    con = fmt.connect(tmp, readonly=False)
    try:
        con.executemany("INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", docs_mod.document_rows(docs, n_docs))
        con.executemany(
            "INSERT INTO sentences VALUES (?,?,?,?,?)",
            ((n_unique + j, u.text, text_hash(u.text), len(u.occurrences), u.variants) for j, u in enumerate(added)),
        )
        con.executemany(
            "UPDATE sentences SET n_occurrences = n_occurrences + ?, n_variants = n_variants + ? WHERE sent_idx = ?",
            ((joined[s], variants[s], s) for s in sorted(joined)),
        )

        def sent_idx(doc: int, n: int) -> int | None:
            return uid[dd.assignment[doc, n]] if (doc, n) in dd.assignment else None

        con.executemany(
            "INSERT INTO doc_sentences VALUES (?,?,?,?,?)",
            (
                (n_docs + i, n, s.start, s.end, sent_idx(n_docs + i, n))
                for i, d in enumerate(docs)
                for n, s in enumerate(d.sentences)
            ),
        )
        con.executemany(
            "INSERT INTO passages VALUES (?,?,?,?,?)",
            (
                (n_passages + k, n_docs + p.doc_idx, p.first_sent_no, p.last_sent_no, text_hash(p.text_in(docs)))
                for k, p in enumerate(passages)
            ),
        )
        con.commit()
    finally:
        con.close()


def _encode(texts: list[str], old: fmt.Manifest, cfg: BuildConfig, log: Callable[[str], None]) -> np.ndarray:
    """Vectors of the new unique sentences, by the previous index's model and
    precision; the model is loaded only when there is something to encode."""
    from qa.encoder import Encoder, load_encoder

    encoder: Encoder | None = None

    def need_encoder() -> Encoder:
        nonlocal encoder
        if encoder is None:
            log(f"loading model {cfg.model} ...")
            encoder = load_encoder(cfg.model)
            encoder.precision = old.precision
        return encoder

    if not texts:
        return np.zeros((0, old.dimension), dtype=np.float32)
    vecs, _, _ = embed_texts(
        need_encoder, old.dimension, texts, VectorCache(), cfg.batch_size, cfg.progress, "sentences", log, processes=1
    )
    return np.asarray(vecs, dtype=np.float32)


def _sentence_index(tmp: Path, index_dir: Path, old: fmt.Manifest, vectors: np.ndarray, grew: bool) -> dict:
    """The FAISS file of the grown sentence vectors (the previous IVF
    training and tuned nprobe kept when they fit, as an incremental build
    does), or the previous file itself when no sentence is new."""
    from qa import vector_index as vi
    from qa.faiss_store import FaissStore

    if not grew:
        _link(index_dir / fmt.SENTENCE_FAISS, tmp / fmt.SENTENCE_FAISS)
        return old.vector_params("sentences")
    n, d = int(vectors.shape[0]), int(vectors.shape[1])
    trained = vi.reusable_training(index_dir / fmt.SENTENCE_FAISS, old.vector_params("sentences"), n, d)
    store = FaissStore(tmp, previous=trained)
    del trained
    # the document column serves deletes, which a build never makes here
    store.add(np.arange(n, dtype=np.int64), vectors, np.zeros(n, dtype=np.int64))
    return store.persist()


def _means(groups: list[list[int]], vectors: np.ndarray) -> np.ndarray:
    """Each group's normalised mean row (zero for an empty group: an article
    with no answer sentence, as qa.doc_map gives it)."""
    out = np.zeros((len(groups), int(vectors.shape[1])), dtype=np.float32)
    full = [k for k, g in enumerate(groups) if g]
    if full:
        out[full] = mean_vectors([groups[k] for k in full], vectors)
    return out


def _append_rows(old_path: Path, new_path: Path, rows: np.ndarray) -> None:
    """`new_path`: the .npy matrix at `old_path` with `rows` added below,
    written without loading the old one (a kernel copy of its bytes where
    the system offers one)."""
    fmt_ = np.lib.format
    with open(old_path, "rb", buffering=0) as src, open(new_path, "wb", buffering=0) as dst:
        version = fmt_.read_magic(src)
        read_header = fmt_.read_array_header_1_0 if version == (1, 0) else fmt_.read_array_header_2_0
        shape, fortran, dtype = read_header(src)
        if fortran or dtype != np.float32 or len(shape) != 2 or shape[1] != rows.shape[1]:
            raise OSError(f"{old_path.name} is not a float32 matrix of {rows.shape[1]} columns")
        fmt_.write_array_header_1_0(
            dst, {"descr": "<f4", "fortran_order": False, "shape": (shape[0] + len(rows), shape[1])}
        )
        left = shape[0] * shape[1] * 4
        try:
            while left > 0:
                sent = os.copy_file_range(src.fileno(), dst.fileno(), left)
                if sent <= 0:
                    break
                left -= sent
        except (AttributeError, OSError):  # no kernel copy here: through this process
            pass
        while left > 0:
            chunk = src.read(min(_HASH_CHUNK, left))
            if not chunk:
                raise OSError(f"{old_path.name} is shorter than its header says")
            dst.write(chunk)
            left -= len(chunk)
        dst.write(np.ascontiguousarray(rows, dtype="<f4").tobytes())


def _link(src: Path, dst: Path) -> None:
    """`dst` as the same file as `src` (an unchanged file of the previous
    index: nothing writes to an index's files once published), a copy where
    hard links are not allowed."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _link_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, copy_function=lambda a, b: _link(Path(a), Path(b)))


def _temp_dir(index_dir: Path) -> Path:
    try:
        return publish.temp_dir(index_dir)
    except OSError as e:
        raise publish.write_error(index_dir, e) from e


def _fill_report(
    report: BuildReport,
    old: fmt.Manifest,
    counts: dict,
    files: list[docs_mod.SourceFile],
    states: dict[str, dict],
    embedded: int,
    new_docs: list[docs_mod.Document],
) -> None:
    report.appended = len(new_docs)
    report.files_read = counts["documents"]
    report.documents = counts["documents"]
    report.sentences = counts["sentences"]
    report.non_answer_lines = counts["non_answer_lines"]
    report.unique_sentences = counts["unique_sentences"]
    report.exact_duplicates_merged = counts["exact_duplicates_merged"]
    report.near_duplicates_merged = counts["near_duplicates_merged"]
    report.passages = counts["passages"]
    report.sentences_embedded = embedded
    report.sentences_reused = counts["unique_sentences"] - embedded
    report.precision = old.precision
    report.bf16_min_cosine = old.bf16_check.get("min_cosine")
    report.metadata = {k: counts.get(f"with_{k}", 0) for k in ("published", "outlet", "author", "url")}
    dumps_now = {**old.dumps, **states}
    for src in files:
        name = docs_mod.readable_name(str(src.path))
        if name in dumps_now:
            e = dumps_now[name]
            report.dump_rows.append(
                {
                    "path": name,
                    "articles": e["articles"],
                    "rows_skipped": e["rows_skipped"],
                    "first_skipped": e["first_skipped"],
                }  # fmt: skip
            )
