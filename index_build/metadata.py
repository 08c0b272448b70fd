"""What an article says about itself: when it was published, by which outlet,
who wrote it, where it lives.

A reporter cites "Reuters, 12 March 2024", not a file name, and must tell a
2019 report from a 2024 one; so the builder keeps what each format declares:
HTML markup (read by trafilatura), PDF document info, a Markdown/text front
matter block.  Nothing is guessed: a date that does not parse is left empty
and reported, and a file's modification time is never taken for a date.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from typing import Any

FIELDS = ("published", "outlet", "author", "url")
_MAX_FIELD = 300  # a hostile <meta> of a megabyte would swamp every citation
# trafilatura's readings of bylines that name nobody
_NO_AUTHOR = re.compile(r"^(no author|article by|by|unknown|admin|staff|anonymous|none)\.?$", re.I)


@dataclass(frozen=True)
class ArticleMeta:
    published: str | None = None  # ISO 8601 date, "2024-03-12"
    outlet: str | None = None
    author: str | None = None
    url: str | None = None
    warnings: tuple[str, ...] = ()  # what was declared but could not be used

    def fields(self) -> dict[str, str | None]:
        return {k: getattr(self, k) for k in FIELDS}


NONE = ArticleMeta()


def parse_date(value: Any) -> str | None:
    """An ISO 8601 date (YYYY-MM-DD) from the usual ways news declares one:
    ISO dates and times, RFC 2822 (feeds: "Mon, 06 Jan 2020 10:00:00 GMT"),
    "6 January 2020", "January 6, 2020"; None when it is none of these."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str) or not value.strip():
        return None
    s = value.strip()
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?$", s)
    if m:
        try:
            return dt.date(int(m[1]), int(m[2]), int(m[3])).isoformat()
        except ValueError:
            return None
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(s).date().isoformat()
    except (TypeError, ValueError, IndexError):
        pass
    cleaned = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", s.replace(",", " "))
    cleaned = " ".join(cleaned.split())
    for fmt in ("%d %B %Y", "%d %b %Y", "%B %d %Y", "%b %d %Y", "%A %d %B %Y", "%A %B %d %Y", "%Y/%m/%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(cleaned, fmt).date().isoformat()
        except ValueError:
            continue
    return None


def _clean(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    v = " ".join(value.split())
    if not v:
        return None
    return v if len(v) <= _MAX_FIELD else v[: _MAX_FIELD - 1].rstrip() + "…"


def make(published: Any = None, outlet: Any = None, author: Any = None, url: Any = None) -> ArticleMeta:
    """ArticleMeta from declared values, cleaned: the date parsed (or reported),
    placeholders dropped, an outlet cut at its first " | " ("The Tico Times |
    Costa Rica News | Travel")."""
    warnings = []
    date = parse_date(published)
    if date is None and _clean(published if isinstance(published, str) else None):
        warnings.append(f"date {_clean(str(published))!r} not understood: left empty")
    out = _clean(outlet)
    if out and " | " in out:
        out = out.split(" | ", 1)[0].strip() or None
    who = _clean(author)
    if who and (_NO_AUTHOR.match(who) or (out and who.casefold() == out.casefold())):
        who = None
    link = _clean(url)
    if link and not re.match(r"^https?://", link, re.I):
        link = None  # a citation link opens a web page, nothing else (no javascript:, file:)
    return ArticleMeta(date, out, who, link, tuple(warnings))


_FRONT_KEYS = {
    "date": "published",
    "published": "published",
    "publish_date": "published",
    "pubdate": "published",
    "source": "outlet",
    "outlet": "outlet",
    "publication": "outlet",
    "site": "outlet",
    "url": "url",
    "link": "url",
    "author": "author",
    "byline": "author",
    "authors": "author",
    "title": "title",
}
_HEADER_LINE = re.compile(r"^(title|date|published|source|outlet|url|link|author|byline)\s*:\s*(.*)$", re.I)


def front_matter(text: str) -> tuple[dict[str, str], str]:
    """(declared fields, the text without them) for a text or Markdown file
    that starts with a YAML-style `---` block or with `Title:` / `Date:` /
    `Source:` / `URL:` / `Author:` header lines.  Only simple `key: value`
    lines are read (no YAML library: a front matter block is never code)."""
    nl = text.find("\n", 0, 2000)
    first = (text[:nl] if nl >= 0 else text[:2000]).strip()
    if first != "---" and not _HEADER_LINE.match(first):
        return {}, text  # most articles: nothing to read, and the text is not split
    lines = text.split("\n")
    fields: dict[str, str] = {}
    if lines and lines[0].strip() == "---":
        for end in range(1, min(len(lines), 60)):
            if lines[end].strip() in ("---", "..."):
                for line in lines[1:end]:
                    key, sep, value = line.partition(":")
                    name = _FRONT_KEYS.get(key.strip().lower())
                    if sep and name and value.strip():
                        fields[name] = value.strip().strip("'\"")
                return fields, "\n".join(lines[end + 1 :]).lstrip("\n")
        return {}, text
    n = 0
    while n < len(lines) and n < 10:
        m = _HEADER_LINE.match(lines[n].strip())
        if not m:
            break
        name = _FRONT_KEYS[m[1].lower()]
        if m[2].strip():
            fields[name] = m[2].strip()
        n += 1
    if n == 0 or not lines[n:] or lines[n].strip():
        return {}, text  # header lines end with a blank line, or they are the article's own words
    return fields, "\n".join(lines[n:]).lstrip("\n")


def from_fields(fields: dict[str, str]) -> ArticleMeta:
    return make(fields.get("published"), fields.get("outlet"), fields.get("author"), fields.get("url"))


def from_pdf(info: Any) -> ArticleMeta:
    """PDF document info: author and creation date (a PDF names no outlet or URL)."""
    if info is None:
        return NONE
    try:
        created = info.creation_date
    except Exception:  # noqa: BLE001 - a malformed date string in the PDF
        raw = info.get("/CreationDate") if hasattr(info, "get") else None
        return replace(
            make(author=getattr(info, "author", None)),
            warnings=(f"PDF creation date {str(raw)[:40]!r} not understood: left empty",) if raw else (),
        )
    return make(created, None, getattr(info, "author", None), None)
