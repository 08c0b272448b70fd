"""Documents and deduplication on the seeds and on the real BBC corpus."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

from index_build.dedup import deduplicate, word_similarity
from index_build.documents import discover, load
from qa.textnorm import words
from tests.conftest import SEEDS, bench_path

# The 10 sentences the seeds carry twice (readout + Netanyahu's statement in
# 000 and 001, the CNN paragraph in 001 and 002).
SHARED = {
    "The President reaffirmed his commitment to working tirelessly": {"000_d94e3a040fbeca26", "001_b75319ecbb0ee614"},
    "also discussed the situation in Gaza, and the urgency": {"000_d94e3a040fbeca26", "001_b75319ecbb0ee614"},
    "The President also raised the situation in Rafah": {"000_d94e3a040fbeca26", "001_b75319ecbb0ee614"},
    "Israel earlier this week sent a high-ranking delegation": {"000_d94e3a040fbeca26", "001_b75319ecbb0ee614"},
    "A US official later said that that the talks were productive": {"000_d94e3a040fbeca26", "001_b75319ecbb0ee614"},
    "This week we freed two of our hostages": {"000_d94e3a040fbeca26", "001_b75319ecbb0ee614"},
    "So far we have freed 112 of our hostages": {"000_d94e3a040fbeca26", "001_b75319ecbb0ee614"},
    "This is also the key to the release of the rest of our hostages": {"000_d94e3a040fbeca26", "001_b75319ecbb0ee614"},
    "I insist that Hamas drop their delusional demands": {"000_d94e3a040fbeca26", "001_b75319ecbb0ee614"},
    # in 000 it follows a "Related articles:" link list, cut off by the segmenter
    "On Wednesday, Netanyahu decided not to send back": {"000_d94e3a040fbeca26", "001_b75319ecbb0ee614"},
    "The officials cautioned that while a framework is in place, gaps remain.": {
        "001_b75319ecbb0ee614",
        "002_35521e549324248f",
    },
}


def _load_all(sources: list[Path]):
    files, _ = discover(sources)
    docs = []
    for f in files:
        try:
            docs.append(load(f))
        except Exception:  # noqa: BLE001 - unreadable files are tested elsewhere
            continue
    sents = [(i, n, d.sentence_text(n)) for i, d in enumerate(docs) for n, s in enumerate(d.sentences) if s.is_answer]
    return docs, sents


def test_seed_shared_sentences_come_out_once_with_both_sources() -> None:
    docs, sents = _load_all([SEEDS])
    dd = deduplicate(sents)
    assert dd.exact_merged == 11
    for needle, want_docs in SHARED.items():
        hits = [u for u in dd.unique if needle in u.text]
        assert len(hits) == 1, needle
        assert {docs[o.doc_idx].doc_id for o in hits[0].occurrences} == want_docs
    assert sum(1 for u in dd.unique if len(u.occurrences) > 1) == 11


def test_seed_titles_and_captions() -> None:
    docs, _ = _load_all([SEEDS])
    by_id = {d.doc_id: d for d in docs}
    assert by_id["001_b75319ecbb0ee614"].title == "Biden and Netanyahu"
    assert by_id["002_35521e549324248f"].title == "Netanyahu and Biden"
    # no headline line: titled by its first sentence, never by the file name
    assert by_id["000_d94e3a040fbeca26"].title.startswith("US President Joe Biden on Friday called for")
    for d in docs:
        answers = [d.sentence_text(i) for i, s in enumerate(d.sentences) if s.is_answer]
        assert not any("Avi Ohayon/GPO" in a for a in answers)
        assert d.title not in answers


def test_near_duplicates_are_grouped_but_different_facts_are_not() -> None:
    a = "The minister said the talks would resume in Cairo next week after a short break."
    b = "The minister added the talks would resume in Cairo next week after a short break."
    c = "The central bank raised interest rates by a quarter point on Thursday afternoon."
    sents = [(0, 0, a), (1, 0, b), (2, 0, c)]
    dd = deduplicate(sents)
    assert len(dd.unique) == 2 and dd.near_merged == 1
    merged = next(u for u in dd.unique if len(u.occurrences) == 2)
    assert merged.text in (a, b) and merged.variants == 2
    assert word_similarity(words(a), words(b)) >= 0.9
    assert word_similarity(words(a), words(c)) < 0.5


def test_near_duplicates_that_change_a_fact_stay_apart() -> None:
    base = "Shares in the company rose 5% in early trading on the London stock exchange on Monday morning."
    for other in (
        base.replace("5%", "7%"),  # a number
        base.replace("rose 5%", "rose five percent"),  # digits vs words is still a number edit
        "Shares in the company did not rise in early trading on the London stock exchange on Monday morning.",
        base.replace("London", "Frankfurt"),  # one name for another
    ):
        dd = deduplicate([(0, 0, base), (1, 0, other)])
        assert len(dd.unique) == 2, other
    # a name against a pronoun: each article keeps its own wording (the BBC
    # corpus has both of these, in two articles)
    named = "On Thursday Mr Kilroy-Silk is due to announce his plans for the new party, his office said."
    for other in (named.replace("Mr Kilroy-Silk", "he"), named.replace("his plans", "Mr Kilroy-Silk's plans")):
        dd = deduplicate([(0, 0, base), (1, 0, other)])
        assert len(dd.unique) == 2, other
    # a one-word rewording of the same fact still merges
    dd = deduplicate([(0, 0, base), (1, 0, base.replace("rose", "climbed"))])
    assert len(dd.unique) == 1


def test_bbc_ids_are_unique_and_duplicate_articles_merge() -> None:
    bbc = bench_path("bbc")
    files, _ = discover([bbc])
    ids = [f.doc_id for f in files if f.path.suffix == ".txt" and f.path.name != "README.TXT"]
    assert len(ids) == 2225 and len(set(ids)) == 2225
    assert {"business/001", "politics/001", "sport/001", "tech/001", "entertainment/001"} <= set(ids)

    docs, sents = _load_all([bbc])
    dd = deduplicate(sents)
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(docs):
        by_hash[d.sha256].append(i)
    groups = [g for g in by_hash.values() if len(g) > 1]
    assert len(groups) == 98
    pol = {d.doc_id: i for i, d in enumerate(docs)}
    assert hashlib.sha256((bbc / "politics/108.txt").read_bytes()).hexdigest() == docs[pol["politics/291"]].sha256
    # every answer sentence of a duplicated article lists every copy as a source
    for group in groups:
        members = set(group)
        for n, s in enumerate(docs[group[0]].sentences):
            if not s.is_answer:
                continue
            u = dd.unique[dd.assignment[(group[0], n)]]
            assert members <= {o.doc_idx for o in u.occurrences}


def test_near_duplicate_blocks_judge_each_pair_once_and_skip_boilerplate_heads() -> None:
    from index_build.dedup import _MAX_BLOCK, near_duplicate_pairs

    a = "The minister said on Monday that the new bridge will open to traffic next spring"
    b = "The minister added on Monday that the new bridge will open to traffic next spring"
    # a boilerplate opening shared by more sentences than a block may hold:
    # those pairs are only found through their shared ending
    filler = [
        f"According to the report published today item {i} of the survey was about topic {i}"
        for i in range(_MAX_BLOCK + 5)
    ]
    c = "According to the report published today the harbour in Brest handled record cargo volumes"
    d = "According to the report published today, the harbour in Brest handled record cargo volumes"
    texts = [a, b, *filler, c + " this year", d.replace(",", "") + " this year"]
    pairs = near_duplicate_pairs(texts, 0.9, 6)
    found = {(i, j) for i, j, _ in pairs}
    assert (0, 1) in found and len(pairs) == len(found)  # shares head and tail: judged, and listed, once
    n = len(texts)
    assert (n - 2, n - 1) in found
    assert all(i < j for i, j in found)


def test_dedup_key_fast_path_is_the_definition() -> None:
    """dedup_key skips steps that cannot change ASCII text and splits on
    whitespace with str.split(): it must equal the plain definition (NFKC,
    quote/dash style, collapse \\s+, strip, casefold) on any text."""
    import re
    import unicodedata

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from qa.textnorm import _QUOTES, dedup_key

    ws = re.compile(r"\s+")

    def definition(text: str) -> str:
        return ws.sub(" ", unicodedata.normalize("NFKC", text).translate(_QUOTES)).strip().casefold()

    tricky = [
        "  Mr  SMITH\tsaid\n",
        "a\u00a0b\u2003c\x1cd\x85e",
        " “ﬁne” — ok…  ",
        "ΣΑΣ ς",
        "\u0301e Straße",
        "ＦＵＬＬ width",
        "İstanbul",
        "",
        "\x00\x1f",
    ]
    assert [dedup_key(t) for t in tricky] == [definition(t) for t in tricky]

    @settings(max_examples=400, deadline=None)
    @given(st.text(max_size=60) | st.text(st.characters(max_codepoint=127), max_size=60))
    def check(text: str) -> None:
        assert dedup_key(text) == definition(text)

    check()


def test_a_chain_of_near_duplicates_does_not_merge_its_far_ends() -> None:
    # each step is one small rewording (>= 0.9 alike), the two ends are not:
    # every wording kept under a merged sentence is close to the one shown
    a = "Mr Ebbers could face a sentence of 85 years if convicted of all the charges he is facing in court."
    b = "Mr Ebbers could face a jail sentence of 85 years if convicted of all the charges he is facing in court."
    c = "Mr Ebbers could face a jail sentence of up to 85 years if convicted of all the charges he is facing in court."
    assert word_similarity(words(a), words(b)) >= 0.9 and word_similarity(words(b), words(c)) >= 0.9
    assert word_similarity(words(a), words(c)) < 0.9
    dd = deduplicate([(0, 0, a), (1, 0, b), (2, 0, c)])
    shown = {u.text: {o.doc_idx for o in u.occurrences} for u in dd.unique}
    assert shown == {c: {1, 2}, a: {0}}
    for u in dd.unique:
        for o in u.occurrences:
            t = (a, b, c)[o.doc_idx]
            assert word_similarity(words(t), words(u.text)) >= 0.9
