"""What the web chat needs besides a page: the engine it asks, kept in step
with the index on disk, and the "Add articles" path (safe upload, incremental
rebuild, atomic swap).  No Gradio here.

The engine in use is swapped, never mutated.  Every engine gets a small pool
of worker threads whose SQLite connections are opened when the engine is
loaded, so an engine keeps reading the index it was loaded from even after a
rebuild has replaced that directory on disk (the old files stay readable
until their last reader lets go); questions keep being answered from the old
engine while a rebuild runs, and from the new one as soon as it is loaded.

If the index changes on disk behind the chat's back (someone ran
`index_build`), the next question loads the new one; if it is missing or
broken, the chat says so with the command that fixes it and keeps serving.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import tempfile
import threading
import time
import traceback
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from qa.chat_render import DocRow
from qa.config import DUMP_SUFFIXES, MAX_FILE_BYTES, SUPPORTED_SUFFIXES
from qa.errors import IndexLoadError, ModelUnavailableError, QAError

MAX_UPLOAD_BYTES = MAX_FILE_BYTES  # per file (20 MB): what the builder reads
MAX_UPLOAD_FILES = 50  # per upload
_NAME_MAX = 80
_RESERVED = frozenset(["CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))])


class Unavailable(Exception):
    """No engine can answer: `message` says why, `fix` is the command."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class UploadRejected(ValueError):
    """An uploaded file is not taken; str(e) says why."""


@dataclass
class Reply:
    """What one question produced: a Result, plus a notice when the answer
    comes from an index that is no longer the one on disk."""

    result: Any  # qa.answers.Result
    notice: str | None = None
    seconds: float = 0.0


@dataclass
class UploadOutcome:
    saved: list[str] = field(default_factory=list)  # file names added to the sources folder
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (name as uploaded, why)
    report: Any = None  # index_build BuildReport, when a rebuild ran
    error: str | None = None  # the rebuild failed (old index still in use)


class _Slot:
    """One loaded engine plus the worker threads that run its questions (the
    engine reads only the files it loaded, so a swap never mixes indexes)."""

    def __init__(self, engine: Any, workers: int) -> None:
        self.engine = engine
        self.loaded_at = time.time()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qa-engine")

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.submit(fn, self.engine, *args).result()

    def close(self) -> None:
        self.pool.shutdown(wait=False)


def _signature(index_dir: Path) -> tuple[int, int, int] | None:
    """Changes whenever a build publishes a new index at `index_dir`."""
    try:
        d = os.stat(index_dir)
        m = os.stat(index_dir / "manifest.json")
    except OSError:
        return None
    return (d.st_ino, m.st_ino, m.st_mtime_ns)


def safe_name(name: str) -> str:
    """A file name that is safe to create inside the sources folder: no
    directory part, no leading dot, only word characters, dots and dashes,
    a supported extension.  UploadRejected otherwise."""
    base = unicodedata.normalize("NFKC", str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable())
    stem, dot, ext = base.rpartition(".")
    ext = f".{ext.lower()}" if dot else ""
    if ext not in SUPPORTED_SUFFIXES + DUMP_SUFFIXES:
        raise UploadRejected(
            f"unsupported file type {ext or '(none)'!r}: upload .txt, .md, .html, .pdf or .docx "
            "articles, or .jsonl/.csv/.rss/.atom files of many"
        )
    stem = re.sub(r"[^\w.\-]+", "_", stem).strip("._-")
    stem = re.sub(r"\.{2,}", ".", stem)[:_NAME_MAX].strip("._-")
    head, dot, rest = stem.partition(".")
    if head.upper() in _RESERVED:  # con.txt, nul.md: devices on Windows (a synced or shared folder)
        stem = f"{head}_{dot}{rest}"
    return f"{stem or 'article'}{ext}"


def _check_dump(path: Path) -> None:
    """A dump or feed must yield at least one article (UploadRejected otherwise)."""
    from index_build import dumps

    first_skip = None
    try:
        for row in dumps.rows(path):
            if isinstance(row, dumps.Row):
                return
            first_skip = first_skip or row
    except dumps.DumpError as e:
        raise UploadRejected(str(e)) from e
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UploadRejected(f"cannot be read ({type(e).__name__}: {e})") from e
    why = f" (line {first_skip.line}: {first_skip.reason})" if first_skip else ""
    raise UploadRejected(f"no usable rows{why}")


