"""The blind news suite: questions a reader would ask of real news it was
never tuned on (qa/eval/news_gold.json), asked through the real engine over
an index of every article at hand (the 2,225 BBC articles and the 34 saved
web pages of ../shared/bench), so every other article competes.

    python -m qa.eval news                   # both halves, the test half is the one to report
    python -m qa.eval.news [--half test] [--json] [-v]
    python -m qa.eval.news --gold qa/reader_news_questions.json --half fit   # a larger tune set
    python -m qa.eval.news sentences DOC_ID  # an article as the builder splits it (for writing gold)
    python -m qa.eval.news check [FILE]      # validate a gold file against the index

The gold was written before any tuning, split by article into a tune half
and a test half (fixed in the file): reader training, fusion and follow-up
tuning may look at the tune half only; the test half is reported.

A question is answered at rank i when the i-th answer contains one of its
`expect` substrings and cites one of its articles (or a byte-identical copy
of one, or one of its `other_docs`: articles outside the split that carry
the same answer).  Conversations are asked turn by turn with the earlier questions as
history; the follow-up turns are scored the same way.  Unanswerable
questions should be refused (`found` False).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from qa.eval.common import bench_dir, build_index, cache_dir, format_table

GOLD = Path(__file__).with_name("news_gold.json")
HALVES = ("tune", "test")
KINDS = ("who", "what", "when", "where", "why", "how many", "how much", "how long", "how", "which", "yes-no")
SHIFTS = ("focus", "ellipsis", "pronoun", "demonstrative", "topic")
K = 5


def corpus_dirs() -> list[Path]:
    return [bench_dir() / "bbc", bench_dir() / "web"]


def index_dir() -> Path:
    """The suite's index (built incrementally: a no-op when nothing changed)."""
    return build_index(corpus_dirs(), cache_dir("news") / "index")


# -- the gold file -------------------------------------------------------------
def load_gold(path: Path = GOLD) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _items(gold: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, item) of every answerable item: questions and conversation turns."""
    out = [(f"question {i}", q) for i, q in enumerate(gold.get("questions", []))]
    for c, conv in enumerate(gold.get("conversations", [])):
        for t, turn in enumerate(conv["turns"]):
            if not turn.get("unanswerable"):
                out.append((f"conversation {c} turn {t}", turn))
    return out


def half_of(gold: dict[str, Any], item: dict[str, Any]) -> str | None:
    """An answerable item's half: its articles'."""
    halves = {gold["articles"].get(d) for d in item.get("doc_ids", [])}
    return halves.pop() if len(halves) == 1 else None


def conversation_half(gold: dict[str, Any], conv: dict[str, Any]) -> str | None:
    halves = {half_of(gold, t) for t in conv["turns"] if not t.get("unanswerable")}
    return halves.pop() if len(halves) == 1 else None


_WORD = re.compile(r"[A-Za-z0-9£$€%']+")
_NAMEISH = re.compile(r"^(?:[A-Z0-9£$€].*|of|the|and|de|du|la|van|von)$")


def copied_phrases(question: str, sentence: str, n: int = 4) -> list[str]:
    """Runs of n words the question shares with the sentence, other than
    names (every word capitalised or a number): a reader's own question does
    not repeat the answer's wording."""
    qw = _WORD.findall(question)
    sw = [w.lower() for w in _WORD.findall(sentence)]
    grams = {tuple(sw[i : i + n]) for i in range(len(sw) - n + 1)}
    out = []
    for i in range(len(qw) - n + 1):
        g = qw[i : i + n]
        if tuple(w.lower() for w in g) in grams and not all(_NAMEISH.match(w) for w in g):
            out.append(" ".join(g))
    return out


