"""Shared fixtures: real model, real indexes on disk, real data from ../shared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
BENCH = Path(os.environ.get("SOURCE_QA_BENCH", REPO.parent / "shared" / "bench"))


def bench_path(*parts: str) -> Path:
    """A file of the shared evaluation data; its absence is a setup error, not a skip."""
    p = BENCH.joinpath(*parts)
    if not p.exists():
        raise FileNotFoundError(f"{p} missing: tests need ../shared/bench beside the checkout (or SOURCE_QA_BENCH)")
    return p


def run_cli(module: str, *args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=kw.pop("cwd", REPO),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def write_article(folder: Path, name: str, title: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(f"{title}\n\n{body}\n", encoding="utf-8")
    return p


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory) -> Path:
    """The seeds built once with the real builder and model."""
    from index_build import build
    from qa.config import BuildConfig

    out = tmp_path_factory.mktemp("seed-index") / "index"
    build([SEEDS], out, BuildConfig(progress=False), log=lambda m: None)
    return out


@pytest.fixture(scope="module")
def engine(seed_index: Path):
    """A real engine over the seeds index."""
    import qa

    return qa.load(seed_index)
