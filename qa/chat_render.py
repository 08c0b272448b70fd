"""Turn retriever results into the HTML the web chat shows.

Pure functions, no Gradio: everything here is a string in, a string out, and
easy to test.  Every piece of text that comes from an article, a file name or a
user is escaped by `esc()`, which encodes the HTML specials *and* the Markdown
and LaTeX specials as character references, so a source can neither run code,
inject tags, nor restyle the page with Markdown -- even if the chat were ever
switched to render Markdown.  The chat renders these strings as (sanitised)
HTML with Markdown and LaTeX rendering off.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Iterable, Sequence
from urllib.parse import quote

from qa.config import DUMP_SUFFIXES

# One pass over the text (str.translate), so an entity we emit is never
# re-escaped.  Markdown/LaTeX specials become numeric references: the browser
# shows the character, Markdown parsers see no syntax.
_ESCAPES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "'": "&#39;",
    "*": "&#42;",
    "_": "&#95;",
    "`": "&#96;",
    "[": "&#91;",
    "]": "&#93;",
    "#": "&#35;",
    "~": "&#126;",
    "|": "&#124;",
    "$": "&#36;",
    "\\": "&#92;",
    "!": "&#33;",
    "{": "&#123;",
    "}": "&#125;",
    "\r": " ",
    "\x00": "",
}
_TABLE = str.maketrans(_ESCAPES)
# Lone surrogates (a JSON client can send "\ud800") cannot be encoded as UTF-8:
# a reply holding one would fail to reach the browser at all.
_TABLE.update({cp: "\ufffd" for cp in range(0xD800, 0xE000)})

HIGH_CONFIDENCE = 0.66  # calibrated probability at or above which we say "high"


def esc(text: Any) -> str:
    """Text -> HTML that displays exactly that text, and nothing else."""
    return str(text).translate(_TABLE)


def esc_line(text: Any) -> str:
    """`esc`, with line breaks folded to spaces (quotes, titles, attributes)."""
    return esc(" ".join(str(text).split()))


def file_label(doc_id: str, path: str) -> str:
    """What a citation calls the file: the doc id (its path inside the sources
    folder) with the file's extension, e.g. ``politics/108.txt``; a row of a
    dump or an item of a feed (doc id ``<file>/<row id>``) is ``export.csv#k1``,
    so the name shown is a file that exists."""
    suffix = PurePath(path).suffix if path else ""
    if suffix.lower() in DUMP_SUFFIXES and "/" in doc_id:
        file_id, row = doc_id.rsplit("/", 1)
        return f"{file_id}{suffix}#{row}"
    return f"{doc_id}{suffix}" if suffix and not doc_id.endswith(suffix) else doc_id


def confidence(score: float, threshold: float, weak: bool) -> tuple[str, str]:
    """(label, css level) for an answer's calibrated confidence."""
    if weak or score < threshold:
        return "low", "low"
    if score >= max(HIGH_CONFIDENCE, threshold):
        return "high", "high"
    return "medium", "medium"


def _confidence_html(score: float, threshold: float, weak: bool) -> str:
    label, level = confidence(score, threshold, weak)
    pct = max(0, min(100, round(score * 100)))
    tip = f"confidence {score:.2f} (an answer needs {threshold:.2f})"
    return (
        f'<span class="sqa-conf sqa-conf-{level}" title="{esc(tip)}">'
        f'<span class="sqa-bar"><span class="sqa-fill" style="width:{pct}%"></span></span>'
        f"{label} {pct}%</span>"
    )


def doc_href(doc_id: str, start: int | None = None) -> str:
    """The link that opens an article in the side panel (the page's script
    intercepts the click; the chat's sanitiser keeps `href` and `class` but
    drops data-* attributes)."""
    h = f"#sqa-doc={quote(doc_id, safe='', errors='replace')}"
    return h + (f"&start={int(start)}" if start is not None else "")


def _doc_link(doc_id: str, title: str, path: str, start: int | None = None) -> str:
    return (
        f'<a class="sqa-doc" href="{esc(doc_href(doc_id, start))}" '
        f'title="open the article with this sentence highlighted">{esc_line(title)}</a> '
        f'<span class="sqa-file">{esc_line(file_label(doc_id, path))}</span>'
    )


