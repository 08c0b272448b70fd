"""The seeds suite: hand-written gold questions over the three bundled seed
articles (qa/eval/seeds_gold.json), asked through the real engine.

    python -m qa.eval.seeds [--index DIR] [-k 5] [--json]

Measures ranking (hit@1, hit@3 over answerable questions), abstention
(precision/recall of refusing, found == False, over answerable + unanswerable
questions), follow-ups (second turn read as a follow-up and answered in the
top 3) and topic shifts (a new self-contained question is not read as a
follow-up, and is refused when unanswerable or answered in the top 3).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qa.config import REPO_ROOT
from qa.eval.common import build_index, cache_dir, format_table

GOLD = Path(__file__).with_name("seeds_gold.json")
SEEDS = REPO_ROOT / "seeds"
TOP = 3


def load_gold(path: Path = GOLD) -> dict[str, Any]:
    """The gold file, normalised: conversations become dicts too."""
    gold = json.loads(path.read_text(encoding="utf-8"))
    convs = []
    for c in gold.get("conversations", []):
        if isinstance(c, dict):
            convs.append({"turns": list(c["turns"]), "expect": list(c["expect"])})
        else:
            first, second, expect = c
            convs.append({"turns": [first, second], "expect": list(expect)})
    gold["conversations"] = convs
    gold["unanswerable"] = [u if isinstance(u, dict) else {"question": u} for u in gold.get("unanswerable", [])]
    return gold


def check_gold(gold: dict[str, Any], sentences: list[str]) -> list[str]:
    """Problems with the gold file: expect substrings that occur in no indexed
    sentence (so could never be hit), malformed items."""
    problems = []
    items = [(a["question"], a.get("expect")) for a in gold["answerable"]]
    items += [(c["turns"][-1], c.get("expect")) for c in gold["conversations"]]
    for t in gold.get("topic_shifts", []):
        if t.get("second_unanswerable"):
            if t.get("expect"):
                problems.append(f"topic shift {t['turns'][-1]!r}: unanswerable but has expect")
        else:
            items.append((t["turns"][-1], t.get("expect")))
    for q, expect in items:
        if not expect:
            problems.append(f"{q!r}: no expect substrings")
            continue
        for e in expect:
            if not any(e in s for s in sentences):
                problems.append(f"{q!r}: expect {e!r} occurs in no indexed sentence")
    return problems


def _rank(texts: list[str], expect: list[str]) -> int | None:
    """1-based rank of the first answer containing an expect substring."""
    for i, t in enumerate(texts, 1):
        if any(e in t for e in expect):
            return i
    return None


def _record(kind: str, question: str, history: list[str], expected, res, reason: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "question": question,
        "history": history,
        "expected": expected,
        "reason": reason,
        "found": res.found,
        "followup": res.followup,
        "query": res.query,
        "top": [a.text for a in res.answers[:TOP]],
        "scores": [a.score for a in res.answers[:TOP]],
        "threshold": res.threshold,
    }


def _index(index_dir: Path | None) -> Path:
    if index_dir is None:
        # incremental: a no-op when the seeds have not changed
        return build_index([SEEDS], cache_dir("seeds") / "index")
    index_dir = Path(index_dir)
    if not (index_dir / "manifest.json").exists():
        build_index([SEEDS], index_dir)
    return index_dir


def run(index_dir: Path | None = None, k: int = 5) -> dict[str, Any]:
    import qa
    from qa.index_format import connect

    index_dir = _index(index_dir)
    engine = qa.load(index_dir)
    gold = load_gold()
    con = connect(index_dir)
    try:
        sentences = [r[0] for r in con.execute("SELECT text FROM sentences")]
    finally:
        con.close()
    problems = check_gold(gold, sentences)
    if problems:
        raise ValueError("seeds gold file is inconsistent with the index:\n  " + "\n  ".join(problems))

    failures: list[dict[str, Any]] = []

    # -- answerable ------------------------------------------------------
    ranks: list[int | None] = []
    refused_answerable: list[str] = []
    refused_flags: list[bool] = []  # abstention predictions, answerable then unanswerable
    truth: list[bool] = []  # True = should refuse
    for item in gold["answerable"]:
        q, expect = item["question"], item["expect"]
        res = engine.ask(q, k=k)
        r = _rank([a.text for a in res.answers], expect)
        ranks.append(r)
        refused_flags.append(not res.found)
        truth.append(False)
        if not res.found:
            refused_answerable.append(q)
        reasons = []
        if r != 1:
            reasons.append("miss@k" if r is None else f"rank {r}")
        if not res.found:
            reasons.append("refused")
        if reasons:
            failures.append(_record("answerable", q, [], expect, res, ", ".join(reasons)))

    # -- unanswerable ----------------------------------------------------
    answered_unanswerable: list[str] = []
    for item in gold["unanswerable"]:
        q = item["question"]
        res = engine.ask(q, k=k)
        refused_flags.append(not res.found)
        truth.append(True)
        if res.found:
            answered_unanswerable.append(q)
            failures.append(_record("unanswerable", q, [], None, res, "answered"))

    tp = sum(p and t for p, t in zip(refused_flags, truth))
    n_refused = sum(refused_flags)
    n_unans = sum(truth)
    precision = tp / n_refused if n_refused else 0.0
    recall = tp / n_unans if n_unans else 0.0

    # -- follow-ups ------------------------------------------------------
    fu_ok = 0
    for c in gold["conversations"]:
        *history, q = c["turns"]
        res = engine.ask(q, history=history, k=k)
        r = _rank([a.text for a in res.answers], c["expect"])
        hit = r is not None and r <= TOP
        if res.followup and hit:
            fu_ok += 1
            continue
        reasons = []
        if not res.followup:
            reasons.append("not read as follow-up")
        if not hit:
            reasons.append("miss@3" if r is None or r > TOP else "")
        failures.append(_record("followup", q, history, c["expect"], res, ", ".join(x for x in reasons if x)))

    # -- topic shifts ----------------------------------------------------
    ts_ok = 0
    for t in gold.get("topic_shifts", []):
        *history, q = t["turns"]
        res = engine.ask(q, history=history, k=k)
        reasons = []
        if res.followup:
            reasons.append("read as follow-up")
        if t.get("second_unanswerable"):
            expected = None
            if res.found:
                reasons.append("answered")
        else:
            expected = t["expect"]
            r = _rank([a.text for a in res.answers], expected)
            if r is None or r > TOP:
                reasons.append("miss@3")
        if reasons:
            failures.append(_record("topic_shift", q, history, expected, res, ", ".join(reasons)))
        else:
            ts_ok += 1

    n_ans = len(ranks)
    n_conv = len(gold["conversations"])
    n_ts = len(gold.get("topic_shifts", []))
    return {
        "index": str(index_dir),
        "k": k,
        "n_answerable": n_ans,
        "n_unanswerable": n_unans,
        "n_conversations": n_conv,
        "n_topic_shifts": n_ts,
        "hit@1": sum(r == 1 for r in ranks) / n_ans if n_ans else 0.0,
        "hit@3": sum(r is not None and r <= 3 for r in ranks) / n_ans if n_ans else 0.0,
        f"hit@{k}": sum(r is not None for r in ranks) / n_ans if n_ans else 0.0,
        "abstention_precision": precision,
        "abstention_recall": recall,
        "refused_answerable": refused_answerable,
        "answered_unanswerable": answered_unanswerable,
        "followup_accuracy": fu_ok / n_conv if n_conv else 0.0,
        "topic_shift_accuracy": ts_ok / n_ts if n_ts else 0.0,
        "failures": failures,
    }


def table(result: dict[str, Any]) -> str:
    k = result.get("k", 5)
    rows = [
        ["hit@1", result["hit@1"], f"{result['n_answerable']} answerable"],
        ["hit@3", result["hit@3"], ""],
        [f"hit@{k}", result.get(f"hit@{k}", ""), ""],
        ["abstention precision", result["abstention_precision"], "refused = found False"],
        ["abstention recall", result["abstention_recall"], f"{result['n_unanswerable']} unanswerable"],
        ["refused answerable", len(result["refused_answerable"]), ""],
        ["answered unanswerable", len(result["answered_unanswerable"]), ""],
        ["follow-up accuracy", result["followup_accuracy"], f"{result['n_conversations']} conversations"],
        ["topic-shift accuracy", result["topic_shift_accuracy"], f"{result['n_topic_shifts']} shifts"],
    ]
    out = [format_table(["seeds", "value", "over"], rows)]
    fails = result["failures"]
    if fails:
        out.append(f"\nfailures ({len(fails)}):")
        for f in fails:
            hist = f" [after: {' | '.join(f['history'])}]" if f["history"] else ""
            out.append(f"- [{f['kind']}: {f['reason']}] {f['question']}{hist}")
            if f["expected"]:
                out.append(f"    expected: {f['expected']}")
            out.append(f"    found={f['found']} followup={f['followup']} query={f['query']!r}")
            for i, (t, s) in enumerate(zip(f["top"], f["scores"]), 1):
                out.append(f"    {i}. ({s:.3f}) {t[:140]}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m qa.eval.seeds", description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, default=None, help="index directory (default: a cached seeds index)")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = ap.parse_args(argv)
    result = run(args.index, k=args.k)
    if args.json:
        json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
