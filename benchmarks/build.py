"""Build throughput of the real index builder against a bare encode of the same text.

Why this exists: the builder's cost is dominated by the sentence encoder, so
its throughput (unique sentences per second, end to end) should stay close to
what the model alone can do.  The issue's target is

* builder >= 0.9x the throughput of a bare fp32 ``SentenceTransformer.encode``
  of the same unique sentences, and
* on CPUs with native bf16 (where the builder picks bf16 autocast), the builder
  should beat 1.0x of bare fp32.

One run measures, per corpus:

1. ``index_build.build(sources, index_dir, BuildConfig(full=True,
   progress=False))`` on freshly written article files, wall time as reported
   by the builder (which *includes* its own model load, the bf16-vs-fp32
   probe, segmentation, dedup, BM25 and writing the index);
2. a bare fp32 encode of exactly the unique sentences the build embedded (read
   back from the index's meta.sqlite), ``encoder.model.encode(texts,
   batch_size=32, normalize_embeddings=True)``;
3. the bare encode under bf16 autocast, ``encoder.encode(texts,
   precision="bf16")`` (the same code path the builder uses for bf16).

The bare encodes use a model loaded (and warmed up) once beforehand, so their
time excludes imports and model load.  The builder loads its own model inside
the timed build; this script times a model load in the same (already warm)
process and also reports the builder's time with that load subtracted.
``--phases`` additionally times the builder's phases by wrapping the functions
``index_build.build`` calls (in this process only; no file is changed).
``--builder-precision fp32`` forces the builder's fp32 path, to check the 0.9x
target on a CPU where "auto" would pick bf16.

The three are run in interleaved rounds (``--repeat``, default 3) and the best
time of each is reported, plus the ratio within every round and each run's
CPU/wall: on a shared 2-core machine another process shows up as CPU/wall well
below the thread count, and the script then warns that the numbers are unfit.

Corpora:

* ``seeds xN``: the seed articles copied N times; in every copy but the first
  60% of the words of three or more letters are swapped (deterministically,
  for words from the seeds' own vocabulary) so copies are not merged as exact
  or near duplicates of each other, while the number and length of sentences
  -- what throughput depends on -- stay those of real news sentences (the
  swapped text reads as word salad; the encoder does not care);
* ``squad-dev``: SQuAD v1.1 dev paragraphs, one article per paragraph.

Run from the repository root::

    HF_HUB_OFFLINE=1 python benchmarks/build.py             # ~2,000 / ~1,700 sentences, ~3 min
    HF_HUB_OFFLINE=1 python benchmarks/build.py --phases    # plus where the builder's time goes
    HF_HUB_OFFLINE=1 python benchmarks/build.py --limit 0   # all 2,067 SQuAD paragraphs
    HF_HUB_OFFLINE=1 python benchmarks/build.py --builder-precision fp32 --json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import random
import re
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
# Run as a script: import the checkout, not a module named like this file.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)
elif str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEEDS = REPO / "seeds"
SQUAD = (
    Path(os.environ.get("SOURCE_QA_BENCH", REPO.parent / "shared" / "bench"))
    / "squad_v1.1"
    / "squad_dev_v1.1_paragraphs.jsonl"
)
TARGET_RATIO = 0.9
_LOWER = re.compile(r"\b[a-z]{3,}\b")
# Lower-case words, and capitalised words not followed by a full stop (so no
# abbreviation such as "Gen." or "Sept." is touched and sentence breaks stay put).
_SWAPPABLE = re.compile(r"\b(?:[a-z]{3,}|[A-Z][a-z]{3,}(?!\.))\b")


# ---------------------------------------------------------------- corpora


def _write_article(folder: Path, name: str, title: str, body: str) -> None:
    (folder / name).write_text(f"{title}\n\n{body.strip()}\n", encoding="utf-8")


def write_seed_copies(out: Path, copies: int, replace: float = 0.6) -> int:
    """The seed articles `copies` times (copy 0 verbatim), each later copy with
    its own word swaps; returns the number of files written."""
    texts = {p.stem: p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))}
    vocab = sorted({w for t in texts.values() for w in _LOWER.findall(t) if len(w) >= 4})
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for k in range(copies):
        rng = random.Random(k)

        def swap(m: re.Match[str]) -> str:
            w = m.group(0)
            if rng.random() >= replace:
                return w
            new = rng.choice(vocab)
            return new.capitalize() if w[0].isupper() else new

        for stem, text in texts.items():
            body = text if k == 0 else _SWAPPABLE.sub(swap, text)
            _write_article(out, f"{stem}_copy{k:03d}.txt", f"Seed article {stem} copy {k}", body)
            n += 1
    return n


def write_squad(out: Path, limit: int) -> int:
    """SQuAD dev paragraphs as articles (title line, blank line, context); returns files written."""
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with SQUAD.open(encoding="utf-8") as f:
        for line in f:
            if limit and n >= limit:
                break
            row = json.loads(line)
            _write_article(out, f"{n:05d}.txt", row["title"].replace("_", " "), row["context"])
            n += 1
    return n


# ---------------------------------------------------------------- phases


class PhaseTimer:
    """Cumulative wall time of named functions called by `index_build.build`."""

    # (module, attribute, phase label): what build() looks up at call time.
    TARGETS = (
        ("index_build.documents", "discover", "discover files"),
        ("index_build.documents", "load", "read + segment"),
        ("index_build.build", "deduplicate", "dedup"),
        ("index_build.build", "make_passages", "passages"),
        ("index_build.build", "load_encoder", "model load"),
        ("index_build.build", "bf16_agreement", "bf16 probe (fp32+bf16 encode)"),
        ("index_build.build", "embed_texts", "embed sentences"),
        ("index_build.build", "mean_vectors", "passage mean vectors"),
        ("index_build.build", "_write_metadata", "write meta.sqlite"),
        ("index_build.build", "_write_vectors", "write FAISS + .npy"),
        ("index_build.build", "build_bm25", "BM25"),
        ("index_build.build", "_manifest", "manifest"),
        ("index_build.publish", "publish", "publish (swap in)"),
    )

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def _wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t

        return timed

    @contextlib.contextmanager
    def active(self) -> Iterator[PhaseTimer]:
        saved = []
        try:
            for mod_name, attr, label in self.TARGETS:
                mod = importlib.import_module(mod_name)
                fn = getattr(mod, attr)
                saved.append((mod, attr, fn))
                setattr(mod, attr, self._wrap(label, fn))
            yield self
        finally:
            for mod, attr, fn in reversed(saved):
                setattr(mod, attr, fn)


# ---------------------------------------------------------------- measuring


@dataclass
class Result:
    corpus: str
    files: int
    unique_sentences: int
    builder_seconds: float
    builder_seconds_excl_load: float
    bare_fp32_seconds: float
    bare_bf16_seconds: float
    precision: str
    bf16_min_cosine: float | None
    near_duplicates_merged: int
    exact_duplicates_merged: int
    min_cpu_per_wall: float  # of all timed runs; well below the thread count = CPU taken by others
    rounds: list[dict[str, Any]] = field(default_factory=list)  # raw seconds and CPU/wall of every round
    phases: dict[str, float] = field(default_factory=dict)

    def rate(self, seconds: float) -> float:
        return self.unique_sentences / seconds if seconds > 0 else 0.0

    def round_ratios(self) -> list[float]:
        """bare fp32 / builder time within each round (similar load on both)."""
        return [r["bare_fp32_s"] / r["builder_s"] for r in self.rounds]

    def to_dict(self) -> dict[str, Any]:
        d = {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}
        d.update(
            builder_sent_per_s=round(self.rate(self.builder_seconds), 1),
            builder_sent_per_s_excl_load=round(self.rate(self.builder_seconds_excl_load), 1),
            bare_fp32_sent_per_s=round(self.rate(self.bare_fp32_seconds), 1),
            bare_bf16_sent_per_s=round(self.rate(self.bare_bf16_seconds), 1),
            ratio_builder_vs_bare_fp32=round(self.bare_fp32_seconds / self.builder_seconds, 3),
            ratio_builder_excl_load_vs_bare_fp32=round(self.bare_fp32_seconds / self.builder_seconds_excl_load, 3),
            ratio_builder_vs_bare_bf16=round(self.bare_bf16_seconds / self.builder_seconds, 3),
            ratio_bare_bf16_vs_bare_fp32=round(self.bare_fp32_seconds / self.bare_bf16_seconds, 3),
            ratio_builder_vs_bare_fp32_per_round=[round(x, 3) for x in self.round_ratios()],
        )
        return d


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result) of `fn()`."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def _read_unique(index_dir: Path) -> list[str]:
    con = sqlite3.connect(f"file:{index_dir / 'meta.sqlite'}?mode=ro", uri=True)
    try:
        return [t for (t,) in con.execute("SELECT text FROM sentences ORDER BY sent_idx")]
    finally:
        con.close()


def measure(
    name: str,
    src: Path,
    files: int,
    encoder: Any,
    load_s: float,
    repeat: int,
    phases: bool,
    verbose: bool,
    precision: str = "auto",
) -> Result:
    """`repeat` rounds of (build `src`, bare fp32 encode, bare bf16 encode of
    its unique sentences); the best time of each is kept.  Interleaving the
    three keeps load from other processes from favouring one of them."""
    from index_build import build
    from qa.config import BuildConfig

    log: Callable[[str], None] = (lambda m: print(f"  [build] {m}", file=sys.stderr)) if verbose else (lambda m: None)
    best = None
    best_phases: dict[str, float] = {}
    texts: list[str] = []
    fp32 = bf16 = float("inf")
    cpu_use: list[float] = []  # CPU seconds / wall seconds of every timed run
    rounds: list[dict[str, Any]] = []
    for r in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
            index_dir = Path(tmp) / "index"
            timer = PhaseTimer()
            with timer.active() if phases else contextlib.nullcontext():
                wall, cpu, report = _timed(
                    lambda: build(
                        [src], index_dir, BuildConfig(full=True, progress=False, precision=precision), log=log
                    )
                )
            cpu_use.append(cpu / wall)
            if best is None or report.seconds < best.seconds:
                best, best_phases = report, dict(timer.seconds)
            if r == 0:
                texts = _read_unique(index_dir)
                if len(texts) != report.unique_sentences:
                    raise RuntimeError(
                        f"meta.sqlite holds {len(texts)} sentences, report says {report.unique_sentences}"
                    )
        f_wall, cpu, _ = _timed(lambda: encoder.model.encode(texts, batch_size=32, normalize_embeddings=True))
        cpu_use.append(cpu / f_wall)
        b_wall, cpu, _ = _timed(lambda: encoder.encode(texts, batch_size=32, precision="bf16"))
        cpu_use.append(cpu / b_wall)
        fp32, bf16 = min(fp32, f_wall), min(bf16, b_wall)
        rounds.append(
            {
                "builder_s": round(report.seconds, 3),
                "bare_fp32_s": round(f_wall, 3),
                "bare_bf16_s": round(b_wall, 3),
                "cpu_per_wall": [round(u, 2) for u in cpu_use[-3:]],
            }
        )
        print(
            f"  {name}: round {r + 1}/{repeat}: build {report.seconds:.2f} s ({report.unique_sentences} unique, "
            f"{report.precision}), bare fp32 {f_wall:.2f} s, bare bf16 {b_wall:.2f} s; "
            f"cpu/wall {' '.join(f'{u:.2f}' for u in cpu_use[-3:])}",
            file=sys.stderr,
            flush=True,
        )
    assert best is not None

    if best_phases:
        best_phases["other (unwrapped)"] = max(0.0, best.seconds - sum(best_phases.values()))
    return Result(
        corpus=name,
        files=files,
        unique_sentences=best.unique_sentences,
        builder_seconds=best.seconds,
        builder_seconds_excl_load=max(1e-9, best.seconds - load_s),
        bare_fp32_seconds=fp32,
        bare_bf16_seconds=bf16,
        precision=best.precision,
        bf16_min_cosine=best.bf16_min_cosine,
        near_duplicates_merged=best.near_duplicates_merged,
        exact_duplicates_merged=best.exact_duplicates_merged,
        min_cpu_per_wall=round(min(cpu_use), 2),
        rounds=rounds,
        phases={k: round(v, 3) for k, v in best_phases.items()},
    )


# ---------------------------------------------------------------- output


def table(results: list[Result], env: dict[str, Any]) -> str:
    head = (
        "corpus",
        "unique sent",
        "builder s",
        "(excl load)",
        "builder sent/s",
        "(excl load)",
        "bare fp32 sent/s",
        "bare bf16 sent/s",
        "builder/bare-fp32",
        "(excl load)",
        "precision",
    )
    rows = [head]
    for r in results:
        prec = r.precision + (f" (cos {r.bf16_min_cosine:.5f})" if r.bf16_min_cosine is not None else "")
        rows.append(
            (
                r.corpus,
                str(r.unique_sentences),
                f"{r.builder_seconds:.2f}",
                f"{r.builder_seconds_excl_load:.2f}",
                f"{r.rate(r.builder_seconds):.1f}",
                f"{r.rate(r.builder_seconds_excl_load):.1f}",
                f"{r.rate(r.bare_fp32_seconds):.1f}",
                f"{r.rate(r.bare_bf16_seconds):.1f}",
                f"{r.bare_fp32_seconds / r.builder_seconds:.2f}x",
                f"{r.bare_fp32_seconds / r.builder_seconds_excl_load:.2f}x",
                prec,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            c.rjust(w) if 0 < i < len(head) - 1 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines.append(
        f"model load (same process, warm imports) {env['model_load_s']:.2f} s, subtracted for '(excl load)'; "
        f"first load incl. torch import {env['first_load_s']:.2f} s (not in any column)"
    )
    lines.append(
        f"torch {env['torch']} threads={env['torch_threads']}  cpu native bf16={env['cpu_fast_bf16']}  "
        f"repeat={env['repeat']} (best of)  target: builder/bare-fp32 >= {TARGET_RATIO}x, bf16 path > 1.0x"
    )
    lines.append(
        "lowest CPU/wall of any timed run (near the thread count = had the CPU to itself): "
        + ", ".join(f"{r.corpus} {r.min_cpu_per_wall:.2f}" for r in results)
        + f"; load average at start {env['loadavg_start']}, at end {env['loadavg_end']}"
    )
    lines.append(
        "builder/bare-fp32 within each round: "
        + "; ".join(f"{r.corpus} " + " ".join(f"{x:.2f}x" for x in r.round_ratios()) for r in results)
    )
    busy = [r.corpus for r in results if r.min_cpu_per_wall < 0.8 * env["torch_threads"]]
    if busy:
        lines.append(
            f"WARNING: other processes took CPU during timed runs of {', '.join(busy)}; "
            "the ratios compare runs under different load: rerun on an idle machine"
        )
    for r in results:
        if r.phases:
            lines.append("")
            lines.append(f"phases of the builder, {r.corpus} ({r.builder_seconds:.2f} s total):")
            for k, v in sorted(r.phases.items(), key=lambda kv: -kv[1]):
                lines.append(f"  {k:<32} {v:7.2f} s  {100 * v / r.builder_seconds:5.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--seed-copies",
        type=int,
        default=36,
        help="copies of the seed articles (~56 unique sentences per copy; default 36, ~2,000)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=400,
        help="SQuAD dev paragraphs to use (default 400, ~1,700 unique sentences; 0 = all 2,067)",
    )
    p.add_argument("--corpus", choices=("all", "seeds", "squad"), default="all")
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of (build, bare fp32, bare bf16); the best of each is reported (default 3)",
    )
    p.add_argument(
        "--builder-precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="BuildConfig.precision for the builder (default auto: bf16 where the CPU has it); "
        "fp32 checks the 0.9x target of the fp32 path on a bf16-capable CPU",
    )
    p.add_argument("--phases", action="store_true", help="also time the builder's phases")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--verbose", action="store_true", help="show the builder's log lines")
    args = p.parse_args(argv)

    import torch

    from qa.encoder import cpu_has_fast_bf16, load_encoder

    loadavg_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print("loading model ...", file=sys.stderr, flush=True)
    first_load_s = _timed(load_encoder)[0]  # includes importing torch + sentence-transformers
    load_s, _, encoder = _timed(load_encoder)  # what a build in this process pays
    warm = ["A short warm-up sentence.", "Another, somewhat longer sentence to warm up the model with."] * 32
    encoder.model.encode(warm, batch_size=32, normalize_embeddings=True)
    encoder.encode(warm, precision="bf16")
    encoder.encode(warm, precision="fp32")

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "first_load_s": round(first_load_s, 3),
        "model_load_s": round(load_s, 3),
        "repeat": args.repeat,
        "builder_precision": args.builder_precision,
    }
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        if args.corpus in ("all", "seeds"):
            src = Path(tmp) / "seeds"
            n = write_seed_copies(src, args.seed_copies)
            results.append(
                measure(
                    f"seeds x{args.seed_copies}",
                    src,
                    n,
                    encoder,
                    load_s,
                    args.repeat,
                    args.phases,
                    args.verbose,
                    args.builder_precision,
                )
            )
        if args.corpus in ("all", "squad"):
            src = Path(tmp) / "squad"
            n = write_squad(src, args.limit)
            results.append(
                measure(
                    f"squad-dev {n} paras",
                    src,
                    n,
                    encoder,
                    load_s,
                    args.repeat,
                    args.phases,
                    args.verbose,
                    args.builder_precision,
                )
            )

    env["loadavg_start"] = loadavg_start
    env["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.json:
        print(json.dumps({"env": env, "results": [r.to_dict() for r in results]}, indent=2))
    else:
        print(table(results, env))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
