"""Turn one file into plain text: .txt, .md, .html/.htm, .pdf.

Each reader returns the text a reader of the article would see; anything it
cannot use raises `Unreadable` with a reason the build report shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_BINARY_MAGIC = (b"PK\x03\x04", b"\x1f\x8b", b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"\x7fELF", b"Rar!", b"7z\xbc\xaf")


class Unreadable(Exception):
    """The file is skipped; str(e) says why."""


@dataclass(frozen=True)
class Extracted:
    text: str
    encoding: str  # how the bytes were decoded ("utf-8", "cp1252", "pdf", ...)
    title: str | None = None  # a title the format itself declares (<title>, PDF metadata)


def decode(data: bytes) -> tuple[str, str]:
    """Bytes -> (text, encoding).

    UTF-8 first (and BOM-marked UTF-16/32).  Otherwise Windows-1252, the legacy
    encoding of Western news archives (and what browsers use for "latin-1"),
    when the result looks like Western text; otherwise charset-normalizer's
    guess (Cyrillic, CJK, ...).  charset-normalizer alone misreads mostly-ASCII
    Latin-1 files (a single £ comes out as cp932), hence the order.
    """
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(enc), enc.replace("-sig", "")
            except UnicodeDecodeError as e:
                raise Unreadable(f"undecodable bytes despite a {enc} byte-order mark ({e.reason})") from e
    if data.startswith(_BINARY_MAGIC) or b"\x00" in data[:8192]:
        raise Unreadable("binary data, not text")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
        if _looks_western(text):
            return text, "cp1252"
    except UnicodeDecodeError:
        pass
    import charset_normalizer

    best = charset_normalizer.from_bytes(data).best()
    if best is None or best.chaos > 0.3:
        raise Unreadable("undecodable bytes (not UTF-8 or a recognisable legacy encoding): re-save the file as UTF-8")
    return str(best), best.encoding


_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]{3,}")


def _looks_western(text: str) -> bool:
    """Is this cp1252 decoding plausible?  Western text has its accents and
    typographic quotes scattered among ASCII letters; Cyrillic, Greek or CJK
    bytes read as cp1252 come out as long runs of non-ASCII symbols."""
    if any(ord(ch) < 32 and ch not in "\t\n\r\f" for ch in text):
        return False
    non_ascii = sum(1 for ch in text if ord(ch) > 127)
    in_runs = sum(len(m.group()) for m in _NON_ASCII_RUN.finditer(text))
    return in_runs <= 0.1 * non_ascii


def read_text(path: Path) -> Extracted:
    text, enc = decode(path.read_bytes())
    return Extracted(text.replace("\r\n", "\n").replace("\r", "\n"), enc)


def read_markdown(path: Path) -> Extracted:
    """Markdown -> text, block by block: headings, paragraphs and list items
    become paragraphs; emphasis, links and code marks are dropped."""
    from markdown_it import MarkdownIt

    text, enc = decode(path.read_bytes())
    blocks: list[str] = []
    for tok in MarkdownIt("commonmark").parse(text.replace("\r\n", "\n")):
        if tok.type != "inline" or not tok.children:
            continue
        parts = []
        for child in tok.children:
            if child.type in ("text", "code_inline"):
                parts.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                parts.append("\n")
        block = "".join(parts).strip()
        if block:
            blocks.append(block)
    return Extracted("\n\n".join(blocks), enc)


def read_html(path: Path) -> Extracted:
    """Visible article text only: trafilatura drops scripts, styles, navigation,
    headers, footers and other page furniture."""
    import trafilatura

    raw, enc = decode(path.read_bytes())
    text = trafilatura.extract(raw, favor_recall=True, include_comments=False, include_tables=True, deduplicate=False)
    meta = trafilatura.extract_metadata(raw)
    title = meta.title.strip() if meta is not None and meta.title else None
    text = (text or "").replace("\r\n", "\n")
    # trafilatura puts one paragraph per line; blank lines make the paragraphs explicit.
    text = "\n\n".join(line.strip() for line in text.split("\n") if line.strip())
    return Extracted(text, enc, title)


def read_pdf(path: Path) -> Extracted:
    """The PDF's text layer, page by page (pypdf: pure Python, no system deps)."""
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception as e:  # noqa: BLE001
                raise Unreadable("encrypted PDF: save an unencrypted copy") from e
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = (reader.metadata.title or "").strip() if reader.metadata else ""
    except Unreadable:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as e:
        raise Unreadable(f"damaged PDF ({type(e).__name__}: {e})") from e
    text = "\n\n".join(p for p in pages if p)
    if not text.strip():
        raise Unreadable("PDF has no text layer (a scan?): run OCR on it first")
    return Extracted(text, "pdf", title or None)


READERS = {
    ".txt": read_text,
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".html": read_html,
    ".htm": read_html,
    ".pdf": read_pdf,
}


def read(path: Path) -> Extracted:
    """Read any supported file; `Unreadable` says why a file cannot be used."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise Unreadable(f"unsupported file type {path.suffix or '(none)'!r}: use .txt, .md, .html or .pdf")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise Unreadable(f"cannot read ({e.strerror})") from e
    if size == 0:
        raise Unreadable("empty file")
    try:
        got = reader(path)
    except OSError as e:
        raise Unreadable(f"cannot read ({e.strerror})") from e
    if not got.text.strip():
        raise Unreadable("no text in the file")
    return got