class ChatBackend:
    def __init__(
        self,
        index_dir: str | Path,
        sources_dir: str | Path,
        *,
        workers: int = 2,
        query_threads: int | None = 1,
        allow_upload: bool = True,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        max_upload_files: int = MAX_UPLOAD_FILES,
        log: Callable[[str], None] | None = None,
        store: str | None = None,
    ) -> None:
        self.index_dir = Path(index_dir)
        self.store = store  # a --store value (qa.vector_store); None: the manifest's
        self.sources_dir = Path(sources_dir)
        self.workers = max(1, workers)
        self.query_threads = query_threads
        self.allow_upload = allow_upload
        self.max_upload_bytes = max_upload_bytes
        self.max_upload_files = max_upload_files
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self._slot: _Slot | None = None
        self._slot_sig: tuple | None = None
        self._failed_sig: tuple | None | str = "never"
        self._error: Unavailable | None = None
        self._reload_lock = threading.Lock()
        self._build_lock = threading.Lock()
        self.building = False
        self.generation = 0  # +1 on every engine swap: pages refresh their sources panel when it moves

    # -- commands that fix things ------------------------------------------------
    def build_command(self, full: bool = False) -> str:
        cmd = ["python", "-m", "index_build", str(self.sources_dir), "--index", str(self.index_dir)]
        store = self.store or self._manifest_store()
        if store and store != "faiss":
            cmd += ["--store", store]
        return shlex.join(cmd + (["--full"] if full else []))

    def _manifest_store(self) -> str | None:
        """The --store value of the index's manifest, if it can be read (a
        rebuild must go to the same store, or readers lose their vectors)."""
        from qa.index_format import Manifest
        from qa.vector_store import spec_from_manifest

        try:
            return str(spec_from_manifest(Manifest.read(self.index_dir).store))
        except Exception:  # noqa: BLE001 - no manifest, or a damaged one: the default store
            return None

    def _unavailable(self, e: Exception) -> Unavailable:
        if isinstance(e, IndexLoadError):
            missing = not (self.index_dir / "manifest.json").exists()
            return Unavailable(str(e), self.build_command(full=not missing))
        if isinstance(e, ModelUnavailableError):  # the index names a model this machine lacks
            return Unavailable(
                f"the index at {self.index_dir} needs a model this machine does not have: {e}",
                self.build_command(full=True),
            )
        return Unavailable(str(e), None)

    # -- the engine in use -------------------------------------------------------
    def _load_engine(self, previous: Any | None) -> Any:
        """A fresh Engine on the index at index_dir, reusing the previous
        engine's model when the index was built with the same one."""
        from qa.engine import QUERY_PRECISION, Engine

        if previous is not None:
            from dataclasses import replace

            from qa.index_store import open_index

            data = open_index(self.index_dir, store=self.store)
            enc = previous.encoder
            m = data.manifest
            if enc.model_id == m.model and enc.dim == m.dimension:
                try:
                    # the model, the reader and its second stage stay loaded: a new index does not change them
                    engine = Engine(
                        data,
                        replace(enc, precision=QUERY_PRECISION),
                        reader=previous.reader,
                        rerank=previous.rerank,
                    )
                    engine.warm()
                    return engine
                except TypeError:  # the constructor changed: fall back to a full load
                    pass
            data.close()
        return Engine.load(self.index_dir, store=self.store)

    def _set_query_threads(self) -> None:
        # One short question is a few milliseconds of matmuls: more threads
        # only add spin-waiting, and on a busy machine (or with several users)
        # they make latency much worse.
        if self.query_threads:
            try:
                import torch

                torch.set_num_threads(self.query_threads)
            except Exception:  # noqa: BLE001 - an optimisation only
                pass

    def refresh(self, force: bool = False) -> _Slot:
        """The slot to ask: reloaded when the index on disk changed.  Raises
        Unavailable when there is no usable index at all."""
        sig = _signature(self.index_dir)
        slot = self._slot
        if slot is not None and sig == self._slot_sig and not force:
            return slot
        if slot is None and sig == self._failed_sig and not force and self._error is not None:
            raise self._error
        if slot is not None and (sig is None or sig == self._failed_sig or self.building) and not force:
            # gone or broken on disk: keep answering from memory (with a notice);
            # mid-rebuild: the rebuild loads the new index itself when it is done
            return slot
        with self._reload_lock:
            sig = _signature(self.index_dir)
            slot = self._slot
            if slot is not None and sig == self._slot_sig:
                return slot
            try:
                t0 = time.perf_counter()
                engine = self._load_engine(slot.engine if slot else None)
                new = _Slot(engine, self.workers)
            except (QAError, OSError) as e:
                self._failed_sig, self._error = sig, self._unavailable(e)
                if slot is None:
                    raise self._error from e
                self.log(
                    f"warning: the index at {self.index_dir} changed but cannot be loaded ({e}); "
                    "still answering from the one loaded before"
                )
                return slot
            self._slot, self._slot_sig, self._failed_sig, self._error = new, sig, None, None
            self.generation += 1
            self._set_query_threads()
            if slot is not None:
                slot.close()
            self.log(
                f"loaded the index at {self.index_dir} ({engine.manifest.counts.get('documents', '?')} "
                f"articles) in {time.perf_counter() - t0:.1f} s"
            )
            return new

    def _notice(self) -> str | None:
        """A one-line warning when the engine in use is not the index on disk."""
        if self.building:
            return None
        sig = _signature(self.index_dir)
        if sig == self._slot_sig:
            return None
        if sig is None:
            return (
                f"The index at {self.index_dir} is gone from disk; these answers come from the copy loaded "
                f"earlier. Rebuild it with: {self.build_command()}"
            )
        if self._error is not None:
            return (
                f"The index on disk cannot be loaded ({self._error.message}); these answers come from the copy "
                f"loaded earlier. Fix: {self._error.fix or self.build_command(full=True)}"
            )
        return None

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        for _ in range(3):
            slot = self.refresh()
            try:
                return slot.run(fn, *args)
            except RuntimeError as e:  # that slot was swapped out and shut down meanwhile
                if "shutdown" not in str(e):
                    raise
        return self.refresh().run(fn, *args)

    # -- questions -----------------------------------------------------------
    def ask(
        self,
        question: str,
        history: Any = None,
        k: int = 5,
        since: str | None = None,
        until: str | None = None,
        outlets: list[str] | None = None,
    ) -> Reply:
        """Raises Unavailable (no index), ValueError (bad question or filter);
        anything else is an engine failure the caller reports."""
        t0 = time.perf_counter()
        res = self._run(lambda e: e.ask(question, history=history, k=k, since=since, until=until, outlets=outlets))
        return Reply(res, self._notice(), time.perf_counter() - t0)

    def documents(self) -> tuple[list[DocRow], Any]:
        """Every indexed article, and the manifest of the index."""

        def q(e: Any) -> tuple[list[DocRow], Any]:
            rows = e.sql("SELECT doc_id, title, path, n_sentences, outlet, published FROM documents ORDER BY doc_idx")
            return [DocRow(*r) for r in rows], e.manifest

        return self._run(q)

    def article(self, doc_id: str) -> tuple[str, str, str] | None:
        """(title, path, full extracted text) of one article, or None."""

        def q(e: Any) -> Any:
            rows = e.sql("SELECT title, path, text FROM documents WHERE doc_id = ?", (doc_id,))
            return rows[0] if rows else None

        row = self._run(q)
        return tuple(row) if row else None

    # -- adding articles -------------------------------------------------------
    def _check_sources_cover_index(self) -> str | None:
        """A rebuild from the sources folder must not drop articles the index
        got from elsewhere."""
        try:
            slot = self.refresh()
        except Unavailable:
            return None
        root = self.sources_dir.resolve()
        outside = []
        for meta in slot.engine.manifest.files.values():
            p = Path(meta.get("path", ""))
            try:
                p.resolve().relative_to(root)
            except ValueError:
                outside.append(str(p))
        if outside:
            return (
                f"the index also holds {len(outside)} article(s) from outside {self.sources_dir} "
                f"(e.g. {outside[0]}), which a rebuild from that folder would drop: restart the chat with "
                "--sources set to the folder the index was built from"
            )
        return None

    def _known_files(self) -> dict[str, str]:
        """sha256 -> file name of every article the index holds."""
        try:
            files = self.refresh().engine.manifest.files
        except Unavailable:
            return {}
        return {m["sha256"]: Path(m.get("path", "")).name for m in files.values() if m.get("sha256")}

    def _stem_taken(self, stem: str) -> list[Path]:
        return [p for p in self.sources_dir.iterdir() if p.is_file() and p.stem == stem]

    def save_upload(self, name: str, tmp_path: str | Path, known: dict[str, str] | None = None) -> str:
        """Copy one uploaded file into the sources folder under a safe, new
        name; returns that name.  UploadRejected says why not.

        `known`: sha256 -> file name of articles already there (the index's
        manifest): the same article under another name is not added twice."""
        import hashlib

        from index_build.readers import Unreadable, read

        fname = safe_name(name)
        src = Path(tmp_path)
        try:
            size = src.stat().st_size
        except OSError as e:
            raise UploadRejected(f"upload not found ({e.strerror})") from e
        if size > self.max_upload_bytes:
            raise UploadRejected(
                f"{size / 2**20:.1f} MB is over the {self.max_upload_bytes / 2**20:g} MB limit per file"
            )
        if size == 0:
            raise UploadRejected("empty file")
        data = src.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if known is not None and digest in known:
            raise UploadRejected(f"already in the sources as {known[digest]}")
        # Read it the way the builder will, before it goes anywhere near the sources.
        with tempfile.TemporaryDirectory(prefix="qa-upload-") as td:
            probe = Path(td) / fname
            probe.write_bytes(data)
            if probe.suffix.lower() in DUMP_SUFFIXES:
                _check_dump(probe)
            else:
                try:
                    read(probe)
                except Unreadable as e:
                    raise UploadRejected(f"cannot be read as an article: {e}") from e
        root = self.sources_dir.resolve()
        root.mkdir(parents=True, exist_ok=True)
        stem, ext = fname[: -len(Path(fname).suffix)], Path(fname).suffix
        for p in self._stem_taken(stem):
            if p.read_bytes() == data:
                raise UploadRejected(f"already in the sources as {p.name}")
        n = 2
        candidate = fname
        while self._stem_taken(Path(candidate).stem):
            candidate = f"{stem}-{n}{ext}"
            n += 1
        dest = root / candidate
        if dest.parent != root:  # cannot happen after safe_name; belt and braces
            raise UploadRejected("unsafe file name")
        fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=root)  # hidden: builds ignore it
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.link(tmp, dest)  # fails rather than overwrite
        except FileExistsError as e:
            raise UploadRejected(f"{dest.name} appeared meanwhile: upload again") from e
        finally:
            Path(tmp).unlink(missing_ok=True)
        if known is not None:
            known[digest] = dest.name
        return dest.name

    def _build_config(self) -> Any:
        """Rebuild with the settings the index was built with (same model, so
        every existing vector is reused)."""
        from qa.config import BuildConfig
        from qa.vector_store import spec_from_manifest

        try:
            m = self.refresh().engine.manifest
        except Unavailable:
            return BuildConfig(progress=False, store=self.store or "faiss")
        # the same vector store, at the address this chat reaches it by
        kw: dict[str, Any] = {
            "model": m.model,
            "progress": False,
            "store": self.store or str(spec_from_manifest(m.store)),
        }
        p, d, g = m.passages or {}, m.dedup or {}, m.segmenter or {}
        for key, src, name in (
            ("passage_size", p, "size"),
            ("passage_stride", p, "stride"),
            ("passage_embedding", p, "embedding"),
            ("near_dup_similarity", d, "near_dup_similarity"),
            ("near_dup_min_words", d, "near_dup_min_words"),
            ("max_sentence_chars", g, "max_sentence_chars"),
        ):
            if name in src:
                kw[key] = src[name]
        return BuildConfig(**kw)

    def add_articles(
        self, files: list[tuple[str, str | Path]], progress: Callable[[str], None] | None = None
    ) -> UploadOutcome:
        """Save uploads into the sources folder, rebuild incrementally, swap
        the new index in.  The chat keeps answering from the old index until
        the new one is loaded."""
        say = progress or (lambda m: None)
        out = UploadOutcome()
        if not self.allow_upload:
            out.error = "adding articles is switched off on this server (started with --no-upload)"
            return out
        if len(files) > self.max_upload_files:
            out.error = f"{len(files)} files at once is over the limit of {self.max_upload_files}: upload fewer"
            return out
        if not self._build_lock.acquire(blocking=False):
            out.error = "another rebuild is running: wait for it to finish, then upload again"
            return out
        try:
            problem = self._check_sources_cover_index()
            if problem:
                out.error = problem
                return out
            known = self._known_files()
            for name, path in files:
                try:
                    out.saved.append(self.save_upload(name, path, known))
                except UploadRejected as e:
                    out.rejected.append((Path(str(name)).name, str(e)))
            if not out.saved:
                return out
            say(f"Saved {len(out.saved)} file(s) to {self.sources_dir}; updating the index …")
            from index_build import build

            self.building = True
            try:
                out.report = build([self.sources_dir], self.index_dir, self._build_config(), log=lambda m: None)
            except (QAError, OSError) as e:
                out.error = f"the rebuild failed ({e}); the chat still answers from the previous index"
                return out
            finally:
                self.building = False
            skipped = {Path(s["path"]).name: s["reason"] for s in out.report.files_skipped}
            for name in list(out.saved):
                if name in skipped:  # the builder could not use it after all: do not leave it behind
                    (self.sources_dir / name).unlink(missing_ok=True)
                    out.saved.remove(name)
                    out.rejected.append((name, skipped[name]))
            say("Index updated; loading it …")
            self.refresh(force=True)
            return out
        except Exception as e:  # noqa: BLE001 - reported in the page, server keeps going
            traceback.print_exc()
            out.error = f"{type(e).__name__}: {e}"
            return out
        finally:
            self._build_lock.release()

    def close(self) -> None:
        if self._slot is not None:
            self._slot.close()
