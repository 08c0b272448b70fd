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

Three more things a reader does without thinking:

* "What did Biden say about it?" after "Which city ...?": *it* is usually the
  previous turn's answer (Rafah), not a word of the previous question, so the
  names and numbers of the previous answer (the engine's own top sentence) are
  carried too, and that sentence joins the dense mix;
* "And on Sunday?" after "How long did the Thursday call last?" swaps one
  slot (a day, a month) of the previous question: the standalone query is the
  previous question with Sunday in Thursday's place;
* a follow-up without a question word of its own asks the same kind of thing
  as the turn it follows (a duration, above), so it keeps that turn's wording
  for the answer-type cue (`type_text`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

_TOKEN = re.compile(r"[A-Za-z][A-Za-z'’\-]*|\d[\d,.:%]*")
_ANAPHORA = {
    "it",
    "its",
    "they",
    "them",
    "their",
    "theirs",
    "he",
    "him",
    "his",
    "she",
    "her",
    "hers",
    "this",
    "that",
    "these",
    "those",
    "there",
    "then",
    "such",
    "same",
    "else",
    "former",
    "latter",
    "thereafter",
    "afterwards",
    "other",
    "another",
    "also",
}
_OPENERS = (
    "and ",
    "but ",
    "so ",
    "or ",
    "what about",
    "how about",
    "what else",
    "anything else",
    "any other",
    "also ",
    "then ",
    "why not",
    "and?",
)
_QUESTION_WORDS = {
    "what",
    "who",
    "whom",
    "whose",
    "when",
    "where",
    "why",
    "how",
    "which",
    "did",
    "does",
    "do",
    "is",
    "are",
    "was",
    "were",
    "can",
    "could",
    "will",
    "would",
    "should",
    "has",
    "have",
    "had",
    "many",
    "much",
    "long",
    "tell",
    "me",
    "about",
    "say",
    "said",
}
# Memory: the dense weight of the turn i steps back is DENSE_DECAY ** i
# (relative to the question's 1.0).  A long memory keeps the turn that named
# the topic, often several turns back; the window is not cut at the last
# self-contained question, as many questions name their own anchor and still
# belong to the topic.  Chosen on the dev half of the CANARD dialogs
# (qa/eval/canard.py): docs/evaluation.md, follow-up memory.
DENSE_DECAY = 0.7
MAX_TURNS = 12
MAX_CARRIED_TERMS = 16
MAX_ANSWER_TERMS = 3  # names/numbers taken from the previous answer
ANSWER_WEIGHT = 0.5  # dense weight of the previous answer sentence
# a follow-up's own content words count this many times in the BM25 query;
# chosen on the news tune half and CANARD dev (docs/evaluation.md, follow-ups)
OWN_REPEAT = 3


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    # pronouns point elsewhere: never content of their own ("Which network
    # did he say that to?" has one content word, "network")
    return frozenset(STOPWORDS_EN) | _QUESTION_WORDS | _ANAPHORA


@dataclass
class Resolved:
    question: str
    query: str  # standalone query shown to the user (question + carried terms)
    lexical: str  # text for BM25
    dense_texts: list[str] = field(default_factory=list)  # question first, then earlier turns
    dense_weights: list[float] = field(default_factory=list)
    followup: bool = False
    carried: list[str] = field(default_factory=list)
    type_text: str = ""  # the wording whose question word says what kind of answer is wanted
    previous_answer: str | None = None  # the sentence the last turn was answered with (follow-ups only)

    def __post_init__(self) -> None:
        if not self.type_text:
            self.type_text = self.question

    @property
    def asked(self) -> str:
        """What this turn asks, without the terms carried from earlier turns: the
        rewrite of an "And X?" follow-up, else the question as typed (with or
        without its "?")."""
        return self.question if self.query.startswith(self.question) else self.query


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


# "Are there other types?", "Is it possible to ...": "there" and "it" that
# point at nothing (existential / expletive), so no sign of a follow-up
_EXISTENTIAL = re.compile(
    r"\b(?:is|are|was|were|be|been)\s+there\b|\bthere\s+(?:is|are|was|were|be|been|'s)\b"
    r"|\b(?:is|was|would|will)\s+it\s+(?:be\s+)?\w+\s+(?:to|that|for)\b|\bit\s+(?:is|was|'s)\s+\w+\s+(?:to|that)\b",
    re.I,
)
# words that point back only when the question names nothing of its own:
# "What were the remarks *that* Vicente Fox made?" is a new question, "What
# else?" is not.  (Rare lower-case words as anchors too, "When did geocaching
# begin?", cost CANARD more than they gave INSCIT: docs/evaluation.md.)
_WEAK_ANAPHORA = {"that", "there", "then", "such", "same", "else", "other", "another", "also"}


# "that decision", "those talks", "which other players": a determiner that
# points back, even in a question that names something of its own ("Why was
# that decision a mistake, according to Jupiter's analyst?"); "that" after a
# noun is a relative pronoun ("the remarks that Vicente Fox made") and is not
_POINTS_BACK = re.compile(
    r"\b(?:these|those)\s+(?!who\b|which\b|that\b|of\b)[a-z]{3,}"
    r"|\b(?:of|about|in|on|for|from|with|after|before|to|by|at|over|is|was|are|were|did|does|do|has|have|had|"
    r"will|would|why|when|how)\s+(?:that|this)\s+(?!is\b|was\b|has\b|had\b|will\b)[a-z]{3,}"
    r"|\b(?:which|what|any)\s+other\b",
    re.I,
)


# "this year", "these days": the speaker's own time, not a pointer back into the conversation
_NOW = re.compile(
    r"\b(?:this|these)\s+(?:year|week|month|weekend|season|morning|afternoon|evening|summer|winter|spring|autumn|days)"
    r"(?:['’]s)?\b",
    re.I,
)


def is_followup(question: str) -> bool:
    """Whether the question leans on the conversation: a pronoun, a
    determiner that points back ("that deal"), an opener ("And on
    Sunday?"), or too few words of its own to name a subject."""
    question = _NOW.sub(" ", question)
    q = question.strip().lower()
    if _POINTS_BACK.search(question):
        return True
    toks = [t.lower() for t in _tokens(_EXISTENTIAL.sub(" ", question))]
    own = content_words(question)
    has_anchor = any(t[0].isdigit() or (t[0].isupper() and i > 0) for i, t in enumerate(_tokens(question)))
    if any(t in _ANAPHORA and not (t in _WEAK_ANAPHORA and has_anchor) for t in toks):
        return True
    if q.startswith(_OPENERS):
        return True
    return len(own) <= 3 and not has_anchor


_SLOTS = (
    {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "yesterday", "today", "tomorrow"},
    {
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    },
)


_YEAR = re.compile(r"^(?:1[89]|20)\d\d$")


def _slot_of(token: str) -> int | None:
    t = token.lower()
    if _YEAR.match(t):
        return len(_SLOTS)
    return next((i for i, slot in enumerate(_SLOTS) if t in slot), None)


def _same_slot(term: str, question_tokens: set[str]) -> bool:
    """ "And on Sunday?" after a question about Thursday replaces Thursday
    (a day, a month, a year)."""
    k = _slot_of(term)
    return k is not None and any(_slot_of(t) == k for t in question_tokens)


_WH = re.compile(r"\b(what|who|whom|whose|when|where|why|how|which)\b", re.I)
_ELLIPSIS = ("and ", "what about ", "how about ", "and?", "also ")


_HEAD = re.compile(r"\b(?:which|what)\s+([a-z]{3,})\b", re.I)


def _answer_terms(answer: str, asked: str, have: set[str]) -> list[str]:
    """Names and numbers of the previous answer that the conversation has not
    named yet -- the likeliest referents of "it", "there", "them" -- those
    with most of the question's words close by first (the answer to "Which
    city ... ground assault" sits in "... ground assault on the city of Rafah")."""
    toks = _tokens(answer)
    stop = _stopwords()
    asked_stems = {w.lower()[:5] for w in content_words(asked)}
    # the noun the question word governs ("Which *city* ...") names the kind
    # of the answer, and the answer sits right by it: it counts three times
    head = {m.group(1).lower()[:5] for m in _HEAD.finditer(asked)}
    anchors = [(i, 3.0 if t.lower()[:5] in head else 1.0) for i, t in enumerate(toks) if t.lower()[:5] in asked_stems]
    near: dict[str, float] = {}  # how much of the question surrounds the term
    for i, t in enumerate(toks):
        name = t[0].isupper() and i > 0 and t.lower() not in stop and len(t) > 1
        if (name or t[0].isdigit()) and t.lower() not in have and t.lower()[:5] not in asked_stems:
            mass = sum(w / (1 + abs(i - a)) for a, w in anchors)
            near[t] = max(near.get(t, 0.0), mass)
    return sorted(near, key=lambda t: -near[t])[:MAX_ANSWER_TERMS]


_DETERMINERS = ("his", "her", "its", "their", "the")
_CONNECTORS = {"of", "and", "&", "de", "the"}


def _ellipsis_focus(question: str) -> str | None:
    """X of "And X?", "What about X?", "And what about X?" (None otherwise)."""
    q = question.strip().rstrip("?").strip()
    m = re.match(r"^(?:and|also)?\s*(?:what|how)\s+about\s+(.+)$|^(?:and|also)\s+(.+)$", q, re.I)
    if not m:
        return None
    x = (m.group(1) or m.group(2)).strip()
    return x if x and not _WH.match(x) else None


def _name_spans(tokens: list[str]) -> list[tuple[int, int]]:
    """Runs of capitalised tokens (inner "of"/"and" allowed), not at the start."""
    spans, i = [], 1
    while i < len(tokens):
        if tokens[i][0].isupper():
            j = i + 1
            while j < len(tokens) and (
                tokens[j][0].isupper()
                or (tokens[j].lower() in _CONNECTORS and j + 1 < len(tokens) and tokens[j + 1][0].isupper())
            ):
                j += 1
            spans.append((i, j))
            i = j
        else:
            i += 1
    return spans


_PREPOSITIONS = {"in", "at", "on", "of", "for", "from", "to", "by", "with", "outside", "inside", "near", "during"}


def _focus_span(spans: list[tuple[int, int]], tokens: list[str], x: str) -> tuple[int, int]:
    """Which name of the previous question "And X?" replaces: X is another
    participant ("Who will Oldham play in the FA Cup fourth round?" + "And
    Arsenal?" swaps Oldham), not the setting a preposition introduces, unless
    every name is in one ("... died of the virus in Italy?" + "What about
    Spain?"); a possessive X swaps a possessive name ("the Scissor Sisters'
    single" + "And Kasabian's?").  The last such name: the question's focus
    comes late ("How many nominations did The Aviator get?")."""

    def in_setting(a: int) -> bool:
        k = a - 1 if a > 0 and tokens[a - 1].lower() == "the" else a
        return k > 0 and tokens[k - 1].lower() in _PREPOSITIONS

    def possessive(span: tuple[int, int]) -> bool:
        return any(t.endswith(("'s", "’s", "'", "’")) for t in tokens[span[0] : span[1]])

    pool = [sp for sp in spans if not in_setting(sp[0])] or spans
    if re.search(r"['’]s\b|s['’](?!\w)", x):
        pool = [sp for sp in pool if possessive(sp)] or pool
    return pool[-1]


def _swap_slot(question: str, previous: str) -> tuple[str, list[str]] | None:
    """The previous question with the follow-up's focus in place of its own,
    and the words that were replaced: "And on Sunday?" + "How long did the
    Thursday call last?" -> "How long did the Sunday call last?"; "And Vera
    Drake?" after "How many nominations did The Aviator get?" swaps the last
    name; "And his shotgun?" after "Where did he leave his tractor?" swaps
    what "his" governs.  None when no such slot is found."""
    if not question.lower().startswith(_ELLIPSIS):
        return None
    toks = _tokens(question)
    new = [t for t in toks if _slot_of(t) is not None]
    if new:
        out, gone = previous, []
        for t in new:
            old = [o for o in _tokens(previous) if _slot_of(o) == _slot_of(t) and o.lower() != t.lower()]
            if len(old) != 1:
                return None
            out = re.sub(rf"\b{re.escape(old[0])}\b", t[0].upper() + t[1:], out, count=1)
            gone.append(old[0])
        return (out, gone) if out != previous else None
    x = _ellipsis_focus(question)
    if x is None:
        return None
    words_x = x.split()
    bare = words_x[1:] if words_x[0].lower() == "the" else words_x
    ptoks = re.findall(r"\S+", previous.rstrip("?").strip())
    if bare and all(w[0].isupper() or w.lower() in _CONNECTORS for w in bare) and bare[0][0].isupper():
        clean = [w.strip("?,.;:") for w in ptoks]
        spans = _name_spans([w if w else "x" for w in clean])
        if not spans:
            return None
        a, b = _focus_span(spans, clean, x)
        if a > 0 and clean[a - 1].lower() == "the":
            a -= 1
        gone = clean[a:b]
        rewritten = " ".join(ptoks[:a] + [x] + ptoks[b:])
        return rewritten.rstrip("?") + "?", [g for g in gone if g.lower() not in _CONNECTORS]
    det = words_x[0].lower()
    if det in _DETERMINERS and len(words_x) > 1:
        stop = _stopwords()
        for i, w in enumerate(ptoks):
            if w.lower() == det and i + 1 < len(ptoks):
                j = i + 1
                while (
                    j < len(ptoks) and ptoks[j].lower().strip("?,.") not in stop and ptoks[j].islower() and j - i <= 3
                ):
                    j += 1
                if j == i + 1:
                    continue
                gone = [w.strip("?,.") for w in ptoks[i + 1 : j]]
                rewritten = " ".join(ptoks[:i] + words_x + ptoks[j:])
                return rewritten.rstrip("?") + "?", gone
    return _swap_shared(words_x, ptoks)


def _swap_shared(words_x: list[str], ptoks: list[str]) -> tuple[str, list[str]] | None:
    """ "And best screenplay?" after "Who won best actress at the awards?":
    X shares a content word with the previous question ("best") and swaps the
    phrase it heads there ("best actress" -> "best screenplay"); from the
    first shared word to the last when X shares more than one ("for best
    supporting actor" in place of "best actor")."""
    stop = _stopwords()
    low = [w.lower().strip("?,.;:") for w in ptoks]
    xl = [w.lower().strip("?,.;:") for w in words_x]
    shared = [k for k, w in enumerate(xl) if w not in stop and len(w) > 2 and w in low]
    if not shared or len(shared) == len([w for w in xl if w not in stop]):
        return None  # nothing in common, or nothing new
    first, last = shared[0], shared[-1]
    i = low.index(xl[first])
    if last > first:
        j = next((m for m in range(i + 1, len(low)) if low[m] == xl[last]), None)
        if j is None:
            return None
        j += 1
    else:
        # the shared word and the content words that follow it there, as many as follow it in X
        j, want = i + 1, len(xl) - first - 1
        while j < len(low) and want > 0 and low[j] not in stop:
            j, want = j + 1, want - 1
        if j == i + 1:
            return None
    gone = [w.strip("?,.;:") for w in ptoks[i:j] if w.lower().strip("?,.;:") not in xl]
    rewritten = " ".join(ptoks[:i] + words_x[first:] + ptoks[j:])
    return rewritten.rstrip("?") + "?", gone


def resolve(question: str, history: list[str], answers: list[str | None] | None = None) -> Resolved:
    """Standalone form of `question` given earlier user turns (oldest first)
    and, when known, the answer shown for each of them (`answers[i]` answers
    `history[i]`; None where nothing was found)."""
    if not history or not is_followup(question):
        return Resolved(question, question, question, [question], [1.0], False)
    recent = history[-MAX_TURNS:][::-1]  # most recent first
    answers = list(answers or [])
    last_answer = answers[len(history) - 1] if len(answers) >= len(history) else None
    frame = recent[0]
    if len(history) > 1 and frame.strip().lower().startswith(_ELLIPSIS):
        # "What about David Blunkett?" after "And Robin Cook?": the frame is what that turn asked
        frame = resolve(history[-1], history[-MAX_TURNS:-1]).asked  # within the memory: a chain costs no more
    swap = _swap_slot(question, frame)
    swapped, replaced = swap if swap else (None, [])
    have = {t.lower() for t in _tokens(swapped or question)} | {t.lower() for t in replaced}
    carried: list[str] = []
    for n, turn in enumerate(recent):
        for t in _salient(turn):
            if t.lower() not in have and t not in carried and not _same_slot(t, have):
                carried.append(t)
                have.add(t.lower())
        if n == 0 and last_answer and not swapped:
            for t in _answer_terms(last_answer, turn, have):
                carried.append(t)
                have.add(t.lower())
        if len(carried) >= MAX_CARRIED_TERMS:
            break
    carried = carried[:MAX_CARRIED_TERMS]
    type_text = question if _WH.search(question) else recent[0]
    weights = [1.0] + [DENSE_DECAY ** (i + 1) for i in range(len(recent))]
    if swapped:
        # the rewritten question stands on its own: it leads, the raw one follows
        rest = [c for c in carried if c.lower() not in {t.lower() for t in _tokens(swapped)}]
        query = f"{swapped} {' '.join(rest)}".strip()
        return Resolved(
            question,
            swapped,
            query,
            [swapped, question, *recent[1:]],
            [1.0, 0.5] + weights[2:],
            True,
            carried,
            swapped,
            last_answer,
        )
    query = f"{question} {' '.join(carried)}".strip()
    # the follow-up's own words (a new name, verb, measure) outweigh what is
    # carried: OWN_REPEAT times in BM25 against once for each carried term
    own = " ".join(content_words(question) * (OWN_REPEAT - 1))
    lexical = f"{question} {own} {' '.join(carried)}".strip()
    texts, ws = [question, *recent], weights
    if last_answer:
        texts, ws = [question, recent[0], last_answer, *recent[1:]], [1.0, weights[1], ANSWER_WEIGHT, *weights[2:]]
    return Resolved(question, query, lexical, texts, ws, True, carried, type_text, last_answer)
