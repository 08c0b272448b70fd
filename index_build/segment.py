"""Split document text into paragraphs and sentences, keeping character spans.

Sentence boundaries come from `sentencex` (a maintained rule-based segmenter with
per-language abbreviation lists, written in Rust, so it is fast enough for a
million sentences).  Two things are layered on top, both because of how news is
written:

* sentencex never splits inside quotation marks, but news quotes routinely hold
  several sentences (``Netanyahu said, "This week we freed... So far we have
  freed 112..."``).  Each of those is a separate answer, so quote characters are
  masked (replaced by spaces, which keeps offsets) before segmenting.
* paragraphs are found first (blank lines, or a line break after a headline-like
  line) so that headlines and photo captions without a full stop do not get
  glued onto the first sentence of the body.
* pasted web pages carry link lists ("Related articles: <headline> <headline>
  ...") that have no full stops, so they glue onto the next real sentence;
  `split_link_list` cuts such a run where the real sentence starts, so the
  list can be kept out of the answers and the sentence stays quotable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sentencex

from qa.config import MAX_SENTENCE_CHARS

# Double quotes and brackets: masking them lets the segmenter see the sentence
# ends inside a quotation.  Single quotes are left alone: ’ is also the apostrophe.
_MASK = str.maketrans({c: " " for c in '"“”„«»()[]'})
_TERMINAL = tuple(".!?…:;\"“”'’)]")
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n")
# A "sentence" longer than this is a run-on line (a table, a list, a log, a
# 1 MB line with no full stop), not something to quote: it is cut at spaces
# into pieces of at most this many characters.  The encoder reads only the
# first 256 tokens (~1,000 characters) of a text anyway; news sentences stay
# far below it (docs/reliability.md, hostile sources).
# The limit is qa.config.MAX_SENTENCE_CHARS (BuildConfig.max_sentence_chars).


@dataclass(frozen=True)
class Span:
    """A piece of a document: [start, end) offsets into the document text."""

    start: int
    end: int


def paragraphs(text: str) -> list[Span]:
    """Paragraph spans: blocks between blank lines, split further at line breaks
    that end a complete line (a headline, a caption, a sentence end).

    A line break inside a hard-wrapped sentence (PDF text, e-mail style .txt) is
    kept as part of the paragraph so the sentence is not cut in two.
    """
    spans: list[Span] = []
    pos = 0
    for block_match in [*_BLANK_LINES.finditer(text), None]:
        end = block_match.start() if block_match else len(text)
        _split_block(text, pos, end, spans)
        if block_match:
            pos = block_match.end()
    return spans


def _split_block(text: str, start: int, end: int, out: list[Span]) -> None:
    lines: list[tuple[int, int]] = []
    p = start
    while p <= end:
        nl = text.find("\n", p, end)
        stop = end if nl < 0 else nl
        lines.append((p, stop))
        if nl < 0:
            break
        p = nl + 1
    stripped = [text[a:b].strip() for a, b in lines]
    # the next non-empty line after each line, in one backward pass (a forward
    # scan per line is quadratic: docs/reliability.md, hostile sources)
    following = [""] * len(lines)
    nxt = ""
    for i in range(len(lines) - 1, -1, -1):
        following[i] = nxt
        if stripped[i]:
            nxt = stripped[i]
    para_start: int | None = None
    para_end = start
    for i, (a, b) in enumerate(lines):
        line = stripped[i]
        if not line:
            continue
        if para_start is None:
            para_start = a + (len(text[a:b]) - len(text[a:b].lstrip()))
        para_end = a + len(text[a:b].rstrip())
        nxt = following[i]
        if not nxt or _hard_break(line, nxt):
            out.append(Span(para_start, para_end))
            para_start = None
    if para_start is not None:
        out.append(Span(para_start, para_end))


def _hard_break(line: str, next_line: str) -> bool:
    """Is the line break after `line` the end of a paragraph (not a soft wrap)?"""
    if line.endswith(_TERMINAL):
        return True
    if next_line[:1].islower() or next_line[:1].isdigit():
        return False  # a sentence carried on to the next line
    # A short line without a full stop is a headline, caption or byline; a long
    # one is a wrapped sentence.
    return len(line) < 60


def sentences(text: str, para: Span, language: str = "en", max_chars: int | None = MAX_SENTENCE_CHARS) -> list[Span]:
    """Sentence spans inside one paragraph.

    Boundaries are found on the quote-masked text; the characters between two
    sentences (spaces and quote marks) are then handed out so that a closing
    quote stays with the sentence it ends and an opening quote goes with the
    sentence it opens: ``He said “It is over.” “Then...`` -> ``…over.”`` | ``“Then…``.
    """
    chunk = text[para.start : para.end]
    masked = chunk.translate(_MASK)
    cores: list[tuple[int, int]] = []
    for b in sentencex.get_sentence_boundaries(language, masked):
        a, z = b["start_index"], b["end_index"]
        piece = masked[a:z]
        a2, z2 = a + len(piece) - len(piece.lstrip()), z - (len(piece) - len(piece.rstrip()))
        if z2 > a2:
            cores.append((a2, z2))
    if not cores:
        return []
    cores = _join_dotted(cores)
    starts = [0] + [0] * (len(cores) - 1)
    ends = [0] * (len(cores) - 1) + [len(chunk)]
    for i in range(len(cores) - 1):
        z, a_next = cores[i][1], cores[i + 1][0]
        gap = chunk[z:a_next]
        ws = [j for j, ch in enumerate(gap) if ch.isspace()]
        ends[i] = z + (ws[0] if ws else len(gap))
        starts[i + 1] = z + (ws[-1] + 1 if ws else len(gap))
    spans = [Span(para.start + s, para.start + e) for s, e in zip(starts, ends)]
    spans = _merge_orphans(chunk, para.start, spans)
    if max_chars and any(s.end - s.start > max_chars for s in spans):
        spans = [piece for s in spans for piece in cut_long(text, s, max_chars)]
    return spans


def _join_dotted(cores: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Rejoin a sentence cut at a dot with no space after it: a boundary
    always has one, so "Android/Filecoder.C" or "example.com" is one word."""
    out = [cores[0]]
    for a, z in cores[1:]:
        if a == out[-1][1]:
            out[-1] = (out[-1][0], z)
        else:
            out.append((a, z))
    return out


