"""What reading article metadata (and the page-furniture and dotted-name
rules of issue 27) costs a build's reading step, side by side in one run.

    HF_HUB_OFFLINE=1 python benchmarks/read_meta.py [--bench ../shared/bench] [--repeat 3] [--json]

Reads the 34 saved web pages and the 2,225 BBC articles exactly as the
builder does (`documents.discover` + `documents.load`) in interleaved rounds,
once as shipped and once with the new steps replaced by no-ops (no front
matter, no metadata cleaning, no furniture filter, no dotted-name join;
trafilatura's metadata pass stays: the title already came from it), and
prints the best time of each, their ratio, and how many pages declared each
field (issue 27's target: metadata slows a whole build by at most 10%).  Reading is the part of a build these steps touch;
embedding, which dominates a build, is unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def _without_new_steps() -> Iterator[None]:
    from index_build import documents, metadata, readers, segment

    saved = (metadata.front_matter, metadata.make, documents.boilerplate, segment._join_dotted)
    metadata.front_matter = lambda text: ({}, text)
    metadata.make = lambda *a, **k: metadata.NONE
    documents.boilerplate = lambda s: False
    segment._join_dotted = lambda cores: cores
    assert readers.metadata is metadata  # the readers look the functions up at call time
    try:
        yield
    finally:
        metadata.front_matter, metadata.make, documents.boilerplate, segment._join_dotted = saved


def _read_all(folders: list[Path]) -> tuple[float, dict[str, int]]:
    from index_build import documents

    t0 = time.perf_counter()
    files, _ = documents.discover(folders)
    found = {"documents": 0, "published": 0, "outlet": 0, "author": 0, "url": 0}
    for f in files:
        try:
            d = documents.load(f)
        except Exception:  # noqa: BLE001 - the builder skips what it cannot read; so does this
            continue
        found["documents"] += 1
        for k in ("published", "outlet", "author", "url"):
            found[k] += getattr(d, k) is not None
    return time.perf_counter() - t0, found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bench", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "bench")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    out = {}
    for name, folders in (("web", [args.bench / "web"]), ("bbc", [args.bench / "bbc"])):
        best = {"shipped": float("inf"), "without": float("inf")}
        found = {}
        for _ in range(args.repeat):
            t, found = _read_all(folders)
            best["shipped"] = min(best["shipped"], t)
            with _without_new_steps():
                t, _ = _read_all(folders)
            best["without"] = min(best["without"], t)
        out[name] = {
            "seconds_shipped": round(best["shipped"], 3),
            "seconds_without": round(best["without"], 3),
            "ratio": round(best["shipped"] / best["without"], 3),
            "declared": found,
        }
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for name, r in out.items():
            d = r["declared"]
            extra = (r["seconds_shipped"] - r["seconds_without"]) / max(1, d["documents"]) * 1000
            print(
                f"{name}: read {d['documents']} articles in {r['seconds_shipped']:.2f} s vs {r['seconds_without']:.2f} s "
                f"without the new steps: {r['ratio']:.3f}x of the reading step, {extra:+.3f} s per 1,000 articles "
                f"(a build's target is <= 1.10x; reading is a small share of it); dated {d['published']}, "
                f"outlet {d['outlet']}, author {d['author']}, URL {d['url']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
