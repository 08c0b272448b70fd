"""Files that hold many articles: JSONL/NDJSON and CSV exports (one article a
row) and RSS/Atom feeds (one an item).

News archives arrive this way; splitting a dump into files by hand loses its
dates.  Rows are read one at a time (a multi-GB dump stays in bounded
memory), each becomes its own article (`doc_id = <file id>/<row id or line
number>`) with the metadata its columns carry, and a row that cannot be used
(no text, broken JSON, a field over the size cap) is skipped and counted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from index_build import metadata
from index_build.metadata import ArticleMeta
from qa.config import DUMP_SUFFIXES

# the usual names of each column, first match wins (case-insensitive)
COLUMNS: dict[str, tuple[str, ...]] = {
    "text": ("text", "body", "content", "article", "full_text", "story", "description"),
    "title": ("title", "headline", "name"),
    "published": ("published", "date", "publish_date", "pubdate", "published_at", "datetime", "time"),
    "url": ("url", "link", "href"),
    "outlet": ("outlet", "source", "publication", "site", "sitename", "publisher"),
    "author": ("author", "byline", "authors", "creator"),
    "id": ("id", "guid", "article_id", "uid"),
}


class DumpError(Exception):
    """The whole file is unusable (e.g. no text column); str(e) says why."""


@dataclass(frozen=True)
class Row:
    row_id: str  # the row's own id, or its line/item number
    line: int  # 1-based line (JSONL), record (CSV) or item (feed) number
    title: str | None
    text: str
    meta: ArticleMeta
    sha256: str  # of the row as read (and the column mapping): unchanged rows are reused
    size: int


@dataclass
class Skipped:
    line: int
    reason: str


@dataclass
class DumpState:
    """Where a read of a dump ended: enough for a later build to check that
    the file only grew since (the same first `bytes`, by sha256) and to read
    on from there (index_build.append).  Recorded in the manifest."""

    bytes: int = 0
    sha256: str = ""
    lines: int = 0  # lines (JSONL) or records (CSV) read
    keys: list[str] = field(default_factory=list)  # JSONL: every key seen (columns follow them); CSV: the header
    ends_line: bool = True  # the bytes read end with a newline (a row appended after them starts a new line)

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "sha256": self.sha256, "lines": self.lines, "keys": self.keys,
                "ends_line": self.ends_line}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DumpState":
        return cls(int(d["bytes"]), str(d["sha256"]), int(d["lines"]), [str(k) for k in d["keys"]],
                   bool(d["ends_line"]))  # fmt: skip


@dataclass
class Resume:
    """Read on from the end of an earlier read: its state, and a sha256 of
    its bytes already taken (index_build.append checked them), which the
    rest of the file is added to."""

    state: DumpState
    hasher: Any  # hashlib sha256 object


class _Hashing(io.RawIOBase):
    """A binary file that hashes and counts what is read from it: the state
    covers exactly the bytes the rows came from, even if the file grows
    during the read."""

    def __init__(self, f: io.BufferedReader, state: DumpState, hasher: Any) -> None:
        self.f, self.state, self.hasher, self.last = f, state, hasher, b"\n"

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.f.readinto(b)
        if n:
            view = memoryview(b)[:n]
            self.hasher.update(view)
            self.state.bytes += n
            self.last = bytes(view[n - 1 :])
        return n or 0

    def close(self) -> None:
        self.f.close()
        super().close()

    def finish(self) -> None:
        self.state.sha256 = self.hasher.hexdigest()
        self.state.ends_line = self.last == b"\n"


def _open(path: Path, state: DumpState | None, resume: Resume | None) -> tuple[io.BufferedReader, _Hashing]:
    """`path` opened for reading rows, after `resume`'s bytes when given."""
    raw = open(path, "rb")
    st = state if state is not None else DumpState()
    if resume is not None:
        raw.seek(resume.state.bytes)
        st.bytes, hasher = resume.state.bytes, resume.hasher
    else:
        hasher = hashlib.sha256()
    tee = _Hashing(raw, st, hasher)
    return io.BufferedReader(tee, buffer_size=1 << 20), tee


@dataclass
class RowReport:
    read: int = 0
    skipped: list[Skipped] = field(default_factory=list)


