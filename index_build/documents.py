"""Sources -> documents: find the files, name them, read them, split them.

A document's `doc_id` is its path relative to the folder it was found in,
without the extension (``politics/108``), so same-named files in different
folders stay apart and ids do not change between builds.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Container, Iterator

from index_build import dumps, readers, segment
from index_build.metadata import ArticleMeta, parse_date
from qa.config import SUPPORTED_SUFFIXES
from qa.errors import BuildError

_TERMINAL = tuple(".!?…\"”'’)")
_MAX_TITLE = 300


@dataclass(frozen=True)
class SourceFile:
    path: Path
    doc_id: str
    size: int = -1  # bytes, when discovered (the file may change before it is read)


@dataclass(slots=True)  # slots: a large dump holds millions of them (docs/performance.md, "Dumps")
class Sentence:
    start: int
    end: int
    is_answer: bool  # False for headlines, photo captions, bylines


@dataclass
class Document:
    doc_id: str
    title: str
    path: str
    text: str
    sha256: str
    size: int
    encoding: str
    sentences: list[Sentence] = field(default_factory=list)
    published: str | None = None  # ISO date the article declares (index_build.metadata)
    outlet: str | None = None
    author: str | None = None
    url: str | None = None
    warnings: tuple[str, ...] = ()  # metadata declared but unusable (reported, not stored)

    def sentence_text(self, i: int) -> str:
        s = self.sentences[i]
        return self.text[s.start : s.end]


def document_rows(documents: list[Document], first_idx: int = 0) -> Iterator[tuple]:
    """Rows of meta.sqlite's `documents` table (qa.index_format.SCHEMA), from
    doc_idx `first_idx` on: a full build writes them all, an append build
    (index_build.append) the new ones."""
    for i, d in enumerate(documents, first_idx):
        yield (
            i, d.doc_id, d.title, d.path, d.text, d.sha256, d.encoding, len(d.sentences),
            d.published, d.outlet, d.author, d.url,
        )  # fmt: skip


def discover(sources: list[Path], max_bytes: int | None = None) -> tuple[list[SourceFile], list[tuple[Path, str]]]:
    """All candidate files under `sources`, with their doc ids, plus the files
    passed over at once with the reason: unsupported types, broken or looping
    symlinks, pipes and devices, files over `max_bytes`.

    Hidden files and folders are ignored; symlinked folders are not followed
    (no loops).  Raises BuildError for a source path that does not exist.
    """
    found: list[SourceFile] = []
    skipped: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    taken: set[str] = set()
    for src in sources:
        if not src.exists():
            raise BuildError(
                f"source {src} does not exist: pass existing files or folders of articles (default: seeds/)"
            )
        if src.is_file():
            candidates = [(src, src.stem)]
        else:
            candidates = []
            for root, dirs, files in os.walk(src, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    p = Path(root) / name
                    rel = p.relative_to(src).with_suffix("")
                    candidates.append((p, rel.as_posix()))
        for path, doc_id in candidates:
            try:
                real = path.resolve(strict=True)
            except (OSError, RuntimeError):
                skipped.append((path, "broken or looping symlink"))
                continue
            if real in seen:
                continue
            seen.add(real)
            if path.suffix.lower() not in SUPPORTED_SUFFIXES + dumps.DUMP_SUFFIXES:
                skipped.append(
                    (
                        path,
                        f"unsupported file type {path.suffix or '(none)'!r}: use .txt, .md, .html, .pdf, "
                        ".docx, or a .jsonl/.csv/.rss/.atom dump",
                    )
                )
                continue
            try:
                st = real.stat()
            except OSError as e:
                skipped.append((path, f"cannot read ({e.strerror})"))
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped.append((path, "not a regular file (a pipe, device or socket)"))
                continue
            if max_bytes is not None and st.st_size > max_bytes and not dumps.is_dump(path):  # a dump: per row
                skipped.append((path, readers.too_big(st.st_size, max_bytes)))
                continue
            if doc_id in taken:  # same relative name from two source folders
                doc_id = f"{src.name}/{doc_id}"
                n = 2
                while doc_id in taken:
                    doc_id = f"{src.name}/{doc_id}~{n}"
                    n += 1
            doc_id = readable_name(doc_id)
            taken.add(doc_id)
            found.append(SourceFile(path, doc_id, int(st.st_size)))
    return found, skipped


_BOILERPLATE = re.compile(
    r"^[(\[]?\s*(?:photo(?:graph)?s?|image|picture|video)?\s*(?:credits?|courtesy)\s*(?::|of\b)"  # (Credit: Name)
    r"|^(?:this|the) (?:article|story|piece|post) (?:was )?(?:originally|first) (?:appeared|published|ran)\b"
    r"|^(?:published|updated|posted|last updated|first published)\s*(?:on|at)?\s*:"
    r"|^(?:read more|related(?: articles| stories| coverage)?|advertisement)\s*(?::|$)",
    re.IGNORECASE,
)
_FURNITURE_START = frozenset(
    "photo photos photograph photographs image picture video credit credits courtesy this the published updated "
    "posted last first read related advertisement by".split()
)
# "By Jane Doe, Reuters", "By John Smith and Ann Lee": capitalised names only
_BYLINE = re.compile(r"^(?i:by)\s+(?:[A-Z][\w.'’-]*\s*){1,4}(?:(?:,|and|/|\|)\s*(?:[A-Z][\w.'’-]*\s*){1,4})*\.?$")


def boilerplate(sentence: str) -> bool:
    """A line of page furniture inside the text: a photo credit, a dateline,
    a byline, "This article originally appeared on ...".  Kept in the text
    (the article reads as it was written) but never offered as an answer."""
    if len(sentence) > 160:  # furniture is short; prose is most of an article
        return False
    head = sentence.lstrip("([ \t\n").split(None, 1)
    if not head:
        return True
    if head[0].lower().rstrip(":") in _FURNITURE_START:
        t = " ".join(sentence.split())
        if _BOILERPLATE.match(t) or _BYLINE.match(t):
            return True
    if len(sentence) > 60:
        return False
    t = " ".join(sentence.split())
    # a dateline: "Monday, 6 January 2020" (with a full stop, "25 July 1920."
    # is more likely an answer written out: "When was he born?")
    return len(t) <= 40 and not t.endswith(".") and any(c.isdigit() for c in t) and parse_date(t) is not None


def _headline_like(line: str) -> bool:
    """A standalone line with no sentence-final punctuation and few words: a
    headline, photo caption or byline, never an answer sentence."""
    return not line.endswith(_TERMINAL) and len(line.split()) <= 20


def segmenter_settings(max_sentence_chars: int | None = segment.MAX_SENTENCE_CHARS, language: str = "en") -> dict:
    """What a document's segmentation depends on besides its bytes (recorded
    in the manifest as `segmenter`): a previous index's segmentation is only
    reused when these, and the package version, are the same."""
    from importlib.metadata import version

    return {
        "name": "sentencex",
        "version": version("sentencex"),
        "language": language,
        "quote_masking": True,
        "headline_caption_filter": True,
        "link_lists": True,
        "dotted_names": True,
        "boilerplate_filter": 2,
        "max_sentence_chars": max_sentence_chars,
    }


class PreviousDocuments:
    """The documents of the previous index, reusable as they are for a file
    whose path and bytes (sha256) have not changed: an incremental build then
    neither decodes nor segments it again.  What is reused is exactly what
    `load` would produce from the same bytes with the same settings (text,
    title, encoding, sentence spans, headline/caption flags), so the build
    comes out identical to one that reads every file."""

    def __init__(self, db_path: Path, rows: dict[tuple[str, str], int]) -> None:
        self._db_path = db_path
        self._rows = rows  # (path, sha256) -> doc_idx in the previous meta.sqlite
        self._con: sqlite3.Connection | None = None
        self.reused = 0

    @classmethod
    def from_index(cls, index_dir: Path, manifest, settings: dict, package_version: str) -> "PreviousDocuments | None":
        """None when there is no usable previous index, or it was segmented
        with other settings or by another version of this package."""
        import sqlite3

        if manifest is None or manifest.segmenter != settings or manifest.package_version != package_version:
            return None
        db = index_dir / "meta.sqlite"
        if not db.is_file():
            return None
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                rows = {(path, sha): i for i, path, sha in con.execute("SELECT doc_idx, path, sha256 FROM documents")}
            finally:
                con.close()
        except sqlite3.Error:  # a damaged previous index only means nothing is reused
            return None
        return cls(db, rows)

    def get(self, source: SourceFile, sha256: str, size: int) -> Document | None:
        d_idx = self._rows.get((readable_name(str(source.path)), sha256))
        if d_idx is None:
            return None
        try:
            if self._con is None:
                self._con = sqlite3.connect(f"file:{self._db_path}?mode=ro", uri=True, check_same_thread=False)
            row = self._con.execute(
                "SELECT title, text, encoding, n_sentences, published, outlet, author, url "
                "FROM documents WHERE doc_idx=?",
                (d_idx,),
            ).fetchone()
            spans = self._con.execute(
                "SELECT start, end, sent_idx IS NOT NULL FROM doc_sentences WHERE doc_idx=? ORDER BY sent_no", (d_idx,)
            ).fetchall()
        except sqlite3.Error:
            return None
        if row is None or len(spans) != row[3]:
            return None
        self.reused += 1
        return Document(
            doc_id=source.doc_id,
            title=row[0],
            path=readable_name(str(source.path)),
            text=row[1],
            sha256=sha256,
            size=size,
            encoding=row[2],
            sentences=[Sentence(a, b, bool(ans)) for a, b, ans in spans],
            published=row[4],
            outlet=row[5],
            author=row[6],
            url=row[7],
        )

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def readable_name(name: str) -> str:
    """A file name as text that can be stored and shown.  A name that is not
    UTF-8 (an old Latin-1 archive: b"caf\\xe9.txt") reaches Python with
    surrogate escapes, which SQLite, JSON clients and browsers all refuse; it
    is read as cp1252 instead ("café"), the way such names were written."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file system decode makes
        return name.encode("utf-8", "replace").decode("utf-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def load(
    source: SourceFile,
    language: str = "en",
    max_bytes: int | None = None,
    max_sentence_chars: int | None = segment.MAX_SENTENCE_CHARS,
    previous: PreviousDocuments | None = None,
) -> Document:
    """Read (once, at most `max_bytes`) and segment one file (raises readers.Unreadable).

    With `previous`, a file whose path and sha256 are those of a document of
    the previous index is taken from it instead of being decoded and segmented."""
    data = readers.read_bytes(source.path, max_bytes)
    sha256 = hashlib.sha256(data).hexdigest()
    if previous is not None:
        doc = previous.get(source, sha256, len(data))
        if doc is not None:
            return doc
    got = readers.read(source.path, data)
    return make_document(
        source.doc_id,
        source.path,
        got.text,
        got.title,
        got.meta,
        sha256,
        len(data),
        got.encoding,
        language,
        max_sentence_chars,
    )