def cut_long(text: str, span: Span, max_chars: int) -> list[Span]:
    """`span` in pieces of at most `max_chars`, cut at the last space before
    the limit (or at the limit, in a run with no space), spaces trimmed."""
    out: list[Span] = []
    a, end = span.start, span.end
    while a < end:
        while a < end and text[a].isspace():
            a += 1
        if a >= end:
            break
        if end - a <= max_chars:
            out.append(Span(a, end))
            break
        cut = a + max_chars
        space = max(text.rfind(" ", a, cut + 1), text.rfind("\n", a, cut + 1))
        z = space if space > a + max_chars // 2 else cut
        stop = z
        while stop > a and text[stop - 1].isspace():
            stop -= 1
        out.append(Span(a, stop))
        a = z
    return out


def _merge_orphans(chunk: str, offset: int, spans: list[Span]) -> list[Span]:
    """Glue pieces that are only a closing quote/bracket or punctuation onto the
    sentence before: masking can leave a lone ``”`` or ``)`` behind."""
    merged: list[Span] = []
    for s in spans:
        body = chunk[s.start - offset : s.end - offset]
        if merged and not any(ch.isalnum() for ch in body):
            merged[-1] = Span(merged[-1].start, s.end)
        else:
            merged.append(s)
    return merged


# A run that opens with one of these labels is a list of links, not prose.
_LIST_LABEL = re.compile(
    r"(?:related(?:\s+(?:articles?|stories|story|content|coverage|news|links|reading))?|read\s+(?:more|also|next)|"
    r"also\s+read|see\s+also|more\s+on\s+this(?:\s+story)?|recommended(?:\s+(?:articles|stories))?|"
    r"most\s+(?:read|popular)|you\s+may\s+also\s+like|trending)\s*:\s*",
    re.I,
)
# Words that open a sentence and are capitalised nowhere else: a headline ends
# and the article's own sentence starts where one follows a lower-case word
# ("... without Israel's involvement | On Wednesday, Netanyahu decided ...").
_OPENERS = frozenset(
    "a an the on in at by for from after before during since until when while as if once "
    "it he she they we i you this that these those there his her their its our "
    "but however meanwhile earlier later yesterday today last next according officials some many".split()
)
_WORD = re.compile(r"\S+")


def split_link_list(text: str, span: Span) -> tuple[Span | None, Span | None]:
    """(link list, sentence) for a span that opens with a list label, else
    (None, span).

    The sentence is what follows the last place where a word ending in a
    lower-case letter (a headline's last word) is followed by a capitalised
    sentence opener; with no such place the whole span is the list.
    """
    piece = text[span.start : span.end]
    label = _LIST_LABEL.match(piece)
    if not label:
        return None, span
    tokens = [(m.start(), m.group()) for m in _WORD.finditer(piece, label.end())]
    cut = None
    for (_, prev), (pos, word) in zip(tokens, tokens[1:]):
        bare = word.strip("'\"“‘")
        if prev[-1:].islower() and bare[:1].isupper() and bare.rstrip(",").lower() in _OPENERS:
            cut = pos
    if cut is None:
        return span, None
    head_end = span.start + len(piece[:cut].rstrip())
    return Span(span.start, head_end), Span(span.start + cut, span.end)


def split(text: str, language: str = "en", max_chars: int | None = MAX_SENTENCE_CHARS) -> list[tuple[Span, list[Span]]]:
    """All paragraphs of a document with their sentences."""
    return [(p, sentences(text, p, language, max_chars)) for p in paragraphs(text)]
