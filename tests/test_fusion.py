"""Answer-type cues: what a question asks for, and which sentences hold it."""

from __future__ import annotations

import pytest

from qa.fusion import question_type, type_match, typed_tokens


@pytest.mark.parametrize(
    "question, qtype",
    [
        ("How long did the call last?", "measure"),
        ("How long have the hostages been held by Hamas?", "measure"),
        ("How long ago did it happen?", "date"),
        ("What portion of the call was spent on the hostages?", "share"),
        ("What percentage of voters turned out?", "share"),
        ("How many hostages were freed?", "number"),
        ("How old must the men be?", "number"),
        ("When did Hamas reply?", "date"),
        ("What year was it founded?", "date"),
        ("What time does Shabbat start in New York?", "clock"),
        ("What time zone are the timestamps in?", "any"),
        ("Who is Israel's prime minister?", "name"),
        ("Which news network quoted the official?", "name"),
        ("To which government did Hamas hand its response?", "name"),
        ("What is Netanyahu's wife's name?", "name"),
        # the question word that comes first decides
        ("Where was Biden when he spoke to reporters?", "name"),
        ("How many people came when it rained?", "number"),
        ("What did Biden say about it?", "any"),
        ("Which hostages would be released first?", "any"),
        # "what time period" and "during what time" ask for an era, not a time of day
        ("What time period did the geoglyphs date back to?", "date"),
        ("During what time did the rainforest span a narrow band?", "date"),
        # "when" as a conjunction does not ask for a date; as the opening it does
        ("What yard line were the Broncos on when Manning lost the ball?", "any"),
        ("When John Fox left as head coach, who replaced him?", "name"),
        ("And when?", "date"),
    ],
)
def test_question_type(question: str, qtype: str) -> None:
    assert question_type(question) == qtype


def test_kinds_found_in_sentences() -> None:
    text = (
        "The call lasted about 45 minutes, and two-thirds of it was on hostages held for 132 days, CNN said "
        "on Sunday at 10 a.m."
    )
    assert {"45", "132", "two", "thirds"} <= typed_tokens(text, "number")
    assert {"45", "minutes", "132", "days"} <= typed_tokens(text, "measure")
    assert "thirds" in typed_tokens(text, "share") and "sunday" in typed_tokens(text, "date")
    assert "cnn" in typed_tokens(text, "name") and "10" in typed_tokens(text, "clock")
    assert "the" not in typed_tokens(text, "name")  # a sentence's first word is not a name
    assert {"1050s", "999", "11th", "centuries"} <= typed_tokens(
        "Hervé served in the 1050s, the port fell in 999, and it grew in the 10th and 11th centuries.", "date"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The theatre was in operation from 1870 to 1939.", {"from", "1870"}),
        ("Warsaw remained the capital until 1796, when it was annexed.", {"until", "1796"}),
        ("This imagery has been in use since at least the mid-14th century.", {"since", "14th"}),
        ("After months of work, Tesla fulfilled the task.", {"after", "months"}),
        ("Filaments are arranged in rows 6.4 nanometers apart.", {"nanometers"}),
        ("Biden and Netanyahu previously spoke for about 45 minutes on Sunday.", {"45", "minutes"}),
    ],
)
def test_durations_include_spans(text: str, expected: set[str]) -> None:
    """A third of SQuAD's "how long" answers are spans ("from 1870 to 1939",
    "since 1951"), not amounts: they are durations too."""
    assert expected <= typed_tokens(text, "measure")


def test_no_duration_without_a_time_word() -> None:
    assert typed_tokens("The delegation came from the White House on Sunday.", "measure") == frozenset()


def test_type_proximity_prefers_the_typed_word_beside_the_question() -> None:
    """ "Who is Israel's prime minister?": the name right after "Prime
    Minister" is closer than a name at the other end of the sentence."""
    import Stemmer

    from qa.fusion import type_proximity
    from qa.textnorm import lexical_terms, words

    q = "Who is Israel's prime minister?"
    asked, stems = set(words(q)), set(lexical_terms(q, query=True))

    def near(text: str) -> float:
        ws = words(text)
        return type_proximity(ws, Stemmer.Stemmer("english").stemWords(ws), typed_tokens(text, "name"), asked, stems)

    assert near("Biden spoke to Prime Minister Benjamin Netanyahu.") == 1.0
    assert near("CNN said Biden called the prime minister.") == pytest.approx(1 / 3)  # Biden, 3 words off
    assert near("Biden spoke to the prime minister.") == 0.0  # no name the question lacks