def indexed_sentences(index: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(doc_id -> its answerable sentences in order, doc_id -> the doc_ids
    of its byte-identical copies, itself included)."""
    from qa.index_format import connect

    con = connect(index)
    try:
        docs = {i: (d, sha) for i, d, sha in con.execute("SELECT doc_idx, doc_id, sha256 FROM documents")}
        sents: dict[str, list[str]] = defaultdict(list)
        for i, s in con.execute(
            "SELECT ds.doc_idx, substr(d.text, ds.start + 1, ds.end - ds.start) "
            "FROM doc_sentences ds JOIN documents d USING(doc_idx) "
            "WHERE ds.sent_idx IS NOT NULL ORDER BY ds.doc_idx, ds.sent_no"
        ):
            sents[docs[i][0]].append(s)
    finally:
        con.close()
    by_sha: dict[str, list[str]] = defaultdict(list)
    for d, sha in docs.values():
        by_sha[sha].append(d)
    copies = {d: sorted(by_sha[sha]) for d, sha in docs.values()}
    return dict(sents), copies


def check_gold(
    gold: dict[str, Any],
    sents: dict[str, list[str]],
    copies: dict[str, list[str]],
    notes: list[str] | None = None,
    halves: tuple[str, ...] = HALVES,
) -> list[str]:
    """Problems that make the gold wrong (empty list: usable).  `notes`, when
    given, collects what a writer should look at but may keep: other articles
    whose sentences hold the same expect substring.  `halves`: the split's
    names (the reader's training questions use "train" and "fit")."""
    problems: list[str] = []
    arts = gold.get("articles", {})
    for d, h in arts.items():
        if d not in sents:
            problems.append(f"article {d!r} is not in the index")
        if h not in halves:
            problems.append(f"article {d!r}: half {h!r} is not one of {halves}")
    for where, it in _items(gold):
        q = it.get("question", "")
        docs, expect = it.get("doc_ids", []), it.get("expect", [])
        if not q or not docs or not expect:
            problems.append(f"{where} {q!r}: needs question, doc_ids and expect")
            continue
        if "kind" in it and it["kind"] not in KINDS:
            problems.append(f"{where} {q!r}: kind {it['kind']!r} is not one of {KINDS}")
        for d in docs:
            if d not in arts:
                problems.append(f"{where} {q!r}: article {d!r} is not listed under 'articles'")
        for d in it.get("other_docs", []):
            if d not in sents:
                problems.append(f"{where} {q!r}: other_docs article {d!r} is not in the index")
        if half_of(gold, it) is None:
            problems.append(f"{where} {q!r}: its articles are not all in one half")
        for e in expect:
            holding = [s for d in docs for s in sents.get(d, []) if e in s]
            if not holding:
                problems.append(f"{where} {q!r}: expect {e!r} is in no indexed sentence of {docs}")
            for s in holding:
                for phrase in copied_phrases(q, s):
                    problems.append(f"{where} {q!r}: copies {phrase!r} from its answer sentence")
            if notes is not None:
                same = {c for d in docs + it.get("other_docs", []) for c in copies.get(d, [d])}
                others = sorted(d for d, ss in sents.items() if d not in same and any(e in s for s in ss))
                if others:
                    notes.append(
                        f"{where} {q!r}: expect {e!r} is also in {others[:8]}{' ...' if len(others) > 8 else ''}"
                    )
    for c, conv in enumerate(gold.get("conversations", [])):
        if not 2 <= len(conv.get("turns", [])) <= 3:
            problems.append(f"conversation {c}: needs 2-3 turns")
        if conv.get("shift") not in SHIFTS:
            problems.append(f"conversation {c}: shift {conv.get('shift')!r} is not one of {SHIFTS}")
        if conv.get("turns") and conv["turns"][0].get("unanswerable"):
            problems.append(f"conversation {c}: the first turn must be answerable")
        if conversation_half(gold, conv) is None:
            problems.append(f"conversation {c}: its turns' articles are not all in one half")
    for u, it in enumerate(gold.get("unanswerable", [])):
        if not it.get("question") or it.get("half") not in halves:
            problems.append(f"unanswerable {u}: needs a question and a half")
        near = it.get("near")
        if near is not None and arts.get(near) != it.get("half"):
            problems.append(f"unanswerable {u} {it.get('question')!r}: near article {near!r} is not in its half")
    return problems


# -- running -------------------------------------------------------------------
def _hit(answer, expect: list[str], docs: set[str]) -> bool:
    return any(e in answer.text for e in expect) and any(s.doc_id in docs for s in answer.sources)


def _rank(result, expect: list[str], docs: set[str]) -> int | None:
    return next((i for i, a in enumerate(result.answers, 1) if _hit(a, expect, docs)), None)


def _view(result, expect: list[str], docs: set[str]) -> list[dict[str, Any]]:
    return [
        {"text": a.text, "score": a.score, "hit": _hit(a, expect, docs), "doc_ids": [s.doc_id for s in a.sources][:4]}
        for a in result.answers[:3]
    ]


def _rates(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks) or 1
    return {
        "n": len(ranks),
        "hit@1": sum(r == 1 for r in ranks) / n,
        "hit@3": sum(r is not None and r <= 3 for r in ranks) / n,
        f"hit@{K}": sum(r is not None for r in ranks) / n,
    }


def evaluate(engine, gold: dict[str, Any], copies: dict[str, list[str]], halves=HALVES) -> dict[str, Any]:
    """Every number of the suite, per half."""

    def expand(docs: list[str]) -> set[str]:
        return {c for d in docs for c in copies.get(d, [d])}

    out: dict[str, Any] = {}
    for half in halves:
        per_q, per_turn, per_unans = [], [], []
        for it in gold["questions"]:
            if half_of(gold, it) != half:
                continue
            docs = expand(it["doc_ids"] + it.get("other_docs", []))
            res = engine.ask(it["question"], k=K)
            per_q.append(
                {
                    "question": it["question"],
                    "kind": it.get("kind"),
                    "rank": _rank(res, it["expect"], docs),
                    "found": res.found,
                    "expect": it["expect"],
                    "doc_ids": it["doc_ids"],
                    "top": _view(res, it["expect"], docs),
                }
            )
        for c, conv in enumerate(gold["conversations"]):
            if conversation_half(gold, conv) != half:
                continue
            history: list[str] = []
            for t, turn in enumerate(conv["turns"]):
                res = engine.ask(turn["question"], history=list(history), k=K)
                if t > 0:
                    rec = {
                        "conversation": c,
                        "turn": t,
                        "shift": conv["shift"],
                        "question": turn["question"],
                        "history": list(history),
                        "query": res.query,
                        "followup": res.followup,
                        "found": res.found,
                        "unanswerable": bool(turn.get("unanswerable")),
                    }
                    if not turn.get("unanswerable"):
                        docs = expand(turn["doc_ids"] + turn.get("other_docs", []))
                        rec.update(
                            rank=_rank(res, turn["expect"], docs),
                            expect=turn["expect"],
                            top=_view(res, turn["expect"], docs),
                        )
                    else:
                        rec.update(rank=None, expect=[], top=_view(res, [], set()))
                    per_turn.append(rec)
                history.append(turn["question"])
        for it in gold["unanswerable"]:
            if it["half"] != half:
                continue
            res = engine.ask(it["question"], k=K)
            per_unans.append(
                {"question": it["question"], "near": it.get("near"), "found": res.found, "top": _view(res, [], set())}
            )
        answerable_turns = [r for r in per_turn if not r["unanswerable"]]
        unanswerable_turns = [r for r in per_turn if r["unanswerable"]]
        kinds: dict[str, list] = defaultdict(list)
        for r in per_q:
            kinds[r["kind"] or "?"].append(r["rank"])
        shifts: dict[str, list] = defaultdict(list)
        for r in answerable_turns:
            shifts[r["shift"]].append(r["rank"])
        n_q = len(per_q) or 1
        n_u = len(per_unans) or 1
        near = [r for r in per_unans if r["near"]]
        out[half] = {
            "questions": {**_rates([r["rank"] for r in per_q]), "refused": sum(not r["found"] for r in per_q) / n_q},
            "kinds": {k: _rates(v) for k, v in sorted(kinds.items())},
            "followups": {
                **_rates([r["rank"] for r in answerable_turns]),
                "refused": sum(not r["found"] for r in answerable_turns) / (len(answerable_turns) or 1),
                "unanswerable_turns": len(unanswerable_turns),
                "unanswerable_turns_answered": sum(r["found"] for r in unanswerable_turns),
            },
            "shifts": {k: _rates(v) for k, v in sorted(shifts.items())},
            "unanswerable": {
                "n": len(per_unans),
                "answered": sum(r["found"] for r in per_unans) / n_u,
                "near_topic": len(near),
                "near_topic_answered": sum(r["found"] for r in near) / (len(near) or 1),
            },
            "per_question": per_q,
            "per_turn": per_turn,
            "per_unanswerable": per_unans,
        }
    return out


def split_names(gold: dict[str, Any]) -> tuple[str, ...]:
    """The halves a gold file splits its articles into: ("tune", "test") for
    the suite, ("train", "fit") for the reader's training questions."""
    names = tuple(dict.fromkeys(gold.get("articles", {}).values()))
    return HALVES if set(names) <= set(HALVES) else names


def run(halves: tuple[str, ...] | None = None, gold_path: Path = GOLD) -> dict[str, Any]:
    """Every number of a gold file's `halves` (default: all of them).  Any
    file in the suite's format can be asked: the reader's training questions
    (qa/reader_news_questions.json) are a tune set 28 times the size of
    the suite's tune half."""
    import qa

    t0 = time.perf_counter()
    index = index_dir()
    sents, copies = indexed_sentences(index)
    gold = load_gold(gold_path)
    gold.setdefault("unanswerable", [])
    names = split_names(gold)
    halves = halves or names
    problems = check_gold(gold, sents, copies, halves=names) + [
        f"no half {h!r} in {gold_path} (it has {names})" for h in halves if h not in names
    ]
    if problems:
        raise ValueError("news gold file is inconsistent with the corpus/index:\n  " + "\n  ".join(problems))
    engine = qa.load(index)
    t1 = time.perf_counter()
    result = evaluate(engine, gold, copies, halves)
    result["seconds"] = {"build_and_load": round(t1 - t0, 1), "asking": round(time.perf_counter() - t1, 1)}
    result["articles"] = dict(Counter(gold["articles"].values()))
    return result


def table(result: dict[str, Any], verbose: bool = False) -> str:
    out = []
    for half in [h for h, r in result.items() if isinstance(r, dict) and "questions" in r]:
        r = result[half]
        q, f, u = r["questions"], r["followups"], r["unanswerable"]
        label = "TEST half (held out, reported)" if half == "test" else f"{half} half (tuned on)"
        rows = [
            ["questions", q["n"], q["hit@1"], q["hit@3"], q[f"hit@{K}"], f"refused {q['refused']:.3f}"],
            [
                "follow-up turns",
                f["n"],
                f["hit@1"],
                f["hit@3"],
                f[f"hit@{K}"],
                f"refused {f['refused']:.3f}; unanswerable turns answered "
                f"{f['unanswerable_turns_answered']}/{f['unanswerable_turns']}",
            ],
            [
                "unanswerable",
                u["n"],
                "",
                "",
                "",
                f"answered {u['answered']:.3f} (near-topic {u['near_topic']}: {u['near_topic_answered']:.3f})",
            ],
        ]
        for k, v in r["kinds"].items():
            rows.append([f"  {k}", v["n"], v["hit@1"], v["hit@3"], v[f"hit@{K}"], ""])
        for k, v in r["shifts"].items():
            rows.append([f"  follow-up: {k}", v["n"], v["hit@1"], v["hit@3"], v[f"hit@{K}"], ""])
        out.append(f"news, {label}:")
        out.append(format_table(["", "n", "hit@1", "hit@3", f"hit@{K}", ""], rows))
        if verbose:
            for rec in r["per_question"] + r["per_turn"]:
                if rec["rank"] != 1 or not rec["found"]:
                    out.append(
                        f"- [rank {rec['rank']}{'' if rec['found'] else ', refused'}] {rec['question']}"
                        + (f"  (after {rec['history']!r}; searched {rec['query']!r})" if "history" in rec else "")
                    )
                    out.append(f"    expected {rec['expect']}")
                    for i, a in enumerate(rec["top"], 1):
                        out.append(
                            f"   {'*' if a['hit'] else ' '}{i}. ({a['score']:.3f}) [{','.join(a['doc_ids'])}] "
                            f"{a['text'][:140]}"
                        )
            for rec in r["per_unanswerable"]:
                if rec["found"]:
                    out.append(f"- [answered, unanswerable] {rec['question']}")
                    out.append(f"    1. ({rec['top'][0]['score']:.3f}) {rec['top'][0]['text'][:140]}")
        out.append("")
    if "seconds" in result:
        out.append(f"seconds: {result['seconds']}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m qa.eval.news", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    s = sub.add_parser("sentences", help="print articles as the builder splits them (answerable sentences numbered)")
    s.add_argument("doc_ids", nargs="+")
    c = sub.add_parser("check", help="validate a gold file against the index")
    c.add_argument("file", nargs="?", type=Path, default=GOLD)
    ap.add_argument("--half", default=None, help="only this half: tune or test (default: both)")
    ap.add_argument(
        "--gold",
        type=Path,
        default=GOLD,
        help="another gold file in the same format, e.g. qa/reader_news_questions.json (halves train, fit)",
    )
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every miss with the top answers")
    args = ap.parse_args(argv)
    if args.cmd == "sentences":
        sents, _ = indexed_sentences(index_dir())
        for d in args.doc_ids:
            print(f"== {d} ({len(sents.get(d, []))} answerable sentences)")
            for i, t in enumerate(sents.get(d, [])):
                print(f"{i:3d}  {t}")
        return 0
    if args.cmd == "check":
        sents, copies = indexed_sentences(index_dir())
        gold = load_gold(args.file)
        notes: list[str] = []
        problems = check_gold(gold, sents, copies, notes, halves=split_names(gold))
        for n in notes:
            print("note:", n)
        for p in problems:
            print("PROBLEM:", p)
        qs = [it for it in gold.get("questions", [])]
        print(
            f"{len(problems)} problems; {len(qs)} questions, {len(gold.get('conversations', []))} conversations, "
            f"{len(gold.get('unanswerable', []))} unanswerable; kinds "
            f"{dict(Counter(it.get('kind') for it in qs))}; halves "
            f"{dict(Counter(half_of(gold, it) for it in qs))}"
        )
        return 1 if problems else 0
    names = split_names(load_gold(args.gold))
    if args.half and args.half not in names:
        ap.error(f"no half {args.half!r} in {args.gold}: it has {', '.join(names)}")
    result = run((args.half,) if args.half else None, args.gold)
    if args.json:
        json.dump(result, sys.stdout, indent=2, ensure_ascii=False, default=str)
        print()
    else:
        print(table(result, args.verbose))
    return 0


if __name__ == "__main__":
    sys.exit(main())
