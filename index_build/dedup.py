"""Sentences -> unique sentences.

News repeats itself: wire copy, re-published statements, whole duplicate
articles.  A user wants each fact once, with every source that carries it, so

1. sentences equal after normalisation (whitespace, quote style, case) become
   one unique sentence carrying all their occurrences;
2. near-duplicates -- the same sentence with a word or two changed ("said" vs
   "added") -- are merged too when their word-level similarity
   (1 - word edit distance / longer length) reaches a threshold measured by
   benchmarks/near_dup.py.  Candidates are found by blocking on the first and
   the last four words (a one- or two-word edit leaves one of them intact in
   practice), so this stays linear in the corpus size.

   A pair is never merged, whatever its similarity, when the edit changes a
   fact: a number (digits or words), a negation, or one name for another
   ("merger between MCI and Verizon" vs "... and Qwest").  Without this rule
   a looser threshold merged different facts; the threshold and the rule
   were chosen together on the BBC corpus (docs/performance.md, "Reading and
   dedup"; docs/evaluation.md, decision log).

The canonical text of a group is its longest wording (earliest on ties):
every answer shown is still a verbatim quote of one source.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
from rapidfuzz.distance import Levenshtein

from qa.textnorm import dedup_key, words

NUMBER_WORDS = frozenset(
    """zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
    sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred
    hundreds thousand thousands million millions billion billions trillion bn half quarter third
    first second fourth fifth sixth seventh eighth ninth tenth dozen dozens double treble triple
    twice once percent""".split()
)
NEGATIONS = frozenset(
    """not no never nor none nothing nobody neither without cannot t nt didn doesn don isn wasn
    weren aren hasn haven hadn couldn wouldn shouldn won mustn""".split()
)
PRONOUNS = frozenset("he she it they him her them his hers its their theirs we us our i me my".split())
HONORIFICS = frozenset("mr mrs ms miss dr sir lord lady prof capt".split())
_WORD = re.compile(r"\w+", re.UNICODE)
_BLOCK_WORDS = 4
_MAX_BLOCK = 200  # a key shared by more sentences is boilerplate; skip it


class Occurrence(NamedTuple):  # a tuple: a million of them are made in a big build
    doc_idx: int
    sent_no: int


@dataclass
class UniqueSentence:
    text: str  # canonical wording
    occurrences: list[Occurrence] = field(default_factory=list)
    variants: int = 1  # distinct normalised wordings merged


class Assignment(Mapping[tuple[int, int], int]):
    """(doc_idx, sent_no) -> index into `unique`, as a read-only mapping held
    in one small int32 array per document (-1: not an answer sentence): a
    dict of tuples would take many times the memory (docs/performance.md,
    "Dumps")."""

    def __init__(self, doc: np.ndarray, sent: np.ndarray, uid: np.ndarray) -> None:
        order = np.lexsort((sent, doc))
        doc, sent, uid = doc[order], sent[order], uid[order]
        bounds = np.flatnonzero(np.diff(doc)) + 1
        self._rows: dict[int, np.ndarray] = {}
        for lo, hi in zip(np.r_[0, bounds].tolist(), np.r_[bounds, len(doc)].tolist()) if len(doc) else ():
            row = np.full(int(sent[hi - 1]) + 1, -1, dtype=np.int32)
            row[sent[lo:hi]] = uid[lo:hi]
            self._rows[int(doc[lo])] = row
        self._n = len(doc)

    def __getitem__(self, key: tuple[int, int]) -> int:
        row = self._rows.get(key[0])
        if row is None or not 0 <= key[1] < len(row) or row[key[1]] < 0:
            raise KeyError(key)
        return int(row[key[1]])

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        row = self._rows.get(key[0])
        return row is not None and 0 <= key[1] < len(row) and bool(row[key[1]] >= 0)

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for d, row in self._rows.items():
            for n in np.flatnonzero(row >= 0).tolist():
                yield d, n


@dataclass
class DedupResult:
    unique: list[UniqueSentence]
    assignment: Assignment  # (doc_idx, sent_no) -> index into `unique`
    exact_merged: int  # occurrences folded into an identical earlier sentence
    near_merged: int  # distinct wordings folded into a near-duplicate


def word_similarity(a: list[str], b: list[str]) -> float:
    """1 - (word-level edit distance / length of the longer sentence)."""
    if not a and not b:
        return 1.0
    return 1.0 - Levenshtein.distance(a, b) / max(len(a), len(b))


def names(text: str) -> set[str]:
    """Lower-cased words that look like proper nouns: capitalised after the
    first word, or all capitals anywhere (IBM, UK); not Mr/Dr/..."""
    toks = _WORD.findall(unicodedata.normalize("NFKC", text))
    out = {t.casefold() for k, t in enumerate(toks) if (k > 0 and t[:1].isupper()) or (len(t) > 1 and t.isupper())}
    return out - HONORIFICS


def fact_changes(text_a: str, text_b: str, a: list[str], b: list[str]) -> set[str]:
    """What the word edit from a to b changes that makes them different facts:
    "digit", "numword", "negation", "name-swap", "name-pronoun" (empty set:
    only wording)."""
    return _fact_changes(text_a, text_b, a, b, lambda: names(text_a), lambda: names(text_b))


def _fact_changes(
    text_a: str,
    text_b: str,
    a: list[str],
    b: list[str],
    names_a: Callable[[], set[str]],
    names_b: Callable[[], set[str]],
) -> set[str]:
    """fact_changes, with the names of each text computed (or looked up) only
    when the edit both drops and brings in words."""
    ops = Levenshtein.editops(a, b)
    a_ch = [a[op.src_pos] for op in ops if op.tag in ("replace", "delete")]
    b_ch = [b[op.dest_pos] for op in ops if op.tag in ("replace", "insert")]
    kinds: set[str] = set()
    if any(any(c.isdigit() for c in w) for w in a_ch + b_ch):
        kinds.add("digit")
    if Counter(w for w in a if w in NUMBER_WORDS) != Counter(w for w in b if w in NUMBER_WORDS):
        kinds.add("numword")
    if sum(w in NEGATIONS for w in a) != sum(w in NEGATIONS for w in b):
        kinds.add("negation")
    # one wording drops a name and the other brings in a different one, or a
    # pronoun: "Mr Kilroy-Silk is due to" and "he is due to" name the same man
    # only inside their own articles, so each keeps its own wording; a name
    # moved or added is only rewording
    if not a_ch or not b_ch:  # only insertions or only deletions: nothing dropped *and* brought
        return kinds
    in_a, in_b = names_a(), names_b()
    dropped = {w for w in a_ch if w in in_a} - set(b)
    brought = {w for w in b_ch if w in in_b} - set(a)
    if dropped and brought:
        kinds.add("name-swap")
    elif (dropped and any(w in PRONOUNS for w in b_ch)) or (brought and any(w in PRONOUNS for w in a_ch)):
        kinds.add("name-pronoun")
    return kinds


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # earliest stays the root


def near_duplicate_pairs(
    texts: list[str],
    threshold: float,
    min_words: int,
    veto: bool = True,
    tokens: Callable[[int], list[str]] | None = None,
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, similarity), i < j, of distinct texts that are
    near-duplicates: similar enough and with no fact changed between them.
    `tokens(i)`: words(texts[i]), when the caller has a cheaper way to them.

    Memory stays linear and small at a million sentences: blocks are found
    by sorting two 64-bit key hashes per sentence (numpy) instead of a dict
    of word tuples, a sentence's words are made only while its block is
    judged (a list of every sentence's words held at once costs far more:
    docs/performance.md, build memory), and a pair sharing both its head and
    its tail is judged in the head block only, without a set of every pair
    seen."""
    import numpy as np

    words_of = tokens or (lambda i: words(texts[i]))
    name_memo: dict[int, set[str]] = {}

    def names_of(i: int) -> set[str]:
        got = name_memo.get(i)
        if got is None:
            got = name_memo[i] = names(texts[i])
        return got

    n = len(texts)
    head = np.zeros(n, dtype=np.int64)
    tail = np.zeros(n, dtype=np.int64)
    long_enough = np.zeros(n, dtype=bool)
    for i in range(n):
        w = words_of(i)
        if len(w) >= min_words:
            long_enough[i] = True
            head[i] = hash(tuple(w[:_BLOCK_WORDS]))
            tail[i] = hash(tuple(w[-_BLOCK_WORDS:]))
    ids = np.flatnonzero(long_enough)
    pairs: list[tuple[int, int, float]] = []
    judged_in_head = np.zeros(n, dtype=bool)  # its head block was small enough to judge
    for is_tail, keys in ((False, head), (True, tail)):
        order = ids[np.argsort(keys[ids], kind="stable")]  # stable: members stay in text order
        k = keys[order]
        cuts = np.flatnonzero(k[1:] != k[:-1]) + 1
        for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(order)].tolist()):
            if hi - lo < 2 or hi - lo > _MAX_BLOCK:
                continue
            if not is_tail:
                judged_in_head[order[lo:hi]] = True
            members = order[lo:hi].tolist()
            toks = [words_of(i) for i in members]
            for x in range(len(members)):
                i, a = members[x], toks[x]
                for y in range(x + 1, len(members)):
                    j, b = members[y], toks[y]
                    if is_tail and head[i] == head[j] and judged_in_head[i]:
                        continue  # judged in their shared head block already
                    # cheap bound: the length difference alone is an edit distance
                    if 1.0 - abs(len(a) - len(b)) / max(len(a), len(b)) < threshold:
                        continue
                    sim = word_similarity(a, b)
                    if sim >= threshold and not (
                        veto and _fact_changes(texts[i], texts[j], a, b, lambda: names_of(i), lambda: names_of(j))
                    ):
                        pairs.append((i, j, sim))
    return pairs


