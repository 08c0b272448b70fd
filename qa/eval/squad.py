"""SQuAD v1.1 dev under the ReQA protocol, and the product metric.

Every paragraph becomes an article file (title line, blank line, paragraph)
built with the real builder; questions are asked through the real engine.

* Sentence level: the rank of the first unique sentence overlapping a gold
  ReQA answer sentence of the question's paragraph; MRR, R@1/5/10 and the share
  of top-1 sentences containing a gold answer string, for BM25 alone, dense
  alone, reciprocal rank fusion, a z-score sum, and the full system.
* Product metric: `engine.ask`; a hit at rank i is the first answer whose text
  contains a gold answer string and whose sources include the gold paragraph.
* Abstention: each question is asked a second time with its whole article
  hidden from the index (so the sources cannot answer it); a refused question
  there and an answered one in the full index are both correct.

Articles are split in file order: the first 24 are the dev half (all tuning
happens there: `--fit`), the other 24 are only reported.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qa.eval.common import bench_dir, build_index, cache_dir, format_table, mrr, recall_at, write_article

DEV_ARTICLES = 24
# Share of negative candidates the fit keeps (every positive is kept): the
# pairwise products of every candidate row of both layouts would not fit in
# memory here; the intercept is corrected (see `fit`).  Size and time of the
# fit: docs/development.md#refit-the-weights.
FIT_NEGATIVES = 0.2


@dataclass
class Question:
    qid: str
    text: str
    doc_idx: int  # gold paragraph's row in the index
    article: str
    answers: list[str]
    gold_sents: set[int] = field(default_factory=set)  # unique sentence ids overlapping gold ReQA sentences
    half: str = "dev"
    # articles layout: a hit must also lie in the question's own paragraph
    in_paragraph: frozenset[int] | None = None

    def is_hit(self, text: str) -> bool:
        return any(a in text for a in self.answers)


def _load(limit: int | None = None):
    root = bench_dir() / "squad_v1.1"
    paras = [
        json.loads(line) for line in (root / "squad_dev_v1.1_paragraphs.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    questions = [
        json.loads(line) for line in (root / "squad_dev_v1.1_questions.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    titles = list(dict.fromkeys(p["title"] for p in paras))
    dev = set(titles[:DEV_ARTICLES])
    return paras, questions, dev


def build(quiet: bool = True, layout: str = "paragraphs") -> Path:
    """The SQuAD index: one article file per paragraph (the ReQA protocol and
    the product metric), or with layout="articles" one file per Wikipedia
    article (its paragraphs in order), shaped like the news articles users
    index: long, several topics each, so article-level evidence (coverage,
    centroid) is as diluted as it is in real use."""
    paras, _, _ = _load()
    root = cache_dir("squad" if layout == "paragraphs" else "squad-articles")
    if layout == "paragraphs":
        for i, p in enumerate(paras):
            write_article(root / "articles", f"{i:04d}.txt", p["title"].replace("_", " "), p["context"])
    else:
        for k, (title, body) in enumerate(_article_texts(paras)):
            write_article(root / "articles", f"a{k:02d}.txt", title, body)
    return build_index([root / "articles"], root / "index", quiet=quiet)


def _article_texts(paras) -> list[tuple[str, str]]:
    by_title: dict[str, list[str]] = {}
    for p in paras:
        by_title.setdefault(p["title"], []).append(p["context"])
    return [(t.replace("_", " "), "\n\n".join(ps)) for t, ps in by_title.items()]


def questions_for(engine, layout: str = "paragraphs") -> list[Question]:
    paras, questions, dev = _load()
    db = engine.data.db
    doc_of = {doc_id: idx for idx, doc_id in db.execute("SELECT doc_idx, doc_id FROM documents")}
    para_row = {p["para_id"]: i for i, p in enumerate(paras)}
    # where each paragraph sits: (document id, character offset of its text)
    place: dict[int, tuple[str, int]] = {}
    if layout == "paragraphs":
        for i, p in enumerate(paras):
            place[i] = (f"{i:04d}", len(p["title"].replace("_", " ")) + 2)
    else:
        titles = list(dict.fromkeys(p["title"] for p in paras))
        at: dict[str, int] = {t: len(t.replace("_", " ")) + 2 for t in titles}
        for i, p in enumerate(paras):
            place[i] = (f"a{titles.index(p['title']):02d}", at[p["title"]])
            at[p["title"]] += len(p["context"]) + 2
    spans: dict[int, list[tuple[int, int, int]]] = {}
    for d, a, b, s in db.execute("SELECT doc_idx, start, end, sent_idx FROM doc_sentences WHERE sent_idx IS NOT NULL"):
        spans.setdefault(d, []).append((a, b, s))
    out = []
    for q in questions:
        i = para_row[q["para_id"]]
        p = paras[i]
        doc_id, offset = place[i]
        d = doc_of[doc_id]
        gold = set()
        for g in q["gold_sentence_idx"]:
            ga, gb = p["sentence_spans"][g]
            ga, gb = ga + offset, gb + offset
            gold |= {s for a, b, s in spans.get(d, []) if a < gb and ga < b}
        in_para = None
        if layout != "paragraphs":
            end = offset + len(p["context"])
            in_para = frozenset(s for a, b, s in spans.get(d, []) if a < end and offset < b)
        out.append(
            Question(
                q["id"],
                q["question"],
                d,
                p["title"],
                [a for a, _ in q["answers"]],
                gold,
                "dev" if p["title"] in dev else "test",
                in_paragraph=in_para,
            )
        )
    return out


def _rank(order: np.ndarray, gold: set[int]) -> int | None:
    for r, s in enumerate(order[:100], 1):
        if int(s) in gold:
            return r
    return None


def _article_masks(engine, qs: list[Question]) -> dict[str, np.ndarray]:
    """Per article: which sentences remain when that article is hidden."""
    db = engine.data.db
    title_of = {d: t for d, t in ((q.doc_idx, q.article) for q in qs)}
    n = engine.data.n_sentences
    masks: dict[str, np.ndarray] = {}
    owners: dict[str, set[int]] = {}
    for d, s in db.execute("SELECT doc_idx, sent_idx FROM doc_sentences WHERE sent_idx IS NOT NULL"):
        t = title_of.get(d)
        if t is not None:
            owners.setdefault(t, set()).add(s)
    for t, sents in owners.items():
        m = np.ones(n, dtype=bool)
        m[list(sents)] = False
        masks[t] = m
    return masks


def collect(engine, qs: list[Question]) -> list[dict]:
    """Candidates and features of every question, with and without its article
    (and, one file per article, without the answer's paragraph).

    Candidate sets do not depend on the fusion weights, so one pass serves
    fitting and every scoring variant.
    """
    from qa.engine import in_long_articles, long_leads, unnamed_question
    from qa.followup import resolve
    from qa.fusion import question_type

    engine.prime([q.text for q in qs])
    unnamed = {q.text: unnamed_question(q.text) for q in qs}
    engine.prime([u for u in unnamed.values() if u is not None])
    src_docs: dict[int, set[int]] = {}
    for d, s in engine.data.db.execute("SELECT doc_idx, sent_idx FROM doc_sentences WHERE sent_idx IS NOT NULL"):
        src_docs.setdefault(s, set()).add(d)
    masks = _article_masks(engine, qs)
    rows = []
    n_read = engine.rerank.n if engine.rerank is not None else 0

    def read(ids: np.ndarray, texts: list[str]) -> dict:
        """The reader's logits of the first candidates and their lead flags
        (qa.rerank), when the engine has a reader."""
        if not n_read:
            return {}
        return {
            "read": engine.reader.score(r.query, texts[:n_read]),
            "lead": (engine.docs.prev_sent[ids] < 0).astype(np.float64),
        }

    for q in qs:
        r = resolve(q.text, [])
        ids, _, X, vecs, texts = engine.score_candidates(r)
        u = unnamed[q.text]
        uvec = engine._embed([u])[0] if u is not None else None
        hit = np.array(
            [
                q.is_hit(t)
                and q.doc_idx in src_docs.get(int(s), ())
                and (q.in_paragraph is None or int(s) in q.in_paragraph)
                for s, t in zip(ids, texts)
            ],
            dtype=bool,
        )
        h_ids, _, hX, _, h_texts = engine.score_candidates(r, allowed=masks[q.article])
        row = {
            "q": q,
            "ids": ids,
            "X": X,
            "hit": hit,
            "texts": texts,
            # what `Engine._within_article` reads: each candidate's article and cosine to the unnamed question
            "docs": engine.docs.sent_docs[engine.docs.sent_doc_ptr[ids]],
            "ucos": None if uvec is None else np.asarray(vecs, dtype=np.float32) @ uvec,
            "long_lead": long_leads(engine.docs, ids),
            "long_doc": in_long_articles(engine.docs, ids),
            # and the reader's logits of the ones it reads (NaN: not read), as the engine's own fusion ranks them
            "wread": None
            if uvec is None or engine.reader is None
            else _read(engine, q.text, ids, X, vecs @ uvec, texts),
            "qtype": question_type(r.type_text),
            "hX": hX,
            **read(ids, texts),
            **{f"h{k}": v for k, v in read(h_ids, h_texts).items()},
        }
        if q.in_paragraph is not None:
            # the answer's paragraph hidden, the rest of its article kept: the
            # topic is there and the answer is not, as in "What time does
            # Shabbat start?" over an article that only mentions Shabbat.  A
            # question whose answer string is still in some candidate is left
            # out (it may well be answered elsewhere).
            keep = np.ones(engine.data.n_sentences, dtype=bool)
            keep[list(q.in_paragraph)] = False
            _, _, pX, _, ptexts = engine.score_candidates(r, allowed=keep)
            row["pX"] = None if any(q.is_hit(t) for t in ptexts) else pX
        rows.append(row)
    return rows


def _read(engine, question: str, ids: np.ndarray, X: np.ndarray, ucos: np.ndarray, texts: list[str]) -> np.ndarray:
    """The reader's logit of each candidate it reads (qa.engine.read_logits:
    every article's best, as `ask` reads a question), NaN for the rest."""
    from qa.engine import read_logits
    from qa.fusion import question_type

    scores = engine.fusion.answer_scores(engine.fusion.score(X), X, question_type(question))
    docs = engine.docs.sent_docs[engine.docs.sent_doc_ptr[ids]]
    return read_logits(engine.reader, question, texts, scores, docs, ucos)


def _alt_orders(X: np.ndarray) -> dict[str, np.ndarray]:
    """Orders of the candidates under the simple fusions (from the features)."""
    from qa.fusion import FEATURES

    f = {name: X[:, i] for i, name in enumerate(FEATURES)}
    d_rank = 10.0 / np.maximum(f["rrf_dense"], 1e-9) - 10.0
    b_rank = np.where(f["rrf_bm25"] > 0, 10.0 / np.maximum(f["rrf_bm25"], 1e-9) - 10.0, 1e9)

    def z(v: np.ndarray) -> np.ndarray:
        return (v - v.mean()) / (v.std() or 1.0)

    return {
        "bm25": np.argsort(b_rank, kind="stable"),
        "dense": np.argsort(d_rank, kind="stable"),
        "rrf": np.argsort(-(1 / (60 + d_rank) + 1 / (60 + b_rank)), kind="stable"),
        "zsum": np.argsort(-(z(f["dense"]) + z(f["bm25_share"]) + 0.5 * z(f["passage"])), kind="stable"),
    }


def _ranked(model, X: np.ndarray, question: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(fused probabilities, feature rows, question type), best first."""
    from qa.fusion import question_type

    prob = model.score(X)
    order = np.argsort(-prob, kind="stable")
    return prob[order], X[order], question_type(question)


def _top_score(model, X: np.ndarray, question: str, rerank=None, read=None, lead=None) -> float:
    """The best answer's score as engine.ask computes it (0 with no
    candidates); with `rerank` (qa.rerank) and the reader's logits `read` of
    the first candidates, after the second stage."""
    if len(X) == 0:
        return 0.0
    if rerank is None or read is None:
        return float(model.answer_scores(*_ranked(model, X, question))[0])
    prob, X, qtype = _ranked(model, X, question)
    order, p2 = rerank.rerank(prob, read, lead)
    return float(rerank.answer_scores(p2, X[order], qtype, read[order[: len(read)]])[0])


def _order(model, r: dict, rerank=None) -> np.ndarray:
    """The engine's order of a row's candidates (fused, then the second stage),
    and the re-ranking inside the best answer's article, as `Engine._ask`
    applies it (qa.engine.within_article_order)."""
    from qa.engine import SUBJECT_DEPTH, kinds_asked, within_article_order

    prob = model.score(r["X"])
    order = np.argsort(-prob, kind="stable")
    if rerank is not None and "read" in r:
        second, _ = rerank.rerank(prob[order], r["read"], r["lead"][order])
        return order[second]
    if r.get("ucos") is not None:
        scores = model.answer_scores(prob[order], r["X"][order], r["qtype"])
        wread = r.get("wread")
        top = order[:SUBJECT_DEPTH]
        kind = kinds_asked(r["q"].text, [r["texts"][i] for i in top], r["long_doc"][top])
        inside = within_article_order(
            scores,
            r["docs"][order],
            r["ucos"][order],
            None if wread is None else wread[order],
            r["long_lead"][order],
            kind,
        )
        if inside is not None:
            order = order[inside]
    return order


def metrics(rows: list[dict], model, rerank=None) -> dict:
    """Every table number for both halves, under fusion `model` (and the
    second stage `rerank`, when the rows carry the reader's logits: the
    "full" system and the product metric are then the engine's final order)."""
    out: dict[str, dict] = {}
    for half in ("dev", "test"):
        part = [r for r in rows if r["q"].half == half]
        names = ("bm25", "dense", "rrf", "zsum", "full")
        ranks: dict[str, list] = {k: [] for k in names}
        top1: dict[str, list] = {k: [] for k in names}
        prod, answered, refused, near_asked, near_refused = [], 0, 0, 0, 0
        for r in part:
            q = r["q"]
            orders = _alt_orders(r["X"])
            orders["full"] = _order(model, r, rerank)
            for name, order in orders.items():
                ranks[name].append(_rank(r["ids"][order], q.gold_sents))
                top1[name].append(bool(len(order)) and q.is_hit(r["texts"][order[0]]))
            hits = np.flatnonzero(r["hit"][orders["full"]][:10])
            prod.append(int(hits[0]) + 1 if len(hits) else None)
            threshold = rerank.threshold if rerank is not None and "read" in r else model.threshold
            rr = rerank if "read" in r else None
            answered += _top_score(model, r["X"], q.text, rr, r.get("read"), r.get("lead")) >= threshold
            refused += _top_score(model, r["hX"], q.text, rr, r.get("hread"), r.get("hlead")) < threshold
            if r.get("pX") is not None:
                near_asked += 1
                near_refused += _top_score(model, r["pX"], q.text) < model.threshold
        n = len(part) or 1
        out[half] = {
            "questions": len(part),
            "sentence": {
                k: {
                    "MRR": mrr(v),
                    "R@1": recall_at(v, 1),
                    "R@5": recall_at(v, 5),
                    "R@10": recall_at(v, 10),
                    "top1_has_answer": sum(top1[k]) / n,
                }
                for k, v in ranks.items()
            },
            "product": {"R@1": recall_at(prod, 1), "MRR@10": mrr(prod, 10), "R@10": recall_at(prod, 10)},
            "abstention": {
                "answered_when_answerable": answered / n,
                "refused_when_hidden": refused / n,
                "refused_when_paragraph_hidden": near_refused / near_asked if near_asked else None,
                "paragraph_hidden_questions": near_asked,
            },
        }
    return out


def diversity(engine, rows: list[dict], model, lambdas=(1.0, 0.9, 0.8, 0.7)) -> dict:
    """MMR against plain ranking on the test half: does a more diverse top 5
    cost the product metric?  Redundancy = mean pairwise cosine of the top 5."""
    from qa.diversify import mmr, redundancy

    out = {}
    part = [r for r in rows if r["q"].half == "test"]
    for lam in lambdas:
        ranks, red = [], []
        for r in part:
            prob = model.score(r["X"])
            order = np.argsort(-prob, kind="stable")[:30]
            vecs = np.asarray(engine.data.sentence_vectors[r["ids"][order]])
            chosen = mmr(prob[order], vecs, 10, lam)
            hits = np.flatnonzero(r["hit"][order][chosen])
            ranks.append(int(hits[0]) + 1 if len(hits) else None)
            red.append(redundancy(vecs[chosen[:5]]))
        out[str(lam)] = {"MRR@10": mrr(ranks, 10), "R@5": recall_at(ranks, 5), "redundancy@5": float(np.mean(red))}
    return out


def fit(rows: list[dict], out_path: Path | None = None, neg_rate: float = 1.0) -> dict:
    """Fit the fusion on the dev half and set the answer threshold there;
    write the weights to `out_path` (default qa/fusion_weights.json) and
    return them.

    Logistic regression over standardised features and their pairwise
    products: on the dev half it ranked better than a linear model or
    gradient-boosted trees (docs/evaluation.md, the fusion model).
    `neg_rate`: the share of negatives kept (FIT_NEGATIVES).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    from qa.fusion import FEATURES, WEIGHTS_FILE, FusionModel

    dev = [r for r in rows if r["q"].half == "dev"]
    # every candidate of a question asked with its article hidden is a negative
    # too: without them a sentence that merely ranks first among poor matches
    # would look like an answer, and off-topic questions would get one
    X = np.concatenate([r["X"] for r in dev] + [r["hX"] for r in dev])
    y = np.concatenate([r["hit"] for r in dev] + [np.zeros(len(r["hX"]), bool) for r in dev]).astype(int)
    if neg_rate < 1.0:
        # keep every positive and a random share of the negatives; the
        # intercept is corrected by log(neg_rate) below, so probabilities stay
        # calibrated (case-control sampling)
        keep = (y == 1) | (np.random.default_rng(0).random(len(y)) < neg_rate)
        X, y = X[keep], y[keep]
    scaler = StandardScaler().fit(X)
    Z = PolynomialFeatures(2, include_bias=False).fit_transform(scaler.transform(X))
    f = len(FEATURES)
    best = None
    for C in (0.1,):  # C=1.0 converges far slower here (docs/development.md#refit-the-weights)
        lr = LogisticRegression(C=C, max_iter=3000)
        lr.fit(Z, y)
        quad = np.zeros((f, f))
        quad[np.triu_indices(f)] = lr.coef_[0][f:]
        lr.intercept_ = lr.intercept_ + np.log(neg_rate)
        model = FusionModel(scaler.mean_, scaler.scale_, lr.coef_[0][:f], quad, float(lr.intercept_[0]), 0.5, 1.0, {})
        score = metrics(dev, model)["dev"]["product"]["MRR@10"]
        if best is None or score > best[0]:
            best = (score, C, model, lr)
    assert best is not None  # the grid is not empty
    score, C, model, lr = best
    model, t_best, acc_best, abst = fit_abstention(model, dev)
    r6 = lambda v: [round(float(x), 6) for x in v]  # noqa: E731
    weights = {
        "features": list(FEATURES),
        "mean": r6(scaler.mean_),
        "scale": r6(scaler.scale_),
        "linear": r6(lr.coef_[0][:f]),
        "quadratic": r6(lr.coef_[0][f:]),
        "bias": round(float(lr.intercept_[0]), 6),
        "threshold": t_best,
        "mmr_lambda": 1.0,
        "abstention": abst.to_json(),
        "info": {
            "fitted": True,
            "data": f"SQuAD v1.1 dev, first {DEV_ARTICLES} articles in file order, each question asked twice: "
            "in an index of one file per paragraph and in one of one file per article",
            "questions": len(dev),
            "model": "logistic regression on standardised features and their pairwise products; "
            "abstention: logistic regression on question-level features (qa.abstain)",
            "C": C,
            "dev_product_mrr10": round(score, 4),
            "dev_abstention_accuracy": round(acc_best, 4),
            "rows": int(len(y)),
            "positives": int(y.sum()),
            "negatives_kept": neg_rate,
        },
    }
    (out_path or WEIGHTS_FILE).write_text(json.dumps(weights, indent=1) + "\n", encoding="utf-8")
    return weights


def fit_abstention(model, dev: list[dict]):
    """(model with its abstention part, threshold, dev accuracy, abstention
    model): whether a question is answered at all is a question-level model
    over the ranked candidates (qa.abstain), fitted on the dev questions asked
    with their article and with it hidden; the threshold gets most of them
    right both ways."""
    from dataclasses import replace

    from qa import abstain

    # Fitted on off-topic questions (the article hidden) only.  Near-topic
    # ones (only the answer's paragraph hidden: collect's "pX") as a second
    # kind of negative cost too many answerable questions (docs/evaluation.md,
    # abstention): the candidate list alone does not tell "the topic is here,
    # the answer is not".  The evaluation reports how often they are refused.
    abst = abstain.fit(
        [_ranked(model, r["X"], r["q"].text) for r in dev], [_ranked(model, r["hX"], r["q"].text) for r in dev]
    )
    model = replace(model, abstention=abst)
    top = np.array([_top_score(model, r["X"], r["q"].text) for r in dev])
    hid = np.array([_top_score(model, r["hX"], r["q"].text) for r in dev])
    grid = np.round(np.linspace(0.02, 0.98, 97), 3)
    acc = np.array([((top >= t).sum() + (hid < t).sum()) / (2 * len(dev)) for t in grid])
    t_best = float(grid[int(np.argmax(acc))])
    return replace(model, threshold=t_best), t_best, float(acc.max()), abst


def table(result: dict) -> str:
    parts = []
    for half in ("dev", "test"):
        r = result[half]
        rows = [
            [name, m["MRR"], m["R@1"], m["R@5"], m["R@10"], m["top1_has_answer"]] for name, m in r["sentence"].items()
        ]
        parts.append(f"SQuAD {half} half ({r['questions']} questions), sentence level (ReQA gold):")
        parts.append(format_table(["system", "MRR", "R@1", "R@5", "R@10", "top1 has answer"], rows))
        p, a = r["product"], r["abstention"]
        parts.append(f"product metric (engine.ask): R@1 {p['R@1']:.3f}  MRR@10 {p['MRR@10']:.3f}  R@10 {p['R@10']:.3f}")
        if "fused_only" in result:
            f = result["fused_only"][half]
            parts.append(
                f"  without the reader (fused ranking alone): R@1 {f['product']['R@1']:.3f}  MRR@10 "
                f"{f['product']['MRR@10']:.3f}; answered {f['abstention']['answered_when_answerable']:.3f}, "
                f"refused hidden {f['abstention']['refused_when_hidden']:.3f}"
            )
        near = (
            f", with its paragraph hidden {a['refused_when_paragraph_hidden']:.3f}"
            if a.get("refused_when_paragraph_hidden") is not None
            else ""
        )
        parts.append(
            f"abstention: answered when answerable {a['answered_when_answerable']:.3f}, "
            f"refused with the article hidden {a['refused_when_hidden']:.3f}{near}\n"
        )
    if "articles_layout" in result:
        for half in ("dev", "test"):
            c = result["articles_layout"][half]
            parts.append(
                f"SQuAD as one file per article, {half} half ({c['questions']} questions): product R@1 "
                f"{c['product']['R@1']:.3f}  MRR@10 {c['product']['MRR@10']:.3f}  answered "
                f"{c['abstention']['answered_when_answerable']:.3f}  refused hidden "
                f"{c['abstention']['refused_when_hidden']:.3f}  refused paragraph hidden "
                f"{c['abstention']['refused_when_paragraph_hidden']:.3f}"
            )
        parts.append("")
    if "mmr" in result:
        rows = [[lam, m["MRR@10"], m["R@5"], m["redundancy@5"]] for lam, m in result["mmr"].items()]
        parts.append("MMR vs plain ranking (lambda 1.0), test half, product metric:")
        parts.append(format_table(["lambda", "MRR@10", "R@5", "mean cosine among top 5"], rows) + "\n")
    if "seconds" in result:
        parts.append(f"seconds: {result['seconds']}")
    return "\n".join(parts)


def run(fit_weights: bool = False, limit: int | None = None, quiet: bool = True) -> dict:
    """Build (cached), rank, optionally fit, and return all numbers."""
    from qa.engine import Engine
    from qa.fusion import blank_model, load_model

    # features do not depend on the weights: fitting gathers them with a
    # blank model, so a new feature can be fitted before any weights exist
    fusion = blank_model() if fit_weights else None
    t0 = time.perf_counter()
    index = build(quiet=quiet)
    engine = Engine.load(index, fusion=fusion)
    qs = questions_for(engine)
    step = max(1, len(qs) // limit) if limit else 1
    if limit:
        qs = qs[::step][:limit]
    t1 = time.perf_counter()
    rows = collect(engine, qs)
    t2 = time.perf_counter()
    fitted = None
    if fit_weights:
        # the same questions over whole articles: fitted on paragraphs alone,
        # the model leaned on article-level evidence that long news articles
        # dilute (docs/evaluation.md, the fitting data)
        art_engine = Engine.load(build(quiet=quiet, layout="articles"), fusion=fusion)
        art_qs = questions_for(art_engine, "articles")
        if limit:
            art_qs = art_qs[::step][:limit]
        art_rows = collect(art_engine, art_qs)
        fitted = fit(rows + art_rows, neg_rate=FIT_NEGATIVES)
        load_model.cache_clear()
        result_articles = metrics(art_rows, load_model())
    result = metrics(rows, load_model(), engine.rerank)
    if engine.rerank is not None:
        fused = metrics(rows, load_model())
        result["fused_only"] = {
            h: {"product": fused[h]["product"], "abstention": fused[h]["abstention"]} for h in ("dev", "test")
        }
    result["mmr"] = diversity(engine, rows, load_model())
    result["seconds"] = {
        "build_and_load": round(t1 - t0, 1),
        "ranking": round(t2 - t1, 1),
        "per_question_ms": round(1000 * (t2 - t1) / max(len(qs), 1) / 2, 2),
    }
    if fitted:
        result["fitted"] = fitted
        result["articles_layout"] = result_articles
    return result
