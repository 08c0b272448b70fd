"""The learned reader's cost per question in each runtime, side by side.

The engine reads a few candidates of each question (qa.engine.READ_MOST), so
what matters is the time of one small batch: a question with n candidate
sentences.  This times `Reader.score` on the seed questions' own best
candidates for n = 1, 3, 5, 8 in every runtime qa.reader offers (torch fp32,
int8 and bf16; ONNX Runtime int8, the default), interleaved question by
question so a noisy machine slows all of them alike, and reports how far each
runtime's logits are from fp32's.  It also times the first export of the ONNX
graph (once per weights file and version) and a load that finds it cached.

    python benchmarks/reader.py [--questions 40] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

RUNTIMES = ("fp32", "int8", "bf16", "onnx-int8")
SIZES = (1, 3, 5, 8)


def candidates(n_questions: int) -> list[tuple[str, list[str]]]:
    """(question, its 8 best fused candidates) for seed questions."""
    from query import index_for, seed_questions

    import qa

    engine = qa.load(index_for("seeds"), warm=False, reader=False)
    out = []
    for q in seed_questions()[:n_questions]:
        texts = engine.score_candidates(engine.resolve(q, []))[4]
        if len(texts) >= max(SIZES):
            out.append((q, list(texts[: max(SIZES)])))
    return out


def export_times() -> dict:
    """Seconds for the first ONNX export and for a load that finds it cached
    (a fresh cache folder; `_load`'s memo cleared as in a new process)."""
    from qa import reader as reader_mod

    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("SOURCE_QA_CACHE")
        os.environ["SOURCE_QA_CACHE"] = tmp
        try:
            reader_mod._load.cache_clear()
            t = time.perf_counter()
            reader_mod.load_reader()
            first = time.perf_counter() - t
            reader_mod._load.cache_clear()
            t = time.perf_counter()
            reader_mod.load_reader()
            cached = time.perf_counter() - t
            reader_mod._load.cache_clear()
            t = time.perf_counter()
            reader_mod.load_reader(precision="int8")
            torch_int8 = time.perf_counter() - t
        finally:
            if old is None:
                os.environ.pop("SOURCE_QA_CACHE", None)
            else:
                os.environ["SOURCE_QA_CACHE"] = old
            reader_mod._load.cache_clear()
    return {
        "first_export_s": round(first, 2),
        "cached_load_s": round(cached, 2),
        "torch_int8_load_s": round(torch_int8, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from qa import reader as reader_mod

    loads = export_times()
    readers = {r: reader_mod.load_reader(precision=r) for r in RUNTIMES}
    pairs = candidates(args.questions)
    for rd in readers.values():  # warm-up
        for q, texts in pairs[:3]:
            rd.score(q, texts[:3])
    ms: dict[tuple[str, int], list[float]] = {(r, n): [] for r in RUNTIMES for n in SIZES}
    diff: dict[str, list[float]] = {r: [] for r in RUNTIMES[1:]}
    for _ in range(args.repeats):
        for i, (q, texts) in enumerate(pairs):
            order = RUNTIMES if i % 2 else RUNTIMES[::-1]
            for n in SIZES:
                got = {}
                for r in order:
                    t = time.perf_counter()
                    got[r] = readers[r].score(q, texts[:n])
                    ms[(r, n)].append(1000 * (time.perf_counter() - t))
                if n == max(SIZES):
                    for r in RUNTIMES[1:]:
                        diff[r].append(float(np.abs(got[r] - got["fp32"]).max()))
    result = {
        "questions": len(pairs),
        "repeats": args.repeats,
        "p50_ms": {r: {n: round(float(np.median(ms[(r, n)])), 2) for n in SIZES} for r in RUNTIMES},
        "max_abs_diff_to_fp32_n8": {r: round(float(np.max(diff[r])), 3) for r in RUNTIMES if r != "fp32"},
        "median_abs_diff_to_fp32_n8": {r: round(float(np.median(diff[r])), 3) for r in RUNTIMES if r != "fp32"},
        **loads,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"reader.score p50 (ms) over {len(pairs)} seed questions x {args.repeats}, n candidates each:")
    print("runtime     " + "".join(f"  n={n:<6}" for n in SIZES) + "  |logit - fp32| median / max (n=8)")
    for r in RUNTIMES:
        d = (
            ""
            if r == "fp32"
            else f"  {result['median_abs_diff_to_fp32_n8'][r]:.3f} / {result['max_abs_diff_to_fp32_n8'][r]:.3f}"
        )
        print(f"{r:<12}" + "".join(f"  {result['p50_ms'][r][n]:<8}" for n in SIZES) + d)
    print(
        f"load: first ONNX export {loads['first_export_s']} s, cached {loads['cached_load_s']} s, "
        f"torch int8 {loads['torch_int8_load_s']} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