def nice_date(iso: str | None) -> str:
    """'2024-03-12' -> '12 Mar 2024' (unambiguous on both sides of the Atlantic)."""
    try:
        d = _dt.date.fromisoformat(str(iso)[:10])
        return f"{d.day} {d:%b %Y}"
    except (TypeError, ValueError):
        return str(iso or "")


def citation(s: Any) -> str:
    """How a reporter cites a source: outlet · date · title · author.  The
    title links to the article's own address when it declares one (a new
    tab); the file name always opens the article in the side panel."""
    parts = []
    if getattr(s, "outlet", None):
        parts.append(f'<span class="sqa-outlet">{esc_line(s.outlet)}</span>')
    if getattr(s, "published", None):
        parts.append(f'<span class="sqa-date" title="{esc(s.published)}">{esc_line(nice_date(s.published))}</span>')
    url = getattr(s, "url", None)
    if url and str(url).lower().startswith(("http://", "https://")):
        parts.append(
            f'<a class="sqa-url" href="{esc(url)}" target="_blank" rel="noopener noreferrer" '
            f'title="the article on its site (new tab)">{esc_line(s.title)}</a>'
        )
        parts.append(
            f'<a class="sqa-doc" href="{esc(doc_href(s.doc_id, s.start))}" '
            f'title="open the article with this sentence highlighted">'
            f'<span class="sqa-file">{esc_line(file_label(s.doc_id, s.path))}</span></a>'
        )
    else:
        parts.append(_doc_link(s.doc_id, s.title, s.path, s.start))
    if getattr(s, "author", None):
        parts.append(f'<span class="sqa-author">{esc_line(s.author)}</span>')
    return ' <span class="sqa-dot">·</span> '.join(parts)


def _own_wording(source: Any, shown: str) -> str:
    """A source that words the sentence otherwise (a near-duplicate merge)
    shows its own words: nothing is quoted under an article that it does not
    say word for word."""
    if not source.text or source.text == shown:
        return ""
    return f' <span class="sqa-worded">worded here: <q>{esc_line(source.text)}</q></span>'


def _answer_html(n: int, a: Any, threshold: float) -> str:
    sources = list(a.sources)
    weak = bool(a.weak)
    cls = "sqa-answer sqa-weak" if weak else "sqa-answer"
    parts = [f'<li class="{cls}">', f'<blockquote class="sqa-quote">{esc_line(a.text)}</blockquote>']
    cite = [_confidence_html(float(a.score), threshold, weak)]
    if sources:
        first = sources[0]
        cite.append(f'<span class="sqa-sep">—</span> {citation(first)}')
    parts.append(f'<div class="sqa-cite">{" ".join(cite)}</div>')
    if sources:
        others: dict[str, Any] = {}
        for s in sources[1:]:
            if s.doc_id != sources[0].doc_id:
                others.setdefault(s.doc_id, s)
        if others:
            word = "article" if len(others) == 1 else "articles"
            items = "".join(f"<li>{citation(s)}{_own_wording(s, a.text)}</li>" for s in others.values())
            parts.append(
                f'<details class="sqa-also"><summary>also in {len(others)} other {word}</summary>'
                f"<ul>{items}</ul></details>"
            )
        ctx = a.context
        before = " ".join(esc_line(t) for t in (ctx.before if ctx else []))
        after = " ".join(esc_line(t) for t in (ctx.after if ctx else []))
        parts.append(
            '<details class="sqa-context"><summary>in context</summary><p class="sqa-context-text">'
            f'{before} <mark class="sqa-hit">{esc_line(first.text or a.text)}</mark> {after}</p></details>'
        )
    parts.append("</li>")
    return "".join(parts)


