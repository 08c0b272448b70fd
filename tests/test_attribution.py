"""Faithful attribution: a quote shown under an article's name is word for
word in that article, even when near-duplicate merging joined two wordings
(the longest is kept as the answer's text, and it need not be the first
article's).  Real builder, real index, real engine, the chat's renderer."""

from __future__ import annotations

import html
from pathlib import Path

import pytest

FIRST = "The company said it would cut 500 jobs at its plant in the north of England by March next year."
LONGER = "The company confirmed it would cut 500 jobs at its plant in the north of England by March next year."


@pytest.fixture(scope="module")
def two_wordings(tmp_path_factory) -> Path:
    from index_build import build
    from qa.config import BuildConfig

    root = tmp_path_factory.mktemp("wordings")
    src = root / "articles"
    src.mkdir()
    (src / "a_wire.txt").write_text(
        "Factory to shed jobs\n\nWorkers were told the news at a meeting on Tuesday. "
        + FIRST
        + " Unions called the decision a betrayal of the town.\n",
        encoding="utf-8",
    )
    (src / "b_paper.txt").write_text(
        "Carmaker confirms job cuts\n\nThe decision follows a fall in orders from Europe. "
        + LONGER
        + " The plant opened in 1986 and once employed 3,000 people.\n",
        encoding="utf-8",
    )
    out = root / "index"
    build([src], out, BuildConfig(progress=False), log=lambda m: None)
    return out


def test_the_first_source_words_the_quote_exactly_and_others_keep_their_own(two_wordings) -> None:
    import qa

    res = qa.load(two_wordings, warm=False).ask("How many jobs is the company cutting?")
    top = res.answers[0]
    assert top.text == LONGER  # the merge keeps the longest wording
    assert [s.doc_id for s in top.sources] == ["b_paper", "a_wire"]  # the article that says it so, first
    for s in top.sources:
        own = Path(s.path).read_text(encoding="utf-8")
        assert own[s.start : s.end] == s.text
    assert top.sources[0].text == top.text and top.sources[1].text == FIRST
    assert top.context.doc_id == "b_paper" and "fall in orders" in top.context.before[0]


def test_the_chat_shows_each_article_its_own_wording(two_wordings) -> None:
    import qa
    from qa.chat_render import render_result

    res = qa.load(two_wordings, warm=False).ask("How many jobs is the company cutting?")
    page = html.unescape(render_result(res))
    quote = page.split('<blockquote class="sqa-quote">', 1)[1].split("</blockquote>", 1)[0]
    cite = page.split('<div class="sqa-cite">', 1)[1].split("</div>", 1)[0]
    assert quote == LONGER and "b_paper" in cite and "a_wire" not in cite
    also = page.split('<details class="sqa-also">', 1)[1].split("</details>", 1)[0]
    assert "a_wire" in also and f"worded here: <q>{FIRST}</q>" in also
