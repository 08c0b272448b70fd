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
        ("The U.S. economy grew. Mr. Smith met Dr. Jones on Jan. 5 in Washington.",
         ["The U.S. economy grew.", "Mr. Smith met Dr. Jones on Jan. 5 in Washington."]),
        ("J. K. Rowling wrote it. She lives in Edinburgh.", ["J. K. Rowling wrote it.", "She lives in Edinburgh."]),
        ("About 1,500 people came. Growth was 45.5% in 2004. Shares fell.",
         ["About 1,500 people came.", "Growth was 45.5% in 2004.", "Shares fell."]),
        ("Wait... what happened next? Nobody knew.", ["Wait... what happened next?", "Nobody knew."]),
        ("Floods hit the valley\n\nHeavy rain fell on Monday. Roads closed.",
         ["Floods hit the valley", "Heavy rain fell on Monday.", "Roads closed."]),
        ("Floods hit the valley\nHeavy rain fell on Monday.", ["Floods hit the valley", "Heavy rain fell on Monday."]),
        ('Netanyahu said, "We freed two. So far we have freed 112." "I insist," he added.',
         ['Netanyahu said, "We freed two.', 'So far we have freed 112."', '"I insist," he added.']),
        ("A sentence that was hard wrapped by an old mail client at sixty\ncharacters ends here. Next one.",
         ["A sentence that was hard wrapped by an old mail client at sixty\ncharacters ends here.", "Next one."]),
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