def _by_date_html(answers: list[Any]) -> str:
    """The reply's quotes ordered by their articles' dates, oldest first: how
    a story developed across reports.  Only when two or more are dated."""
    dated = [
        (a.sources[0].published, i, a)
        for i, a in enumerate(answers, 1)
        if a.sources and getattr(a.sources[0], "published", None)
    ]
    if len(dated) < 2:
        return ""
    items = "".join(
        f'<li><span class="sqa-date">{esc_line(nice_date(d))}</span>'
        + (f' <span class="sqa-outlet">{esc_line(a.sources[0].outlet)}</span>' if a.sources[0].outlet else "")
        + f' <span class="sqa-rank">(#{i})</span> <q>{esc_line(a.text)}</q></li>'
        for d, i, a in sorted(dated, key=lambda t: (t[0], t[1]))
    )
    return (
        f'<details class="sqa-bydate"><summary>by date ({len(dated)} dated quotes)</summary>'
        f'<ol class="sqa-bydate-list">{items}</ol></details>'
    )


def render_result(res: Any) -> str:
    """One chat reply for a qa.answers.Result."""
    out = [f'<div class="sqa-reply {"sqa-found" if res.found else "sqa-notfound"}">']
    if res.followup:
        out.append(f'<div class="sqa-searched">searched for: <q>{esc_line(res.query)}</q></div>')
    answers = list(res.answers)
    if res.found:
        out.append('<ol class="sqa-answers">')
        out.extend(_answer_html(i, a, res.threshold) for i, a in enumerate(answers, 1))
        out.append("</ol>")
        out.append(_by_date_html(answers))
    else:
        out.append('<p class="sqa-verdict"><strong>The sources do not answer this question.</strong></p>')
        if answers:
            out.append('<p class="sqa-closest-label">Closest matches (weak: probably not the answer):</p>')
            out.append('<ol class="sqa-answers sqa-closest">')
            out.extend(_answer_html(i, a, res.threshold) for i, a in enumerate(answers, 1))
            out.append("</ol>")
    out.append("</div>")
    return "".join(out)


def render_question(question: str) -> str:
    """The user's message, shown as typed (escaped; `html.unescape` gives it back)."""
    return esc(question)


def render_error(message: str, fix: str | None = None, note: str | None = None) -> str:
    """A problem, as a chat reply: what is wrong and the command that fixes it."""
    out = [
        '<div class="sqa-reply sqa-error">',
        f'<p class="sqa-error-msg"><strong>Cannot answer:</strong> {esc_line(message)}</p>',
    ]
    if fix:
        out.append(f'<p class="sqa-fix">To fix it, run: <code class="sqa-fix-cmd">{esc_line(fix)}</code></p>')
    if note:
        out.append(f'<p class="sqa-note">{esc_line(note)}</p>')
    out.append("</div>")
    return "".join(out)


def render_notice(message: str) -> str:
    """A small warning line appended to a reply."""
    return f'<div class="sqa-notice">{esc_line(message)}</div>'


# -- sources panel ---------------------------------------------------------


@dataclass(frozen=True)
class DocRow:
    doc_id: str
    title: str
    path: str
    n_sentences: int
    outlet: str | None = None
    published: str | None = None


def _when(iso: str) -> str:
    try:
        t = _dt.datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return str(iso)
    return t.strftime("%Y-%m-%d %H:%M %Z").strip()


