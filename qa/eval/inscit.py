"""Conversational questions on INSCIT dev (information seeking over Wikipedia).

Unlike SQuAD's, INSCIT's questions were written by users who had not seen the
passage that answers them, in conversations that lean on earlier turns: the
closest public data to a chat user.  The corpus is every evidence passage the
file carries (one article each: its Wikipedia titles, then its text).  Every
user turn that an annotator answered directly from a passage is asked through
`engine.ask`, once alone and once with the conversation's earlier user
questions as history; a hit at rank i is the first answer quoted from a gold
passage.  Turns the annotators found no answer or relevant text for anywhere
in Wikipedia should be refused, and directly answered ones should not.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import defaultdict
from typing import Any

from qa.eval.common import bench_dir, build_index, cache_dir, format_table, mrr, recall_at, write_article

ANSWERED = "directAnswer"
NO_ANSWER = "noAnswerNoRelevantInfo"


def _conversations() -> dict[str, Any]:
    return json.loads((bench_dir() / "inscit" / "dev.json").read_text(encoding="utf-8"))


def passage_file(passage_id: str) -> str:
    """The article file of an evidence passage ("Vegan cheese:17"): readable,
    unique (a hash of the id) and safe on any file system."""
    slug = re.sub(r"[^a-z0-9]+", "-", passage_id.lower()).strip("-")[:40]
    return f"{slug}-{hashlib.sha1(passage_id.encode()).hexdigest()[:8]}.txt"


def passages(convs: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """passage_id -> (title, text) of every evidence passage in the file, from
    the labels and from the earlier turns' evidence."""
    out: dict[str, tuple[str, str]] = {}
    for conv in convs.values():
        for turn in conv["turns"]:
            evidence = [e for lab in turn.get("labels", []) for e in lab.get("evidence", [])]
            evidence += [e for group in turn.get("prevEvidence", []) for e in group]
            for e in evidence:
                text = " ".join(e["passage_text"].split())
                if text:
                    out.setdefault(e["passage_id"], (": ".join(e.get("passage_titles") or [e["passage_id"]]), text))
    return out


def turns(convs: dict[str, Any]) -> list[dict[str, Any]]:
    """One item per user turn: the question, the earlier user questions, the
    gold passages of the annotations that answered it directly, and whether
    every annotation found nothing relevant at all."""
    out = []
    for cid, conv in convs.items():
        for turn in conv["turns"]:
            ctx = turn["context"]
            labels = turn.get("labels", [])
            gold = {e["passage_id"] for lab in labels if lab["responseType"] == ANSWERED for e in lab["evidence"]}
            out.append(
                {
                    "conversation": cid,
                    "question": ctx[-1],
                    "history": ctx[0:-1:2],
                    "gold": sorted(gold),
                    "no_answer": bool(labels) and all(lab["responseType"] == NO_ANSWER for lab in labels),
                }
            )
    return out


def half(conversation_id: str) -> str:
    """ "dev" or "test": a fixed split by conversation (hash of its id), as for
    CANARD's dialogs."""
    return "dev" if hashlib.sha1(conversation_id.encode()).digest()[0] < 128 else "test"


def build(quiet: bool = True):
    root = cache_dir("inscit")
    for pid, (title, text) in passages(_conversations()).items():
        write_article(root / "articles", passage_file(pid), title, text)
    return build_index([root / "articles"], root / "index", quiet=quiet)


def _rank(res, gold_files: set[str]) -> int | None:
    for i, a in enumerate(res.answers, 1):
        if any(s.path.rsplit("/", 1)[-1] in gold_files for s in a.sources):
            return i
    return None


def run(k: int = 10, limit: int | None = None) -> dict:
    """Passage hit@1/@5 and MRR@10 of the raw and the resolved question over
    the directly answered turns, per half of the conversations; how often
    those are refused, and how often the turns with no answer anywhere are."""
    import qa

    t0 = time.perf_counter()
    convs = _conversations()
    engine = qa.load(build())
    items = turns(convs)
    if limit:
        items = items[:: max(1, len(items) // limit)][:limit]
    engine.prime([t["question"] for t in items])
    ranks: dict[str, list] = defaultdict(list)
    found: dict[str, list] = defaultdict(list)
    followup: dict[str, list] = defaultdict(list)
    for t in items:
        raw = engine.ask(t["question"], k=k)
        res = engine.ask(t["question"], history=t["history"], k=k)
        if t["gold"]:
            files = {passage_file(p) for p in t["gold"]}
            h = half(t["conversation"])
            ranks[f"{h}/raw"].append(_rank(raw, files))
            ranks[f"{h}/resolved"].append(_rank(res, files))
            found["answered"].append(res.found)
            followup["first" if not t["history"] else "later"].append(res.followup)
        elif t["no_answer"]:
            found["no_answer"].append(res.found)
    mean = lambda xs: sum(xs) / max(len(xs), 1)  # noqa: E731
    out: dict = {
        "turns": len(items),
        "answered_turns": len(found["answered"]),
        "no_answer_turns": len(found["no_answer"]),
        "answered_refused": 1.0 - mean(found["answered"]),
        "no_answer_refused": 1.0 - mean(found["no_answer"]),
        "later_turns_read_as_followup": mean(followup["later"]),
    }
    for h in ("dev", "test"):
        out[h] = {"turns": len(ranks[f"{h}/raw"])}
        for name in ("raw", "resolved"):
            r = ranks[f"{h}/{name}"]
            out[h].update(
                {f"hit@1_{name}": recall_at(r, 1), f"hit@5_{name}": recall_at(r, 5), f"mrr@10_{name}": mrr(r, 10)}
            )
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def table(r: dict) -> str:
    rows = []
    for name, label in (("raw", "last question alone"), ("resolved", "with the earlier questions (ours)")):
        rows.append([label] + [r[h][f"{m}_{name}"] for h in ("dev", "test") for m in ("hit@1", "hit@5", "mrr@10")])
    return (
        f"INSCIT dev: {r['answered_turns']} directly answered user turns ({r['dev']['turns']} / "
        f"{r['test']['turns']} by conversation half), corpus = the file's evidence passages; a hit is an answer "
        f"quoted from a gold passage\n"
        + format_table(
            ["query", "hit@1 dev", "hit@5 dev", "mrr@10 dev", "hit@1 test", "hit@5 test", "mrr@10 test"], rows
        )
        + f"\nrefused: {r['answered_refused']:.3f} of the directly answered turns, {r['no_answer_refused']:.3f} "
        f"of {r['no_answer_turns']} turns with no answer in Wikipedia; later turns read as follow-ups: "
        f"{r['later_turns_read_as_followup']:.3f}" + f"\nseconds: {r['seconds']}\n"
    )


if __name__ == "__main__":
    import sys

    res = run()
    print(json.dumps(res, indent=2) if "--json" in sys.argv else table(res))
