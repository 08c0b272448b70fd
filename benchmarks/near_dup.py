"""Measure the near-duplicate threshold of index_build.dedup on real news.

    /work/venv/bin/python benchmarks/near_dup.py [--bbc DIR] [--seeds DIR]
                                                 [--examples 8] [--seed 13]

Reads the seed articles and the BBC News corpus (2,225 articles, 2004-2005)
exactly as the builder does (`documents.discover` + `documents.load`, files
that cannot be read are skipped), keeps the answer sentences, folds exact
duplicates with `qa.textnorm.dedup_key` (the builder's step 1) and asks
`near_duplicate_pairs` for every candidate pair down to similarity 0.5.

For each similarity bucket it prints how many pairs there are, what kind of
words the edit changes, and random example pairs (seeded), so that a human can
see where "the same sentence with a word or two changed" ends and "a different
statement" begins.  The kinds of edit, by priority:

  digit       a changed word contains a digit ("rose 5%" vs "rose 7%", "1980s"
              vs "1990s", "PS2" vs "GameCube"): a different fact;
  numword     the spelled-out numbers differ ("eighth" vs "ninth");
  negation    the count of not / no / never / n't differs: the opposite claim;
  name-swap   one wording drops a proper noun and the other brings in a
              different one ("Verizon" vs "Qwest", "London" vs "England", a
              changed team line-up).  A proper noun is a word capitalised after
              the first word or written in capitals (IBM), minus Mr/Dr/Lord...;
              a name moved, added, dropped or replaced by "he" does not count;
  same-words  the words are identical, only punctuation/hyphens/quotes differ;
  wording     anything else ("said" vs "added", "the" vs "a", a clause cut).

The first four are heuristics for "a different fact" and make up the merge
rule "no-fact-change"; "wording" pairs still have to be read ("Doctors" vs
"Patients" is wording to the heuristics) -- that is what the examples and the
audit listings around the recommended threshold are for.

Then it prints merge counts (what the builder's `deduplicate` would fold, with
union-find chaining) per threshold and rule, checked against `deduplicate`
itself, full listings of what the recommendation merges just above the
threshold, what its rule keeps apart, and what the rule would allow just below
the threshold, and finally the recommendation.  About 5 s in all.

Caveat: candidates come from blocking on the first/last four words, as in the
builder, so below ~0.8 the counts are a lower bound of all similar pairs (two
sentences differing near both ends are never compared).  That does not matter
for the threshold: only the pairs the builder can see can be merged.
"""

from __future__ import annotations

import argparse
import difflib
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rapidfuzz.distance import Levenshtein  # noqa: E402

from index_build.dedup import deduplicate, fact_changes, near_duplicate_pairs  # noqa: E402
from index_build.documents import discover, load  # noqa: E402
from index_build.readers import Unreadable  # noqa: E402
from qa.errors import BuildError  # noqa: E402
from qa.textnorm import dedup_key, words  # noqa: E402

DEFAULT_BBC = Path("/work/shared/bench/bbc")
DEFAULT_SEEDS = REPO / "seeds"
MIN_WORDS = 6  # BuildConfig.near_dup_min_words
FLOOR = 0.5  # lowest similarity examined
BUCKETS = [(0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0)]
FINE = [round(0.70 + 0.025 * k, 3) for k in range(12)]  # 0.700 ... 0.975
THRESHOLDS = [0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
# kinds of edit, by priority (a pair is listed under the first that applies)
KINDS = ("digit", "numword", "negation", "name-swap", "same-words", "wording")
FACT_KINDS = frozenset({"digit", "numword", "negation", "name-swap"})
# merge rules compared: which pairs may be merged at all (on top of the threshold)
RULES = {
    "none": lambda p: True,
    "no-digit": lambda p: not p.has_digit,
    "no-fact-change": lambda p: not p.changes_fact,
}
# columns of the merge table: (label, rule, min words of the shorter sentence)
COLUMNS = [
    ("none", "none", 6),
    ("no-digit", "no-digit", 6),
    ("no-fact-change", "no-fact-change", 6),
    ("no-fact-change/10", "no-fact-change", 10),
]
# /10: a pair whose shorter sentence has fewer than 10 words merges only if their words are identical

_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})
_WORD = re.compile(r"\w+", re.UNICODE)