def render_sources(
    rows: Sequence[DocRow],
    built_at: str | None,
    build_seconds: float | None = None,
    sentences: int | None = None,
    index_dir: str | None = None,
) -> str:
    """Every indexed article: title (click to open), outlet, date, file,
    sentence count; sortable by any column and filtered by words, outlet and
    date range in the browser (qa.chat's _SOURCES_JS), no server round trip."""
    n = len(rows)
    head = [f'<div class="sqa-sources" data-count="{n}">', '<p class="sqa-index-info">']
    head.append(f"<strong>{n}</strong> article{'s' if n != 1 else ''}")
    if sentences is not None:
        head.append(f" · {sentences} sentences")
    if built_at:
        took = f" in {build_seconds:.1f} s" if build_seconds is not None else ""
        head.append(f' · index built <span class="sqa-built">{esc(_when(built_at))}</span>{esc(took)}')
    if index_dir:
        head.append(f' · <span class="sqa-file">{esc_line(index_dir)}</span>')
    head.append("</p>")
    if not rows:
        head.append('<p class="sqa-empty">No articles indexed.</p></div>')
        return "".join(head)
    head.append('<div class="sqa-panel-filters">')
    head.append('<input class="sqa-filter" type="search" placeholder="Filter articles…" aria-label="Filter articles">')
    outlets = sorted({r.outlet for r in rows if r.outlet}, key=str.casefold)
    if outlets:
        head.append(
            '<select class="sqa-filter-outlet" aria-label="Only this outlet"><option value="">All outlets</option>'
        )
        head.extend(f'<option value="{esc(o)}">{esc_line(o)}</option>' for o in outlets)
        head.append("</select>")
    if any(r.published for r in rows):
        head.append(
            '<label>from <input class="sqa-filter-since" type="date" aria-label="Published from"></label>'
            '<label>until <input class="sqa-filter-until" type="date" aria-label="Published until"></label>'
        )
    head.append(f'<span class="sqa-shown" aria-live="polite">{n} shown</span></div>')
    cols = [("title", "Title", ""), ("outlet", "Outlet", ""), ("date", "Date", ""), ("file", "File", "")]
    cols.append(("sentences", "Sentences", " sqa-num"))
    heads = "".join(
        f'<th class="sqa-sort{cls}" data-key="{key}" aria-sort="none">'
        f'<button type="button" title="sort by {label.lower()}">{label}</button></th>'
        for key, label, cls in cols
    )
    body = [f'<div class="sqa-table-wrap"><table class="sqa-table"><thead><tr>{heads}</tr></thead><tbody>']
    for r in rows:
        body.append(
            f'<tr data-title="{esc(r.title.casefold())}" data-outlet="{esc(r.outlet or "")}" '
            f'data-date="{esc((r.published or "")[:10])}" data-file="{esc(file_label(r.doc_id, r.path).casefold())}" '
            f'data-sentences="{int(r.n_sentences)}">'
            f'<td><a class="sqa-doc" href="{esc(doc_href(r.doc_id))}" '
            f'title="open this article">{esc_line(r.title)}</a></td>'
            f'<td class="sqa-outlet">{esc_line(r.outlet or "")}</td>'
            f'<td class="sqa-date">{esc_line(r.published or "")}</td>'
            f'<td class="sqa-file">{esc_line(file_label(r.doc_id, r.path))}</td>'
            f'<td class="sqa-num">{int(r.n_sentences)}</td></tr>'
        )
    body.append("</tbody></table></div></div>")
    return "".join(head + body)


# -- article view ------------------------------------------------------------


@dataclass(frozen=True)
class Cite:
    """A sentence the conversation cited: where it is and a label for it."""

    doc_id: str
    start: int
    end: int
    label: str


def render_article(
    doc_id: str, title: str, path: str, text: str, cites: Iterable[Cite] = (), focus: int | None = None
) -> str:
    """An article's full text with the cited sentences highlighted; `focus` is
    the start offset of the one to scroll to (drawn stronger)."""
    spans: dict[tuple[int, int], list[str]] = {}
    for c in cites:
        if c.doc_id == doc_id and 0 <= c.start < c.end <= len(text):
            spans.setdefault((c.start, c.end), []).append(c.label)
    out = [
        f'<div class="sqa-article" data-doc="{esc(doc_id)}">',
        f'<h3 class="sqa-article-title">{esc_line(title)}</h3>',
        f'<p class="sqa-article-file">{esc_line(file_label(doc_id, path))} · {len(spans)} cited '
        f"sentence{'s' if len(spans) != 1 else ''} highlighted</p>",
        '<div class="sqa-article-text">',
    ]
    pos = 0
    for (start, end), labels in sorted(spans.items()):
        if start < pos:  # overlapping spans: keep the first
            continue
        out.append(esc(text[pos:start]))
        cls = "sqa-cited sqa-focus" if focus is not None and start == focus else "sqa-cited"
        tip = "; ".join(dict.fromkeys(labels))
        out.append(f'<mark class="{cls}" data-start="{start}" title="{esc_line(tip)}">{esc(text[start:end])}</mark>')
        pos = end
    out.append(esc(text[pos:]))
    out.append("</div></div>")
    return "".join(out)