def _canonical(members: list[int], reps: list[str]) -> int:
    """The wording a merged sentence is shown in: the longest (earliest on ties)."""
    return max(members, key=lambda g: (len(reps[g]), -g)) if len(members) > 1 else members[0]


def _star(clusters: dict[int, list[int]], reps: list[str], threshold: float) -> dict[int, list[int]]:
    """Clusters in which every wording is a near-duplicate of the one shown.

    Pairs chain: "could face a sentence of 85 years" ~ "could face a jail
    sentence of 85 years" ~ "could face a jail sentence of up to 85 years",
    and the first and last are further apart than the threshold allows.  A
    member that is not close enough to its cluster's canonical wording (or
    changes a fact against it) leaves the cluster and stands alone."""
    out: dict[int, list[int]] = {}
    for root, members in clusters.items():
        if len(members) <= 2:
            out[root] = members
            continue
        c = _canonical(members, reps)
        wc = words(reps[c])
        kept = []
        for g in members:
            wg = words(reps[g])
            if g == c or (word_similarity(wc, wg) >= threshold and not fact_changes(reps[c], reps[g], wc, wg)):
                kept.append(g)
            else:
                out[g] = [g]
        out[min(kept)] = kept
    return dict(sorted(out.items()))


def deduplicate(sentences: Sequence[tuple[int, int, str]], threshold: float = 0.9, min_words: int = 6) -> DedupResult:
    """`sentences`: (doc_idx, sent_no, text) in build order."""
    # 1. exact (normalised) duplicates
    key_to_group: dict[str, int] = {}
    groups: list[list[int]] = []  # group -> indices into `sentences`
    for i, (_, _, text) in enumerate(sentences):
        k = dedup_key(text)
        g = key_to_group.get(k)
        if g is None:
            key_to_group[k] = len(groups)
            groups.append([i])
        else:
            groups[g].append(i)
    exact_merged = len(sentences) - len(groups)

    # 2. near duplicates between the exact groups (words(t) is the words of
    # dedup_key(t): taken from the keys computed above, not normalised again)
    reps = [sentences[g[0]][2] for g in groups]
    uf = _UnionFind(len(groups))
    if threshold < 1.0:
        keys = list(key_to_group)  # dicts keep insertion order = group order
        for i, j, _ in near_duplicate_pairs(reps, threshold, min_words, tokens=lambda g: _WORD.findall(keys[g])):
            uf.union(i, j)
    clusters: dict[int, list[int]] = defaultdict(list)
    for g in range(len(groups)):
        clusters[uf.find(g)].append(g)
    if threshold < 1.0:
        clusters = _star(clusters, reps, threshold)
    near_merged = len(groups) - len(clusters)

    # 3. one unique sentence per cluster, in order of first appearance
    unique: list[UniqueSentence] = []
    doc = np.empty(len(sentences), dtype=np.int64)
    sent = np.empty(len(sentences), dtype=np.int64)
    uid = np.empty(len(sentences), dtype=np.int64)
    for root in sorted(clusters):
        members = clusters[root]
        canonical = _canonical(members, reps)
        rows = [i for g in members for i in groups[g]]
        pos = [sentences[i][:2] for i in rows]
        doc[rows] = [d for d, _ in pos]
        sent[rows] = [n for _, n in pos]
        occ = sorted(Occurrence(d, n) for d, n in pos)
        uid[rows] = len(unique)
        unique.append(UniqueSentence(reps[canonical], occ, variants=len(members)))
    return DedupResult(unique, Assignment(doc, sent, uid), exact_merged, near_merged)


