"""Passages: windows of consecutive answer sentences inside one document.

A passage gives a sentence credit for its context ("How long did the call
last?" is answered by a sentence that never says "call").  Windows never cross
documents.
"""

from __future__ import annotations

from dataclasses import dataclass

from index_build.documents import Document


@dataclass(frozen=True, slots=True)
class Passage:
    """A window, as positions in its document; the text is sliced from the
    document when asked for (`text_in`), since holding every passage's text
    would be a second and a half copy of the corpus (docs/performance.md,
    build memory)."""

    doc_idx: int
    first_sent_no: int  # positions in the document's sentence list
    last_sent_no: int
    start: int  # character span in the document's text
    end: int

    def text_in(self, docs: list[Document]) -> str:
        return docs[self.doc_idx].text[self.start : self.end]


def windows(n: int, size: int, stride: int) -> list[tuple[int, int]]:
    """[first, last] index pairs covering 0..n-1; the last window is aligned to
    the end so no sentence is left out and no window is shorter than needed."""
    if n <= 0:
        return []
    if n <= size:
        return [(0, n - 1)]
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] + size < n:
        starts.append(n - size)
    return [(s, s + size - 1) for s in starts]


def make_passages(docs: list[Document], size: int, stride: int) -> list[Passage]:
    out: list[Passage] = []
    for d_idx, doc in enumerate(docs):
        nos = [i for i, s in enumerate(doc.sentences) if s.is_answer]
        for a, b in windows(len(nos), size, stride):
            first, last = nos[a], nos[b]
            out.append(Passage(d_idx, first, last, doc.sentences[first].start, doc.sentences[last].end))
    return out