def render_article_placeholder(
    message: str = "Click an article in Sources, or a citation in a reply, "
    "to read it here with the cited sentences highlighted.",
) -> str:
    return f'<div class="sqa-article sqa-article-empty"><p>{esc_line(message)}</p></div>'


def render_upload_help(max_bytes: int, sources_dir: str) -> str:
    return (
        '<p class="sqa-upload-help">Add <strong>.txt, .md, .html, .pdf or .docx</strong> articles, or '
        "<strong>.jsonl, .csv, .rss</strong> files of many (up to "
        f'{max_bytes / 2**20:g} MB each). They are saved to <span class="sqa-file">{esc_line(sources_dir)}</span> '
        "and the index is updated incrementally; the chat keeps answering meanwhile.</p>"
    )


def render_upload_status(message: str) -> str:
    return f'<p class="sqa-upload-progress">{esc_line(message)}</p>'


def render_upload_outcome(out: Any, sources_dir: str) -> str:
    """What an upload did: files added (and the index now), files refused and why."""
    parts = ['<div class="sqa-upload-outcome">']
    if out.saved and out.report is not None:
        r = out.report
        rows = {PurePath(d["path"]).name: d["articles"] for d in getattr(r, "dump_rows", [])}
        n = sum(rows.get(name, 1) for name in out.saved)
        names = ", ".join(esc_line(name) + (f" ({rows[name]} articles)" if name in rows else "") for name in out.saved)
        parts.append(
            f'<p class="sqa-upload-ok"><strong>Added {n} article{"s" if n != 1 else ""}:'
            f"</strong> {names}. The index now has {r.documents} articles ({r.unique_sentences} unique sentences; "
            f"{r.sentences_embedded} embedded, {r.sentences_reused} reused; {r.seconds:.1f} s).</p>"
        )
    if out.rejected:
        items = "".join(
            f'<li><span class="sqa-file">{esc_line(n)}</span>: {esc_line(why)}</li>' for n, why in out.rejected
        )
        parts.append(f'<div class="sqa-upload-rejected"><p><strong>Not added:</strong></p><ul>{items}</ul></div>')
    if out.error:
        parts.append(f'<p class="sqa-upload-error"><strong>Not added:</strong> {esc_line(out.error)}</p>')
    if not (out.saved or out.rejected or out.error):
        parts.append("<p>Nothing to add.</p>")
    parts.append("</div>")
    return "".join(parts)


def cites_of(res: Any, turn: int, question: str) -> list[Cite]:
    """Every source span a reply quoted, labelled with its question."""
    q = " ".join(question.split())
    q = q if len(q) <= 60 else q[:57] + "…"
    out = []
    for i, a in enumerate(res.answers, 1):
        kind = "quote" if res.found and not a.weak else "closest match"
        for s in a.sources:
            out.append(Cite(s.doc_id, int(s.start), int(s.end), f"{kind} {i} for Q{turn}: {q}"))
    return out