def make_document(
    doc_id: str,
    path: Path,
    text: str,
    title: str | None,
    meta: ArticleMeta,
    sha256: str,
    size: int,
    encoding: str,
    language: str = "en",
    max_sentence_chars: int | None = segment.MAX_SENTENCE_CHARS,
) -> Document:
    """An article's text segmented into sentences, headlines and furniture
    marked (raises readers.Unreadable when no sentence is left)."""
    sentences: list[Sentence] = []
    for para, spans in segment.split(text, language, max_sentence_chars):
        para_text = text[para.start : para.end]
        single_line = len(spans) <= 1 and "\n" not in para_text
        for span in spans:
            answer = not (single_line and _headline_like(para_text))
            links, s = segment.split_link_list(text, span)
            if links is not None:  # "Related articles: ..." is kept as text, never quoted
                sentences.append(Sentence(links.start, links.end, False))
            if s is not None:
                sentences.append(Sentence(s.start, s.end, answer and not boilerplate(text[s.start : s.end])))
    if not title and sentences and not sentences[0].is_answer:
        title = text[sentences[0].start : sentences[0].end]
    if title and len(title) > _MAX_TITLE:  # a hostile <title> of a megabyte would swamp every citation
        title = " ".join(title[: _MAX_TITLE * 2].split())[: _MAX_TITLE - 1].rstrip() + "…"
    if not any(s.is_answer for s in sentences):
        raise readers.Unreadable("no sentences found (only headlines or captions)")
    return Document(
        doc_id=doc_id,
        title=title or _title_from_text(text, sentences) or readable_name(path.stem),
        path=readable_name(str(path)),
        text=text,
        sha256=sha256,
        size=size,
        encoding=encoding,
        sentences=sentences,
        published=meta.published,
        outlet=meta.outlet,
        author=meta.author,
        url=meta.url,
        warnings=meta.warnings,
    )


