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
    for d, ans in sorted(answers.items()):
        body = "\n\n".join(
            a if a.rstrip().endswith((".", "!", "?", '"')) else a.rstrip() + "."
            for a in ans
            if a and a != "I don't know."
        )
        if body:
            write_article(root / "articles", f"{hashlib.sha1(d.encode()).hexdigest()[:12]}.txt", titles[d], body)
    return build_index([root / "articles"], root / "index", quiet=quiet)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def in_answer(sentence: str, answer: str) -> bool:
    """Whether a retrieved sentence is part of a (normalised) QuAC answer.  The
    corpus gave every answer not ending in a stop a "." of its own (see
    `build`), so that one is not asked for; a short piece ("Yes.") must be
    the whole answer, not a few letters of it."""
    s = _norm(sentence)
    s = s[:-1] if s.endswith(".") else s
    return bool(s) and s in answer and (len(s) >= 15 or s == answer.rstrip("."))


def turn_answers(examples: list[dict]) -> dict[tuple[str, int], str]:
    """(dialog, turn number) -> the answer QuAC recorded for that turn, read
    from the History of later turns (a dialog's last turn has none); "I don't
    know" turns are left out: no sentence answers them."""
    out: dict[tuple[str, int], str] = {}
    for e in examples:
        h = e["History"]
        for i, a in enumerate(h[3::2], start=1):
            if a and a.strip() not in ("I don't know.", "CANNOTANSWER"):
                out[(e["QuAC_dialog_id"], i)] = _norm(a)
    return out


def dialog_half(dialog_id: str) -> str:
    """ "dev" or "test": a fixed split by dialog (hash of its id), so changes
    to the resolver are tuned on one half and reported on the other, as with
    SQuAD."""
    return "dev" if hashlib.sha1(dialog_id.encode()).digest()[0] < 128 else "test"


def run(k: int = 5, limit: int | None = None) -> dict:
    """overlap@5 with the gold rewrite's retrieval, and answer@5 -- the turn's
    own QuAC answer among the top 5 (a returned sentence is part of it) --
    for the raw question, our resolved one and the gold rewrite; per half of
    the dialogs."""
    import qa

    t0 = time.perf_counter()
    engine = qa.load(build())
    every = _examples()
    answers = turn_answers(every)
    ex = [e for e in every if e["Question_no"] > 1]
    if limit:
        ex = ex[:: max(1, len(ex) // limit)][:limit]
    engine.prime([e["Question"] for e in ex] + [e["Rewrite"] for e in ex])
    stats: dict[str, list] = defaultdict(list)
    for e in ex:
        h = e["History"]
        turns = [f"{h[0]} {h[1]}"] + h[2::2]
        gold_res = engine.ask(e["Rewrite"], k=k)
        raw_res = engine.ask(e["Question"], k=k)
        res = engine.ask(e["Question"], history=turns, k=k)
        gold = {a.sentence_id for a in gold_res.answers}
        half = dialog_half(e["QuAC_dialog_id"])
        stats[f"{half}/raw"].append(len({a.sentence_id for a in raw_res.answers} & gold) / k)
        stats[f"{half}/resolved"].append(len({a.sentence_id for a in res.answers} & gold) / k)
        answer = answers.get((e["QuAC_dialog_id"], e["Question_no"]))
        if answer:
            for name, r in (("raw", raw_res), ("resolved", res), ("rewrite", gold_res)):
                stats[f"{half}/answer_{name}"].append(any(in_answer(a.text, answer) for a in r.answers))
        self_contained = e["Question"].strip().lower() == e["Rewrite"].strip().lower()
        stats["read_as_followup" if not self_contained else "self_contained_read_as_followup"].append(res.followup)
    mean = lambda xs: sum(xs) / max(len(xs), 1)  # noqa: E731
    n = len(ex)
    out: dict = {
        "followup_turns": n,
        "overlap@5_raw": mean(stats["dev/raw"] + stats["test/raw"]),
        "overlap@5_resolved": mean(stats["dev/resolved"] + stats["test/resolved"]),
        "detected_followups": mean(stats["read_as_followup"]),
        "self_contained_turns": len(stats["self_contained_read_as_followup"]),
        "self_contained_read_as_followup": mean(stats["self_contained_read_as_followup"]),
    }
    for half in ("dev", "test"):
        out[half] = {
            "turns": len(stats[f"{half}/raw"]),
            "overlap@5_raw": mean(stats[f"{half}/raw"]),
            "overlap@5_resolved": mean(stats[f"{half}/resolved"]),
            "turns_with_answer": len(stats[f"{half}/answer_raw"]),
        }
        for name in ("raw", "resolved", "rewrite"):
            out[half][f"answer@5_{name}"] = mean(stats[f"{half}/answer_{name}"])
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def table(r: dict) -> str:
    rows = [
        [
            "raw question",
            r["overlap@5_raw"],
            r["dev"]["overlap@5_raw"],
            r["test"]["overlap@5_raw"],
            r["dev"]["answer@5_raw"],
            r["test"]["answer@5_raw"],
        ],
        [
            "resolved (ours)",
            r["overlap@5_resolved"],
            r["dev"]["overlap@5_resolved"],
            r["test"]["overlap@5_resolved"],
            r["dev"]["answer@5_resolved"],
            r["test"]["answer@5_resolved"],
        ],
        ["gold rewrite", 1.0, 1.0, 1.0, r["dev"]["answer@5_rewrite"], r["test"]["answer@5_rewrite"]],
    ]
    return (
        f"CANARD dev follow-up turns ({r['followup_turns']}; dialogs split in two halves by id hash: "
        f"{r['dev']['turns']} / {r['test']['turns']} turns): overlap@5 with retrieval by the gold rewrite, and "
        f"answer@5 = the turn's own QuAC answer among the top 5 ({r['dev']['turns_with_answer']} / "
        f"{r['test']['turns_with_answer']} turns with a recorded answer)\n"
        + format_table(["query", "overlap@5", "overlap dev", "overlap test", "answer@5 dev", "answer@5 test"], rows)
        + f"\nread as follow-up: {r['detected_followups']:.3f} of turns that needed a rewrite; "
        f"{r['self_contained_read_as_followup']:.3f} of {r['self_contained_turns']} self-contained turns"
        + f"\nseconds: {r['seconds']}\n"
    )