def is_dump(path: Path) -> bool:
    return path.suffix.lower() in DUMP_SUFFIXES


def parse_columns(spec: str | None) -> dict[str, str]:
    """ "text=body,date=pub_date" -> {"text": "body", "published": "pub_date"}."""
    out: dict[str, str] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        key, sep, col = part.partition("=")
        key = {"date": "published", "source": "outlet", "link": "url", "headline": "title"}.get(
            key.strip().lower(), key.strip().lower()
        )
        if not sep or key not in COLUMNS or not col.strip():
            raise ValueError(
                f"--columns entry {part.strip()!r} is not FIELD=COLUMN with FIELD one of "
                f"{', '.join(sorted(set(COLUMNS) | {'date', 'source', 'link'}))}"
            )
        out[key] = col.strip()
    return out


def _pick(keys: list[str], mapping: dict[str, str]) -> dict[str, str | None]:
    lower = {k.lower(): k for k in keys}
    chosen: dict[str, str | None] = {}
    for name, usual in COLUMNS.items():
        # a mapped column where the file has it (several dumps may differ), else the usual names
        mapped = lower.get(mapping[name].lower()) if name in mapping else None
        chosen[name] = mapped or next((lower[u] for u in usual if u in lower), None)
    return chosen


def _row(
    values: dict[str, Any], cols: dict[str, str | None], line: int, raw: bytes, mapping_key: str, max_bytes: int | None
) -> Row | Skipped:
    def get(name: str) -> Any:
        c = cols.get(name)
        return values.get(c) if c else None

    text = get("text")
    if isinstance(text, list):
        text = "\n\n".join(str(t) for t in text)
    if not isinstance(text, str) or not text.strip():
        return Skipped(line, "no text")
    if max_bytes is not None and len(raw) > max_bytes:
        return Skipped(line, f"row of {len(raw):,} bytes is over the {max_bytes:,}-byte cap")
    title = get("title")
    author = get("author")
    if isinstance(author, list):
        author = ", ".join(str(a.get("name", a) if isinstance(a, dict) else a) for a in author)
    rid = get("id")
    row_id = str(rid).strip().replace("/", "_") if rid not in (None, "") else str(line)
    meta = metadata.make(get("published"), get("outlet"), author, get("url"))
    sha = hashlib.sha256(raw + mapping_key.encode()).hexdigest()
    return Row(
        row_id[:200], line, str(title).strip() if title else None, text.replace("\r\n", "\n"), meta, sha, len(raw)
    )


def rows(
    path: Path,
    mapping: dict[str, str] | None = None,
    max_bytes: int | None = None,
    state: DumpState | None = None,
    resume: Resume | None = None,
) -> Iterator[Row | Skipped]:
    """Every row of a dump, in file order: a Row, or a Skipped with its reason.
    Raises DumpError when the file as a whole cannot be read.

    `state`, when given, is filled in as the file is read (complete once the
    rows are exhausted).  `resume`: only the rows after an earlier read
    (JSONL and CSV; see `appendable`)."""
    mapping = mapping or {}
    key = json.dumps(mapping, sort_keys=True)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from _jsonl(path, mapping, key, max_bytes, state, resume)
    elif suffix == ".csv":
        yield from _csv(path, mapping, key, max_bytes, state, resume)
    else:
        if resume is not None:
            raise ValueError(f"{path.name}: a feed is read whole, never resumed")
        yield from _feed(path, key, max_bytes, state)


def appendable(path: Path) -> bool:
    """Whether rows added at the end of this file are new rows, the earlier
    ones untouched (JSONL and CSV; a feed's new items go inside its XML)."""
    return path.suffix.lower() in (".jsonl", ".ndjson", ".csv")


