"""Text normalisation shared by the builder and the retriever.

Dedup keys and BM25 terms must be computed the same way at build time and at
query time, so both live here, below both packages in the data flow.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache

_QUOTES = str.maketrans(
    {
        "“": '"',
        "”": '"',
        "„": '"',
        "«": '"',
        "»": '"',
        "‘": "'",
        "’": "'",
        "‚": "'",
        "–": "-",
        "—": "-",
        "‐": "-",
        "…": "...",
    }
)
_WORD = re.compile(r"\w+", re.UNICODE)


def dedup_key(text: str) -> str:
    """The form in which two sentences count as identical: same words, ignoring
    whitespace, quote style, dash style and case."""
    # the same steps, cheaper where they cannot change anything: ASCII text is
    # already NFKC, holds no curly quotes and case-folds as lower(); str.split()
    # splits on exactly the characters \s matches (str.isspace).  Most news is
    # ASCII, and a build computes this for every sentence.
    if text.isascii():
        return " ".join(text.split()).lower()
    t = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    return " ".join(t.split()).casefold()


def text_hash(text: str) -> str:
    """Stable id of an exact text (the embedding cache key, with the model)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits), used by near-dup matching."""
    return _WORD.findall(dedup_key(text))


@lru_cache(maxsize=4)
def _stemmer(language: str):
    if not language:
        return None
    import Stemmer  # PyStemmer: Snowball stemmers in C

    return Stemmer.Stemmer(language)


@lru_cache(maxsize=4)
def _stopwords(enabled: bool) -> frozenset[str]:
    if not enabled:
        return frozenset()
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


# The words a question is phrased with, not what it is about.  Articles use
# them too ("did", "about", "what"), and rarely enough that BM25 gives them
# weight: "What did Biden say about Rafah?" matched "did" before "Rafah".
# Dropped from queries only; the index keeps every word it had.
QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how whether "
    "did do does doing done is are was were be been being am has have had having "
    "can could would should shall may might must "
    "about tell me i you we us our your he she him her his hers its them "
    "any some anything something".split()
)


# "How long did the call last?" asks for a duration, not about length: after
# "how" these words are part of the question word ("long" matched the
# "long-term" of a sentence about something else).  The answer type carries
# what they ask for (qa.fusion.question_type).
HOW_WORDS = frozenset("long many much often far".split())


def lexical_terms(text: str, language: str = "english", stopwords: bool = True, query: bool = False) -> list[str]:
    """BM25 terms: lower-cased words (single digits kept: "5 days" must match),
    English stop words dropped (and, for a question, its question words),
    Snowball-stemmed."""
    stop = _stopwords(stopwords)
    ws = words(text)
    if query and stopwords:
        stop = stop | QUESTION_WORDS
        ws = [w for i, w in enumerate(ws) if not (i and ws[i - 1] == "how" and w in HOW_WORDS)]
    toks = [w for w in ws if w not in stop]
    stem = _stemmer(language)
    return stem.stemWords(toks) if stem is not None else toks
