"""Shared plumbing of the evaluation suites: where data lives, cached indexes,
and the ranking metrics."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable

from qa.config import REPO_ROOT, cache_root


def bench_dir() -> Path:
    """The public evaluation data (../shared/bench beside the checkout)."""
    p = Path(os.environ.get("SOURCE_QA_BENCH", REPO_ROOT.parent / "shared" / "bench"))
    if not p.is_dir():
        raise FileNotFoundError(f"evaluation data not found at {p}: set SOURCE_QA_BENCH to the shared/bench folder")
    return p


def cache_dir(name: str) -> Path:
    """A per-suite working folder that survives runs (indexes rebuild incrementally)."""
    p = cache_root() / "eval" / name
    p.mkdir(parents=True, exist_ok=True)
    return p


LOCK_WAIT_S = 300


def build_index(sources: list[Path], index_dir: Path, quiet: bool = True) -> Path:
    """Build (incrementally) with the real builder and default settings.

    Several evaluation commands may share an index (e.g. `news sentences`
    run by several gold writers at once): one that finds another build of it
    running waits for it (up to LOCK_WAIT_S), where the builder's own CLI
    stops with an error."""
    from index_build import build
    from qa.config import BuildConfig
    from qa.errors import BuildRunningError

    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            build(sources, index_dir, BuildConfig(progress=not quiet), log=(lambda m: None) if quiet else print)
            return index_dir
        except BuildRunningError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def write_article(folder: Path, name: str, title: str, body: str) -> None:
    """An article file as users have them: title line, blank line, body.
    Unchanged files are not rewritten, so incremental builds stay no-ops."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    text = f"{title}\n\n{body}\n"
    if not p.exists() or p.read_text(encoding="utf-8") != text:
        p.write_text(text, encoding="utf-8")


def mrr(ranks: Iterable[int | None], cutoff: int | None = None) -> float:
    """Mean reciprocal rank; ranks are 1-based, None = not found (within cutoff)."""
    ranks = list(ranks)
    if not ranks:
        return 0.0
    return sum(1.0 / r for r in ranks if r is not None and (cutoff is None or r <= cutoff)) / len(ranks)


def recall_at(ranks: Iterable[int | None], k: int) -> float:
    ranks = list(ranks)
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def format_table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