# --------------------------------------------------------------------------- corpus


def answer_sentences(sources: list[Path]) -> tuple[list[tuple[int, int, str]], int, list[tuple[Path, str]]]:
    """The builder's `answer_sents` for these sources: (doc_idx, sent_no, text)
    in build order, plus the number of documents and the skipped files."""
    found, skipped = discover(sources)
    sents: list[tuple[int, int, str]] = []
    n_docs = 0
    for src in found:
        try:
            doc = load(src)
        except Unreadable as e:
            skipped.append((src.path, str(e)))
            continue
        for s_no, s in enumerate(doc.sentences):
            if s.is_answer:
                sents.append((n_docs, s_no, doc.sentence_text(s_no)))
        n_docs += 1
    return sents, n_docs, skipped


def exact_unique(sents: list[tuple[int, int, str]]) -> list[str]:
    """One text per dedup_key, first occurrence first (the builder's `reps`)."""
    seen: dict[str, str] = {}
    for _, _, text in sents:
        seen.setdefault(dedup_key(text), text)
    return list(seen.values())


# --------------------------------------------------------------------------- pairs


class Pair:
    __slots__ = ("i", "j", "sim", "a_changed", "b_changed", "kinds", "kind", "shorter")

    def __init__(
        self, i: int, j: int, sim: float, a_changed: list[str], b_changed: list[str], kinds: set[str], shorter: int
    ):
        self.i, self.j, self.sim, self.shorter = i, j, sim, shorter
        self.a_changed, self.b_changed = a_changed, b_changed
        self.kinds = kinds
        self.kind = next((k for k in KINDS if k in kinds), "wording")

    @property
    def has_digit(self) -> bool:
        return "digit" in self.kinds

    @property
    def changes_fact(self) -> bool:
        return bool(self.kinds & FACT_KINDS)

    @property
    def digit_only(self) -> bool:
        changed = self.a_changed + self.b_changed
        return bool(changed) and all(any(c.isdigit() for c in w) for w in changed)


def classify(texts: list[str], toks: list[list[str]], i: int, j: int, sim: float) -> Pair:
    """What the word-level edit from texts[i] to texts[j] changes."""
    a, b = toks[i], toks[j]
    ops = Levenshtein.editops(a, b)
    a_ch = [a[op.src_pos] for op in ops if op.tag in ("replace", "delete")]
    b_ch = [b[op.dest_pos] for op in ops if op.tag in ("replace", "insert")]
    kinds = fact_changes(texts[i], texts[j], a, b)  # the builder's own veto
    if not ops:
        kinds.add("same-words")  # only punctuation, hyphens or case differ
    return Pair(i, j, sim, a_ch, b_ch, kinds, min(len(a), len(b)))


def bucket_of(sim: float) -> int:
    return min(int((sim - FLOOR) * 10 + 1e-9), len(BUCKETS) - 1)


def show_diff(a: list[str], b: list[str]) -> str:
    """Compact word diff: [old -> new] for each changed run."""
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        old, new = " ".join(a[i1:i2]) or "∅", " ".join(b[j1:j2]) or "∅"
        out.append(f"[{old} -> {new}]")
    return " ".join(out)


# --------------------------------------------------------------------------- merges