def match_known(texts: Sequence[str], known: Sequence[str], threshold: float = 0.9, min_words: int = 6) -> list[int]:
    """For each of `texts`, the `known` text it merges into, or -1: the same
    after normalisation, else its nearest near-duplicate by the rules of
    `near_duplicate_pairs` (same blocking, similarity and fact vetoes), ties
    to the earliest.  How rows appended to a dump join the unique sentences
    of an index already built (index_build.append) without deduplicating
    every sentence again; `known` are the shown wordings, so a match is one
    a full build's star rule (`_star`) would keep in the same group."""
    exact: dict[str, int] = {}
    for i, t in enumerate(known):
        exact.setdefault(dedup_key(t), i)
    out = [exact.get(dedup_key(t), -1) for t in texts]
    todo = [k for k, m in enumerate(out) if m < 0]
    if threshold >= 1.0 or not todo:
        return out
    blocks: dict[tuple[bool, int], list[int]] = defaultdict(list)
    known_words: dict[int, list[str]] = {}
    for i, t in enumerate(known):
        w = words(t)
        if len(w) >= min_words:
            blocks[False, hash(tuple(w[:_BLOCK_WORDS]))].append(i)
            blocks[True, hash(tuple(w[-_BLOCK_WORDS:]))].append(i)
    for k in todo:
        a = words(texts[k])
        if len(a) < min_words:
            continue
        candidates: set[int] = set()
        for key in ((False, hash(tuple(a[:_BLOCK_WORDS]))), (True, hash(tuple(a[-_BLOCK_WORDS:])))):
            members = blocks.get(key, [])
            if len(members) < _MAX_BLOCK:  # a block that would exceed the cap is boilerplate, as in a full build
                candidates.update(members)
        best, best_sim = -1, threshold
        for i in sorted(candidates):
            b = known_words.get(i)
            if b is None:
                b = known_words[i] = words(known[i])
            if 1.0 - abs(len(a) - len(b)) / max(len(a), len(b)) < best_sim:
                continue
            sim = word_similarity(a, b)
            if sim >= best_sim and (sim > best_sim or best < 0) and not fact_changes(texts[k], known[i], a, b):
                best, best_sim = i, sim
        out[k] = best
    return out
