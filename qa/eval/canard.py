"""Follow-up questions on CANARD dev (QuAC dialogs with human rewrites).

CANARD ships no passages, so the corpus is the dialogs' own answers: one
article per dialog (title line, then its answers).  For every follow-up turn
we retrieve the top 5 sentences three ways -- the raw question, the question
resolved by our follow-up resolver against the earlier turns, and the gold
human rewrite -- and report how much of the rewrite's top 5 each reproduces
(overlap@5), plus how often the turn's own answer is in the top 5.

The history handed to the resolver is what a chat user would have typed: the
article title (QuAC users saw it) and the earlier questions.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict

from qa.eval.common import bench_dir, build_index, cache_dir, format_table, write_article


def _examples():
    return json.loads((bench_dir() / "canard" / "dev.json").read_text(encoding="utf-8"))


def build(quiet: bool = True):
    """One article per dialog: its title, then every answer it has."""
    ex = _examples()
    answers: dict[str, list[str]] = defaultdict(list)
    titles: dict[str, str] = {}
    for e in ex:
        h = e["History"]
        titles[e["QuAC_dialog_id"]] = f"{h[0]}: {h[1]}"
        turn_answers = h[3::2]
        if len(turn_answers) > len(answers[e["QuAC_dialog_id"]]):
            answers[e["QuAC_dialog_id"]] = turn_answers
    root = cache_dir("canard")
    for i, (d, ans) in enumerate(sorted(answers.items())):
        body = "\n\n".join(a if a.rstrip().endswith((".", "!", "?", '"')) else a.rstrip() + "." for a in ans
                           if a and a != "I don't know.")
        if body:
            write_article(root / "articles", f"{hashlib.sha1(d.encode()).hexdigest()[:12]}.txt", titles[d], body)
    return build_index([root / "articles"], root / "index", quiet=quiet)


def run(k: int = 5, limit: int | None = None) -> dict:
    import qa

    t0 = time.perf_counter()
    engine = qa.load(build())
    ex = [e for e in _examples() if e["Question_no"] > 1]
    if limit:
        ex = ex[:: max(1, len(ex) // limit)][:limit]
    engine.prime([e["Question"] for e in ex] + [e["Rewrite"] for e in ex])
    stats = defaultdict(list)
    for e in ex:
        h = e["History"]
        turns = [f"{h[0]} {h[1]}"] + h[2::2]
        gold = {a.sentence_id for a in engine.ask(e["Rewrite"], k=k).answers}
        raw = {a.sentence_id for a in engine.ask(e["Question"], k=k).answers}
        res = engine.ask(e["Question"], history=turns, k=k)
        mine = {a.sentence_id for a in res.answers}
        self_contained = e["Question"].strip().lower() == e["Rewrite"].strip().lower()
        stats["raw"].append(len(raw & gold) / k)
        stats["resolved"].append(len(mine & gold) / k)
        stats["read_as_followup" if not self_contained else "self_contained_read_as_followup"].append(res.followup)
    n = len(ex)
    out = {
        "followup_turns": n,
        "overlap@5_raw": sum(stats["raw"]) / n,
        "overlap@5_resolved": sum(stats["resolved"]) / n,
        "detected_followups": sum(stats["read_as_followup"]) / max(len(stats["read_as_followup"]), 1),
        "self_contained_turns": len(stats["self_contained_read_as_followup"]),
        "self_contained_read_as_followup": sum(stats["self_contained_read_as_followup"])
        / max(len(stats["self_contained_read_as_followup"]), 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return out


def table(r: dict) -> str:
    rows = [["raw question", r["overlap@5_raw"]], ["resolved (ours)", r["overlap@5_resolved"]]]
    return (f"CANARD dev follow-up turns ({r['followup_turns']}): overlap@5 with retrieval by the gold rewrite\n"
            + format_table(["query", "overlap@5"], rows)
            + f"\nread as follow-up: {r['detected_followups']:.3f} of turns that needed a rewrite; "
              f"{r['self_contained_read_as_followup']:.3f} of {r['self_contained_turns']} self-contained turns"
            + f"\nseconds: {r['seconds']}\n")
