"""Sentence segmentation on hard cases and on the seeds."""

from __future__ import annotations

import pytest

from index_build import segment
from tests.conftest import SEEDS


def sents(text: str) -> list[str]:
    return [text[s.start : s.end] for _, spans in segment.split(text) for s in spans]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('He said "It is over." Then he left.', ['He said "It is over."', "Then he left."]),
        ("He said “It is over.” Then he left.", ["He said “It is over.”", "Then he left."]),
        (
            "The U.S. economy grew. Mr. Smith met Dr. Jones on Jan. 5 in Washington.",
            ["The U.S. economy grew.", "Mr. Smith met Dr. Jones on Jan. 5 in Washington."],
        ),
        ("J. K. Rowling wrote it. She lives in Edinburgh.", ["J. K. Rowling wrote it.", "She lives in Edinburgh."]),
        (
            "About 1,500 people came. Growth was 45.5% in 2004. Shares fell.",
            ["About 1,500 people came.", "Growth was 45.5% in 2004.", "Shares fell."],
        ),
        ("Wait... what happened next? Nobody knew.", ["Wait... what happened next?", "Nobody knew."]),
        (
            "Floods hit the valley\n\nHeavy rain fell on Monday. Roads closed.",
            ["Floods hit the valley", "Heavy rain fell on Monday.", "Roads closed."],
        ),
        ("Floods hit the valley\nHeavy rain fell on Monday.", ["Floods hit the valley", "Heavy rain fell on Monday."]),
        (
            'Netanyahu said, "We freed two. So far we have freed 112." "I insist," he added.',
            ['Netanyahu said, "We freed two.', 'So far we have freed 112."', '"I insist," he added.'],
        ),
        (
            "A sentence that was hard wrapped by an old mail client at sixty\ncharacters ends here. Next one.",
            ["A sentence that was hard wrapped by an old mail client at sixty\ncharacters ends here.", "Next one."],
        ),
    ],
)
def test_hard_cases(text: str, expected: list[str]) -> None:
    assert sents(text) == expected


def test_spans_point_into_the_document() -> None:
    text = "  First one here.  Second “quoted.”\n\nThird para!"
    for _, spans in segment.split(text):
        for s in spans:
            piece = text[s.start : s.end]
            assert piece == piece.strip() and piece


def test_one_paragraph_seed_gives_each_sentence() -> None:
    """Seed 000 is one long paragraph: every sentence must come out on its own."""
    text = (SEEDS / "000_d94e3a040fbeca26.txt").read_text(encoding="utf-8")
    out = sents(text)
    assert len(out) >= 20
    for expected in [
        "Biden’s comments follow his conversation with Prime Minister Benjamin Netanyahu on Thursday night.",
        "Israel earlier this week sent a high-ranking delegation to talks in Cairo on a hostage release deal.",
        "So far we have freed 112 of our hostages with a combination of strong military pressure and firm negotiations.",
        "“It is my expectation that’s not going to happen.”",
    ]:
        assert expected in out
    # no sentence starts with a dangling closing quote or ends with an opening one
    assert not any(s.endswith(("“", ' "')) or s.startswith("”") for s in out)


@pytest.mark.parametrize(
    "piece, links, sentence",
    [
        (
            "Related articles: 'Prisoners will free Jerusalem' Report: Hamas agrees to extend the deal "
            "Initiative to release hostages - without Israel's involvement On Wednesday, Netanyahu decided not to go.",
            "Related articles: 'Prisoners will free Jerusalem' Report: Hamas agrees to extend the deal "
            "Initiative to release hostages - without Israel's involvement",
            "On Wednesday, Netanyahu decided not to go.",
        ),
        (
            "Read more: Floods hit the valley Roads closed in the north The army was called in on Monday.",
            "Read more: Floods hit the valley Roads closed in the north",
            "The army was called in on Monday.",
        ),
        ("See also: Floods hit the valley Roads Closed", "See also: Floods hit the valley Roads Closed", None),
        ("The army said on Monday that it was related.", None, "The army said on Monday that it was related."),
    ],
)
def test_link_lists_are_cut_off_the_sentence(piece: str, links: str | None, sentence: str | None) -> None:
    text = f"Intro. {piece}"
    head, tail = segment.split_link_list(text, segment.Span(7, len(text)))
    assert (text[head.start : head.end] if head else None) == links
    assert (text[tail.start : tail.end] if tail else None) == sentence


def test_seed_link_list_is_not_an_answer() -> None:
    """Seed 000 pastes a "Related articles:" list in front of a real sentence:
    the list is kept as text but never quoted; the sentence is an answer."""
    from index_build import documents

    path = SEEDS / "000_d94e3a040fbeca26.txt"
    doc = documents.load(documents.SourceFile(path, path.stem))
    by_text = {doc.sentence_text(i): s.is_answer for i, s in enumerate(doc.sentences)}
    assert by_text["On Wednesday, Netanyahu decided not to send back the Israeli delegation to Cairo."] is True
    lists = [t for t in by_text if t.startswith("Related articles:")]
    assert len(lists) == 1 and by_text[lists[0]] is False and "On Wednesday" not in lists[0]


def test_a_dot_without_a_space_after_it_is_not_a_boundary() -> None:
    from index_build import segment

    t = (
        "The malware, known as Android/Filecoder.C, spreads by text message. Officials in the U.S. said it was "
        "new. He lives at No. 10 Downing Street. See example.com for more."
    )
    got = [t[s.start : s.end] for _, spans in segment.split(t, "en", 400) for s in spans]
    assert got == [
        "The malware, known as Android/Filecoder.C, spreads by text message.",
        "Officials in the U.S. said it was new.",
        "He lives at No. 10 Downing Street.",
        "See example.com for more.",
    ]


def test_page_furniture_stays_in_the_text_but_is_never_an_answer(tmp_path) -> None:
    from index_build import documents as D

    furniture = [
        "By Jane Doe, Reuters",
        "Monday, 6 January 2020",
        "(Credit: Sam Lee / Coastal Courier)",
        "This article originally appeared on The Conversation.",
        "Posted: Thursday, April 21, 2022.",
    ]
    prose = [
        "By 2030, the city will need twice as many buses.",
        "Credit card debt rose 5% last year.",
        "The story appeared in print on Monday.",
    ]
    for line in furniture:
        assert D.boilerplate(line), line
    for line in prose:
        assert not D.boilerplate(line), line
    p = tmp_path / "story.txt"
    p.write_text(
        "Buses for the city\n\nBy Jane Doe, Reuters\n\nMonday, 6 January 2020\n\n"
        "The council approved 40 new buses on Monday. (Credit: Sam Lee / Coastal Courier)\n\n"
        "By 2030, the city will need twice as many buses.\n\n"
        "This article originally appeared on The Conversation.\n",
        encoding="utf-8",
    )
    files, _ = D.discover([tmp_path])
    doc = D.load(files[0])
    answers = [doc.sentence_text(i) for i, s in enumerate(doc.sentences) if s.is_answer]
    assert answers == [
        "The council approved 40 new buses on Monday.",
        "By 2030, the city will need twice as many buses.",
    ]
    assert all(line in doc.text for line in ("By Jane Doe, Reuters", "(Credit: Sam Lee / Coastal Courier)"))