def load_rows(
    source: SourceFile,
    language: str = "en",
    max_bytes: int | None = None,
    max_sentence_chars: int | None = segment.MAX_SENTENCE_CHARS,
    previous: PreviousDocuments | None = None,
    columns: dict[str, str] | None = None,
    state: dumps.DumpState | None = None,
    resume: dumps.Resume | None = None,
    taken: Container[str] = (),
) -> Iterator[Document | dumps.Skipped]:
    """The articles of a dump or feed (index_build.dumps), one row at a time;
    `max_bytes` caps each row.  A row unchanged since the previous index is
    taken from it.  Raises dumps.DumpError when the file cannot be read.

    `state` and `resume`: as dumps.rows.  `taken`: doc ids already in use
    (the rows before `resume`), which a repeated row id steps past."""
    ids: dict[str, int] = {}
    for row in dumps.rows(source.path, columns, max_bytes, state, resume):
        if isinstance(row, dumps.Skipped):
            yield row
            continue
        n = ids.get(row.row_id, 0)
        doc_id = f"{source.doc_id}/{row.row_id}" + (f"~{n + 1}" if n else "")
        while doc_id in taken:
            n += 1
            doc_id = f"{source.doc_id}/{row.row_id}~{n + 1}"
        ids[row.row_id] = n + 1
        if previous is not None:
            doc = previous.get(SourceFile(source.path, doc_id), row.sha256, row.size)
            if doc is not None:
                yield doc
                continue
        try:
            yield make_document(
                doc_id,
                source.path,
                row.text,
                row.title,
                row.meta,
                row.sha256,
                row.size,
                "utf-8",
                language,
                max_sentence_chars,
            )
        except readers.Unreadable as e:
            yield dumps.Skipped(row.line, str(e))


_TITLE_CHARS = 80


def _title_from_text(text: str, sentences: list[Sentence]) -> str | None:
    """A title for an article without a headline: its first sentence, cut at
    a word boundary near 80 characters (a reader cites words, not a file name
    like "000_d94e3a040fbeca26")."""
    first = next((s for s in sentences if s.is_answer), None)
    if first is None:
        return None
    t = " ".join(text[first.start : first.end].split())
    if len(t) <= _TITLE_CHARS:
        return t
    cut = t[: _TITLE_CHARS + 1].rsplit(" ", 1)[0].rstrip(",;:-–—")
    return (cut or t[:_TITLE_CHARS]) + "…"
