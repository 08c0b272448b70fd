"""The blind news evaluation's gold file holds what it promises: enough
questions of every kind over enough articles from every source, a fixed
split by article, every expected answer inside one answerable sentence of
its article as the real builder splits it, and no question copying its
answer's wording."""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO, bench_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gold():
    from qa.eval import news

    return news.load_gold()


def _source_file(doc_id: str) -> Path:
    if "/" in doc_id:
        return bench_path("bbc", f"{doc_id}.txt")
    return bench_path("web", f"{doc_id}.html")


@pytest.fixture(scope="module")
def gold_index(gold, tmp_path_factory) -> Path:
    """The gold's articles (and their byte-identical BBC copies) built with the
    real builder, under the same doc ids as in the suite's full index."""
    from index_build import build
    from qa.config import BuildConfig

    root = tmp_path_factory.mktemp("news-gold")
    wanted = set(gold["articles"])
    for item in gold["questions"] + [t for c in gold["conversations"] for t in c["turns"]]:
        wanted |= set(item.get("other_docs", []))
    by_hash: dict[str, list[Path]] = {}
    for p in bench_path("bbc").glob("*/*.txt"):
        by_hash.setdefault(hashlib.sha1(p.read_bytes()).hexdigest(), []).append(p)
    files = {_source_file(d) for d in wanted}
    for p in list(files):
        if p.suffix == ".txt":
            files |= set(by_hash[hashlib.sha1(p.read_bytes()).hexdigest()])
    for p in files:
        dest = (
            root / ("bbc" if p.suffix == ".txt" else "web") / p.relative_to(p.parents[1 if p.suffix == ".txt" else 0])
        )
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest)
    out = root / "index"
    build([root / "bbc", root / "web"], out, BuildConfig(progress=False), log=lambda m: None)
    return out


def test_gold_matches_the_articles_as_built(gold, gold_index) -> None:
    from qa.eval import news

    sents, copies = news.indexed_sentences(gold_index)
    assert news.check_gold(gold, sents, copies) == []


def test_gold_covers_what_the_issue_asks_for(gold) -> None:
    from qa.eval import news

    arts = gold["articles"]
    assert len(arts) >= 60
    topics = Counter(d.split("/")[0] if "/" in d else "web" for d in arts)
    assert set(topics) == {"business", "entertainment", "politics", "sport", "tech", "web"}
    assert topics["web"] == 34
    qs = gold["questions"]
    assert len(qs) >= 200
    asked = {d for q in qs for d in q["doc_ids"]}
    assert len(asked) >= 60
    kinds = Counter(q["kind"] for q in qs)
    for k in ("who", "what", "when", "where", "why", "how many", "how much", "how long", "yes-no"):
        assert kinds[k] >= 8, (k, kinds)
    convs = gold["conversations"]
    assert len(convs) >= 40 and all(2 <= len(c["turns"]) <= 3 for c in convs)
    assert all(Counter(c["shift"] for c in convs)[s] >= 4 for s in news.SHIFTS)
    un = gold["unanswerable"]
    assert len(un) >= 20 and sum(u["near"] is not None for u in un) >= 10
    # split by article, both halves well filled, no item straddling them
    halves = Counter(news.half_of(gold, q) for q in qs)
    assert set(halves) == {"tune", "test"} and min(halves.values()) >= 100
    assert all(news.conversation_half(gold, c) in news.HALVES for c in convs)
    assert Counter(u["half"] for u in un)["test"] >= 10


def test_copied_wording_is_caught() -> None:
    from qa.eval.news import copied_phrases

    sentence = "A hospital employee noticed Thursday that some boxes were missing."
    assert copied_phrases("Did anyone notice that some boxes were missing?", sentence) == [
        "that some boxes were",
        "some boxes were missing",
    ]
    assert copied_phrases("When did staff at the Kobe hospital realise masks had gone?", sentence) == []
    # names may be repeated: every word capitalised
    assert (
        copied_phrases(
            "What did the Japanese Red Cross Kobe Hospital say?",
            "officials at the Japanese Red Cross Kobe Hospital said",
        )
        == []
    )


def test_reader_training_questions_stay_off_the_evaluation(gold) -> None:
    """The reader's news training questions (qa/reader_news_questions.json):
    every answer inside one answerable sentence of its article as the real
    builder segments it, no wording copied, and not one article of the news
    or BBC suites among them, nor a byte-identical copy of one."""
    import json

    from index_build.documents import SourceFile, load
    from qa.eval import news
    from qa.reader_train import NEWS_TRAIN

    train = json.loads(NEWS_TRAIN.read_text(encoding="utf-8"))
    arts = train["articles"]
    assert len(arts) >= 400 and len(train["questions"]) >= 1000 and len(train["conversations"]) >= 60
    # unanswerable questions for abstention on news, half of them at least near the topic of one of its articles
    un = train["unanswerable"]
    assert len(un) >= 150 and sum(u["near"] is not None for u in un) >= len(un) / 2
    assert {u["half"] for u in un} == {"train", "fit"}
    assert set(arts.values()) == {"train", "fit"}
    # "fit" (kept out of training) is chosen by the id's hash, fixed before any training
    assert all(int(hashlib.sha1(d.encode()).hexdigest(), 16) % 4 == 0 for d, h in arts.items() if h == "fit")
    sents = {}
    for d in arts:
        doc = load(SourceFile(_source_file(d), d))
        sents[d] = [doc.sentence_text(i) for i, s in enumerate(doc.sentences) if s.is_answer]
    assert news.check_gold(train, sents, {d: [d] for d in arts}, halves=("train", "fit")) == []
    evaluated = set(gold["articles"])
    for q in json.loads((REPO / "qa/eval/bbc_gold.json").read_text(encoding="utf-8")):
        evaluated |= set(q["doc_ids"]) | set(q.get("other_docs", []))
    sha = lambda d: hashlib.sha1(_source_file(d).read_bytes()).hexdigest()  # noqa: E731
    evaluated_bytes = {sha(d) for d in evaluated}
    assert not set(arts) & evaluated
    assert not {sha(d) for d in arts} & evaluated_bytes


def test_any_gold_file_in_the_format_can_be_asked(capsys) -> None:
    """`--gold` runs the suite over another file in its format: its halves
    are the file's own, and a half it does not have is a one-line error."""
    from qa.eval import news
    from qa.reader_train import NEWS_TRAIN

    assert news.split_names(news.load_gold()) == ("tune", "test")
    assert set(news.split_names(news.load_gold(NEWS_TRAIN))) == {"train", "fit"}
    with pytest.raises(SystemExit) as e:
        news.main(["--gold", str(NEWS_TRAIN), "--half", "test"])
    assert e.value.code == 2
    assert "no half 'test' in" in capsys.readouterr().err
