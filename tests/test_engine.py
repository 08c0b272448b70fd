"""The retriever and its Python/CLI API, on a real seed index with the real model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SEEDS, run_cli, write_article


def test_answer_is_a_verbatim_cited_sentence(engine) -> None:
    res = engine.ask("How long did the call between Biden and Netanyahu last on Sunday?", k=3)
    assert res.found and res.answers
    top = res.answers[0]
    assert "45 minutes" in top.text
    assert 0.0 <= top.score <= 1.0 and not top.weak
    for a in res.answers:
        for s in a.sources:
            text = (SEEDS / Path(s.path).name).read_text(encoding="utf-8")
            assert s.text == a.text or s.text.replace("\u2019", "'") == a.text.replace("\u2019", "'")
            assert s.text in text  # verbatim: the quoted words stand in the file
            assert s.title and s.doc_id and s.end > s.start
    # the sentences around it, from its first source, in order
    assert top.context.doc_id == top.sources[0].doc_id
    assert top.context.before or top.context.after
    # scores are ranked, each sentence at most once
    assert [a.score for a in res.answers] == sorted((a.score for a in res.answers), reverse=True)
    assert len({a.sentence_id for a in res.answers}) == len(res.answers)


def test_shared_sentence_is_one_answer_with_every_source(engine) -> None:
    # Netanyahu's statement stands in seeds 000 and 001
    res = engine.ask("How many hostages has Israel freed so far?", k=5)
    top = res.answers[0]
    assert "112" in top.text
    assert sorted(s.doc_id[:3] for s in top.sources) == ["000", "001"]
    assert all(s.text.endswith("negotiations.") for s in top.sources)
    texts = [a.text for a in res.answers]
    assert len(texts) == len(set(texts))


def test_names_and_numbers_win_on_exact_match(engine) -> None:
    res = engine.ask("132 days", k=1)
    assert "132 days" in res.answers[0].text
    assert "45 minutes" in engine.ask("45 minutes", k=1).answers[0].text
    res = engine.ask("What is happening in Rafah?", k=3)
    assert any("Rafah" in a.text for a in res.answers[:3])


def test_to_dict_is_json_with_the_same_fields(engine) -> None:
    res = engine.ask("How long did the call last?", history=["What did Biden and Netanyahu discuss on Thursday?"])
    d = json.loads(json.dumps(res.to_dict()))
    assert d["query"] == res.query and d["found"] == res.found
    a = d["answers"][0]
    assert set(a) >= {"text", "score", "sources", "context", "weak"}
    assert set(a["sources"][0]) >= {"doc_id", "title", "path", "sentence_no", "start", "end"}
    assert set(a["context"]) == {"doc_id", "before", "after"}
    assert a["text"] == res.answers[0].text


def test_followup_from_strings_and_gradio_messages(engine) -> None:
    first = "What did Biden and Netanyahu discuss on Thursday?"
    plain = engine.ask("How long did the call last?", history=[first])
    msgs = engine.ask(
        "How long did the call last?",
        history=[
            {"role": "user", "content": first},
            {"role": "assistant", "content": "Netanyahu's office said ... lasted about 40 minutes."},
        ],
    )
    assert plain.followup and msgs.followup
    assert plain.query == msgs.query and "Thursday" in plain.query
    assert [a.text for a in plain.answers] == [a.text for a in msgs.answers]
    assert any("40 minutes" in a.text for a in plain.answers[:3])  # Thursday's call
    alone = engine.ask("How long did the call last?")
    assert not alone.followup and alone.query == "How long did the call last?"


def test_a_followup_is_not_answered_with_the_sentence_just_shown(engine) -> None:
    first = "How long did the Thursday call between Biden and Netanyahu last?"
    shown = engine.ask(first).answers[0].text
    res = engine.ask("What else did they discuss?", history=[first])
    assert res.followup
    texts = [a.text for a in res.answers]
    # the previous answer stays in reach, second, below something new
    assert texts[0] != shown and texts[1] == shown
    assert res.answers[0].score >= res.answers[1].score


def test_a_follow_up_does_not_rank_the_question_just_asked_again(engine, monkeypatch) -> None:
    """The sentence a question was just answered with is remembered for the
    follow-up (`_previous_answer`), which then ranks only itself; the answers
    are those it gets when it has to rank the previous turn again."""
    first = "What did Biden and Netanyahu discuss on Thursday?"
    follow = "How long did the call last?"
    calls: list[str] = []
    real = engine._scored

    def spy(resolved, allowed=None):
        calls.append(resolved.query)
        return real(resolved, allowed)

    monkeypatch.setattr(engine, "_scored", spy)
    engine._shown.clear()
    engine.ask(first)
    calls.clear()
    remembered = engine.ask(follow, history=[first])
    assert remembered.followup and len(calls) == 1, calls
    engine._shown.clear()
    calls.clear()
    again = engine.ask(follow, history=[first])
    assert len(calls) == 2 and calls[0] == first, calls  # the previous turn ranked again, then the follow-up
    assert [a.text for a in again.answers] == [a.text for a in remembered.answers]
    assert again.query == remembered.query
    # remembered under the text as the history will hold it: a question the engine tidies first is not
    engine._shown.clear()
    engine.ask(f"  {first}  ")
    assert not engine._shown


def test_new_topic_is_not_dragged_back(engine) -> None:
    res = engine.ask(
        "What is the capital of France?", history=["How long did the Thursday call between Biden and Netanyahu last?"]
    )
    assert not res.followup and res.query == "What is the capital of France?"
    assert not res.found and all(a.weak for a in res.answers)


@pytest.mark.parametrize(
    "question",
    [
        "What is the capital of France?",
        "Who won the World Cup?",
        "asdkjh qwpoeiru zxmcnv",
        "Quelle heure est-il à Tokyo ?",
    ],
)
def test_off_topic_is_refused(engine, question: str) -> None:
    res = engine.ask(question)
    assert not res.found, [(a.text, a.score) for a in res.answers]
    assert all(a.weak and a.score < res.threshold for a in res.answers)


@pytest.mark.parametrize(
    "question, message",
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("x" * 10_000, "10000 characters"),
        ("?!...", "no words"),
        (None, "string"),
    ],
)
def test_bad_questions_raise_one_line_value_error(engine, question, message: str) -> None:
    with pytest.raises(ValueError, match=message) as e:
        engine.ask(question)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "k, message", [(0, "at least 1"), (-3, "at least 1"), ("5", "whole number"), (2.5, "whole number")]
)
def test_bad_k_raises(engine, k, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        engine.ask("How long did the call last?", k=k)


def test_odd_but_valid_input_gets_an_answer(engine) -> None:
    res = engine.ask("How long\x00 did the\u200b call between Biden and Netanyahu \x1b last on Sunday?")
    assert "\x00" not in res.question and "45 minutes" in res.answers[0].text
    huge = engine.ask("Who is Yahya Sinwar?", k=10**6)
    assert 1 <= len(huge.answers) <= 50
    junk = engine.ask(
        "How long did it last?",
        history=[
            None,
            3,
            {},
            {"role": "system", "content": "x"},
            "",
            ["a"],
            "What was the focus of the Sunday call between Biden and Netanyahu?",
        ],
    )
    assert junk.followup and "Sunday" in junk.query
    with pytest.raises(ValueError, match="history"):
        engine.ask("How long did it last?", history="not a list")


def test_engine_survives_bad_input(engine) -> None:
    for bad in ("", "x" * 5000):
        with pytest.raises(ValueError):
            engine.ask(bad)
    assert engine.ask("How many days have hostages been held?").found


def test_load_errors_name_the_fix(tmp_path: Path, seed_index: Path) -> None:
    import qa
    from qa.errors import IndexLoadError

    with pytest.raises(IndexLoadError, match="index_build"):
        qa.load(tmp_path / "nowhere")
    with pytest.raises(IndexLoadError, match="--model"):
        qa.load(seed_index, model="sentence-transformers/all-mpnet-base-v2")


def test_cli_ask_quotes_json_and_errors(seed_index: Path, tmp_path: Path) -> None:
    r = run_cli(
        "qa",
        "ask",
        "How long did it last?",
        "--index",
        str(seed_index),
        "-k",
        "2",
        "--history",
        "What was the focus of the Sunday call between Biden and Netanyahu?",
    )
    assert r.returncode == 0, r.stderr
    assert "searched for:" in r.stdout and "45 minutes" in r.stdout and "[002_" in r.stdout
    r = run_cli("qa", "ask", "How long did the Sunday call last?", "--index", str(seed_index), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["answers"]
    for args, msg in [
        (["", "--index", str(seed_index)], "empty"),
        (["Who?", "--index", str(seed_index), "-k", "0"], "at least 1"),
        (["Who?", "--index", str(tmp_path / "missing")], "index_build"),
    ]:
        r = run_cli("qa", "ask", *args)
        assert r.returncode == 1 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert run_cli("qa", "frobnicate").returncode == 2


def test_module_ask_builds_the_default_index_from_seeds(tmp_path: Path, monkeypatch) -> None:
    import qa

    monkeypatch.setenv("SOURCE_QA_INDEX", str(tmp_path / "default-index"))
    res = qa.ask("How many days have the hostages been held in Hamas captivity?")
    assert (tmp_path / "default-index" / "manifest.json").is_file()
    assert res.found and "132 days" in res.answers[0].text


def test_mmr_pushes_a_paraphrase_below_a_new_fact(engine) -> None:
    from qa.diversify import mmr

    vecs = engine.encoder.encode(
        [
            "The call lasted about 45 minutes.",
            "The call went on for about 45 minutes.",
            "Hamas holds 134 hostages.",
        ]
    )
    prob = np.array([0.9, 0.85, 0.6])
    assert mmr(prob, vecs, 2, 1.0) == [0, 1]  # plain ranking keeps the paraphrase
    assert mmr(prob, vecs, 2, 0.7) == [0, 2]  # diversity brings in the other fact


def test_seeds_gold_holds_its_ground(seed_index: Path) -> None:
    """The product's own acceptance set (qa/eval/seeds_gold.json): what holds
    today must keep holding."""
    from qa.eval import seeds

    r = seeds.run(seed_index)
    report = seeds.table(r)
    # today: 2 near-topic questions of 15 answered ("Who is the leader of
    # Hamas?", "What time does Shabbat start in New York?"), none off-topic.
    # 5 answerable ones refused, 2 more than with the best sentence's score
    # alone: the question-level abstention (qa/abstain.py) traded them for
    # refusing 0.92 of SQuAD's off-topic questions instead of 0.87 at the
    # same answer rate, and the BBC news questions lost no answer.
    assert len(r["answered_unanswerable"]) <= 2, report
    assert len(r["refused_answerable"]) <= 5, report
    assert r["topic_shift_accuracy"] == 1.0, report
    # hit@3 0.953 -> 0.930 for +0.092 news test hit@1 (the within-article step, docs/evaluation.md)
    # follow-ups 9 of 11 (was 10) since a pronoun follow-up is read by its own words inside the story: the
    # trade for news test follow-ups 0.167 -> 0.375 and CANARD test 0.625 -> 0.656 (docs/evaluation.md)
    # hit@1 0.860 -> 0.837 since a long article's first sentence gives way inside its article: "Which news network
    # quoted the senior official...?" is answered by the lead, now second; the trade for news test hit@1 0.550 ->
    # 0.583 (docs/evaluation.md, "The lead sentence of a long article")
    assert r["hit@3"] >= 0.93 and r["hit@1"] >= 0.83 and r["followup_accuracy"] >= 0.8, report


@pytest.mark.xfail(
    strict=True,
    reason="issue 3 targets not reached yet: seeds hit@1 0.84 (>= 0.93), hit@3 0.95 (1.0), "
    "5 answerable questions refused (0), 2 unanswerable answered (0), follow-ups 9/11 (11/11)",
)
def test_seeds_gold_targets(seed_index: Path) -> None:
    from qa.eval import seeds

    r = seeds.run(seed_index)
    report = seeds.table(r)
    assert r["hit@3"] == 1.0 and r["hit@1"] >= 0.93, report
    assert not r["refused_answerable"] and not r["answered_unanswerable"], report
    assert r["followup_accuracy"] == 1.0 and r["topic_shift_accuracy"] == 1.0, report


def test_memo_warm_up_fills_every_sentence_and_changes_no_answer(seed_index: Path, monkeypatch) -> None:
    import gc

    import qa
    from qa import engine as engine_mod
    from qa.fusion import TYPES

    questions = [
        "How long did the call last?",
        "Who is the Prime Minister of Israel?",
        "How many hostages were released?",
        "When did the ceasefire begin?",
        "What is the capital of France?",
    ]
    cold = qa.load(seed_index, warm=False)
    assert cold._warm_thread is None and not cold._facts
    want = [cold.ask(q).to_dict() for q in questions]
    warm = qa.load(seed_index)
    assert warm.wait_warm(60)
    n = warm.data.n_sentences
    assert len(warm._facts) == n and len(warm._stems) == n
    assert all(len(warm._typed[kind]) == n for kind in TYPES)
    assert [warm.ask(q).to_dict() for q in questions] == want

    # it waits while a question is being answered, and ends once its engine is gone
    monkeypatch.setattr(engine_mod, "_WARM_CHUNK", 1)
    e = qa.load(seed_index, warm=False)
    e._asking = 1
    assert e.warm()
    thread = e._warm_thread
    assert not e.wait_warm(0.3) and not e._facts
    e._asking = 0
    assert e.wait_warm(30) and len(e._facts) == n
    e2 = qa.load(seed_index, warm=False)
    e2._asking = 1
    e2.warm()
    thread = e2._warm_thread
    del e2
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


def test_a_question_naming_a_year_is_answered_by_that_years_sentence(tmp_path) -> None:
    """News of one story repeats itself year by year: a sentence naming another
    year, and not the one asked about, reports another period however close
    its words are."""
    import qa
    from index_build import build
    from qa.config import BuildConfig
    from qa.engine import _agree_years, _years

    assert _years("the 2004-05 financial year, not 12,2004") == {"2004", "2005"}
    assert _agree_years("in 2004-05?", ["In the year to March 2004, it grew 8.5%.", "x 2005"]) is None
    assert _agree_years("how many?", ["In 2022 a.", "In 2021 b."]) is None  # no year asked: the order stands

    src = tmp_path / "src"
    write_article(
        src,
        "darien.txt",
        "Migrants cross the Darien jungle",
        "So far in 2022, 13,000 migrants have crossed the Darien jungle on their way north, officials said.\n\n"
        "In 2021 the count was more than 133,000 people, a record.\n\n"
        "The jungle has no roads and the crossing takes about a week.",
    )
    build([src], tmp_path / "index", BuildConfig(progress=False), log=lambda m: None)
    engine = qa.load(tmp_path / "index", warm=False)
    q = "How many migrants crossed the Darien jungle in 2021?"
    raw = engine._scored(engine.resolve(q, []))[3]
    assert "2022" in raw[0], f"the words alone rank the other year first: {raw[:2]}"  # what the rule is for
    res = engine.ask(q)
    assert "133,000" in res.answers[0].text, [a.text for a in res.answers]
    # and a follow-up that swaps the year gets the other one, not the sentence just shown second-guessed
    follow = engine.ask("And in 2022?", history=[q])
    assert "13,000" in follow.answers[0].text, [a.text for a in follow.answers]


def _bbc_index(tmp_path: Path, articles: list[str], extra: dict[str, str] | None = None):  # noqa: ANN202
    """An engine over real BBC articles (ids like "sport/455", saved as "sport-455.txt"), 30 others
    around them (the first 6 of each topic) and `extra` texts by file name, built with the real builder.
    Without the learned reader: the tests that use it measure one within-article rule against that rule
    switched off, and the reader re-ranks inside the article too (its own gains and losses, measured on the
    held-out suites, are in docs/evaluation.md; tests/test_reader.py tests it)."""
    import shutil

    import qa
    from index_build import build
    from qa.config import BuildConfig
    from tests.conftest import bench_path

    src = tmp_path / "src"
    src.mkdir()
    bbc = bench_path("bbc")
    others = [p for topic in ("business", "entertainment", "politics", "sport", "tech")
              for p in sorted((bbc / topic).glob("*.txt"))[:6]]  # fmt: skip
    for p in [bbc / f"{a}.txt" for a in articles] + others:
        shutil.copy(p, src / f"{p.parent.name}-{p.name}")
    for name, text in (extra or {}).items():
        (src / name).write_text(text, encoding="utf-8")
    build([src], tmp_path / "index", BuildConfig(progress=False), log=lambda m: None)
    return qa.load(tmp_path / "index", warm=False, reader=False)


def _answered_first(engine, cases: list[tuple[str, str, str]]) -> list[bool]:  # noqa: ANN001
    """For each (article, question, the answer's words): is `ask`'s first answer that sentence, cited to that
    article (built by `_bbc_index`, "sport/455" saved as "sport-455")?"""
    out = []
    for article, q, answer in cases:
        top = engine.ask(q).answers[0]
        out.append(answer in top.text and top.sources[0].doc_id == article.replace("/", "-"))
    return out


# Questions of the news suite's tune half (qa/eval/news_gold.json) whose answer the fused order puts behind a
# sentence of the same article that only names the subject; (article, question, the answer's words)
_NAMED_SUBJECT = [
    ("entertainment/267", "How many tickets were on sale for T in the Park 2005?", "all 130,000 for the two-day event"),
    ("entertainment/214", "Who stars in Cherished, the BBC drama about Angela Cannings?", "Sarah Lancashire and Timothy Spall"),
    ("business/315", "When was the joint venture between Scottish and Newcastle and United Breweries actually set up?",
     "established in May 2003"),
    ("business/008", "Why does India's finance minister Chidambaram back letting currencies float freely?",
     "cope with economic shocks"),
    ("politics/208", "How many people had the tsunami killed in Indonesia when Britain offered the Gurkhas?",
     "94,000 of the 140,000"),
    ("entertainment/053", "Why would US cinema attendance normally be low on the weekend Boogeyman opened?",
     "Super Bowl weekend"),
    ("sport/126", "Which manager could have replaced Ian McCall at Dundee United?", "Sheffield Wednesday manager Paul Sturrock"),
]  # fmt: skip


def test_inside_the_article_the_sentence_that_answers_beats_the_one_that_names(tmp_path) -> None:
    """A question names its subject; inside the article about it, the answer
    seldom repeats the names while the sentence introducing the subject holds
    them all.  Real BBC articles, with 30 others around them."""
    from qa.engine import unnamed_question

    assert unnamed_question("Where was Yoshiaki Tsutsumi picked up by the authorities?") == (
        "Where was it picked up by the authorities?"
    )
    # no name, or one thing asked beyond them: read as typed (so the reader still reads its candidates)
    assert unnamed_question("How many people live there?") == "How many people live there?"
    assert unnamed_question("Who wrote The Vagina Monologues?") == "Who wrote The Vagina Monologues?"
    assert unnamed_question("Who was Charlie Bell?") is None  # nothing asked beyond the name: its lead answers
    assert unnamed_question("Who won?") is None  # too little to read
    # a follow-up's own words, without the terms carried after its "?": its pronouns are the unnamed subject
    assert unnamed_question("How old is he? Duncan Bannatyne venture", followup=True) == "How old is he?"
    assert unnamed_question("Why did he quit UKIP? Kilroy-Silk", followup=True) == "Why did he quit UKIP?"
    assert unnamed_question("What about it?", followup=True) is None  # nothing of its own to read

    engine = _bbc_index(tmp_path, [a for a, _, _ in _NAMED_SUBJECT])
    fused, asked = [], []
    for article, q, answer in _NAMED_SUBJECT:
        fused.append(answer in engine._scored(engine.resolve(q, []))[3][0])
        top = engine.ask(q).answers[0]
        asked.append(answer in top.text and top.sources[0].doc_id == article.replace("/", "-"))
    assert sum(fused) <= 1, f"the fused order alone answers these: {fused}"  # what the rule is for
    assert sum(asked) == len(_NAMED_SUBJECT), asked


# (article, question, pronoun follow-up, a phrase of its answer): the carried names pull the follow-up back to
# the sentence that answered the question, while its own words ("custody", "step down") find the answer
_PRONOUN_FOLLOWUPS = [
    ("entertainment/258", "Who was the victim in Courtney Love's assault case?",
     "Has she regained custody of her daughter?", "won back custody of Frances Bean"),
    ("business/452", "Who was Charlie Bell?", "When did he step down from the company?", "resigned in November"),
    ("sport/100", "Why was Mido dropped from Egypt's national side?",
     "Does he admit he was rude to reporters?", "I do confess that I was rude to the Egyptian press"),
    ("business/303", "Who said the Brazilian government was about to step in to rescue Varig?",
     "Did he warn of job cuts at the airline?", "no jobs would be lost and the airline would keep on flying"),
]  # fmt: skip


def test_a_pronoun_follow_up_is_read_inside_the_story_by_its_own_words(tmp_path: Path) -> None:
    """Real BBC articles (from the reader's training questions, qa/reader_news_questions.json), 30 others
    around them: the fused order of the resolved follow-up misses each answer; `ask` finds them all."""
    from qa.engine import unnamed_question

    engine = _bbc_index(tmp_path, [a for a, *_ in _PRONOUN_FOLLOWUPS])
    fused, asked = [], []
    for article, first, follow, answer in _PRONOUN_FOLLOWUPS:
        resolved = engine.resolve(follow, [first])
        assert resolved.followup and resolved.asked == follow  # the carried terms are not what it asks
        bare = engine.resolve(follow.rstrip("?"), [first])  # typed without its "?": read the same way
        assert bare.asked == follow.rstrip("?") and unnamed_question(bare.asked, True) == follow.rstrip("?")
        fused.append(answer in engine._scored(resolved)[3][0])
        top = engine.ask(follow, [first]).answers[0]
        asked.append(answer in top.text and top.sources[0].doc_id == article.replace("/", "-"))
    assert sum(fused) <= 1, f"the fused order alone answers these: {fused}"  # what the rule is for
    assert sum(asked) == len(_PRONOUN_FOLLOWUPS), asked


# Questions written for the reader (qa/reader_news_questions.json, "train" articles) about a detail of a story
# whose first sentence names everything it is about; (article, question, the answer's words)
_DETAIL_BEHIND_THE_LEAD = [
    ("sport/455", "Who did Daniela Hantuchova beat in the Hopman Cup final?", "Gisela Dulko"),
    ("entertainment/307", "What was Patsy Rowlands' first film role?", "film debut in 1963 in Tom Jones"),
    ("politics/333", "Who currently holds the Erewash seat Robert Kilroy-Silk will contest?", "Labour's Elizabeth Blackman"),
    ("entertainment/361", "Where was Morgan Spurlock presented with the writers' award?", "at the Roosevelt Hotel in Hollywood"),
]  # fmt: skip
_SHORT_NOTE = (
    "Harbour ferry resumes\n\nThe harbour ferry to Skellig Point resumed on Monday after a two-week repair. "
    "Its owner, Ferrycraft Ltd, replaced both engines. Crossings now run every 40 minutes. "
    "Fares are unchanged at 3 pounds. The first crossing leaves at 7am.\n"
)


def test_a_long_articles_first_sentence_gives_way_to_the_detail_asked(tmp_path, monkeypatch) -> None:
    """The first sentence of a long article names everything the story is about and outranks, inside its article,
    the sentence that holds the detail asked; it gives up LEAD_PENALTY there.  A paragraph-sized text's first
    sentence does not: it states a fact of its own."""
    import qa.engine
    from qa.engine import LEAD_MIN_SENTENCES, long_leads

    engine = _bbc_index(tmp_path, [a for a, _, _ in _DETAIL_BEHIND_THE_LEAD], {"note-ferry.txt": _SHORT_NOTE})

    def first_sentences(doc_id: str) -> list[int]:
        return [s for (s,) in engine.sql(
            "SELECT ds.sent_idx FROM doc_sentences ds JOIN documents d USING(doc_idx) "
            "WHERE d.doc_id = ? AND ds.sent_idx IS NOT NULL ORDER BY ds.sent_no LIMIT 2", (doc_id,))]  # fmt: skip

    lead, second = first_sentences("sport-455")
    assert long_leads(engine.docs, np.array([lead, second])).tolist() == [1.0, 0.0]
    note = first_sentences("note-ferry")
    assert len(note) == 2 and long_leads(engine.docs, np.array(note)).tolist() == [0.0, 0.0]  # 5 sentences
    assert LEAD_MIN_SENTENCES > 5

    def answered() -> list[bool]:
        return _answered_first(engine, _DETAIL_BEHIND_THE_LEAD)

    assert all(answered()), answered()
    monkeypatch.setattr(qa.engine, "KIND_BONUS", 0.0)  # three of them ask for a kind of thing: the penalty alone
    assert all(answered()), answered()
    monkeypatch.setattr(qa.engine, "LEAD_PENALTY", 0.0)
    assert sum(answered()) <= 1  # without the penalty the lead answers them: what the rule is for


# Reader questions (qa/reader_news_questions.json, "train" articles: no suite reports them) whose answer, inside its
# article, is the one sentence that holds something new of the kind asked; (article, question, the answer's words)
_KIND_ASKED = [
    ("business/146", "Who wrote the report assessing the EU's progress on the Lisbon targets?", "Wim Kok"),
    ("tech/096", "Who approved California's spyware legislation?", "Governor Arnold Schwarzenegger"),
    ("entertainment/307", "Where did Carry On actress Patsy Rowlands die?", "died in Hove"),
    ("business/219", "How long will Borussia Dortmund's interest payments be frozen?", "until 2007"),
]


def test_inside_the_article_the_sentence_with_the_kind_of_thing_asked_wins(tmp_path, monkeypatch) -> None:
    """A "Who ...?" question is answered by the sentence naming someone the question does not, "Where ...?" by the one
    that places it, "How long ...?" by the one with a span: inside the article, such a sentence gets
    KIND_BONUS.  Real BBC articles, with 30 others around them."""
    import qa.engine
    from qa.answer_kind import asked_kind, kind_flags

    assert [asked_kind(q) for q in ("And who wrote it?", "Where was he?", "How many died?", "Why did he go?")] == [
        "person", "place", "number", None,
    ]  # fmt: skip
    # a run of two new capitalised words names someone; an institution ("White House") or a name the
    # question holds does not
    flags = kind_flags(
        "Who told NBC News about Hamas's response?",
        ["The White House said earlier on Sunday that it spoke to NBC News.",
         "A senior official, John Kirby, told NBC News about the response."],
    )  # fmt: skip
    assert flags is not None and flags.tolist() == [0.0, 1.0]
    where = kind_flags(
        "Where did Patsy Rowlands die?",
        ["Patsy Rowlands has died.", "Rowlands died in Hove.", "She died in the morning.", "She died in Östersund."],
    )
    assert where is not None and where.tolist() == [0.0, 1.0, 0.0, 1.0]  # a capital of any script places
    who = kind_flags("Who scored the winner?", ["Martin Ødegaard scored it.", "The team won it late on."])
    assert who is not None and who.tolist() == [1.0, 0.0]
    number = kind_flags("How many MPs took part in 2004?", ["Some 83 MPs took part.", "It was in 2004."])
    assert number is not None and number.tolist() == [1.0, 0.0]  # a number the question does not hold

    engine = _bbc_index(tmp_path, [a for a, _, _ in _KIND_ASKED])

    def answered() -> list[bool]:
        return _answered_first(engine, _KIND_ASKED)

    assert all(answered()), answered()
    monkeypatch.setattr(qa.engine, "KIND_BONUS", 0.0)
    assert sum(answered()) <= 1  # without the bonus the sentence that names the subject answers: what it is for


# Reader conversations (qa/reader_news_questions.json; no suite reports them): "And X?" after a question about one
# participant; (article, earlier turns, follow-up, the answer's words)
_AND_X = [
    ("entertainment/034", ["Who won best actress at the Evening Standard British Film Awards?"], "And best screenplay?",
     "Pawlikowski won the best screenplay statuette"),
    ("entertainment/234", ["At what position did the Scissor Sisters' Filthy/Gorgeous enter the UK singles chart?"],
     "And Kasabian's Cut Off?", "Kasabian who are at number eight"),
    ("tech/020", ["What share of browser users does Firefox have?"], "And what about Internet Explorer?",
     "a share of about 90%"),
    ("business/406", ["How much did Wal-Mart's December sales rise?"], "And Costco?", "8% jump in same store sales"),
    ("entertainment/008", ["Who are the best actress nominees at the Evening Standard Theatre Awards?",
                           "And for best actor?"], "And best director?", "Luc Bondy for Cruel and Tender"),
]  # fmt: skip


def test_and_x_follow_ups_are_answered_with_the_new_focus(tmp_path, monkeypatch) -> None:
    """ "And Costco?" is the previous question with Costco in Wal-Mart's place, and inside the article the
    sentence that names Costco answers it, not the one that answered Wal-Mart.  Real BBC articles, with
    30 others around them."""
    import qa.engine

    engine = _bbc_index(tmp_path, sorted({a for a, _, _, _ in _AND_X}))

    def answered() -> list[bool]:
        out = []
        for article, history, q, answer in _AND_X:
            top = engine.ask(q, history).answers[0]
            out.append(answer in top.text and top.sources[0].doc_id == article.replace("/", "-"))
        return out

    assert all(answered()), answered()
    # inside the article, the rewrite with its names as "it" ("How much did it sales rise?") points back
    # at the previous answer: what comparing with the follow-up as typed is for
    monkeypatch.setattr(qa.engine, "within_question", lambda r: qa.engine.unnamed_question(r.asked, r.followup))
    assert sum(answered()) <= 3


def test_within_article_order_moves_only_the_best_answers_article(monkeypatch) -> None:
    import qa.engine
    from qa.engine import within_article_order

    score = np.array([0.9, 0.3, 0.2, 0.1])
    docs = np.array([1, 1, 2, 1])
    cos = np.array([0.0, 0.1, 0.9, 0.3])
    # article 1's candidates re-ranked by log-score + weight x cosine; article 2's keeps its place
    assert within_article_order(score, docs, cos).tolist() == [3, 1, 2, 0]
    assert within_article_order(score, np.array([1, 2, 3, 4]), cos) is None  # nothing else from its article
    assert within_article_order(score, docs, np.zeros(4)) is None  # nothing to move
    # the reader's logits join in (NaN: not read, ranked as the worst one read), and with them every article's
    # candidates change places (ACROSS_ARTICLES, on), the best one's article SAME_ARTICLE_BONUS ahead
    read = np.array([5.0, np.nan, 0.0, 0.0])
    assert qa.engine.ACROSS_ARTICLES and qa.engine.SAME_ARTICLE_BONUS > 0
    assert within_article_order(score, docs, cos, read).tolist() == [2, 0, 3, 1]
    close = np.array([0.0, 0.1, 0.75, 0.3])  # 2 now reads 2.5 units above 0, 0.5 below it with the bonus
    assert within_article_order(score, docs, close, read).tolist() == [0, 2, 3, 1]
    monkeypatch.setattr(qa.engine, "SAME_ARTICLE_BONUS", 0.0)
    assert within_article_order(score, docs, close, read).tolist() == [2, 0, 3, 1]
    assert within_article_order(score, docs, cos).tolist() == [3, 1, 2, 0]  # without its logits, as before
    # a follow-up (across=False), or with ACROSS_ARTICLES off: its own article only; the logits undo the cosine's move
    assert qa.engine.reads_across() and not qa.engine.reads_across(followup=True)
    assert within_article_order(score, docs, cos, read, across=False).tolist() == [0, 3, 2, 1]
    monkeypatch.setattr(qa.engine, "ACROSS_ARTICLES", False)
    assert within_article_order(score, docs, cos, read).tolist() == [0, 3, 2, 1]
    # a long article's first sentence gives up LEAD_PENALTY log-score units: candidate 1, flagged, falls behind 0
    lead = np.array([0.0, 1.0, 0.0, 0.0])
    assert within_article_order(score, docs, cos, lead=lead).tolist() == [3, 0, 2, 1]
    assert within_article_order(score, docs, cos, np.full(4, np.nan)).tolist() == [3, 1, 2, 0]  # none read
    # a candidate holding something new of the kind asked gains KIND_BONUS: candidate 1 moves ahead of 3
    kind = np.array([0.0, 1.0, 0.0, 0.0])
    assert within_article_order(score, docs, cos, kind=kind).tolist() == [1, 3, 2, 0]


def test_a_follow_up_has_more_of_its_articles_candidates_read() -> None:
    """`read_slots`: a question's READ_MOST best by score and cosine, of every
    article; a follow-up's READ_MOST_FOLLOWUP best, of its best answer's
    article only (`read_count`)."""
    from qa.engine import READ_MOST, READ_MOST_FOLLOWUP, read_count, read_slots

    assert read_count() == READ_MOST < READ_MOST_FOLLOWUP == read_count(followup=True)
    n = READ_MOST_FOLLOWUP + 2
    score = np.linspace(0.9, 0.1, n)
    docs = np.array([7, 3] + [7] * (n - 2))  # candidate 1 is another article's
    cos = np.zeros(n)
    cos[n - 1] = 1.0  # the last one is closest to the question by far
    first = read_slots(score, docs, cos, across=True, most=read_count())
    assert sorted(first.tolist()) == [0, 1, n - 1]
    fu = read_slots(score, docs, cos, across=False, most=read_count(followup=True))
    assert len(fu) == READ_MOST_FOLLOWUP and 1 not in fu and fu[0] == n - 1
    assert sorted(fu.tolist()) == [0, *range(2, READ_MOST_FOLLOWUP), n - 1]
