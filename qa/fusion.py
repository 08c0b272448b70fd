"""Fusing dense and lexical evidence into one calibrated score per sentence.

Each candidate sentence gets a small feature vector (dense cosine, BM25 as a
share of the query's best possible BM25, the best cosine of a passage around
it, ranks, whether it holds the kind of thing the question asks for); a
logistic model fitted on the dev half of SQuAD (`python -m qa.eval --fit`)
turns it into the probability that the sentence answers the question.  That
probability ranks the answers; qa.abstain turns the candidate list into the
probability that the question is answered at all, and the scores shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from qa.abstain import AbstentionModel, answer_scores
from qa.features import FEATURES  # noqa: F401 - re-exported: qa.fusion.FEATURES

WEIGHTS_FILE = Path(__file__).with_name("fusion_weights.json")


_NUM_WORDS = (
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|"
    r"sixty|hundreds?|thousands?|millions?|billions?|dozens?|half|third|thirds|quarter|quarters"
)
_NUMBER = re.compile(rf"\d[\d,.]*\d|\d|\b(?:{_NUM_WORDS})\b", re.I)
# years and decades ("1950s"), "in 999", ordinals ("the 4th", "11th century"), named days and seasons
_MONTHS = r"january|february|march|april|may|june|july|august|september|october|november|december"
_DATE = re.compile(
    rf"\b(?:1[0-9]{{3}}|20[0-9]{{2}})s?\b|\bin \d{{3}}\b|\b\d{{1,2}}(?:st|nd|rd|th)\b|\b(?:{_MONTHS}|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    r"yesterday|today|tomorrow|century|centuries|decades?|week|month|year|morning|evening|night|"
    r"spring|summer|autumn|winter)\b",
    re.I,
)
# a capitalised word inside the sentence (not its first word), or an acronym (CNN, NBC)
_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][a-z]+|\b[A-Z]{2,}\b")
# an amount of time or length: "132 days", "about 40 minutes", "almost an hour", "6,650 km"; and, as many
# of SQuAD's "how long" answers are (docs/evaluation.md, answer types), a span ("from 1870 to 1939", "since
# 1951", "until the 19th century") or a bare duration ("after months of work", "known in seconds")
_UNITS = (
    r"seconds?|minutes?|hours?|days?|nights?|weeks?|months?|years?|decades?|centuries|generations?|"
    r"km|kilometres?|kilometers?|miles?|metres?|meters?|feet|foot|yards?|inches|cm|mm|nanomet(?:er|re)s?|"
    r"micromet(?:er|re)s?|light[- ]years?|leagues?"
)
# what a span runs from or to: a year, a decade, a century or an era ("since 1951", "until the 19th
# century"), not a day ("the first call since January 19" dates the call, it is no duration)
_SPAN_END = (
    r"1[0-9]{3}s?|20[0-9]{2}s?|(?:\d{1,2}(?:st|nd|rd|th)|first|second|third|fourth|fifth|sixth|seventh|"
    r"eighth|ninth|tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|"
    r"eighteenth|nineteenth|twentieth|twenty-first)[- ]centur(?:y|ies)|[a-z]+ (?:period|era|age)"
)
_MEASURE = re.compile(
    rf"\b(?:\d[\d,.]*|an?|{_NUM_WORDS}|several|few|many)(?:[- ](?:and[- ]a[- ]half|more|full|long|extra))?[- ]"
    rf"(?:{_UNITS})\b"
    rf"|\b(?:since|until|till|through|throughout|from)\s+(?:(?:at|least|about|around|roughly|the|early|late|mid|"
    rf"end|start|beginning|middle|of|quarter|half|second|first|last|\d{{1,2}}|{_MONTHS})[- ,]+){{0,5}}(?:{_SPAN_END})\b"
    r"|\b(?:for|after|in|within|over)\s+(?:many\s+|several\s+|some\s+)?(?:seconds|minutes|hours|days|weeks|"
    r"months|years|decades|centuries|generations)\b",
    re.I,
)
# a share of a whole: "two-thirds", "45%", "half of", "3 out of 4"
_SHARE = re.compile(
    r"\d[\d.]*\s*(?:%|per ?cent)|\b(?:half|halves|thirds?|quarters?|fifths?|tenths?|majority|"
    r"minority)\b|\b\w+ (?:out of|in (?:every )?)\d+|\d+/\d+",
    re.I,
)
# a time of day: "10 a.m.", "18:30", "noon", "sunset"
_CLOCK = re.compile(
    r"\b\d{1,2}(?::\d{2})?\s*(?:a\.?m\b\.?|p\.?m\b\.?)|\b\d{1,2}:\d{2}\b|\b(?:noon|midday|"
    r"midnight|o'clock|sunset|sundown|sunrise|dawn|dusk)\b",
    re.I,
)
_TYPE_PATTERNS = {
    "number": _NUMBER,
    "date": _DATE,
    "name": _NAME,
    "measure": _MEASURE,
    "share": _SHARE,
    "clock": _CLOCK,
}
TYPES = tuple(_TYPE_PATTERNS)
_WORDS = re.compile(r"\w+")

_ENTITY_NOUNS = (
    r"country|countries|city|cities|town|village|state|province|region|nation|capital|island|river|"
    r"company|companies|firm|bank|brand|airline|club|team|band|group|party|government|agency|"
    r"organi[sz]ation|network|channel|station|outlet|newspaper|paper|magazine|publication|broadcaster|"
    r"person|people|man|woman|leader|official|minister|president|player|author|king|queen|university"
)


_QUESTION_CUES = (  # most specific first: on a tie of position the first listed wins
    # "what time" asks for a time of day, but "what time period" or "during
    # what time" for an era (a date)
    (
        "clock",
        re.compile(
            r"(?<!during )(?<!in )\bwhat time\b(?! (?:zones?|periods?|frames?|spans?|of (?:the )?year)\b)"
            r"|\bat what hour\b"
        ),
    ),
    ("date", re.compile(r"\bhow long ago\b|\b(?:during|in) what time\b|\bwhat time (?:periods?|frames?|spans?)\b")),
    ("measure", re.compile(r"\bhow long\b|\bfor how many (days|weeks|months|years|hours|minutes)\b|\bhow far\b")),
    ("share", re.compile(r"\bwhat (portion|proportion|share|fraction|percentage|percent)\b|\bhow much of\b")),
    ("number", re.compile(r"\bhow (many|much|old|big|large|often|tall|high|deep)\b|\bwhat (number|amount|age)\b")),
    # "when" asks for a date only as a question word ("When did ..."), not as
    # the conjunction of "What yard line were they on when Manning fumbled?"
    (
        "date",
        re.compile(
            r"^\W*(?:(?:and|so|but|then|ok|okay)\W+)?when\b"
            r"(?![^,]*,\s*(?:who|whom|whose|what|which|where|how|why)\b)"
            r"|\bwhen (?:did|was|were|is|are|does|do|will|would|had|has|have|could|can|should|might)\b"
            r"|\bwhat (year|day|date|month|century|decade)\b|\bwhich (year|day|month|century)\b"
        ),
    ),
    ("name", re.compile(rf"\bwho(m|se)?\b|\bwhere\b|\b(which|what)( \w+)? ({_ENTITY_NOUNS})\b|\bname\b")),
)


def question_type(question: str) -> str:
    """What kind of answer the question wants (one of TYPES, or "any").

    The question word that comes first decides ("Where was he when ..."
    wants a place), and the most specific reading of it wins: "how long"
    wants an amount of time or length and "what portion" a share, not just any
    number; "which network" wants a name as much as "who" does.
    """
    q = question.lower()
    best, best_pos = "any", len(q) + 1
    for qtype, cue in _QUESTION_CUES:
        m = cue.search(q)
        if m and m.start() < best_pos:
            best, best_pos = qtype, m.start()
    return best


# A word at least one of which every match of a kind holds, when the match has
# no digit (names have none: nearly every sentence has a capital).  The
# patterns try a long alternation at every position, which is slow
# (docs/performance.md), and most sentences hold no number, date, measure,
# share or time of day at all:
# a digit test and a set lookup rule those out first, with the same results
# (tests/test_fusion.py checks it on the seed articles).
_MATCH_WORDS = {
    "number": frozenset(
        "one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty sixty "
        "hundred hundreds thousand thousands million millions billion billions dozen dozens half third thirds "
        "quarter quarters".split()
    ),
    "date": frozenset(
        f"{_MONTHS.replace('|', ' ')} monday tuesday wednesday thursday friday saturday sunday yesterday today "
        "tomorrow century centuries decade decades week month year morning evening night spring summer autumn "
        "winter".split()
    ),
    "measure": frozenset(
        "second seconds minute minutes hour hours day days night nights week weeks month months year years decade "
        "decades century centuries generation generations km kilometre kilometres kilometer kilometers mile miles "
        "metre metres meter meters feet foot yard yards inches cm mm nanometer nanometers nanometre nanometres "
        "micrometer micrometers micrometre micrometres league leagues period era age".split()
    ),
    "share": frozenset("half halves third thirds quarter quarters fifth fifths tenth tenths majority minority".split()),
    "clock": frozenset("noon midday midnight clock sunset sundown sunrise dawn dusk".split()),
}
_DIGIT = re.compile(r"\d")


def _cannot_match(text: str, qtype: str) -> bool:
    need = _MATCH_WORDS.get(qtype)
    return need is not None and not _DIGIT.search(text) and need.isdisjoint(_WORDS.findall(text.casefold()))


def typed_tokens(text: str, qtype: str) -> frozenset[str]:
    """The words of `text` that are of kind `qtype` (one of TYPES),
    lower-cased; engines memoise it per sentence and kind.

    Words, not a yes/no, so that a kind only counts when the sentence adds
    something the question does not already say: for "When did they speak
    before the Sunday call?" the "Sunday" of a sentence is no answer."""
    if _cannot_match(text, qtype):
        return frozenset()
    found = _TYPE_PATTERNS[qtype].findall(text)  # whole matches: the patterns have no capturing groups
    return frozenset(_WORDS.findall(" ".join(found).lower())) if found else frozenset()