def test_a_kind_only_counts_when_it_adds_to_the_question() -> None:
    """ "When ... before the Sunday call?": a sentence whose only date is the
    question's own Sunday does not answer it; one with another date does."""
    sents = [
        "Biden and Netanyahu previously spoke for about 45 minutes on Sunday.",
        "The White House said on Sunday that, in their first call since January 19, they spoke.",
    ]
    got = type_match(
        [typed_tokens(s, "date") for s in sents], "When had Biden and Netanyahu last spoken before the Sunday call?"
    )
    assert got.tolist() == [0.0, 1.0]


def test_kind_patterns_capture_whole_matches() -> None:
    """typed_tokens reads findall() as whole matches: a capturing group in a
    pattern would silently hand it the group instead."""
    from qa.fusion import _TYPE_PATTERNS

    assert all(p.groups == 0 for p in _TYPE_PATTERNS.values())


def test_name_evidence_has_its_own_weights() -> None:
    """A name question's type evidence goes to name_match/name_miss, any other
    kind's to type_match/type_miss: names are in nearly every sentence, so
    their match must not dilute what a clock time or a share says."""
    import numpy as np

    from qa.fusion import FEATURES, Evidence, features

    def cols(qtype: str) -> dict[str, list[float]]:
        n = 2
        ev = Evidence(
            np.array([0.5, 0.4]),
            np.array([1.0, 0.5]),
            2.0,
            np.array([0.5, 0.4]),
            np.zeros(n),
            np.zeros(n),
            np.zeros(n),
            np.zeros(n),
            np.zeros(n),
            np.zeros(n),
            np.zeros(n),
            np.array([0, 1]),
            np.array([10, 12]),
            np.array([1.0, 0.0]),
            qtype,
        )
        X = features(ev)
        return {f: X[:, FEATURES.index(f)].tolist() for f in ("type_match", "type_miss", "name_match", "name_miss")}

    zero = {f: [0, 0] for f in cols("any")}
    assert cols("name") == zero | {"name_match": [1, 0], "name_miss": [0, 1]}
    assert cols("clock") == cols("number") == zero | {"type_match": [1, 0], "type_miss": [0, 1]}
    assert all(v == [0, 0] for v in cols("any").values())


def test_a_day_is_no_span() -> None:
    """ "The first call since January 19" dates the call: no duration."""
    assert typed_tokens("In their first call since January 19, they spoke.", "measure") == frozenset()
    assert {"until", "1918"} <= typed_tokens("Warsaw was occupied from 4 August 1915 until November 1918.", "measure")


def test_the_quick_rule_out_never_drops_a_match() -> None:
    """typed_tokens skips its pattern when a sentence has no digit and none of
    the kind's words: on every sentence of the seed articles (and on edge
    cases of each kind) the result is the pattern's own."""
    from pathlib import Path

    from qa.fusion import _MATCH_WORDS, _TYPE_PATTERNS, _WORDS, TYPES

    seeds = Path(__file__).resolve().parent.parent / "seeds"
    texts = [
        line
        for f in sorted(seeds.iterdir())
        if f.is_file()
        for line in f.read_text(encoding="utf-8", errors="replace").replace(". ", ".\n").splitlines()
    ]
    texts += [
        "It took half an hour.",
        "Around noon, at dusk, at 5 o'clock.",
        "A majority of two-thirds.",
        "They walked for miles over several centuries.",
        "Since the Bronze Age, in the Jurassic period.",
        "In the Eighteenth Century, a dozen of them.",
        "It is 6,650 KM long.",
        "TWENTY YEARS LATER.",
    ]
    # each listed word alone, with no digit beside it: where a pattern matches, its word must be listed
    texts += [f"Then a few {w}, it said {w} of it." for kind in _MATCH_WORDS.values() for w in kind]
    texts += ["They met at noon.", "The vote went to the majority.", "It was the stone age.", "A few leagues."]
    assert len(texts) > 50
    for qtype in TYPES:
        for t in texts:
            plain = frozenset(_WORDS.findall(" ".join(_TYPE_PATTERNS[qtype].findall(t)).lower()))
            assert typed_tokens(t, qtype) == plain, (qtype, t)
