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

The canonical text of a group is its longest wording (earliest on ties):
every answer shown is still a verbatim quote of one source.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from rapidfuzz.distance import Levenshtein

from qa.textnorm import dedup_key, words

_BLOCK_WORDS = 4
_MAX_BLOCK = 200  # a key shared by more sentences is boilerplate; skip it


@dataclass(frozen=True)
class Occurrence:
    doc_idx: int
    sent_no: int


@dataclass
class UniqueSentence:
    text: str  # canonical wording
    occurrences: list[Occurrence] = field(default_factory=list)
    variants: int = 1  # distinct normalised wordings merged


@dataclass
class DedupResult:
    unique: list[UniqueSentence]
    # (doc_idx, sent_no) -> index into `unique`
    assignment: dict[tuple[int, int], int]
    exact_merged: int  # occurrences folded into an identical earlier sentence
    near_merged: int  # distinct wordings folded into a near-duplicate


def word_similarity(a: list[str], b: list[str]) -> float:
    """1 - (word-level edit distance / length of the longer sentence)."""
    if not a and not b:
        return 1.0
    return 1.0 - Levenshtein.distance(a, b) / max(len(a), len(b))


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


def near_duplicate_pairs(texts: list[str], threshold: float, min_words: int) -> list[tuple[int, int, float]]:
    """Pairs (i, j, similarity) of distinct texts that are near-duplicates."""
    toks = [words(t) for t in texts]
    blocks: dict[tuple, list[int]] = defaultdict(list)
    for i, w in enumerate(toks):
        if len(w) >= min_words:
            blocks[("head", *w[:_BLOCK_WORDS])].append(i)
            blocks[("tail", *w[-_BLOCK_WORDS:])].append(i)
    pairs: dict[tuple[int, int], float] = {}
    for members in blocks.values():
        if len(members) < 2 or len(members) > _MAX_BLOCK:
            continue
        for x in range(len(members)):
            i = members[x]
            for y in range(x + 1, len(members)):
                j = members[y]
                if (i, j) in pairs:
                    continue
                a, b = toks[i], toks[j]
                # cheap bound: the length difference alone is an edit distance
                if 1.0 - abs(len(a) - len(b)) / max(len(a), len(b)) < threshold:
                    continue
                sim = word_similarity(a, b)
                if sim >= threshold:
                    pairs[(i, j)] = sim
    return [(i, j, s) for (i, j), s in pairs.items()]


def deduplicate(
    sentences: list[tuple[int, int, str]], threshold: float = 0.8, min_words: int = 6
) -> DedupResult:
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

    # 2. near duplicates between the exact groups
    reps = [sentences[g[0]][2] for g in groups]
    uf = _UnionFind(len(groups))
    for i, j, _ in near_duplicate_pairs(reps, threshold, min_words) if threshold < 1.0 else []:
        uf.union(i, j)
    clusters: dict[int, list[int]] = defaultdict(list)
    for g in range(len(groups)):
        clusters[uf.find(g)].append(g)
    near_merged = len(groups) - len(clusters)

    # 3. one unique sentence per cluster, in order of first appearance
    unique: list[UniqueSentence] = []
    assignment: dict[tuple[int, int], int] = {}
    for root in sorted(clusters):
        members = clusters[root]
        canonical = max(members, key=lambda g: (len(reps[g]), -g))
        occ = sorted(
            (Occurrence(sentences[i][0], sentences[i][1]) for g in members for i in groups[g]),
            key=lambda o: (o.doc_idx, o.sent_no),
        )
        for o in occ:
            assignment[(o.doc_idx, o.sent_no)] = len(unique)
        unique.append(UniqueSentence(reps[canonical], occ, variants=len(members)))
    return DedupResult(unique, assignment, exact_merged, near_merged)
