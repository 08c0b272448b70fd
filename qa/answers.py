"""What `Engine.ask` returns: typed results that serialise to plain JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Source:
    """One place a sentence occurs, verbatim."""

    doc_id: str
    title: str
    path: str
    sentence_no: int  # position among the article's sentences (0-based)
    start: int  # character span in the article's extracted text
    end: int
    text: str  # the sentence as this source words it
    published: str | None = None  # ISO 8601 date the article declares (None: unknown, never guessed)
    outlet: str | None = None  # the publication ("Reuters", "The Guardian")
    author: str | None = None
    url: str | None = None  # the article's own address (http/https), when it declares one


@dataclass(frozen=True)
class Context:
    """The sentences around an answer in its first source."""

    doc_id: str
    before: list[str]
    after: list[str]


@dataclass(frozen=True)
class Answer:
    text: str  # a verbatim unique sentence
    score: float  # calibrated confidence in [0, 1]
    sources: list[Source]
    context: Context
    sentence_id: int  # row of the unique sentence in the index
    weak: bool = False  # below the answer threshold: a "closest match" only


@dataclass
class Result:
    question: str
    query: str  # the standalone query used, after follow-up resolution
    found: bool  # False when the sources do not answer the question
    answers: list[Answer] = field(default_factory=list)
    followup: bool = False  # was the question read as a follow-up?
    threshold: float = 0.0  # the confidence an answer needed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
