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


def rows(path: Path, mapping: dict[str, str] | None = None, max_bytes: int | None = None) -> Iterator[Row | Skipped]:
    """Every row of a dump, in file order: a Row, or a Skipped with its reason.
    Raises DumpError when the file as a whole cannot be read."""
    mapping = mapping or {}
    key = json.dumps(mapping, sort_keys=True)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from _jsonl(path, mapping, key, max_bytes)
    elif suffix == ".csv":
        yield from _csv(path, mapping, key, max_bytes)
    else:
        yield from _feed(path, key, max_bytes)


def _jsonl(path: Path, mapping: dict[str, str], key: str, max_bytes: int | None) -> Iterator[Row | Skipped]:
    cols: dict[str, str | None] | None = None
    seen: set[str] = set()
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
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


def _csv(path: Path, mapping: dict[str, str], key: str, max_bytes: int | None) -> Iterator[Row | Skipped]:
    csv.field_size_limit(max(1 << 20, (max_bytes or 0) + 1))
    with open(path, "r", encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        cols = _pick(list(header), mapping)
        if cols["text"] is None:
            raise DumpError(
                f"{path.name} has no text column (found: {', '.join(header[:20]) or 'none'}): name it "
                f"with --columns text=COLUMN"
            )
        n = 0
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


def _feed(path: Path, key: str, max_bytes: int | None) -> Iterator[Row | Skipped]:
    """RSS/Atom (feedparser): the full text from content:encoded when there is
    one, else the summary; the item's link, date and author; the feed's title
    as the outlet."""
    import feedparser

    from index_build.readers import html_to_text

    parsed = feedparser.parse(path.read_bytes())
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
