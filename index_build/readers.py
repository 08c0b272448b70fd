"""Turn one file into plain text: .txt, .md, .html/.htm, .pdf.

Each reader returns the text a reader of the article would see; anything it
cannot use raises `Unreadable` with a reason the build report shows.
"""

from __future__ import annotations

import codecs
import io
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from index_build import metadata
from index_build.metadata import ArticleMeta

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_BINARY_MAGIC = (
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"%PDF",
    b"\x89PNG",
    b"GIF8",
    b"\xff\xd8\xff",
    b"\x7fELF",
    b"Rar!",
    b"7z\xbc\xaf",
)


class Unreadable(Exception):
    """The file is skipped; str(e) says why."""


@dataclass(frozen=True)
class Extracted:
    text: str
    encoding: str  # how the bytes were decoded ("utf-8", "cp1252", "pdf", ...)
    title: str | None = None  # a title the format itself declares (<title>, PDF metadata)
    meta: ArticleMeta = metadata.NONE  # date, outlet, author, URL the file declares


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
    mixed = _decode_mixed(data)
    if mixed is not None:
        return mixed, "utf-8+cp1252"
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
# A well-formed multi-byte UTF-8 sequence, and a run of non-ASCII bytes.
_UTF8_SEQ = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_HIGH_RUN = re.compile(rb"[\x80-\xff]+")


def _cp1252_fallback(err: UnicodeError) -> tuple[str, int]:
    assert isinstance(err, UnicodeDecodeError)  # registered for decoding only
    bad = err.object[err.start : err.end]
    return bad.decode("cp1252", errors="replace"), err.end


codecs.register_error("sourceqa-cp1252", _cp1252_fallback)


def _decode_mixed(data: bytes) -> str | None:
    """A file that is part UTF-8, part Windows-1252 (articles pasted together
    from two systems): UTF-8 where the bytes are UTF-8, cp1252 elsewhere.

    Only when a good share of its non-ASCII runs are well-formed UTF-8: a
    plain cp1252 file has at most a stray accidental one ("Ã©"), and is
    better decoded whole."""
    runs = _HIGH_RUN.findall(data)
    utf8 = sum(1 for r in runs if _UTF8_SEQ.fullmatch(r) or (len(r) > 1 and _is_utf8(r)))
    if utf8 < 2 or utf8 < 0.2 * len(runs):
        return None
    return data.decode("utf-8", errors="sourceqa-cp1252")


def _is_utf8(run: bytes) -> bool:
    try:
        run.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _looks_western(text: str) -> bool:
    """Is this cp1252 decoding plausible?  Western text has its accents and
    typographic quotes scattered among ASCII letters; Cyrillic, Greek or CJK
    bytes read as cp1252 come out as long runs of non-ASCII symbols."""
    if any(ord(ch) < 32 and ch not in "\t\n\r\f" for ch in text):
        return False
    non_ascii = sum(1 for ch in text if ord(ch) > 127)
    in_runs = sum(len(m.group()) for m in _NON_ASCII_RUN.finditer(text))
    return in_runs <= 0.1 * non_ascii


def read_text(path: Path, data: bytes | None = None) -> Extracted:
    """The text as it is, less a front matter block (`---` or `Title:` /
    `Date:` / `Source:` / `URL:` / `Author:` lines), which becomes metadata."""
    text, enc = decode(read_bytes(path) if data is None else data)
    fields, body = metadata.front_matter(text.replace("\r\n", "\n").replace("\r", "\n"))
    return Extracted(body, enc, fields.get("title") or None, metadata.from_fields(fields))


def read_markdown(path: Path, data: bytes | None = None) -> Extracted:
    """Markdown -> text, block by block: headings, paragraphs and list items
    become paragraphs; emphasis, links and code marks are dropped."""
    from markdown_it import MarkdownIt

    text, enc = decode(read_bytes(path) if data is None else data)
    fields, text = metadata.front_matter(text.replace("\r\n", "\n"))
    blocks: list[str] = []
    for tok in MarkdownIt("commonmark").parse(text):
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
    return Extracted("\n\n".join(blocks), enc, fields.get("title") or None, metadata.from_fields(fields))