def type_match(tokens: Sequence[Collection[str]], question: str) -> np.ndarray:
    """1.0 where a sentence's words of the wanted kind (`tokens`, from
    typed_tokens) hold one that is not in the question, else 0.0."""
    asked = set(_WORDS.findall(question.lower()))
    return np.array([float(not asked.issuperset(toks)) for toks in tokens])


def type_proximity(
    words: Sequence[str], stems: Sequence[str], typed: Collection[str], asked: set[str], query_stems: set[str]
) -> float:
    """1/d for the fewest words d between a word of the wanted kind that the
    question does not already hold and a word of the question (0.0 if the
    sentence has no such pair); `words` and `stems` are the sentence's, side
    by side.

    Answers sit next to what the question asks about: "Prime Minister
    *Benjamin Netanyahu*", "lasted *about 40 minutes*": on the SQuAD dev half a
    typed candidate close to a question word is far more often the answer
    (docs/evaluation.md, answer types).

    One scan of the words, nothing kept: a memo of word positions per
    sentence was millions of small lists that Python's garbage collector
    walked again and again (docs/performance.md).  The nearest
    pair is always between a word and the last word of the other side
    before it, so the scan only remembers where each side was last seen.
    """
    new = {w for w in typed if w not in asked}
    if not new:
        return 0.0
    far = 1 << 30
    best, last_typed, last_query = far, -far, -far
    for i, w in enumerate(words):
        if w in new:
            last_typed = i
            d = i - last_query
        elif stems[i] in query_stems:
            last_query = i
            d = i - last_typed
        else:
            continue
        if d < best:
            best = d
    return 1.0 / best if best < len(words) else 0.0


