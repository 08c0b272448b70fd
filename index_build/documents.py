"""Sources -> documents: find the files, name them, read them, split them.

A document's `doc_id` is its path relative to the folder it was found in,
without the extension (``politics/108``), so same-named files in different
folders stay apart and ids do not change between builds.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from index_build import readers, segment
from qa.config import SUPPORTED_SUFFIXES
from qa.errors import BuildError

_TERMINAL = tuple('.!?…"”\'’)')
_MAX_TITLE = 300


@dataclass(frozen=True)
class SourceFile:
    path: Path
    doc_id: str


@dataclass
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

    def sentence_text(self, i: int) -> str:
        s = self.sentences[i]
        return self.text[s.start : s.end]


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
            raise BuildError(f"source {src} does not exist: pass existing files or folders of articles (default: seeds/)")
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
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                skipped.append((path, f"unsupported file type {path.suffix or '(none)'!r}: use .txt, .md, .html or .pdf"))
                continue
            try:
                st = real.stat()
            except OSError as e:
                skipped.append((path, f"cannot read ({e.strerror})"))
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped.append((path, "not a regular file (a pipe, device or socket)"))
                continue
            if max_bytes is not None and st.st_size > max_bytes:
                skipped.append((path, readers.too_big(st.st_size, max_bytes)))
                continue
            if doc_id in taken:  # same relative name from two source folders
                doc_id = f"{src.name}/{doc_id}"
                n = 2
                while doc_id in taken:
                    doc_id = f"{src.name}/{doc_id}~{n}"
                    n += 1
            taken.add(doc_id)
            found.append(SourceFile(path, doc_id))
    return found, skipped


def _headline_like(line: str) -> bool:
    """A standalone line with no sentence-final punctuation and few words: a
    headline, photo caption or byline, never an answer sentence."""
    return not line.endswith(_TERMINAL) and len(line.split()) <= 20


def load(source: SourceFile, language: str = "en", max_bytes: int | None = None,
         max_sentence_chars: int | None = segment.MAX_SENTENCE_CHARS) -> Document:
    """Read (once, at most `max_bytes`) and segment one file (raises readers.Unreadable)."""
    data = readers.read_bytes(source.path, max_bytes)
    got = readers.read(source.path, data)
    text = got.text
    sentences: list[Sentence] = []
    title = got.title
    for para, spans in segment.split(text, language, max_sentence_chars):
        para_text = text[para.start : para.end]
        single_line = len(spans) <= 1 and "\n" not in para_text
        for s in spans:
            answer = not (single_line and _headline_like(para_text))
            sentences.append(Sentence(s.start, s.end, answer))
    if not title and sentences and not sentences[0].is_answer:
        title = text[sentences[0].start : sentences[0].end]
    if title and len(title) > _MAX_TITLE:  # a hostile <title> of a megabyte would swamp every citation
        title = " ".join(title[: _MAX_TITLE * 2].split())[: _MAX_TITLE - 1].rstrip() + "…"
    if not any(s.is_answer for s in sentences):
        raise readers.Unreadable("no sentences found (only headlines or captions)")
    return Document(
        doc_id=source.doc_id,
        title=title or source.path.stem,
        path=str(source.path),
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        encoding=got.encoding,
        sentences=sentences,
    )