def merge_count(n: int, pairs: list[Pair], threshold: float, allowed) -> tuple[int, int]:
    """(near_merged, largest cluster) as `deduplicate` would compute them if it
    merged only the pairs `allowed` lets through."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in pairs:
        if p.sim >= threshold and allowed(p):
            ra, rb = find(p.i), find(p.j)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    sizes = Counter(find(x) for x in range(n))
    return n - len(sizes), max(sizes.values(), default=0)


# --------------------------------------------------------------------------- report


def _kind_cells(ps: list[Pair]) -> str:
    kinds = Counter(p.kind for p in ps)
    return "".join(f"{kinds[k]:>{max(len(k), 5) + 2}}" for k in KINDS)


def _kind_head() -> str:
    return "".join(f"{k:>{max(len(k), 5) + 2}}" for k in KINDS)


def _show(p: Pair, texts: list[str], toks: list[list[str]], indent: str = "  ") -> None:
    print(f"{indent}sim {p.sim:.3f} [{p.kind}] {show_diff(toks[p.i], toks[p.j])}")
    print(f"{indent}  A: {texts[p.i]}")
    print(f"{indent}  B: {texts[p.j]}")


def analyse(name: str, sources: list[Path], n_examples: int, rng: random.Random, audit: bool) -> dict:
    t0 = time.perf_counter()
    sents, n_docs, skipped = answer_sentences(sources)
    texts = exact_unique(sents)
    t_load = time.perf_counter() - t0
    toks = [words(t) for t in texts]
    raw = near_duplicate_pairs(texts, threshold=FLOOR, min_words=MIN_WORDS, veto=False)
    pairs = [classify(texts, toks, i, j, s) for i, j, s in raw]
    pairs.sort(key=lambda p: (p.i, p.j))
    t_pairs = time.perf_counter() - t0 - t_load

    print(
        f"\n{'=' * 100}\n{name}: {n_docs} documents, {len(sents)} answer sentences, "
        f"{len(texts)} after exact dedup ({len(sents) - len(texts)} exact duplicates folded), "
        f"{sum(len(t) >= MIN_WORDS for t in toks)} with >= {MIN_WORDS} words"
    )
    print(f"  {len(skipped)} files skipped" + "".join(f"\n    {p}: {why}" for p, why in skipped[:5]))
    print(
        f"  load+segment {t_load:.1f}s, pairs+classify {t_pairs:.1f}s; "
        f"{len(pairs)} candidate pairs with similarity >= {FLOOR}"
    )

    by_bucket: dict[int, list[Pair]] = defaultdict(list)
    for p in pairs:
        by_bucket[bucket_of(p.sim)].append(p)

    print(
        "\n  Histogram of candidate pairs by similarity.  Columns after 'pairs': the kind of edit (first that"
        "\n  applies: digit = a changed word holds a digit; numword = spelled-out numbers differ; negation ="
        "\n  not/no/never/n't count differs; name-swap = one side drops a name, the other brings in another;"
        "\n  same-words = only punctuation/hyphens differ; wording = the rest).  'digit-only' = every"
        "\n  changed word on both sides holds a digit (the sentences differ ONLY in a number)."
    )
    print(f"  {'bucket':<10}{'pairs':>6}{'digit-only':>12}{_kind_head()}  bar")
    width = max((len(v) for v in by_bucket.values()), default=1)
    for b, (lo, hi) in enumerate(BUCKETS):
        ps = by_bucket[b]
        bar = "#" * round(40 * len(ps) / width) if ps else ""
        print(f"  {lo:.1f}-{hi:.1f}   {len(ps):>6}{sum(p.digit_only for p in ps):>12}{_kind_cells(ps)}  {bar}")
    print(f"  {'all':<10}{len(pairs):>6}{sum(p.digit_only for p in pairs):>12}{_kind_cells(pairs)}")

    print("\n  Cumulative from 0.70: pairs with similarity >= t")
    print(f"  {'t':<10}{'pairs':>6}{'digit-only':>12}{_kind_head()}")
    for t in FINE:
        ps = [p for p in pairs if p.sim >= t - 1e-12]
        print(f"  {t:<10.3f}{len(ps):>6}{sum(p.digit_only for p in ps):>12}{_kind_cells(ps)}")

    print(f"\n  Examples: {n_examples} random pairs per bucket (A = earlier, B = later; diff is A -> B)")
    for b, (lo, hi) in enumerate(BUCKETS):
        ps = by_bucket[b]
        print(f"\n  ---- {lo:.1f}-{hi:.1f}: {len(ps)} pairs ----")
        for p in sorted(rng.sample(ps, min(n_examples, len(ps))), key=lambda p: p.sim):
            _show(p, texts, toks)

    print(
        "\n  Merges: distinct wordings folded into a near-duplicate (DedupResult.near_merged), largest cluster"
        "\n  in brackets, per threshold and rule.  Rules: none = threshold only (the builder today);"
        "\n  no-digit = never merge a pair whose changed words include a digit token; no-fact-change = never"
        "\n  merge a digit, numword, negation or name-swap pair; /10 = and a sentence under 10 words"
        "\n  merges only when the words are identical"
    )
    print(f"  {'threshold':<11}" + "".join(f"{label:>20}" for label, _, _ in COLUMNS))
    merges: dict[tuple[float, str], int] = {}
    for t in sorted(set(THRESHOLDS) | {RECOMMENDED}):
        cells = []
        for label, rule, min_words in COLUMNS:
            allowed = RULES[rule]
            m, big = merge_count(
                len(texts), pairs, t, lambda p, a=allowed, w=min_words: a(p) and (p.shorter >= w or p.sim >= 1.0)
            )
            merges[(t, label)] = m
            cells.append(f"{m:>13} ({big:>2})")
        print(f"  {t:<11.3f}" + "".join(cells))
    check_t = 0.8  # cross-check against the builder's own function (threshold only)
    got = deduplicate(sents, threshold=check_t, min_words=MIN_WORDS).near_merged
    print(
        f"  cross-check: deduplicate(threshold={check_t}).near_merged = {got} "
        f"({'ok' if got == merges[(check_t, 'none')] else 'MISMATCH'})"
    )

    if audit:

        def allowed(p: Pair) -> bool:
            return RULES[RECOMMENDED_RULE](p) and (p.shorter >= RECOMMENDED_MIN_WORDS or p.sim >= 1.0)

        near = [p for p in pairs if RECOMMENDED <= p.sim < RECOMMENDED + 0.05 and allowed(p)]
        print(
            f"\n  Audit 1: every pair the recommendation ({RECOMMENDED_LABEL} at {RECOMMENDED}) merges just above the"
            f"\n  threshold, similarity {RECOMMENDED:.2f}-{RECOMMENDED + 0.05:.2f} ({len(near)} pairs): are these all the same fact?"
        )
        for p in sorted(near, key=lambda p: p.sim):
            _show(p, texts, toks, "    ")
        blocked = [p for p in pairs if p.sim >= RECOMMENDED and not allowed(p)]
        print(
            f"\n  Audit 2: every pair >= {RECOMMENDED} that the rule keeps apart ({len(blocked)} pairs):"
            "\n  the recall it costs and the wrong merges it prevents"
        )
        for p in sorted(blocked, key=lambda p: -p.sim):
            _show(p, texts, toks, "    ")
        below = [p for p in pairs if RECOMMENDED - 0.05 <= p.sim < RECOMMENDED and allowed(p)]
        print(
            f"\n  Audit 3: every pair the rule would allow just BELOW the threshold, {RECOMMENDED - 0.05:.2f}-"
            f"{RECOMMENDED:.2f} ({len(below)} pairs): the recall the threshold costs and the wrong merges it prevents"
        )
        for p in sorted(below, key=lambda p: -p.sim):
            _show(p, texts, toks, "    ")
    return {"name": name, "merges": merges, "pairs": pairs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=Path, default=DEFAULT_SEEDS)
    ap.add_argument("--bbc", type=Path, default=DEFAULT_BBC, help="folder holding <topic>/*.txt")
    ap.add_argument("--examples", type=int, default=8, help="example pairs per bucket")
    ap.add_argument("--seed", type=int, default=13, help="RNG seed for the examples")
    ap.add_argument("--no-audit", action="store_true", help="skip the full listings around the threshold")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()

    results = []
    corpora = [("seeds", [args.seeds])]
    if args.bbc.is_dir():
        # the topic folders, not the root: the root also holds the dataset's README.TXT
        corpora.append(("BBC", sorted(p for p in args.bbc.iterdir() if p.is_dir() and not p.name.startswith("."))))
    else:
        print(f"BBC corpus not found at {args.bbc}; seeds only", file=sys.stderr)
    for name, sources in corpora:
        try:
            results.append(analyse(name, sources, args.examples, rng, audit=not args.no_audit))
        except BuildError as e:
            print(f"{name}: {e}", file=sys.stderr)

    print(
        f"\n{'=' * 100}\nRECOMMENDATION: near_dup_similarity = {RECOMMENDED}, near_dup_min_words = "
        f"{RECOMMENDED_MIN_WORDS}, rule {RECOMMENDED_RULE!r}\n"
    )
    print(RECOMMENDATION)
    print("\nMerges at the recommendation, against the old setting (0.8, no rule):")
    for r in results:
        m = r["merges"]
        print(
            f"  {r['name']:<6} {m[(RECOMMENDED, RECOMMENDED_LABEL)]:>4} wordings merged "
            f"(old 0.8 / no rule / 6 words: {m[(0.8, 'none')]}; {RECOMMENDED} no-digit only: "
            f"{m[(RECOMMENDED, 'no-digit')]}; {RECOMMENDED} no rule: {m[(RECOMMENDED, 'none')]})"
        )
    print(f"\ntotal runtime {time.perf_counter() - t0:.1f}s")
    return 0


RECOMMENDED = 0.9
RECOMMENDED_RULE = "no-fact-change"
RECOMMENDED_MIN_WORDS = MIN_WORDS
RECOMMENDED_LABEL = "no-fact-change"
RECOMMENDATION = """\
Threshold 0.9 (BuildConfig.near_dup_similarity; near_dup_min_words can stay 6)
AND never merge a pair whose edit changes a fact token (rule "no-fact-change"):
  - a changed word holds a digit -- always, whatever the similarity; this is
    the rule that matters most ("rose 5%" / "rose 7%" scores 0.95 in a
    20-word sentence, above any sensible threshold), and on BBC it costs
    only a handful of harmless merges ("6km" / "six kilometres", "BBC Two" /
    "BBC2", "$180bn" / "$180bn (£96bn)");
  - the spelled-out numbers differ ("eighth" / "ninth"), or the negation count
    differs (not / no / never / n't);
  - one wording drops a proper noun and the other brings in a different one.

Why (read the examples and audit listings above; judgements are by eye):
  * A threshold alone cannot stop wrong merges: fact-changing substitutions sit
    at every similarity, e.g. "1980s toy Tamagotchi" / "1990s" 0.962, "set in
    post-war London" / "England" 0.950, "Mr Brown's eighth" / "ninth" Budget
    0.941, "A merger between MCI and Verizon" / "Qwest" 0.938, "IBM" / "DOE
    test results" 0.933, rugby line-ups with one player changed 0.935-0.853.
    A one-word edit in an n-word sentence scores 1 - 1/n, so only a rule on
    WHAT changed protects long sentences.  The rule removes all of these.
  * Below 0.9 the remaining errors are single substitutions in short sentences
    that no token rule sees: "Doctors are saying they want more clarity." /
    "Patients ..." 0.857 (7 words), "That was the end of it." (a Bob Marley
    interview) / "That is the end of it." (an FA spokesman) 0.833, "The US has
    pushed Japan off the top..." / "is poised to push" 0.818.  At 0.9 a
    sentence needs >= 10 words to absorb one changed word and >= 20 to absorb
    two, and no clearly wrong merge was found among the pairs >= 0.9 the rule
    allows (Audit 1); the most doubtful are an Ireland line-up printed with
    Murphy and Dempsey in swapped positions (0.917: same names, so no
    name-swap) and "They had decided" / "He had decided" from two write-ups
    of the same Tory story (0.950).
  * The old 0.8 without a rule merges about 25 different-fact pairs on BBC
    (about 1 in 10 of its merges): all the cases above plus "Release date to be
    confirmed on PS2." / "GameCube." / "DS." (0.857), "Lyon" / "Monaco",
    film critics' picks "The Aviator" / "Million Dollar Baby" (0.824).
  * Cost: 0.85 with the same rule would merge about 45 more pairs (Audit 3),
    nearly all harmless (clauses cut, "he" / "Mr Livingstone"), but includes
    "Doctors" / "Patients" and tense or date shifts ("will be released" /
    "were released", "Last week" / "On Monday").  A missed merge only shows
    one answer twice; a wrong merge hides an answer -- so 0.9.  (If recall is
    wanted later: 0.85 plus "a pair with a sentence under 10 words merges only
    when its words are identical" -- column no-fact-change/10 -- had no wrong
    merge here, but that is a two-knob rule tuned on 45 pairs.)
  * Sentences that differ only in punctuation (a closing quote, "back-end" /
    "back end", "Party,said") score 1.0 and merge at any threshold; the rule
    never blocks them."""


if __name__ == "__main__":
    raise SystemExit(main())