@dataclass(frozen=True)
class FusionModel:
    """Logistic model over standardised features and their pairwise products.

    Products let the evidence interact (a rare-word match counts for more when
    the article is on topic; a number only matters for "how many" questions)
    while the score stays a calibrated probability and the model a few
    hundred numbers in JSON.
    """

    mean: np.ndarray
    scale: np.ndarray
    linear: np.ndarray  # (f,)
    quadratic: np.ndarray  # (f, f), upper triangle used
    bias: float
    threshold: float  # answers scoring below this are "closest matches"
    mmr_lambda: float  # 1.0 = plain ranking
    info: dict
    abstention: AbstentionModel | None = None  # P(answerable) per question (qa.abstain); None: the top score

    def answer_scores(self, prob: np.ndarray, X: np.ndarray, qtype: str) -> np.ndarray:
        """The scores answers are shown and judged with (best first, same
        order as `prob`): the best is P(answerable), see qa.abstain."""
        if self.abstention is None or len(prob) == 0:
            return prob
        return answer_scores(prob, self.abstention.answerable(prob, X, qtype))

    def score(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        Z = (X - self.mean) / self.scale
        z = Z @ self.linear + ((Z @ self.quadratic) * Z).sum(axis=1) + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def blank_model() -> FusionModel:
    """A model that scores every candidate 0.5: features can be gathered for
    fitting before any weights fit them."""
    f = len(FEATURES)
    return FusionModel(np.zeros(f), np.ones(f), np.zeros(f), np.zeros((f, f)), 0.0, 0.5, 1.0, {"fitted": False})


@lru_cache(maxsize=4)
def load_model(path: str | None = None) -> FusionModel:
    data = json.loads(Path(path or WEIGHTS_FILE).read_text(encoding="utf-8"))
    f = len(FEATURES)
    if list(data.get("features", [])) != list(FEATURES):
        raise ValueError(
            f"{path or WEIGHTS_FILE} was fitted for other features: refit with python -m qa.eval squad --fit"
        )
    quad = np.zeros((f, f))
    iu = np.triu_indices(f)
    quad[iu] = np.asarray(data["quadratic"], dtype=np.float64)
    abst = data.get("abstention")
    return FusionModel(
        np.asarray(data["mean"], dtype=np.float64),
        np.asarray(data["scale"], dtype=np.float64),
        np.asarray(data["linear"], dtype=np.float64),
        quad,
        float(data["bias"]),
        float(data["threshold"]),
        float(data.get("mmr_lambda", 1.0)),
        data.get("info", {}),
        AbstentionModel.from_json(abst) if abst else None,
    )


@dataclass
class Evidence:
    """Raw per-candidate evidence gathered by the engine (arrays align)."""

    dense: np.ndarray  # cosine of question and sentence
    bm25: np.ndarray
    bm25_best: float  # the query's best possible BM25 (for a share)
    passage: np.ndarray  # best cosine of a passage holding the sentence
    cov_sent: np.ndarray  # idf-weighted share of query terms in the sentence
    cov_ctx: np.ndarray  # ... in it or its neighbours
    cov_doc: np.ndarray  # ... anywhere in its article
    doc_dense: np.ndarray  # cosine of question and the article's centroid
    cov_title: np.ndarray  # share of query terms in the article's title
    doc_sat: np.ndarray  # query terms weighted by how many of the article's sentences use them
    phrase: np.ndarray  # share of the question's word pairs found side by side in the sentence
    doc: np.ndarray  # the article of each candidate's first occurrence
    n_words: np.ndarray  # words in each candidate
    typed: np.ndarray  # 1.0 where it holds the kind of thing asked for (type_match)
    qtype: str
    near: np.ndarray | None = None  # type_proximity per candidate (None: no typed question)


def features(ev: Evidence) -> np.ndarray:
    """Feature matrix (n_candidates x len(FEATURES)); rows align with the inputs."""
    dense, bm25 = ev.dense, ev.bm25
    n = len(dense)
    X = np.zeros((n, len(FEATURES)), dtype=np.float64)
    if n == 0:
        return X
    d_rank = np.empty(n)
    d_rank[np.argsort(-dense, kind="stable")] = np.arange(n)
    b_rank = np.empty(n)
    b_rank[np.argsort(-bm25, kind="stable")] = np.arange(n)
    bmax = float(bm25.max())
    X[:, 0] = dense
    X[:, 1] = bm25 / ev.bm25_best if ev.bm25_best > 0 else 0.0
    X[:, 2] = ev.passage
    X[:, 3] = dense - float(dense.max())
    X[:, 4] = bm25 / bmax if bmax > 0 else 0.0
    X[:, 5] = 10.0 / (10.0 + d_rank)
    X[:, 6] = np.where(bm25 > 0, 10.0 / (10.0 + b_rank), 0.0)
    # A name is in nearly every news sentence, a clock time or a share in few:
    # "holds a name" says far less than "holds a time of day", so names get
    # their own pair of weights instead of diluting the others'.  (Clock times,
    # shares and measures were given a pair of their own too and rejected: rare
    # flags standardise to large values, and their pairwise products swung the
    # score; docs/evaluation.md, answer types.)
    if ev.qtype == "name":
        X[:, 28] = ev.typed
        X[:, 29] = 1.0 - ev.typed
    elif ev.qtype != "any":
        X[:, 7] = ev.typed
        X[:, 8] = 1.0 - ev.typed
    if ev.qtype != "any" and ev.near is not None:
        X[:, 30] = ev.near
    X[:, 9] = np.log1p(ev.n_words)
    X[:, 10] = ev.cov_sent
    X[:, 11] = ev.cov_ctx
    X[:, 12] = ev.cov_doc
    X[:, 13] = ev.doc_dense
    X[:, 14] = ev.doc_dense - float(ev.doc_dense.max())
    # within-question gaps: how far behind the question's best candidate
    for col, src in ((15, 2), (16, 10), (17, 11), (18, 12), (19, 1)):
        X[:, col] = X[:, src] - X[:, src].max()
    X[:, 20] = ev.cov_title
    X[:, 21] = ev.doc_sat
    X[:, 22] = ev.phrase
    # against the other candidates of the same article: is this its best sentence?
    _, inv, counts = np.unique(ev.doc, return_inverse=True, return_counts=True)
    for col, src in ((23, 0), (24, 10), (25, 1), (26, 2)):
        best = np.full(len(counts), -np.inf)
        np.maximum.at(best, inv, X[:, src])
        X[:, col] = X[:, src] - best[inv]
    X[:, 27] = np.log1p(counts[inv])
    return X