CSS = """
.sqa-reply { line-height: 1.45; }
.sqa-reply ol.sqa-answers { margin: 0.2em 0 0 0; padding-left: 1.6em; }
.sqa-answer { margin: 0 0 0.7em 0; }
.sqa-quote { margin: 0 0 0.2em 0; padding: 0 0 0 0.6em; border-left: 3px solid var(--color-accent, #f97316);
  font-style: normal; }
.sqa-cite { font-size: 0.88em; opacity: 0.95; }
.sqa-doc { color: var(--link-text-color, #2563eb); cursor: pointer; text-decoration: underline dotted; }
.sqa-doc:hover { text-decoration: underline; }
.sqa-file { font-family: var(--font-mono, monospace); font-size: 0.86em; opacity: 0.75; }
.sqa-conf { display: inline-flex; align-items: center; gap: 0.3em; font-size: 0.85em; margin-right: 0.3em; }
.sqa-bar { display: inline-block; width: 3.2em; height: 0.5em; border-radius: 3px; background: rgba(127,127,127,0.25);
  overflow: hidden; }
.sqa-fill { display: block; height: 100%; background: #16a34a; }
.sqa-conf-medium .sqa-fill { background: #ca8a04; }
.sqa-conf-low .sqa-fill { background: #9ca3af; }
.sqa-weak { opacity: 0.62; }
.sqa-weak .sqa-quote { border-left: 3px dashed #9ca3af; font-style: italic; }
.sqa-closest-label { font-size: 0.9em; opacity: 0.8; margin: 0.3em 0 0.2em 0; }
.sqa-verdict { margin: 0 0 0.3em 0; }
.sqa-searched { font-size: 0.8em; opacity: 0.7; margin-bottom: 0.3em; }
.sqa-also, .sqa-context { font-size: 0.85em; margin-top: 0.15em; }
.sqa-also summary, .sqa-context summary { cursor: pointer; opacity: 0.8; }
.sqa-also ul { margin: 0.2em 0 0 1.2em; padding: 0; }
.sqa-outlet { font-weight: 600; }
.sqa-date, .sqa-author { opacity: 0.8; }
.sqa-url { color: var(--link-text-color, #2563eb); }
.sqa-bydate { font-size: 0.85em; margin-top: 0.3em; }
.sqa-bydate summary { cursor: pointer; opacity: 0.8; }
.sqa-worded { display: block; font-style: italic; opacity: 0.85; }
.sqa-context-text { margin: 0.3em 0; }
mark.sqa-hit, mark.sqa-cited { background: #fde68a; color: inherit; padding: 0 0.1em; border-radius: 2px; }
mark.sqa-focus { background: #fb923c; }
.sqa-error-msg, .sqa-fix, .sqa-note { margin: 0 0 0.3em 0; }
.sqa-fix-cmd { user-select: all; }
.sqa-notice { font-size: 0.8em; color: #b45309; margin-top: 0.3em; }
.sqa-index-info { margin: 0 0 0.4em 0; font-size: 0.92em; }
.sqa-panel-filters { display: flex; flex-wrap: wrap; gap: 0.3em 0.6em; align-items: center; margin: 0 0 0.4em 0;
  font-size: 0.9em; }
.sqa-filter { flex: 1 1 100%; padding: 0.3em 0.5em; border: 1px solid rgba(127,127,127,0.4);
  border-radius: 4px; background: transparent; color: inherit; }
.sqa-panel-filters select, .sqa-panel-filters input[type=date] { padding: 0.15em 0.3em; color: inherit;
  background: transparent; border: 1px solid rgba(127,127,127,0.4); border-radius: 4px; }
.sqa-shown { opacity: 0.75; margin-left: auto; }
.sqa-sort button { all: unset; cursor: pointer; font-weight: 600; }
.sqa-sort[aria-sort=ascending] button::after { content: " ▲"; }
.sqa-sort[aria-sort=descending] button::after { content: " ▼"; }
.sqa-table-wrap { max-height: 60vh; overflow: auto; }
.sqa-table { width: 100%; border-collapse: collapse; font-size: 0.9em; border: none !important; }
.sqa-table th, .sqa-table td { text-align: left; padding: 0.25em 0.4em; border: none;
  border-bottom: 1px solid rgba(127,127,127,0.2); vertical-align: top; }
.sqa-table .sqa-num { text-align: right; }
.sqa-table tr, .sqa-table tr > * { border-left: none !important; border-right: none !important; }
.sqa-article-title { margin: 0 0 0.2em 0; }
.sqa-article-file { font-size: 0.85em; opacity: 0.75; margin: 0 0 0.5em 0; }
.sqa-article-text { white-space: pre-wrap; max-height: 65vh; overflow: auto; line-height: 1.5; }
#sqa-examples button { font-size: 0.85em; }
/* source text may be right-to-left or hold bidi overrides (U+202E): each quote
   takes its direction from its own text, and no title or file name can reorder
   the words around it */
.sqa-quote, .sqa-context-text, .sqa-article-text { unicode-bidi: plaintext; }
.sqa-doc, .sqa-file, mark.sqa-hit, mark.sqa-cited, .sqa-searched q, .sqa-article-title { unicode-bidi: isolate; }
"""