def _jsonl(
    path: Path,
    mapping: dict[str, str],
    key: str,
    max_bytes: int | None,
    state: DumpState | None,
    resume: Resume | None,
) -> Iterator[Row | Skipped]:
    seen: set[str] = set(resume.state.keys) if resume is not None else set()
    cols: dict[str, str | None] | None = _pick(sorted(seen), mapping) if seen else None
    first_line = resume.state.lines + 1 if resume is not None else 1
    line_no = first_line - 1
    f, tee = _open(path, state, resume)
    with f:
        for line_no, raw in enumerate(f, first_line):
            if not raw.strip():
                continue
            if max_bytes is not None and len(raw) > max_bytes:
                yield Skipped(line_no, f"row of {len(raw):,} bytes is over the {max_bytes:,}-byte cap")
                continue
            try:
                values = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                yield Skipped(line_no, f"broken JSON ({e.__class__.__name__})")
                continue
            if not isinstance(values, dict):
                yield Skipped(line_no, "not a JSON object")
                continue
            if cols is None or not set(values) <= seen:
                first = cols is None
                seen |= set(values)
                cols = _pick(sorted(seen), mapping)
                if first and cols["text"] is None:
                    raise DumpError(
                        f"{path.name} has no text column (found: {', '.join(sorted(seen)[:20])}): "
                        "name it with --columns text=COLUMN"
                    )
            yield _row(values, cols, line_no, raw, key, max_bytes)
        tee.finish()
    tee.state.lines, tee.state.keys = line_no, sorted(seen)


def _csv(
    path: Path,
    mapping: dict[str, str],
    key: str,
    max_bytes: int | None,
    state: DumpState | None,
    resume: Resume | None,
) -> Iterator[Row | Skipped]:
    csv.field_size_limit(max(1 << 20, (max_bytes or 0) + 1))
    b, tee = _open(path, state, resume)
    # utf-8-sig drops a byte-order mark, which only the file's start can hold
    with io.TextIOWrapper(b, encoding="utf-8" if resume else "utf-8-sig", errors="replace", newline="") as f:
        reader = csv.DictReader(f, fieldnames=resume.state.keys if resume is not None else None)
        header = list(reader.fieldnames or [])
        cols = _pick(list(header), mapping)
        if cols["text"] is None:
            raise DumpError(
                f"{path.name} has no text column (found: {', '.join(header[:20]) or 'none'}): name it "
                f"with --columns text=COLUMN"
            )
        n = resume.state.lines if resume is not None else 0
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                n += 1
                yield Skipped(n, f"broken CSV record ({e})")
                continue
            n += 1
            raw = json.dumps(values, sort_keys=True, ensure_ascii=False).encode()
            yield _row(values, cols, n, raw, key, max_bytes)
        tee.finish()
    tee.state.lines, tee.state.keys = n, header


def _feed(path: Path, key: str, max_bytes: int | None, state: DumpState | None) -> Iterator[Row | Skipped]:
    """RSS/Atom (feedparser): the full text from content:encoded when there is
    one, else the summary; the item's link, date and author; the feed's title
    as the outlet."""
    import feedparser

    from index_build.readers import html_to_text

    data = path.read_bytes()
    if state is not None:
        state.bytes, state.sha256, state.ends_line = len(data), hashlib.sha256(data).hexdigest(), data.endswith(b"\n")
    parsed = feedparser.parse(data)
    if not parsed.entries and parsed.get("bozo"):
        raise DumpError(f"{path.name} is not an RSS or Atom feed ({parsed.get('bozo_exception')})")
    outlet = parsed.feed.get("title")
    for n, e in enumerate(parsed.entries, 1):
        body = (e.get("content") or [{}])[0].get("value") or e.get("summary") or ""
        text = html_to_text(body) if "<" in body else body
        values = {
            "text": text,
            "title": e.get("title"),
            "published": e.get("published") or e.get("updated"),
            "url": e.get("link"),
            "outlet": outlet,
            "author": e.get("author"),
            "id": None,
        }
        raw = json.dumps({**values, "guid": e.get("id")}, sort_keys=True, ensure_ascii=False).encode()
        cols: dict[str, str | None] = {k: k for k in COLUMNS}
        yield _row(values, cols, n, raw, key, max_bytes)


def report_line(path: Path, rep: RowReport, shown: int = 5) -> str | None:
    if not rep.skipped:
        return None
    lines = ", ".join(f"{s.line} ({s.reason})" for s in rep.skipped[:shown])
    more = f" and {len(rep.skipped) - shown} more" if len(rep.skipped) > shown else ""
    return f"{path}: {len(rep.skipped)} row(s) skipped: {lines}{more}"
