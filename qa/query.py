"""Check and clean what users type, before anything expensive runs."""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

MAX_QUESTION_CHARS = 2000
MAX_K = 50
MAX_HISTORY_TURNS = 20

# Control and format characters, and lone surrogates (a JSON client can send
# "\ud800"; the tokenizer cannot encode it and would fail with a TypeError).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def clean_question(question: Any) -> str:
    """The question with control characters removed and whitespace folded.

    ValueError (one line, with the fix) for anything that is not a question.
    """
    if not isinstance(question, str):
        raise ValueError(f"question must be a string, not {type(question).__name__}")
    q = unicodedata.normalize("NFC", _CONTROL.sub(" ", question))
    q = " ".join(q.split())
    if not q:
        raise ValueError("question is empty: type a question about the articles")
    if len(q) > MAX_QUESTION_CHARS:
        raise ValueError(f"question is {len(q)} characters long: ask in at most {MAX_QUESTION_CHARS}")
    if not any(ch.isalnum() for ch in q):
        raise ValueError("question has no words: type a question about the articles")
    return q


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"k must be a whole number from 1 to {MAX_K}, not {k!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    return min(k, MAX_K)


def user_turns(history: Any) -> list[str]:
    """Earlier user questions, oldest first, from either a list of strings or
    Gradio's messages format ([{"role": "user"|"assistant", "content": ...}]).

    Assistant turns are ignored (they are quotes we produced); junk entries
    (None, numbers, empty strings, unknown roles) are skipped, not fatal.
    """
    if history is None:
        return []
    if isinstance(history, (str, bytes)) or not hasattr(history, "__iter__"):
        raise ValueError("history must be a list of earlier questions or of {'role', 'content'} messages")
    turns: list[str] = []
    for item in history:
        text: Any = None
        if isinstance(item, str):
            text = item
        elif isinstance(item, dict) and item.get("role") == "user":
            text = item.get("content")
            if isinstance(text, list):  # multimodal content parts
                text = " ".join(p.get("text", "") for p in text if isinstance(p, dict))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str):
            text = item[0]  # Gradio's old [user, bot] pairs
        if isinstance(text, str):
            try:
                turns.append(clean_question(text))
            except ValueError:
                continue
    return turns[-MAX_HISTORY_TURNS:]


@dataclass(frozen=True)
class Filters:
    """Which articles a question searches: published on or after `since`,
    on or before `until` (ISO dates; an undated article is left out once
    either is set), from one of `outlets` (case-insensitive)."""

    since: str | None = None
    until: str | None = None
    outlets: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [
            f"since {self.since}" if self.since else "",
            f"until {self.until}" if self.until else "",
            f"from {', '.join(self.outlets)}" if self.outlets else "",
        ]
        return " ".join(p for p in parts if p)


def _check_date(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, _dt.datetime):
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y-%m", "%Y"):
        try:
            start = _dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        if name == "until" and fmt != "%Y-%m-%d":  # "until 2024-02" means to the end of February
            nxt = (
                start.replace(year=start.year + 1)
                if fmt == "%Y"
                else (start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1))
            )
            return (nxt - _dt.timedelta(days=1)).isoformat()
        return start.isoformat()
    raise ValueError(f"{name} must be a date like 2024-01-31 (or 2024-01, 2024), not {value!r}")


def check_filters(since: Any = None, until: Any = None, outlets: Any = None) -> Filters | None:
    """Filters from what the user gave, or None for no filter; ValueError
    (one line, with the fix) for a date that is not one."""
    a, b = _check_date("since", since), _check_date("until", until)
    if a and b and a > b:
        raise ValueError(f"since ({a}) is after until ({b}): swap them")
    if isinstance(outlets, str):
        outlets = [outlets]
    names = tuple(dict.fromkeys(" ".join(str(o).split()) for o in (outlets or []) if str(o).strip()))
    if not (a or b or names):
        return None
    return Filters(a, b, names)
