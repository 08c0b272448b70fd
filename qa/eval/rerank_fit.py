"""Fit the second stage (qa.rerank): how the reader's logits and the fused
score combine, how many candidates the reader reads, and its abstention.

    python -m qa.eval.rerank_fit [--n 5 8 10] [--reader DIR] [--out FILE] [--dry-run]

Fitted on questions the reader was never trained on (qa.reader_train):

* SQuAD v1.1 dev, the tuning half's last articles (the reader trained on
  the first ones), each question asked with its paragraph in the index and
  with its whole article hidden;
* news questions the reader never trained on: the "fit" articles of its
  training questions (qa/reader_news_questions.json; the default, so the
  news suite's tune half stays a check) and/or the news suite's tune half
  (`--news tune`): every question and follow-up turn asked as is and with
  every sentence holding its answer hidden (the topic is there, the answer
  is not: near-topic refusals), and unanswerable questions.  News rows
  weigh as much as all SQuAD rows together: they are the product's own kind
  of text and question.

The test halves of both are never read here.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

N_MAX = 20  # candidates read when collecting; every n tried is at most this


@dataclass
class Row:
    """One question asked once: its fused candidates (best first), the
    reader's logits of the first N_MAX, and which candidates answer it."""

    source: str  # "squad" | "news"
    question: str
    qtype: str
    prob: np.ndarray
    X: np.ndarray
    reader: np.ndarray
    hit: np.ndarray  # bool per candidate; all False when the answer is hidden
    answerable: bool
    lead: np.ndarray  # 1.0 where the candidate is its article's first sentence
    texts: list[str] = field(default_factory=list)  # the first N_MAX candidates'
    weight: float = 1.0
    meta: dict = field(default_factory=dict)


def _row(engine, source, question, resolved, hit_of, answerable, allowed=None, meta=None) -> Row:
    from qa.fusion import question_type

    qtype = question_type(resolved.type_text)
    ids, prob, X, _, texts = engine.score_candidates(resolved, qtype, allowed=allowed)
    read = engine.reader.score(resolved.query, texts[:N_MAX]) if len(texts) else np.zeros(0, np.float32)
    hit = np.array([bool(answerable and hit_of(int(s), t)) for s, t in zip(ids, texts)], dtype=bool)
    lead = (engine.docs.prev_sent[ids] < 0).astype(np.float64)
    return Row(source, question, qtype, prob, X, read, hit, answerable, lead, texts[:N_MAX], meta=meta or {})


def collect_squad(engine_for, log=print) -> list[Row]:
    from qa.eval import squad
    from qa.reader_train import READER_ARTICLES

    paras, _, _ = squad._load()
    titles = list(dict.fromkeys(p["title"] for p in paras))
    fit_titles = set(titles[READER_ARTICLES : squad.DEV_ARTICLES])
    engine = engine_for(squad.build())
    qs = [q for q in squad.questions_for(engine) if q.article in fit_titles]
    engine.prime([q.text for q in qs])
    src_docs: dict[int, set[int]] = {}
    for d, s in engine.data.db.execute("SELECT doc_idx, sent_idx FROM doc_sentences WHERE sent_idx IS NOT NULL"):
        src_docs.setdefault(s, set()).add(d)
    masks = squad._article_masks(engine, qs)
    rows = []
    for n, q in enumerate(qs):
        r = engine.resolve(q.text, [])
        hit_of = lambda s, t, q=q: q.is_hit(t) and q.doc_idx in src_docs.get(s, ())  # noqa: E731
        rows.append(_row(engine, "squad", q.text, r, hit_of, True))
        rows.append(_row(engine, "squad", q.text, r, hit_of, False, allowed=masks[q.article]))
        if n % 500 == 0:
            log(f"  squad {n}/{len(qs)}")
    return rows