def read_html(path: Path, data: bytes | None = None) -> Extracted:
    """Visible article text only: trafilatura drops scripts, styles, navigation,
    headers, footers and other page furniture.

    HTML nested deeper than libxml2 parses (256 levels) would come out empty or
    cut short, so such a page is read by a flat, streaming pass instead
    (`_flat_html_text`): every visible text, no page-furniture guessing."""
    import trafilatura

    raw, enc = decode(read_bytes(path) if data is None else data)
    info = metadata.NONE
    text: str | None
    if _too_deep(raw):
        text, title = _flat_html_text(raw)
    else:
        text = trafilatura.extract(
            raw, favor_recall=True, include_comments=False, include_tables=True, deduplicate=False
        )
        meta = trafilatura.extract_metadata(raw)
        title = meta.title.strip() if meta is not None and meta.title else None
        if meta is not None:
            info = metadata.make(meta.date, meta.sitename or meta.hostname, meta.author, meta.url)
    text = (text or "").replace("\r\n", "\n")
    # trafilatura puts one paragraph per line; blank lines make the paragraphs explicit.
    text = "\n\n".join(line.strip() for line in text.split("\n") if line.strip())
    return Extracted(text, enc, title, info)


def _too_deep(raw: str) -> bool:
    """Does libxml2 give up on this page's nesting depth?"""
    import lxml.html

    parser = lxml.html.HTMLParser(recover=True)
    try:
        lxml.html.document_fromstring(raw.encode("utf-8"), parser=parser)
    except Exception:  # noqa: BLE001 - empty or hopeless markup: let trafilatura decide
        return False
    return any(e.type_name == "ERR_RESOURCE_LIMIT" for e in parser.error_log)


_SKIP_TAGS = frozenset("script style noscript template svg math head nav footer aside iframe object".split())
_BLOCK_TAGS = frozenset(
    """p div br li ul ol tr td th table section article main header h1 h2 h3 h4 h5 h6 blockquote pre
    dd dt dl figure figcaption hr form fieldset address""".split()
)


def _flat_html_text(raw: str) -> tuple[str, str | None]:
    """(visible text, <title>) by a streaming parse with no tree, so no depth
    limit and linear time: scripts, styles and navigation left out, a line
    break at every block element."""
    from html.parser import HTMLParser

    class Flat(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []
            self.title: list[str] = []
            self.skip: dict[str, int] = {}
            self.in_title = False

        def handle_starttag(self, tag, attrs):  # noqa: ANN001
            if tag == "title":
                self.in_title = True
            elif tag == "body":  # an unclosed <head> ends here
                self.skip.pop("head", None)
            elif tag in _SKIP_TAGS:
                self.skip[tag] = self.skip.get(tag, 0) + 1
            if tag in _BLOCK_TAGS:
                self.parts.append("\n")

        def handle_endtag(self, tag):  # noqa: ANN001
            if tag == "title":
                self.in_title = False
            elif self.skip.get(tag):
                self.skip[tag] -= 1
            if tag in _BLOCK_TAGS:
                self.parts.append("\n")

        def handle_data(self, data):  # noqa: ANN001
            if self.in_title:
                self.title.append(data)
            elif not any(self.skip.values()):
                self.parts.append(data)

    p = Flat()
    p.feed(raw)
    p.close()
    lines = (" ".join(line.split()) for line in "".join(p.parts).split("\n"))
    title = " ".join("".join(p.title).split()) or None
    return "\n".join(line for line in lines if line), title


def html_to_text(fragment: str) -> str:
    """Visible text of an HTML fragment (a feed item's body), one paragraph a
    line block."""
    text, _ = _flat_html_text(fragment)
    return "\n\n".join(line for line in text.split("\n") if line.strip())


def read_pdf(path: Path, data: bytes | None = None) -> Extracted:
    """The PDF's text layer, page by page (pypdf: pure Python, no system deps)."""
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(read_bytes(path) if data is None else data))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception as e:  # noqa: BLE001
                raise Unreadable("encrypted PDF: save an unencrypted copy") from e
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = (reader.metadata.title or "").strip() if reader.metadata else ""
        info = metadata.from_pdf(reader.metadata)
    except Unreadable:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as e:
        raise Unreadable(f"damaged PDF ({type(e).__name__}: {e})") from e
    text = "\n\n".join(p for p in pages if p)
    if not text.strip():
        raise Unreadable("PDF has no text layer (a scan?): run OCR on it first")
    return Extracted(text, "pdf", title or None, info)


