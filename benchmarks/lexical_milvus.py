"""The lexical side on the Milvus store: Milvus's own BM25 full-text search
against the project's BM25 (bm25s), on the same SQuAD sentences.

Why: with the vectors in Milvus, the BM25 half of the hybrid ranking could
move there too (Milvus 2.5+ and Milvus Lite have BM25 functions).  It is
kept beside the index instead when this says so: sentence-level R@1 /
MRR@10 against the ReQA gold sentences, and the time of one lexical search,
both configured alike (English stop words of bm25s, English Snowball
stemmer, k1 1.2, b 0.75).  (The ranking also reads per-term matches --
coverage, phrase, share of the best possible score -- which Milvus's search,
one score per hit, does not give.)

    python benchmarks/lexical_milvus.py [--questions 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def metrics(ranks: list[int | None]) -> dict:
    r = np.array([x if x is not None else 10**9 for x in ranks], dtype=float)
    return {"R@1": round(float(np.mean(r == 1)), 3), "MRR@10": round(float(np.mean(np.where(r <= 10, 1 / r, 0))), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=1000, help="SQuAD dev questions, a fixed random sample")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from bm25s.stopwords import STOPWORDS_EN
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    from qa.engine import Engine
    from qa.eval import squad
    from qa.followup import resolve

    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    engine = Engine.load(squad.build(quiet=True), warm=False)
    qs = squad.questions_for(engine)
    random.Random(0).shuffle(qs)
    qs = qs[: args.questions]
    sents = [r[0] for r in engine.data.db.execute("SELECT text FROM sentences ORDER BY sent_idx")]

    work = Path(tempfile.mkdtemp(prefix="bench-lexical-milvus-"))
    try:
        client = MilvusClient(str(work / "bm25.db"))
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field(
            "text",
            DataType.VARCHAR,
            max_length=8000,
            enable_analyzer=True,
            analyzer_params={
                "tokenizer": "standard",
                "filter": [
                    "lowercase",
                    {"type": "stop", "stop_words": sorted(STOPWORDS_EN)},
                    {"type": "stemmer", "language": "english"},
                ],
            },
        )
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="bm25", function_type=FunctionType.BM25, input_field_names=["text"], output_field_names=["sparse"]
            )
        )
        ip = client.prepare_index_params()
        ip.add_index(
            field_name="sparse",
            index_type="SPARSE_INVERTED_INDEX",
            metric_type="BM25",
            params={"bm25_k1": 1.2, "bm25_b": 0.75},
        )
        client.create_collection("sentences", schema=schema, index_params=ip)
        t0 = time.perf_counter()
        for lo in range(0, len(sents), 2000):
            client.insert("sentences", [{"id": i, "text": sents[i]} for i in range(lo, min(lo + 2000, len(sents)))])
        client.flush("sentences")
        insert_s = time.perf_counter() - t0

        ours, theirs, t_ours, t_theirs = [], [], [], []
        for q in qs:
            t = time.perf_counter()
            _, bm, _, _ = engine._lexical(resolve(q.text, []).lexical, None)
            t_ours.append(time.perf_counter() - t)
            top = np.argsort(-bm, kind="stable")[:10]
            ours.append(next((i + 1 for i, s in enumerate(top) if int(s) in q.gold_sents and bm[s] > 0), None))
            t = time.perf_counter()
            hits = client.search("sentences", data=[q.text], anns_field="sparse", limit=10, output_fields=["id"])[0]
            t_theirs.append(time.perf_counter() - t)
            theirs.append(next((i + 1 for i, h in enumerate(hits) if int(h["id"]) in q.gold_sents), None))
        client.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {
        "questions": len(qs),
        "sentences": len(sents),
        "milvus_insert_s": round(insert_s, 2),
        "bm25s": {**metrics(ours), "search_ms_p50": round(1000 * float(np.median(t_ours)), 2)},
        "milvus_lite_bm25": {**metrics(theirs), "search_ms_p50": round(1000 * float(np.median(t_theirs)), 2)},
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['questions']} SQuAD questions over {out['sentences']} sentences (ReQA gold), BM25 alone:")
        for name, key in (
            ("bm25s (the project's, beside the index)", "bm25s"),
            ("Milvus Lite BM25", "milvus_lite_bm25"),
        ):
            m = out[key]
            print(f"  {name:42} R@1 {m['R@1']:.3f}  MRR@10 {m['MRR@10']:.3f}  search p50 {m['search_ms_p50']:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