def collect_news(engine_for, part: str = "tune", log=print) -> list[Row]:
    """Rows of the news suite's tune half (part "tune") or of the reader's
    news training questions kept out of its training (part "fit")."""
    from qa.eval import news
    from qa.reader_train import NEWS_TRAIN

    if part == "fit":
        gold = json.loads(NEWS_TRAIN.read_text(encoding="utf-8"))
        gold.setdefault("unanswerable", [])
    else:
        gold = news.load_gold()

    def in_part(docs: list[str]) -> bool:
        return bool(docs) and all(gold["articles"].get(d) == part for d in docs)

    index = news.index_dir()
    engine = engine_for(index)
    _, copies = news.indexed_sentences(index)
    texts = [t for (t,) in engine.sql("SELECT text FROM sentences ORDER BY sent_idx")]
    cites: dict[int, set[str]] = {}
    for s, d in engine.sql(
        "SELECT ds.sent_idx, d.doc_id FROM doc_sentences ds JOIN documents d USING(doc_idx) "
        "WHERE ds.sent_idx IS NOT NULL"
    ):
        cites.setdefault(s, set()).add(d)
    rows: list[Row] = []

    def ask(question: str, history: list[str], item: dict | None, kind: str) -> None:
        resolved = engine.resolve(question, history)
        if item is None:  # unanswerable
            rows.append(_row(engine, "news", question, resolved, lambda s, t: False, False, meta={"kind": kind}))
            return
        docs = {c for d in item["doc_ids"] + item.get("other_docs", []) for c in copies.get(d, [d])}
        expect = item["expect"]
        hit_of = lambda s, t: any(e in t for e in expect) and bool(cites.get(s, set()) & docs)  # noqa: E731
        rows.append(_row(engine, "news", question, resolved, hit_of, True, meta={"kind": kind}))
        hidden = np.array([not any(e in t for e in expect) for t in texts], dtype=bool)
        rows.append(
            _row(
                engine,
                "news",
                question,
                resolved,
                hit_of,
                False,
                allowed=hidden,
                meta={"kind": kind + "-answer-hidden"},
            )
        )

    for it in gold["questions"]:
        if in_part(it["doc_ids"]):
            ask(it["question"], [], it, "question")
    for conv in gold["conversations"]:
        if not in_part([d for t in conv["turns"] for d in t.get("doc_ids", [])]):
            continue
        history: list[str] = []
        for t, turn in enumerate(conv["turns"]):
            if t > 0:
                ask(turn["question"], list(history), None if turn.get("unanswerable") else turn, "followup")
            history.append(turn["question"])
    for it in gold["unanswerable"]:
        if it.get("half") == part:
            ask(it["question"], [], None, "unanswerable")
    log(f"  news {len(rows)} rows")
    return rows


def _weights(rows: list[Row], news_share: float) -> None:
    sq = sum(1 for r in rows if r.source == "squad")
    nw = sum(1 for r in rows if r.source == "news")
    for r in rows:
        r.weight = 1.0 if r.source == "squad" or not sq else news_share * sq / max(nw, 1)


def fit_ranking(rows: list[Row], n: int, C: float = 1.0):
    """The second stage's logistic model over qa.rerank.FEATURES of the first
    n candidates of every answerable question."""
    from sklearn.linear_model import LogisticRegression

    from qa.rerank import RerankModel, features

    F, y, w = [], [], []
    for r in rows:
        if not r.answerable or not len(r.reader):
            continue
        m = min(n, len(r.reader))
        F.append(features(r.prob[:m], r.reader[:m], r.lead[:m]))
        y.append(r.hit[:m])
        w.append(np.full(m, r.weight / m))
    lr = LogisticRegression(C=C, max_iter=3000).fit(
        np.concatenate(F), np.concatenate(y), sample_weight=np.concatenate(w) * len(F)
    )
    return RerankModel(n, lr.coef_[0], float(lr.intercept_[0]), 0.5)


def _reranked(model, r: Row):
    m = min(model.n, len(r.reader))
    order, p2 = model.rerank(r.prob, r.reader[:m], r.lead)
    return order, p2, r.X[order], r.reader[order[:m]]


def fit_abstention(model, rows: list[Row], near_topic: bool = False):
    """(model with its abstention and threshold, weighted accuracy).

    Without `near_topic`, questions asked with only their answer hidden (the
    story is there, the fact is not) are left out of the fit: as in the
    fusion's abstention (docs/evaluation.md, abstention), fitting on them
    refused too many answerable news questions (tune half 0.043 -> 0.214)."""
    from qa import abstain

    rows = [r for r in rows if near_topic or not r.meta.get("kind", "").endswith("-answer-hidden")]
    ans: list[tuple] = []
    hid: list[tuple] = []
    wa: list[float] = []
    wh: list[float] = []
    for r in rows:
        order, p2, X, read = _reranked(model, r)
        (ans if r.answerable else hid).append((p2, X, r.qtype, read))
        (wa if r.answerable else wh).append(r.weight)
    abst = abstain.fit(ans, hid, np.r_[wa, wh])
    model = replace(model, abstention=abst)
    top = np.array([model.answer_scores(*_reranked_scores(model, r))[0] if len(r.prob) else 0.0 for r in rows])
    y = np.array([r.answerable for r in rows])
    w = np.array([r.weight for r in rows])
    grid = np.round(np.linspace(0.02, 0.98, 97), 3)
    acc = np.array([(w * ((top >= t) == y)).sum() / w.sum() for t in grid])
    t = float(grid[int(np.argmax(acc))])
    return replace(model, threshold=t), float(acc.max())


def _reranked_scores(model, r: Row):
    order, p2, X, read = _reranked(model, r)
    return p2, X, r.qtype, read


