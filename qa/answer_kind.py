"""Does a sentence hold something new of the kind a question asks for?

Inside the article a question is about, the sentence that introduces the subject and the sentence that answers
share the subject's names, so names and cosine cannot tell them apart. The kind of thing asked often can:
"Who is leading Phil Spector's defence lawyers?" is answered by the sentence that names someone the question does
not ("... led by Bruce Cutler"), "Where did the two missing officials work?" by one that places them ("in the
northern city of Harbin"), "How big a stake ...?" by one with a number the question does not hold. The engine's
within-article step (qa.engine.within_article_order) gives such sentences a bonus; measured in
docs/evaluation.md, "The kind of thing asked".

Plain regular expressions over at most SUBJECT_DEPTH sentences a question: no model, no index.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from qa.fusion import question_type, type_match, typed_tokens

# the question word, after an optional "And" / "So" / "But" of a follow-up
_LEAD_IN = re.compile(r"^\W*(?:(?:and|so|but)\W+)?", re.I)
_WHO = re.compile(r"who(?:m|se)?\b", re.I)
_WHERE = re.compile(r"where\b", re.I)
_COUNTED = ("number", "date", "measure", "share", "clock")

# Capitalised words that do not name anyone: sentence openers and titles that stand before names
_NOT_NAMES = frozenset(
    "the a an but and in on at of for to from by with as after before when while if this that these those it its "
    "he she they his her their there here what who why how mr mrs ms dr".split()
)
# the last word of a run that names an institution or a place, not a person ("White House", "Bank of Israel")
_NOT_PEOPLE = frozenset(
    "house office department ministry party council court committee bank association union agency police service "
    "services club league university college street road airport station news post times group company corporation "
    "inc ltd plc board commission authority government parliament assembly senate congress".split()
)
_TOKEN = re.compile(r"[\w'’.-]+|[^\w\s]")
_WORD = re.compile(r"\w+")
# a capital letter of the Latin, Greek or Cyrillic alphabets ("Östersund", "Ødegaard"): `re` has no \p{Lu}
_UPPER = "[" + "".join(re.escape(chr(c)) for c in range(0x530) if chr(c).isupper()) + "]"
# a preposition of place, then a capitalised word within three lower-case ones ("in the northern city of Harbin")
_PLACED = re.compile(
    rf"\b(?:in|at|near|outside|inside|from|to|into|across|around)\s+(?:the\s+)?(?:[a-z]+\s+){{0,3}}?({_UPPER}[\w'’.-]*)"
)


def asked_kind(question: str) -> str | None:
    """ "person" for a who-question, "place" for a where-question, the
    qa.fusion type for one asking for a number, date, measure, share or time
    of day, else None. Only `question`'s first sentence counts (a follow-up's
    query carries terms after it)."""
    q = question.split("?")[0]
    head = _LEAD_IN.sub("", q, count=1)
    if _WHO.match(head):
        return "person"
    if _WHERE.match(head):
        return "place"
    qtype = question_type(q)
    return qtype if qtype in _COUNTED else None


def _new(word: str, asked: set[str]) -> bool:
    w = word.lower().rstrip("'’s")
    return w not in asked and w.rstrip("s") not in asked


def names_someone_new(sentence: str, asked: set[str]) -> bool:
    """A run of two or more capitalised words ("Bruce Cutler", "Sir Trevor
    McDonald") none of which the question (`asked`: its lower-case words)
    holds: one word alone is too often a place, a brand or a sentence's start."""
    run: list[str] = []
    for tok in [*_TOKEN.findall(sentence), "."]:
        if tok[0].isupper() and tok.lower().strip(".") not in _NOT_NAMES:
            run.append(tok)
            continue
        if len(run) >= 2 and all(_new(w, asked) for w in run) and run[-1].lower().rstrip("'’s") not in _NOT_PEOPLE:
            return True
        run = []
    return False


def places_something_new(sentence: str, asked: set[str]) -> bool:
    """A preposition of place before a capitalised word the question does not hold."""
    return any(_new(m.group(1), asked) and m.group(1).lower() not in _NOT_NAMES for m in _PLACED.finditer(sentence))


def kind_flags(question: str, sentences: Sequence[str]) -> np.ndarray | None:
    """1.0 where a sentence holds something new of the kind `question` asks
    for, else 0.0; None when the question asks for no such kind."""
    q = question.split("?")[0]
    kind = asked_kind(q)
    if kind is None:
        return None
    if kind in ("person", "place"):
        asked = {w.lower() for w in _WORD.findall(q)}
        has = names_someone_new if kind == "person" else places_something_new
        return np.array([float(has(s, asked)) for s in sentences])
    return type_match([typed_tokens(s, kind) for s in sentences], q)
