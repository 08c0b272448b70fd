"""The retriever: question (+ conversation) -> best-ranked source sentences.

Data only flows down here: it reads an index directory and never writes one.
An Engine is safe to share between threads: the index is read-only (FAISS
search, memory-mapped vectors), all threads share the SQLite connection
opened at load under a lock, and the small query-embedding cache and the
per-sentence facts memo are guarded or idempotent.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from qa import query as qmod
from qa.answer_kind import kind_flags
from qa.answers import Answer, Context, Result, Source
from qa.diversify import mmr
from qa.doc_map import DocMap, build_doc_map, max_per
from qa.encoder import Encoder, load_encoder, resolve_model
from qa.errors import IndexLoadError, ModelUnavailableError
from qa.followup import Resolved, content_words, resolve
from qa.fusion import (
    TYPES,
    Evidence,
    FusionModel,
    features,
    load_model,
    question_type,
    type_match,
    type_proximity,
    typed_tokens,
)
from qa.index_store import IndexData, open_index
from qa.lexical import Lexical, phrase_share
from qa.reader import Reader
from qa.rerank import RerankModel
from qa.textnorm import words
from qa.vector_index import FLAT

# Candidates per question: the best dense matches, the best BM25 matches, and
# the sentences either side of the best few dense ones.  Every candidate costs
# evidence, and that cost is most of the ranking time, so these are the fewest
# that rank as well as larger sets: chosen on the SQuAD dev half
# (docs/evaluation.md, candidates).
DENSE_CANDIDATES = 50
LEXICAL_CANDIDATES = 100
NEIGHBOURS_OF_TOP = 10
_EMBED_CACHE = 256
# a follow-up whose best answer is the sentence the last turn was answered
# with gets it second: the user has just seen it (docs/evaluation.md, follow-ups)
DEMOTE_PREVIOUS = True


# Questions come one at a time, and for one short text bf16 autocast costs more
# than it saves (docs/performance.md); fp32 query vectors are the exact ones,
# and agree with a bf16-built index's vectors as closely as its build probe asks.
QUERY_PRECISION = "fp32"


_SIDE_POOL = None
_SIDE_LOCK = threading.Lock()


def _side_pool():
    """Threads for the parts of a question that can run beside its embedding
    (shared by every engine; a few, so concurrent questions do not queue)."""
    global _SIDE_POOL
    with _SIDE_LOCK:
        if _SIDE_POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            _SIDE_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="source-qa-side")
        return _SIDE_POOL


# Sentences whose typed words (and stems) one engine remembers per answer type
# before it starts over, so a long-running server's memory stays bounded.
# Memo values are strings and tuples of strings, which Python's garbage
# collector does not walk: a memo of small lists and dicts made every
# collection slower as it grew (docs/performance.md).
_TYPED_MEMO_MAX = 100_000
_NO_TOKENS: tuple[str, ...] = ()


def _typed_words(text: str, kind: str) -> tuple[str, ...]:
    """A typed-words memo value: a tuple (one shared empty one), which the
    garbage collector stops tracking, not a frozenset."""
    return tuple(typed_tokens(text, kind)) or _NO_TOKENS


_WARM_CHUNK = 32  # sentences per step of the warm-up: a question waits at most one (short) step


def _warm_memos(ref: "weakref.ref[Engine]") -> None:
    """Fill an engine's per-sentence memos (text, words, typed words of every
    kind, stems) for every sentence, in the background after load.

    Cold memos are a large share of a question's ranking time (SQLite,
    tokenising, pattern matching of candidates never seen before;
    docs/performance.md); once warm, every question pays only for its own
    evidence.  Small steps, and none while a question is being answered, so
    the warm-up never delays one by more than a step; it holds only a weak
    reference, so an engine replaced (the chat reloads after an upload) is
    freed and the thread ends.
    """
    eng = ref()
    n = eng.data.n_sentences if eng is not None else 0
    del eng
    for start in range(0, n, _WARM_CHUNK):
        while True:
            eng = ref()
            if eng is None or eng._closed:
                return
            if not eng._asking:
                break
            del eng  # not kept alive while waiting
            time.sleep(0.002)
        eng._warm_facts(np.arange(start, min(n, start + _WARM_CHUNK)))
        del eng
        time.sleep(0)  # let a waiting question have the GIL now, not at the next switch interval
    eng = ref()
    if eng is not None:
        eng._warm_done.set()


# A question about the state of things now: among the answers, the newest
# report's comes first ("How many have died so far?" across a week of reports).
_LATEST = re.compile(r"\b(so far|now|latest|currently|current|most recent|to date|as of today|these days)\b", re.I)
# two reports of the same statement with other figures ("the toll rose to 12
# on Monday" / "... to 31 on Friday": cosine 0.78; BBC: "The Aviator has
# taken $75m so far" / "... The Aviator, which has taken $90m in the US":
# 0.61), each scoring at least a tenth of the best: no evaluation set holds
# such questions yet (8 of the news suite's 356 ask about the present, none
# over dated reports of one statement), so these are set on written examples
# and two real BBC stories (tests/test_metadata.py), not measured
SAME_STATEMENT = 0.6
SAME_STATEMENT_SCORE = 0.1


# A year the question names ("in 2021", "T in the Park 2005"): a sentence that names other years and not
# this one reports another period, however close its wording (news of one story repeats it year by year).
_YEAR = re.compile(r"(?<!\d)(?<!\d[.,])(?:19|20)\d\d(?!\d|[.,]\d)")
# a span of years: "2004-05", "2004/5", "2019-2021" name every year in it
_YEAR_SPAN = re.compile(r"(?<!\d)((?:19|20)\d\d)[-/–](\d{1,4})(?!\d)")
# how far down the ranking a sentence naming the asked year is looked for (set by reading, not fitted:
# docs/evaluation.md, "The year a question names")
YEAR_DEPTH = 5


def _years(text: str) -> set[str]:
    """The years `text` names, every year of a span included."""
    out = set(_YEAR.findall(text))
    for first, last in _YEAR_SPAN.findall(text):
        end = int(first[: 4 - len(last)] + last)
        if int(first) < end <= int(first) + 10:
            out.update(str(y) for y in range(int(first), end + 1))
    return out


def _agree_years(question: str, texts: list[str]) -> np.ndarray | None:
    """A new order of `texts` (best first) when the best one names other years
    than the one `question` asks about and one of the next YEAR_DEPTH names it:
    that one first, the rest as they were.  None: the order stands."""
    asked = _years(question)
    if not asked or len(texts) < 2:
        return None
    top = _years(texts[0])
    if not top or top & asked:
        return None
    for j in range(1, min(len(texts), YEAR_DEPTH)):
        if asked & _years(texts[j]):
            return np.r_[j, np.delete(np.arange(len(texts)), j)]
    return None


# A question names its subject and asks something about it ("Where was Yoshiaki Tsutsumi picked up by the
# authorities?").  The names find the article, but inside it the answer seldom repeats them ("He was taken away
# in a van outside one of his Prince hotels"), while the sentence that introduces the subject holds them all and
# outranks it.  So, among the best SUBJECT_DEPTH candidates, the ones from the best one's article are ranked again
# with the question read with its names as pronouns ("Where was it picked up by the authorities?"): what it asks
# about the subject, which the names cannot tell apart inside an article about that subject.  Measured, with
# what it costs: docs/evaluation.md, "Inside the article".
SUBJECT_DEPTH = 10
SUBJECT_WEIGHT = 16.0  # log-score units per unit of cosine to the unnamed question (flat from 12 to 24 on news tune)
# log-score units per logit of the learned reader (qa.reader), which reads the question with each of those
# candidates: chosen on the reader's held-out "fit" questions and the news tune half (docs/evaluation.md)
READ_WEIGHT = 1.6
# With the reader, the step covers every article's candidates among the best SUBJECT_DEPTH, not only the best
# one's (the reader reads the question's names too, so it can tell a right article's sentence from a wrong one's), and
# the best one's article keeps SAME_ARTICLE_BONUS log-score units: another article's sentence must read better by
# that much to take first place.  Chosen on the reader questions' fit half, the news tune half and SQuAD's dev half
# (docs/evaluation.md, "Reading across articles, the best answer's article first"); without the bonus, reading
# across gained on the first and lost on the second.
ACROSS_ARTICLES = True
SAME_ARTICLE_BONUS = 3.0
READ_MOST = 3  # candidates it reads, the best by score and cosine (docs/evaluation.md: 2, 3, 4, 5, 10 and the cost)
# A follow-up's answer is by its nature not what the story's carried words find first (that was the previous
# answer, or the lead), so the reader reads more of its article's candidates: on the tune sets 3 / 5 / 8 read gave
# follow-ups fit 0.566 / 0.574 / 0.581, news tune 0.522 / 0.565 / 0.565, CANARD dev 0.704 / - / 0.712.  Follow-ups
# only: a question that stands alone would go over the speed budget (docs/evaluation.md, "A follow-up reads more").
READ_MOST_FOLLOWUP = 8
# A long article's first sentence names everything the story is about, so inside the article it outranks the
# sentence that answers; it gives up LEAD_PENALTY log-score units there.  Only in an article of at least
# LEAD_MIN_SENTENCES sentences: the first sentence of a paragraph-sized text (a SQuAD paragraph has about 5) states
# a fact of its own and often answers (docs/evaluation.md, "The lead sentence of a long article").
LEAD_PENALTY = 2.0
LEAD_MIN_SENTENCES = 10
# log-score units for a candidate there that holds something new of the kind asked: a name the question does not
# hold for "who", a place for "where", a number, date or measure for "how many", "when", "how long"
# (qa.answer_kind).  In long articles only, as the lead penalty: on the SQuAD dev half (paragraph-sized texts) it
# cost 0.001 R@1 everywhere and nothing in long articles only (docs/evaluation.md, "The kind of thing asked")
KIND_BONUS = 4.0
# a run of capitalised words not at the question's start ("Bharrat Ramdehol", "Lake Berryessa", "Aisha's Salon
# and Spa"), with a possessive
_NAME_RUN = re.compile(r"(?<!^)\b[A-Z][\w'’.-]*(?:\s+(?:(?:of|the|and|de|van|von)\s+)?[A-Z][\w'’.-]*)*(?:['’]s\b)?")


def unnamed_question(question: str, followup: bool = False) -> str | None:
    """`question` (its first sentence: a follow-up's query carries terms after it) with each name as "it".
    A question that names nothing (two content words at least: "How many schools have asked for the
    pack?"), or that asks one thing beyond its names ("Who wrote The Vagina Monologues?"), is read as
    typed, so that its best candidates still change places by what it asks and the reader still reads
    them (docs/evaluation.md, "Reading across articles"); None when it asks nothing beyond its names
    ("Who was Charlie Bell?": the sentence that names him answers) or too little at all.  A `followup`
    that names nothing (or too little to ask without its names) is read as typed too, without the terms
    carried from earlier turns: its pronouns already stand for the subject ("How old is he?", "Has she
    regained custody of her daughter?"), while the carried terms pull back to the sentence that answered
    the last turn (docs/evaluation.md, "Follow-ups"); None when it holds no content word."""
    q = question.strip()
    end = q.find("?")
    q = q[: end + 1] if end > 0 else q
    out = _NAME_RUN.sub("it", q)
    left = len(content_words(out))
    if out != q and left >= 2:
        return out
    if followup:
        return q if content_words(q) else None
    return q if left >= (1 if out != q else 2) else None


def within_question(resolved: Resolved) -> str | None:
    """What the within-article step compares candidates with: the question
    with its names as "it" (`unnamed_question`), except for an "And X?"
    follow-up rewritten into the previous question's frame: there it is the
    follow-up as typed ("And Bill Clinton?"), since its new name is all that
    tells its answer from the previous one, and with the names as "it" the
    rewrite ("How many Grammys did it win?") points back at that answer
    (docs/evaluation.md, "Follow-ups")."""
    if resolved.followup and resolved.asked != resolved.question:
        return resolved.question
    return unnamed_question(resolved.asked, resolved.followup)


def within_article_order(
    score: np.ndarray,
    docs: np.ndarray,
    cos: np.ndarray,
    read: np.ndarray | None = None,
    lead: np.ndarray | None = None,
    kind: np.ndarray | None = None,
    across: bool | None = None,
) -> np.ndarray | None:
    """A new order of candidates (`score`: their answer scores, best first;
    `docs`: each one's article; `cos`: each one's cosine to the question with
    its names as "it", see `unnamed_question`; `read`: the reader's logit of
    each, NaN where it did not read, see `read_slots`; `lead`: which are the
    first sentence of a long article, see `long_leads`; `kind`: which hold
    something new of the kind asked, see `qa.answer_kind.kind_flags`) in which the best SUBJECT_DEPTH that share
    the best one's article (all of them with ACROSS_ARTICLES and the reader's logits, the best one's article
    SAME_ARTICLE_BONUS ahead, unless `across` is False: `rerank_slots`) change places among themselves by score,
    cosine and reader, the others keeping theirs; None: the order stands.
    A function of arrays, so the SQuAD suite's product metric applies it as `ask` does."""
    n = min(len(score), SUBJECT_DEPTH)
    if n < 2 or SUBJECT_WEIGHT <= 0:
        return None
    across = reads_across() if across is None else across
    slots = rerank_slots(docs, n, across and read is not None and not np.isnan(read[:n]).all())
    if len(slots) < 2:
        return None
    key = np.log(np.maximum(score[slots], 1e-6)) + SUBJECT_WEIGHT * cos[slots]
    if lead is not None:
        key = key - LEAD_PENALTY * lead[slots]
    if kind is not None:
        key = key + KIND_BONUS * kind[slots]
    if read is not None and not np.isnan(read[slots]).all():
        r = read[slots]
        # the ones it did not read rank as though read as badly as the worst one it did
        key = key + READ_WEIGHT * np.where(np.isnan(r), np.nanmin(r), r)
        key = key + SAME_ARTICLE_BONUS * (docs[slots] == docs[0])
    mine = slots[np.argsort(-key, kind="stable")]
    if (mine == slots).all():
        return None
    order = np.arange(len(score))
    order[slots] = mine
    return order


def reads_across(followup: bool = False) -> bool:
    """Whether the reader's step covers every article's candidates:
    ACROSS_ARTICLES, for a question that stands on its own.  A follow-up is
    read as typed ("What happened next?"), without the story that tells its
    article from the others (on CANARD's dev half, reading its candidates
    across articles cost 0.055 answer@5)."""
    return ACROSS_ARTICLES and not followup


def rerank_slots(docs: np.ndarray, n: int, across: bool) -> np.ndarray:
    """Which of the first `n` candidates (`docs`: each one's article) the
    step above re-ranks: `across` (the reader's logits at hand and
    `reads_across`), all of them; else those of the best one's article (the
    cosine to the unnamed question alone cannot tell articles apart)."""
    return np.arange(n) if across else np.flatnonzero(docs[:n] == docs[0])


def in_long_articles(doc_map: DocMap, ids: np.ndarray) -> np.ndarray:
    """1.0 where the sentence's first article has at least LEAD_MIN_SENTENCES sentences, else 0.0."""
    docs = doc_map.sent_docs[doc_map.sent_doc_ptr[ids]]
    return (np.diff(doc_map.doc_sent_ptr)[docs] >= LEAD_MIN_SENTENCES).astype(np.float64)


def long_leads(doc_map: DocMap, ids: np.ndarray) -> np.ndarray:
    """1.0 where the sentence is the first of an article with at least
    LEAD_MIN_SENTENCES sentences (the `lead` of `within_article_order`), else 0.0."""
    return in_long_articles(doc_map, ids) * (doc_map.prev_sent[ids] < 0)


def kinds_asked(question: str, texts: list[str], long: np.ndarray) -> np.ndarray | None:
    """The `kind` of `within_article_order`: `qa.answer_kind.kind_flags`, in
    long articles only (`long`: `in_long_articles` of the same candidates).  A
    paragraph-sized text's fused ranking already weighs every sentence of it."""
    flags = kind_flags(question, texts)
    return None if flags is None else flags * long[: len(flags)]


def read_count(followup: bool = False) -> int:
    """How many candidates the reader reads: READ_MOST, READ_MOST_FOLLOWUP for a follow-up."""
    return READ_MOST_FOLLOWUP if followup else READ_MOST


def read_slots(
    score: np.ndarray, docs: np.ndarray, cos: np.ndarray, across: bool | None = None, most: int | None = None
) -> np.ndarray:
    """The candidates the reader reads (as in `within_article_order`): of the
    best SUBJECT_DEPTH (of the best one's article unless `across`, by default
    `reads_across()`), the `most` (by default READ_MOST, see `read_count`)
    that rank highest by score and cosine."""
    n = min(len(score), SUBJECT_DEPTH)
    same = rerank_slots(docs, n, reads_across() if across is None else across)
    key = np.log(np.maximum(score[same], 1e-6)) + SUBJECT_WEIGHT * cos[same]
    return same[np.argsort(-key, kind="stable")[: READ_MOST if most is None else most]]


def read_logits(
    reader: Reader,
    question: str,
    texts: list[str],
    score: np.ndarray,
    docs: np.ndarray,
    cos: np.ndarray,
    across: bool | None = None,
    most: int | None = None,
) -> np.ndarray:
    """The `read` of `within_article_order`: `reader`'s logit of each candidate
    it reads (`read_slots`), NaN for the rest.  The SQuAD suite calls it too."""
    slots = read_slots(score, docs, cos, across, most)
    out = np.full(len(score), np.nan, dtype=np.float32)
    out[slots] = reader.score(question, [texts[i] for i in slots])
    return out


def _says(sentence: str, question: str) -> bool:
    """Does `sentence` hold every one of `question`'s own content words (at
    least two, by stem)?"""
    own = {w.lower()[:5] for w in content_words(question)}
    return len(own) >= 2 and own <= {w.lower()[:5] for w in words(sentence)}


class Engine:
    """A loaded index plus the model that embeds questions."""

    def __init__(
        self,
        data: IndexData,
        encoder: Encoder,
        fusion: FusionModel | None = None,
        reader: "Reader | None" = None,
        rerank: "RerankModel | None" = None,
    ) -> None:
        self.data = data
        self.encoder = encoder
        self.fusion = fusion or load_model()
        # the reader (qa/models/reader ships) re-reads the best candidates
        # (`_within_article`); the second stage (qa.rerank, none ships) needs it too
        self.reader: Reader | None = reader
        self.rerank: RerankModel | None = rerank if reader is not None else None
        self.manifest = data.manifest
        self._db_lock = threading.Lock()
        self._filter_cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        # memo: the sentence a question asked on its own was answered with (`_previous_answer` of it alone), so
        # the follow-up that comes next does not rank it again
        self._shown: OrderedDict[str, str | None] = OrderedDict()
        self._cache_lock = threading.Lock()
        lex = data.manifest.lexical
        self.lexical = Lexical(
            data.bm25, lex.get("stemmer", "english"), lex.get("stopwords", True), float(lex.get("k1", 1.2))
        )
        self._typed: dict[str, dict[int, tuple[str, ...]]] = {}  # memo: typed_tokens per kind, per sentence seen
        self.lexical.index_titles([t for (t,) in data.db.execute("SELECT title FROM documents ORDER BY doc_idx")])
        # memo per sentence seen: (text, " its words " for phrase matching, word
        # count, its words); a candidate comes back question after question,
        # and SQLite plus tokenising cost more than the rest of its evidence
        self._facts: dict[int, tuple[str, str, int, tuple[str, ...]]] = {}
        # memo: stems of the sentences a typed question found a typed word
        # in, for type_proximity
        self._stems: dict[int, tuple[str, ...]] = {}
        self.docs = build_doc_map(data.db, data.n_sentences, data.sentence_vectors, doc_vectors=data.doc_vectors)
        self._asking = 0  # questions being answered now: the warm-up waits for them
        self._asking_lock = threading.Lock()
        self._closed = False
        self._warm_done = threading.Event()
        self._warm_thread: threading.Thread | None = None

    def warm(self) -> bool:
        """Start filling the per-sentence memos in a background thread (see
        `_warm_memos`); False when the index is larger than the memos hold.
        `Engine.load` calls it; `wait_warm` blocks until it is done."""
        if self._warm_thread is not None:
            return True
        if self.data.n_sentences > _TYPED_MEMO_MAX:
            return False
        self._warm_thread = threading.Thread(
            target=_warm_memos, args=(weakref.ref(self),), daemon=True, name="source-qa-warm"
        )
        self._warm_thread.start()
        return True

    def wait_warm(self, timeout: float | None = None) -> bool:
        """True once every sentence's memos are filled (benchmarks, tests)."""
        return self._warm_thread is not None and self._warm_done.wait(timeout)

    def close(self) -> None:
        """Stop the warm-up; the engine still answers (its memos fill as asked)."""
        self._closed = True

    def _warm_facts(self, ids: np.ndarray) -> None:
        facts = self._sentence_facts(ids)
        for kind in TYPES:
            memo = self._typed.setdefault(kind, {})
            for i, f in zip(ids.tolist(), facts):
                if i not in memo:
                    memo[i] = _typed_words(f[0], kind)
        smemo = self._stems
        for i, f in zip(ids.tolist(), facts):
            if i not in smemo:
                smemo[i] = self._stems_of(f[3])

    # -- loading -----------------------------------------------------------
    @classmethod
    def load(
        cls,
        index_dir: str | Path = "index",
        model: str | None = None,
        fusion: FusionModel | None = None,
        warm: bool = True,
        store: str | None = None,
        reader: bool = True,
    ) -> "Engine":
        """`fusion` replaces the fitted weights (the evaluation gathers
        features to fit new ones, which the old weights may not fit).
        `warm=False` skips the background warm-up of the per-sentence memos
        (a one-question command would only share its CPU with it).
        `store`: the manifest's vector store reached at another address
        (qa.vector_store).  The learned reader in qa/models/reader (trained
        here by `python -m qa.reader_train`; it ships) re-reads the
        best candidates, and a fitted second stage
        (qa/rerank_weights.json; none ships) re-reads the fused ranking;
        `reader=False` leaves both out."""
        import faiss

        # one question is one small search: OpenMP threads only add wake-up
        # latency (docs/performance.md) and steal the core another user's
        # question could run on
        faiss.omp_set_num_threads(1)
        data = open_index(index_dir, store=store)
        if model is not None and resolve_model(model)[0] != data.manifest.model:
            raise IndexLoadError(
                f"{index_dir} was built with model {data.manifest.model!r}, not {model!r}: "
                f"rebuild it with: python -m index_build --full --model {model}"
            )
        try:
            encoder = load_encoder(data.manifest.model, precision=QUERY_PRECISION)
        except ModelUnavailableError as e:
            raise IndexLoadError(
                f"{Path(index_dir) / 'manifest.json'} says the index was built with model {data.manifest.model!r}, "
                f"which is not available here ({e}): install that model, or rebuild with "
                f"python -m index_build --full"
            ) from e
        if encoder.dim != data.manifest.dimension:
            raise IndexLoadError(
                f"model {data.manifest.model!r} makes {encoder.dim}-d vectors but {index_dir} holds "
                f"{data.manifest.dimension}-d ones: rebuild it with: python -m index_build --full"
            )
        rd, rr = None, None
        if reader and fusion is None:
            from qa import reader as reader_mod
            from qa.rerank import load_model as load_rerank

            if reader_mod.available():
                rd = reader_mod.load_reader()
                rr = load_rerank()
        engine = cls(data, encoder, fusion, rd, rr)
        if warm:
            engine.warm()
        return engine

    def sql(self, query: str, params: tuple | list = ()) -> list[tuple]:
        """Rows of a read-only query on this index's metadata.

        Every thread shares the connection opened at load time (under a lock;
        lookups take microseconds).  Never reconnect by path: after a rebuild
        swaps the directory, the path holds the *new* index, whose sentence
        ids would not match this engine's vectors.
        """
        with self._db_lock:
            return self.data.db.execute(query, params).fetchall()

    # -- embedding -----------------------------------------------------------
    def _embed(self, texts: list[str]) -> np.ndarray:
        out: list[np.ndarray | None] = []
        missing = []
        with self._cache_lock:
            for t in texts:
                v = self._cache.get(t)
                if v is not None:
                    self._cache.move_to_end(t)
                else:
                    missing.append(t)
                out.append(v)
        if missing:
            vecs = self.encoder.encode(missing)
            with self._cache_lock:
                for t, v in zip(missing, vecs):
                    self._cache[t] = v
                    if len(self._cache) > getattr(self, "_cache_limit", _EMBED_CACHE):
                        self._cache.popitem(last=False)
            fresh = dict(zip(missing, vecs))
            return np.stack([v if v is not None else fresh[t] for v, t in zip(out, texts)])
        return np.stack([v for v in out if v is not None])  # every text was cached

    def prime(self, texts: list[str], batch_size: int = 64) -> None:
        """Embed many questions in one batched pass and keep them cached
        (evaluation and benchmarks: the answers are the same, only faster)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        vecs: Any = self.encoder.encode(todo, batch_size=batch_size) if todo else []
        with self._cache_lock:
            self._cache_limit = max(getattr(self, "_cache_limit", _EMBED_CACHE), len(self._cache) + len(todo))
            for t, v in zip(todo, vecs):
                self._cache[t] = v

    def query_vector(self, resolved: Resolved) -> np.ndarray:
        vecs = self._embed(resolved.dense_texts)
        v = (np.asarray(resolved.dense_weights, dtype=np.float32)[:, None] * vecs).sum(axis=0)
        return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)

    # -- retrieval -----------------------------------------------------------
    def score_candidates(self, resolved: Resolved, qtype: str | None = None, allowed: np.ndarray | None = None):
        """(candidate ids, probabilities, features, vectors, texts), best first.

        `allowed` (bool per sentence) hides part of the corpus: the evaluation
        uses it to ask questions whose answer has been taken away.
        """
        n = self.data.n_sentences
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0), np.float32), []
        # The lexical side needs no query vector: on a large index it runs in
        # another thread while the question is embedded (torch and numpy
        # release the GIL).  (On a small flat index that is no faster: torch's
        # own threads already use the cores.)
        large = self.data.sentence_index.kind != FLAT
        lexical = _side_pool().submit(self._lexical, resolved.lexical, allowed) if large else None
        qv = self.query_vector(resolved)[None, :]
        if allowed is not None and allowed.sum() <= max(4 * DENSE_CANDIDATES, n // 4):
            # a narrow filter: score its sentences exactly rather than hope
            # the unfiltered best hold enough of them
            keep = np.flatnonzero(allowed)
            sc = np.asarray(self.data.sentence_vectors[keep], dtype=np.float32) @ qv[0]
            best = np.argsort(-sc, kind="stable")[:DENSE_CANDIDATES]
            d_ids = keep[best][None, :]
        else:
            widen = 1 if allowed is None else 4
            _, d_ids = self.data.sentence_index.search(qv, min(DENSE_CANDIDATES * widen, n))
        qterms, bm, bm_best, b_ids = (
            lexical.result() if lexical is not None else self._lexical(resolved.lexical, allowed)
        )
        # the sentences beside the best dense matches are candidates too: "It
        # lasted 45 minutes" follows the sentence that names the call
        dense_ids = d_ids[0][d_ids[0] >= 0]
        top = (dense_ids if allowed is None else dense_ids[allowed[dense_ids]])[:NEIGHBOURS_OF_TOP]
        nbrs = np.concatenate([self.docs.prev_sent[top], self.docs.next_sent[top]])
        beside = nbrs[nbrs >= 0]
        cand = np.unique(np.concatenate([dense_ids, b_ids, beside]).astype(np.int64))
        if allowed is not None:
            cand = cand[allowed[cand]]
        vecs = np.asarray(self.data.sentence_vectors[cand])
        dense = vecs @ qv[0]
        # best passage around each candidate, best article holding it
        pos, pas = self.docs.passages_of(cand)
        passage = max_per(pos, np.asarray(self.data.passage_vectors[pas]) @ qv[0], len(cand), fill=-1.0)
        passage = np.where(passage > -1.0, passage, dense)
        pos, docs = self.docs.docs_of(cand)
        doc_dense = max_per(pos, self.docs.doc_vectors[docs] @ qv[0], len(cand), fill=-1.0)
        cov = self.lexical.coverage(qterms, cand, self.docs)
        facts = self._sentence_facts(cand)
        texts = [f[0] for f in facts]
        phrase = phrase_share(resolved.lexical, [f[1] for f in facts])
        typed, qtype, near = self._typed_match(cand, facts, resolved, qterms.terms, qtype)
        X = features(
            Evidence(
                dense,
                bm[cand],
                bm_best,
                passage,
                cov["sent"],
                cov["ctx"],
                cov["doc"],
                doc_dense,
                cov["title"],
                cov["doc_sat"],
                phrase,
                self.docs.sent_docs[self.docs.sent_doc_ptr[cand]],
                np.array([f[2] for f in facts]),
                typed,
                qtype,
                near,
            )
        )
        prob = self.fusion.score(X)
        order = np.argsort(-prob, kind="stable")
        return cand[order], prob[order], X[order], vecs[order], [texts[i] for i in order]

    def _lexical(self, text: str, allowed: np.ndarray | None):
        """(query terms, BM25 of every sentence, the best score possible, the
        LEXICAL_CANDIDATES best-scoring sentences with a score above 0)."""
        qterms = self.lexical.terms(text)
        bm, bm_best = self.lexical.scores(qterms)
        if allowed is not None:
            bm = np.where(allowed, bm, 0.0).astype(np.float32)
        hit = np.flatnonzero(bm > 0)  # a partition of these only, not of every sentence
        nb = LEXICAL_CANDIDATES
        b_ids = hit[np.argpartition(-bm[hit], nb - 1)[:nb]] if len(hit) > nb else hit
        return qterms, bm, bm_best, b_ids

    def _typed_match(
        self, ids: np.ndarray, facts: list[tuple], resolved: Resolved, query_stems: list[str], qtype: str | None
    ) -> tuple[np.ndarray, str, np.ndarray | None]:
        """(type_match per candidate, the wanted type, type_proximity per
        candidate) for the question."""
        qtype = qtype or question_type(resolved.type_text)
        if qtype == "any":
            return np.ones(len(ids)), qtype, None
        memo = self._typed.setdefault(qtype, {})
        if len(memo) > _TYPED_MEMO_MAX:  # a long-running server at 1M sentences must not grow without bound
            memo.clear()
        toks = []
        for i, f in zip(ids.tolist(), facts):
            tt = memo.get(i)
            if tt is None:  # benign race: every thread writes the same value
                tt = memo[i] = _typed_words(f[0], qtype)
            toks.append(tt)
        asked_text = f"{resolved.type_text} {resolved.lexical}"
        asked = set(words(asked_text))
        stems = set(query_stems)
        near = np.zeros(len(ids))
        smemo = self._stems
        if len(smemo) > _TYPED_MEMO_MAX:
            smemo.clear()
        for n, (i, f, tt) in enumerate(zip(ids.tolist(), facts, toks)):
            if tt and not asked.issuperset(tt):
                st = smemo.get(i)
                if st is None:
                    st = smemo[i] = self._stems_of(f[3])
                near[n] = type_proximity(f[3], st, tt, asked, stems)
        return type_match(toks, asked_text), qtype, near

    def _stems_of(self, ws: tuple[str, ...]) -> tuple[str, ...]:
        """A stems memo value: the stems of a sentence's words, side by side."""
        return tuple(self.lexical.stem_words(list(ws)))

    def _sentence_facts(self, ids: np.ndarray) -> list[tuple[str, str, int, tuple[str, ...]]]:
        """(text, " words " for phrase matching, word count, the words) of
        each sentence, from the memo or one SQLite query for the ones not
        seen yet."""
        memo = self._facts
        out = [memo.get(i) for i in ids.tolist()]
        missing = [int(i) for i, f in zip(ids.tolist(), out) if f is None]
        if missing:
            if len(memo) > _TYPED_MEMO_MAX:  # bounded, as the typed-words memo
                memo.clear()
            fresh = {}
            for i, t in self.sql(
                f"SELECT sent_idx, text FROM sentences WHERE sent_idx IN ({','.join('?' * len(missing))})", missing
            ):
                ws = tuple(words(t))
                fresh[i] = (t, f" {' '.join(ws)} ", len(t.split()), ws)
            memo.update(fresh)  # benign race: every thread writes the same values
            return [f if f is not None else fresh[i] for i, f in zip(ids.tolist(), out)]
        return [f for f in out if f is not None]  # every sentence was in the memo

    # -- answers -----------------------------------------------------------
    def ask(
        self,
        question: str,
        history=None,
        k: int = 5,
        since: str | None = None,
        until: str | None = None,
        outlets: list[str] | None = None,
    ) -> Result:
        """Best-ranked source sentences for `question`, reading it in the light
        of `history` (earlier user questions, or Gradio messages).

        `since` / `until` (ISO dates, inclusive) and `outlets` search only the
        articles published then, by those outlets: the filter applies inside
        the search, so the best matching sentences of those articles come
        back, not what is left of the unfiltered best."""
        with self._asking_lock:
            self._asking += 1
        try:
            return self._ask(question, history, k, qmod.check_filters(since, until, outlets))
        finally:
            with self._asking_lock:
                self._asking -= 1

    def _ask(self, question: str, history, k: int, filters: "qmod.Filters | None" = None) -> Result:
        q = qmod.clean_question(question)
        k = qmod.check_k(k)
        docs_ok, allowed = self._filter_masks(filters) if filters else (None, None)
        resolved = self.resolve(q, qmod.user_turns(history))
        unnamed = within_question(resolved)
        if unnamed is not None:  # encoded beside the question, in one batch (`_within_article` reads it)
            self._embed([*resolved.dense_texts, unnamed])
        ids, score, vecs, texts = self._scored(resolved, allowed)
        order = self._within_article(unnamed, resolved.asked, ids, score, vecs, texts, resolved.followup)
        if order is not None:  # the scores stay in rank order, as below
            ids, vecs, texts = ids[order], vecs[order], [texts[i] for i in order]
        order = _agree_years(q, texts)
        if order is not None:  # the scores stay in rank order, as below
            ids, vecs, texts = ids[order], vecs[order], [texts[i] for i in order]
        if filters is None and q == question and not resolved.followup:
            # what `_previous_answer([question])` would compute: the same ranking, before anything below
            self._remember_shown(q, texts[0] if len(score) else None)
        if (
            DEMOTE_PREVIOUS
            and resolved.previous_answer
            and len(texts) > 1
            and texts[0] == resolved.previous_answer
            and not _says(resolved.previous_answer, q)
        ):
            # a follow-up asks for something new: the sentence the user was
            # just shown is kept, second (unless it holds the new question's
            # own words: "1,500 prisoners, including 500 convicted of murder"
            # answers "How many of them were convicted of murder?" too)
            order = np.r_[1, 0, np.arange(2, len(texts))]
            ids, vecs, texts = ids[order], vecs[order], [texts[i] for i in order]
        chosen = mmr(score, vecs, k, self.fusion.mmr_lambda)
        threshold = self.threshold
        found = bool(len(score) and score[0] >= threshold)
        slots = [float(score[i]) for i in chosen]  # the scores stay in rank order
        if found and _LATEST.search(q):
            chosen = self._newest_first(chosen, ids, score, vecs)
        answers = self._answers(
            [(int(ids[i]), texts[i], sc, bool(sc < threshold)) for i, sc in zip(chosen, slots)], docs_ok
        )
        return Result(
            question=q,
            query=resolved.query,
            found=found,
            answers=answers,
            followup=resolved.followup,
            threshold=threshold,
        )

    def _newest_first(self, chosen: list[int], ids: np.ndarray, score: np.ndarray, vecs: np.ndarray) -> list[int]:
        """`chosen` with the reports of the same statement as the best answer
        (sentence cosine >= SAME_STATEMENT: "the toll rose to 12" / "... to
        31") in the places they hold, newest article first."""
        top = vecs[chosen[0]]
        floor = SAME_STATEMENT_SCORE * float(score[chosen[0]])
        same = [i for i in chosen if float(vecs[i] @ top) >= SAME_STATEMENT and float(score[i]) >= floor]
        if len(same) < 2:
            return chosen
        sids = [int(ids[i]) for i in same]
        dates = dict(
            self.sql(
                "SELECT ds.sent_idx, max(d.published) FROM doc_sentences ds JOIN documents d "
                f"USING(doc_idx) WHERE ds.sent_idx IN ({','.join('?' * len(sids))}) GROUP BY ds.sent_idx",
                sids,
            )
        )
        newest = sorted(same, key=lambda i: dates.get(int(ids[i])) or "", reverse=True)  # undated last
        it = iter(newest)
        return [next(it) if i in same else i for i in chosen]

    def _filter_masks(self, filters: "qmod.Filters") -> tuple[np.ndarray, np.ndarray]:
        """(articles kept, sentences kept) as boolean masks; a sentence is kept
        when one of the articles carrying it is.  ValueError when the filter
        keeps no article, saying what the index holds."""
        key = (filters.since, filters.until, tuple(o.casefold() for o in filters.outlets))
        got = self._filter_cache.get(key)
        if got is not None:
            return got
        where, params = [], []
        if filters.since:
            where.append("published >= ?")
            params.append(filters.since)
        if filters.until:
            where.append("published <= ?")
            params.append(filters.until)
        if filters.outlets:
            where.append(f"lower(outlet) IN ({','.join('?' * len(filters.outlets))})")
            params += [o.casefold() for o in filters.outlets]
        rows = self.sql(f"SELECT doc_idx FROM documents WHERE {' AND '.join(where)}", params)
        if not rows:
            ((lo, hi, dated),) = self.sql("SELECT min(published), max(published), count(published) FROM documents")
            outlets = [
                o
                for (o,) in self.sql(
                    "SELECT DISTINCT outlet FROM documents WHERE outlet IS NOT NULL ORDER BY outlet LIMIT 8"
                )
            ]
            held = (f"{dated} dated articles, {lo} to {hi}" if dated else "no dated articles") + (
                f"; outlets: {', '.join(outlets)}" if outlets else "; no outlet names"
            )
            raise ValueError(
                f"no article matches the filter ({filters.describe()}): the index holds {held}; "
                "widen the dates or check the outlet's name"
            )
        docs_ok = np.zeros(self.docs.n_docs, dtype=bool)
        docs_ok[[r[0] for r in rows]] = True
        hit = docs_ok[self.docs.sent_docs].astype(np.int32)
        ptr = self.docs.sent_doc_ptr
        per = np.add.reduceat(hit, ptr[:-1]) if len(hit) else np.zeros(0, np.int32)
        allowed = (per > 0) & (np.diff(ptr) > 0)
        if len(self._filter_cache) > 32:
            self._filter_cache.clear()
        self._filter_cache[key] = (docs_ok, allowed)
        return docs_ok, allowed

    def resolve(self, question: str, turns: list[str]) -> Resolved:
        """`question` read in the light of the earlier user turns (qa.followup),
        with the sentence this engine answered the last one with."""
        resolved = resolve(question, turns)
        q = question
        if resolved.followup and content_words(q) and self.lexical.known_share(q) == 0.0 and len(content_words(q)) >= 2:
            # words the articles never use are not a follow-up, they are noise
            return resolve(q, [])
        if resolved.followup:
            answers: list[str | None] = [None] * len(turns)
            answers[-1] = self._previous_answer(turns)
            return resolve(q, turns, answers)
        return resolved

    def _previous_answer(self, turns: list[str]) -> str | None:
        """The sentence this engine answered the last turn with: what "it" and
        "them" in a follow-up most often point at.  Asked again rather than
        read from the chat, so a list of plain questions works the same as
        Gradio messages (and costs one cached embedding).  Taken even when it
        was only a closest match: the user saw it all the same
        (docs/evaluation.md, follow-up memory)."""
        prev = resolve(turns[-1], turns[:-1])
        if not prev.followup:  # ranked as it would be asked alone: perhaps it just was (`_ask`)
            with self._cache_lock:
                if turns[-1] in self._shown:
                    self._shown.move_to_end(turns[-1])
                    return self._shown[turns[-1]]
        ids, score, vecs, texts = self._scored(prev)
        order = self._within_article(within_question(prev), prev.asked, ids, score, vecs, texts, prev.followup)
        if order is not None:
            texts = [texts[i] for i in order]
        order = _agree_years(turns[-1], texts)
        if order is not None:
            texts = [texts[i] for i in order]
        shown = texts[0] if len(score) else None
        if not prev.followup:
            self._remember_shown(turns[-1], shown)
        return shown

    def _remember_shown(self, question: str, answer: str | None) -> None:
        with self._cache_lock:
            self._shown[question] = answer
            self._shown.move_to_end(question)
            if len(self._shown) > _EMBED_CACHE:
                self._shown.popitem(last=False)

    def _within_article(
        self,
        unnamed: str | None,
        question: str,
        ids: np.ndarray,
        score: np.ndarray,
        vecs: np.ndarray,
        texts: list[str],
        followup: bool = False,
    ) -> np.ndarray | None:
        """`within_article_order` of these candidates for the question read as
        `unnamed` (`unnamed_question`), the reader reading `question` with the
        best of them (`read_slots`; every article's unless it is a `followup`:
        `reads_across`; more of them for a follow-up: `read_count`); None
        when there is no unnamed question, or the order stands."""
        n = min(len(ids), SUBJECT_DEPTH)
        if n < 2 or unnamed is None:
            return None
        docs = self.docs.sent_docs[self.docs.sent_doc_ptr[ids[:n]]]
        across = self.reader is not None and reads_across(followup)
        if len(rerank_slots(docs, n, across)) < 2:
            return None
        v = self._embed([unnamed])[0]
        cos = np.asarray(vecs[:n], dtype=np.float32) @ (v / (np.linalg.norm(v) or 1.0))
        read = None
        if self.reader is not None:
            read = read_logits(self.reader, question, texts, score[:n], docs, cos, across, read_count(followup))
        kind = kinds_asked(question, texts[:n], in_long_articles(self.docs, ids[:n]))
        order = within_article_order(score[:n], docs, cos, read, long_leads(self.docs, ids[:n]), kind, across)
        return None if order is None else np.r_[order, np.arange(n, len(ids))]

    @property
    def threshold(self) -> float:
        """The score an answer needs (the second stage's when it runs)."""
        return self.rerank.threshold if self.rerank is not None else self.fusion.threshold

    def _scored(
        self, resolved: Resolved, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """(candidate ids, answer scores, vectors, texts), best first: the
        fused ranking, its best few re-read by the reader when there is one,
        scored so the best answer's score is P(answerable)."""
        qtype = question_type(resolved.type_text)
        ids, prob, X, vecs, texts = self.score_candidates(resolved, qtype, allowed)
        if self.rerank is None or not len(prob):
            return ids, self.fusion.answer_scores(prob, X, qtype), vecs, texts
        n = min(self.rerank.n, len(prob))
        assert self.reader is not None  # set together with self.rerank
        read = self.reader.score(resolved.query, texts[:n])
        lead = (self.docs.prev_sent[ids[:n]] < 0).astype(np.float64)
        order, p2 = self.rerank.rerank(prob, read, lead)
        scores = self.rerank.answer_scores(p2, X[order], qtype, read[order[:n]])
        return ids[order], scores, vecs[order], [texts[i] for i in order]

    def _answers(self, picks: list[tuple[int, str, float, bool]], docs_ok: np.ndarray | None = None) -> list[Answer]:
        """Answers for (sentence id, text, score, weak) picks, with every source
        and the context of the first one: two SQLite queries for all of them."""
        if not picks:
            return []
        ids = [p[0] for p in picks]
        rows = self.sql(
            "SELECT ds.sent_idx, d.doc_id, d.title, d.path, ds.sent_no, ds.start, ds.end, "
            "substr(d.text, ds.start + 1, ds.end - ds.start), ds.doc_idx, d.published, d.outlet, d.author, d.url "
            f"FROM doc_sentences ds JOIN documents d USING(doc_idx) WHERE ds.sent_idx IN ({','.join('?' * len(ids))}) "
            "ORDER BY ds.sent_idx, ds.doc_idx, ds.sent_no",
            ids,
        )
        occ: dict[int, list[tuple]] = {}
        for r in rows:
            if docs_ok is None or docs_ok[r[8]]:  # with a filter, only the articles it keeps are cited
                occ.setdefault(r[0], []).append(r)
        shown = {p[0]: p[1] for p in picks}
        for i, o in occ.items():
            # the quote is shown under the first source: one that words it
            # exactly so (a near-duplicate merge keeps the longest wording,
            # which need not be the first article's)
            o.sort(key=lambda r: r[7] != shown.get(i))
        first = {i: (o[0][8], o[0][4]) for i, o in occ.items()}
        around: dict[tuple[int, int], str] = {}
        if first:
            cond = " OR ".join(["(ds.doc_idx = ? AND ds.sent_no BETWEEN ? AND ?)"] * len(first))
            params = [x for d, n in first.values() for x in (d, n - 1, n + 1)]
            around = {
                (d, n): t
                for d, n, t in self.sql(
                    "SELECT ds.doc_idx, ds.sent_no, substr(d.text, ds.start + 1, ds.end - ds.start) FROM doc_sentences ds "
                    f"JOIN documents d USING(doc_idx) WHERE ds.sent_idx IS NOT NULL AND ({cond})",
                    params,
                )
            }
        out = []
        for sent_idx, text, score, weak in picks:
            o = occ.get(sent_idx, [])
            sources = [Source(r[1], r[2], r[3], r[4], r[5], r[6], r[7], *r[9:13]) for r in o]
            if o:
                d, n = first[sent_idx]
                context = Context(
                    o[0][1],
                    [around[(d, n - 1)]] if (d, n - 1) in around else [],
                    [around[(d, n + 1)]] if (d, n + 1) in around else [],
                )
            else:
                context = Context("", [], [])
            out.append(
                Answer(
                    text=text,
                    score=round(score, 4),
                    sources=sources,
                    context=context,
                    sentence_id=sent_idx,
                    weak=bool(weak),
                )
            )
        return out