def metrics(rows: list[Row], model=None, fused_threshold: float | None = None) -> dict:
    """hit@1/@3, refused-when-answerable and answered-when-not, per source
    and kind; model None = the fused ranking alone."""
    from qa.fusion import load_model as load_fusion

    fusion = load_fusion()
    out: dict = {}
    for r in rows:
        key = f"{r.source}/{r.meta.get('kind', 'question')}" if r.source == "news" else "squad"
        if model is None:
            order = np.arange(len(r.prob))
            top = float(fusion.answer_scores(r.prob, r.X, r.qtype)[0]) if len(r.prob) else 0.0
            threshold = fusion.threshold if fused_threshold is None else fused_threshold
        else:
            order = _reranked(model, r)[0]
            top = float(model.answer_scores(*_reranked_scores(model, r))[0]) if len(r.prob) else 0.0
            threshold = model.threshold
        s = out.setdefault(
            key.replace("-answer-hidden", ""),
            {"n": 0, "hit@1": 0, "hit@3": 0, "refused": 0, "hidden": 0, "hidden_answered": 0},
        )
        if r.answerable:
            h = r.hit[order]
            s["n"] += 1
            s["hit@1"] += bool(h[:1].any())
            s["hit@3"] += bool(h[:3].any())
            s["refused"] += top < threshold
        else:
            s["hidden"] += 1
            s["hidden_answered"] += top >= threshold
    for s in out.values():
        for k in ("hit@1", "hit@3", "refused"):
            s[k] = round(s[k] / max(s["n"], 1), 3)
        s["hidden_answered"] = round(s["hidden_answered"] / max(s["hidden"], 1), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m qa.eval.rerank_fit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[5, 8, 10], help="candidates read: each is tried")
    ap.add_argument("--reader", type=Path, default=None, help="reader model directory (default: the packaged one)")
    ap.add_argument("--news-share", type=float, default=1.0, help="news rows' total weight against SQuAD's")
    ap.add_argument("--out", type=Path, default=None, help="weights file (default: qa/rerank_weights.json)")
    ap.add_argument(
        "--news",
        nargs="+",
        default=["fit"],
        choices=["fit", "tune"],
        help="news rows: the reader's held-out training questions (fit) and/or the suite's tune half",
    )
    ap.add_argument(
        "--near-topic", action="store_true", help="fit the abstention on answer-hidden news rows too (refuses more)"
    )
    ap.add_argument("--rows", type=Path, default=None, help="cache of the collected rows (read if it exists)")
    ap.add_argument("--dry-run", action="store_true", help="report, write nothing")
    args = ap.parse_args(argv)
    from qa.engine import Engine
    from qa.reader import load_reader
    from qa.rerank import WEIGHTS_FILE

    reader = load_reader(args.reader)

    def engine_for(index):
        e = Engine.load(index, warm=False, reader=False)
        e.reader = reader  # read the candidates; rank by the fused score
        return e

    t0 = time.perf_counter()
    if args.rows and args.rows.is_file():  # rows of an earlier run with the same reader: refit in seconds
        rows = pickle.loads(args.rows.read_bytes())
    else:
        rows = collect_squad(engine_for) + [r for part in args.news for r in collect_news(engine_for, part)]
        if args.rows:
            args.rows.write_bytes(pickle.dumps(rows))
    print(f"collected {len(rows)} rows in {time.perf_counter() - t0:.0f} s", flush=True)
    _weights(rows, args.news_share)
    print("fused ranking alone:", json.dumps(metrics(rows)), flush=True)
    best = None
    for n in args.n:
        model, acc = fit_abstention(fit_ranking(rows, n), rows, args.near_topic)
        m = metrics(rows, model)
        score = m["squad"]["hit@1"] + m["news/question"]["hit@1"]
        print(f"n={n}: {json.dumps(m)}  abstention acc {acc:.3f}  threshold {model.threshold}", flush=True)
        if best is None or score > best[0]:
            best = (score, model, m, acc)
    assert best is not None  # args.n is not empty
    _, model, m, acc = best
    reader_info = {k: v for k, v in reader.info.items() if k not in ("history",)}
    model = replace(
        model,
        info={
            "fitted_on": "SQuAD dev tuning half, articles the reader did not train on (asked "
            "with the article and with it hidden); news suite tune half (asked "
            "with the answer and with it hidden; unanswerable questions)",
            "news_share": args.news_share,
            "tune_metrics": m,
            "abstention_weighted_accuracy": round(acc, 4),
            "reader": {k: reader_info.get(k) for k in ("layers", "steps", "data_sha1")},
        },
    )
    if not args.dry_run:
        (args.out or WEIGHTS_FILE).write_text(json.dumps(model.to_json(), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out or WEIGHTS_FILE} (n={model.n})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
