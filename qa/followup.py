"""Follow-up questions without an LLM.

"How long did it last?" only makes sense after "What did Biden and Netanyahu
discuss on Thursday?".  A question is read as a follow-up when it leans on the
conversation: a pronoun or demonstrative, an elliptical opening ("And on
Sunday?", "What about ..."), or too few content words and no name or number of
its own.  It is then resolved against the earlier turns: their salient terms
(names and numbers first) are carried into the lexical query, and their
embeddings are mixed into the dense query with a decay per turn.  A
self-contained question is left alone, so a new topic is not dragged back to
the old one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

_TOKEN = re.compile(r"[A-Za-z][A-Za-z'’\-]*|\d[\d,.:%]*")
_ANAPHORA = {
    "it", "its", "they", "them", "their", "theirs", "he", "him", "his", "she", "her", "hers",
    "this", "that", "these", "those", "there", "then", "such", "same", "else", "former", "latter",
    "thereafter", "afterwards", "other", "another", "also",
}
_OPENERS = ("and ", "but ", "so ", "or ", "what about", "how about", "what else", "anything else",
            "any other", "also ", "then ", "why not", "and?")
_QUESTION_WORDS = {"what", "who", "whom", "whose", "when", "where", "why", "how", "which", "did", "does", "do",
                   "is", "are", "was", "were", "can", "could", "will", "would", "should", "has", "have", "had",
                   "many", "much", "long", "tell", "me", "about", "say", "said"}
# decay: weight of the turn i steps back is DECAY ** i (relative to the question's 1.0)
DENSE_DECAY = 0.5
MAX_TURNS = 3
MAX_CARRIED_TERMS = 8


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN) | _QUESTION_WORDS


@dataclass
class Resolved:
    question: str
    query: str  # standalone query shown to the user (question + carried terms)
    lexical: str  # text for BM25
    dense_texts: list[str] = field(default_factory=list)  # question first, then earlier turns
    dense_weights: list[float] = field(default_factory=list)
    followup: bool = False
    carried: list[str] = field(default_factory=list)


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def content_words(text: str) -> list[str]:
    stop = _stopwords()
    return [t for t in _tokens(text) if t.lower().strip("'’") not in stop and len(t) > 1 or t.isdigit()]


def _salient(text: str) -> list[str]:
    """Names and numbers first, then the other content words, in order."""
    toks = _tokens(text)
    stop = _stopwords()
    names = [t for i, t in enumerate(toks) if (t[0].isupper() and t.lower() not in stop) or t[0].isdigit()]
    rest = [t for t in toks if t not in names and t.lower() not in stop and len(t) > 2]
    return names + rest


def is_followup(question: str) -> bool:
    q = question.strip().lower()
    toks = [t.lower() for t in _tokens(question)]
    if any(t in _ANAPHORA for t in toks):
        return True
    if q.startswith(_OPENERS):
        return True
    own = content_words(question)
    has_anchor = any(t[0].isdigit() or (t[0].isupper() and i > 0) for i, t in enumerate(_tokens(question)))
    return len(own) <= 3 and not has_anchor


_SLOTS = (
    {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "yesterday", "today", "tomorrow"},
    {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december"},
)


def _same_slot(term: str, question_tokens: set[str]) -> bool:
    """"And on Sunday?" after a question about Thursday replaces Thursday."""
    t = term.lower()
    return any(t in slot and question_tokens & slot for slot in _SLOTS)


def resolve(question: str, history: list[str]) -> Resolved:
    """Standalone form of `question` given earlier user turns (oldest first)."""
    if not history or not is_followup(question):
        return Resolved(question, question, question, [question], [1.0], False)
    recent = history[-MAX_TURNS:][::-1]  # most recent first
    have = {t.lower() for t in _tokens(question)}
    carried: list[str] = []
    for turn in recent:
        for t in _salient(turn):
            if t.lower() not in have and t not in carried and not _same_slot(t, have):
                carried.append(t)
                have.add(t.lower())
        if len(carried) >= MAX_CARRIED_TERMS:
            break
    carried = carried[:MAX_CARRIED_TERMS]
    query = f"{question} {' '.join(carried)}".strip()
    weights = [1.0] + [DENSE_DECAY ** (i + 1) for i in range(len(recent))]
    return Resolved(question, query, query, [question, *recent], weights, True, carried)