def read_docx(path: Path, data: bytes | None = None) -> Extracted:
    """A Word file's paragraphs (python-docx), and its core properties: title,
    author, created date."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        d = docx.Document(io.BytesIO(read_bytes(path) if data is None else data))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as e:
        raise Unreadable(f"damaged .docx ({type(e).__name__}: {e})") from e
    except Exception as e:  # noqa: BLE001 - zipfile.BadZipFile and lxml errors: not a Word file
        raise Unreadable(f"not a readable .docx ({type(e).__name__})") from e
    text = "\n\n".join(p.text.strip() for p in d.paragraphs if p.text.strip())
    props = d.core_properties
    return Extracted(
        text,
        "docx",
        (props.title or "").strip() or None,
        metadata.make(props.created, None, None if props.author == "python-docx" else props.author, None),
    )


READERS = {
    ".txt": read_text,
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".html": read_html,
    ".htm": read_html,
    ".pdf": read_pdf,
    ".docx": read_docx,
}


def read_bytes(path: Path, max_bytes: int | None = None) -> bytes:
    """The file's bytes, read once and at most `max_bytes` of them.

    Only regular files: a named pipe would block the build forever and a
    device (a symlink to /dev/zero, say) would never end; both are refused
    without reading.  `Unreadable` says why a file is not read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise Unreadable(f"cannot read ({e.strerror})") from e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unreadable("not a regular file (a pipe, device or socket)")
        if st.st_size == 0:
            raise Unreadable("empty file")
        if max_bytes is not None and st.st_size > max_bytes:
            raise Unreadable(too_big(st.st_size, max_bytes))
        try:
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        except OSError as e:
            raise Unreadable(f"cannot read ({e.strerror})") from e
    if max_bytes is not None and len(data) > max_bytes:  # grew while we looked
        raise Unreadable(too_big(len(data), max_bytes))
    if not data:
        raise Unreadable("empty file")
    return data


def too_big(size: int, limit: int) -> str:
    return (
        f"{size / 2**20:.1f} MB is over the {limit / 2**20:g} MB limit per file "
        "(split it into articles, or raise the limit with --max-file-mb)"
    )


def read(path: Path, data: bytes | None = None, max_bytes: int | None = None) -> Extracted:
    """Read any supported file (or its already-read bytes); `Unreadable` says
    why a file cannot be used.

    Whatever a reader library raises on a hostile file (a recursion or memory
    error deep inside an HTML or PDF parser, say) is an `Unreadable` too: one
    bad file is skipped with a warning, it never stops a build."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise Unreadable(f"unsupported file type {path.suffix or '(none)'!r}: use .txt, .md, .html, .pdf or .docx")
    if data is None:
        data = read_bytes(path, max_bytes)
    elif not data:
        raise Unreadable("empty file")
    try:
        got = reader(path, data)
    except Unreadable:
        raise
    except OSError as e:
        raise Unreadable(f"cannot read ({e.strerror})") from e
    except Exception as e:  # noqa: BLE001 - see above
        raise Unreadable(
            f"the {path.suffix.lower().lstrip('.')} reader failed on it ({type(e).__name__}: {str(e)[:200]})"
        ) from e
    if not got.text.strip():
        raise Unreadable("no text in the file")
    return got
