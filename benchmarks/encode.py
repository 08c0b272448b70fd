"""Embedding throughput of the builder's encoder, against a plain fp32 encode.

Why: the builder spends nearly all its time embedding sentences.  Target (issue
"Performance at scale"): the builder's path >= 1.8x a plain fp32
``SentenceTransformer.encode(batch_size=32)`` of the same sentences, while every
embedding stays within cosine 0.995 of fp32.

Variants (all on the same N SQuAD-dev sentences, L2-normalised output):

* ``st-fp32-b32``      plain ``SentenceTransformer(path).encode(batch_size=32)``: the baseline
* ``enc-fp32-b32``     our ``Encoder`` in fp32
* ``enc-bf16-bNN``     our ``Encoder`` with bf16 autocast, batch sizes 16/32/64/128
* ``enc-bf16-b32-t1``  the same on one torch thread (what each worker of a 2-process pool gets)
* ``bf16-weights-b32`` the whole model cast to bf16 (no autocast; LayerNorm/softmax in bf16 too)
* ``onnx-fp32-b32``    ONNX Runtime, the model exported with ``torch.onnx`` (needs ``pip install onnxruntime onnx``,
                       not project dependencies: skipped without them; ``optimum``, which
                       sentence-transformers' ``backend="onnx"`` needs, would downgrade transformers)
* ``onnx-int8-b32``    the same after ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, VNNI)
* ``pool2-fp32-b32``   sentence-transformers' multi-process pool, 2 CPU processes of 1 thread each
* ``pool2-bf16-b32``   ``qa.encoder.EncoderPool``: this process + 1 spawned worker, 1 thread each, bf16
* ``pool2-fp32-b32-ours``  the same pool in fp32

Exported ONNX files go to ``~/.cache/source-qa/onnx/`` (never into the repo).
Variants are run interleaved, ``--repeats`` rounds, each round in a rotated
order, so every variant sees the same machine load; the table reports the
median sentences/s, its ratio to the baseline's median, and the min/mean
cosine of each variant's vectors to the baseline's.

    python benchmarks/encode.py [--sentences 2000] [--repeats 3] [--only enc-bf16-b32,...] [--no-onnx] [--no-pool] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

SQUAD_PARAGRAPHS = Path("/work/shared/bench/squad_v1.1/squad_dev_v1.1_paragraphs.jsonl")
CACHE = Path.home() / ".cache" / "source-qa" / "onnx"


def squad_sentences(n: int, path: Path = SQUAD_PARAGRAPHS) -> list[str]:
    """The first `n` sentences of SQuAD dev (ReQA sentence spans), in file order."""
    out: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            para = json.loads(line)
            ctx = para["context"]
            for a, b in para["sentence_spans"]:
                s = ctx[a:b].strip()
                if s:
                    out.append(s)
                    if len(out) >= n:
                        return out
    return out


# --------------------------------------------------------------------------- ONNX


class OnnxEncoder:
    """all-MiniLM-L6-v2 through ONNX Runtime: the transformer exported with
    torch.onnx, mean pooling and L2 normalisation in numpy (the model's own
    Pooling + Normalize modules)."""

    def __init__(self, st, onnx_path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.tokenizer = st.tokenizer
        self.max_len = int(st.max_seq_length)
        self.inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for i in range(0, len(texts), batch_size):
            idx = order[i : i + batch_size]
            tok = self.tokenizer(
                [texts[j] for j in idx], padding=True, truncation=True, max_length=self.max_len, return_tensors="np"
            )
            feed = {k: v.astype(np.int64) for k, v in tok.items() if k in self.inputs}
            (hidden,) = self.session.run(["last_hidden_state"], feed)
            mask = tok["attention_mask"][..., None].astype(np.float32)
            emb = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            out[idx] = emb
        return out


def export_onnx(st, dest: Path) -> Path:
    """fp32 ONNX export of the transformer (cached)."""
    import torch

    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)

    class Wrapped(torch.nn.Module):
        def __init__(self, m) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    # Trace on a batch with padding so the mask path is exported, not folded away.
    tok = st.tokenizer(
        ["a short one", "a somewhat longer sentence to export the model with"], padding=True, return_tensors="pt"
    )
    names = ["input_ids", "attention_mask", "token_type_ids"]
    tmp = dest.with_suffix(".tmp.onnx")
    with torch.inference_mode(False), torch.no_grad(), contextlib.redirect_stderr(open(os.devnull, "w")):
        torch.onnx.export(
            Wrapped(st[0].auto_model).eval(),
            tuple(tok[k] for k in names),
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={k: {0: "batch", 1: "seq"} for k in names + ["last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
    tmp.replace(dest)
    return dest


def quantize_onnx(src: Path, dest: Path) -> Path:
    """Dynamic int8 quantisation (weights int8 per channel, activations uint8 at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if dest.is_file():
        return dest
    tmp = dest.with_suffix(".tmp.onnx")
    quantize_dynamic(
        str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul", "Gemm"]
    )
    tmp.replace(dest)
    return dest


# --------------------------------------------------------------------------- variants


def make_variants(path: str, args) -> dict:
    """name -> (setup-free callable texts -> vectors); the baseline first."""
    import torch
    from sentence_transformers import SentenceTransformer

    from qa.encoder import Encoder, load_encoder

    st = SentenceTransformer(path, device="cpu")
    enc = load_encoder(path, precision="bf16")
    fp32 = Encoder(enc.model_id, enc.model, "fp32")
    variants: dict = {}
    variants["st-fp32-b32"] = lambda xs: st.encode(
        xs, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    variants["enc-fp32-b32"] = lambda xs: fp32.encode(xs, batch_size=32)
    for bs in (16, 32, 64, 128):
        variants[f"enc-bf16-b{bs}"] = lambda xs, bs=bs: enc.encode(xs, batch_size=bs, precision="bf16")
    if enc.precision != "bf16":
        print("note: this CPU has no native bf16; bf16 variants ran in fp32", file=sys.stderr)

    def one_thread(xs):
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return enc.encode(xs, batch_size=32, precision="bf16")
        finally:
            torch.set_num_threads(n)

    variants["enc-bf16-b32-t1"] = one_thread

    def one_thread_fp32(xs):
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fp32.encode(xs, batch_size=32)
        finally:
            torch.set_num_threads(n)

    variants["enc-fp32-b32-t1"] = one_thread_fp32

    st_bf16 = SentenceTransformer(path, device="cpu")
    st_bf16.to(torch.bfloat16)
    bf16w = Encoder(enc.model_id, st_bf16, "fp32")
    variants["bf16-weights-b32"] = lambda xs: _renorm(bf16w.encode(xs, batch_size=32))

    # Linear weights stored in bf16 once, LayerNorm/embeddings fp32, run under
    # autocast: the numerics of autocast without re-casting weights every call.
    st_lin = SentenceTransformer(path, device="cpu")
    for mod in st_lin.modules():
        if isinstance(mod, torch.nn.Linear):
            mod.to(torch.bfloat16)
    bf16lin = Encoder(enc.model_id, st_lin, "bf16")
    for bs in (32, 64):
        variants[f"bf16-linear-b{bs}"] = lambda xs, bs=bs: bf16lin.encode(xs, batch_size=bs, precision="bf16")

    if not args.no_onnx:
        try:
            import onnxruntime  # noqa: F401

            src = export_onnx(st, CACHE / "all-MiniLM-L6-v2.fp32.onnx")
            q8 = quantize_onnx(src, CACHE / "all-MiniLM-L6-v2.int8.onnx")
            o32 = OnnxEncoder(st, src)
            o8 = OnnxEncoder(st, q8)
            variants["onnx-fp32-b32"] = lambda xs: o32.encode(xs, batch_size=32)
            variants["onnx-int8-b32"] = lambda xs: o8.encode(xs, batch_size=32)
            variants["onnx-fp32-b64"] = lambda xs: o32.encode(xs, batch_size=64)
        except ImportError as e:
            print(f"skipping ONNX variants: {e}", file=sys.stderr)

    if not args.no_pool:
        from qa.encoder import EncoderPool

        epool = EncoderPool(enc, processes=2)
        variants["_epool"] = epool
        # the worker's start (import torch, load the model) happens in the warm-up;
        # the main process encodes meanwhile, so it is not lost time
        variants["pool2-bf16-b32"] = lambda xs: enc.encode(xs, batch_size=32, precision="bf16", pool=epool)
        variants["pool2-fp32-b32-ours"] = lambda xs: fp32.encode(xs, batch_size=32, precision="fp32", pool=epool)
        # Each spawned worker imports torch afresh: one thread each, so the two
        # processes split the two cores rather than fight over them.
        old = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            pool = st.start_multi_process_pool(["cpu", "cpu"])
        finally:
            if old is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = old
        variants["pool2-fp32-b32"] = lambda xs: st.encode(
            xs, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, pool=pool, show_progress_bar=False
        )
        variants["_pool"] = pool
        variants["_st"] = st
    return variants


def _renorm(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def run(args) -> dict:
    import torch

    from qa.encoder import resolve_model

    _, path = resolve_model(args.model)
    texts = squad_sentences(args.sentences)
    variants = make_variants(path, args)
    pool, st = variants.pop("_pool", None), variants.pop("_st", None)
    epool = variants.pop("_epool", None)
    if args.only:
        keep = {"st-fp32-b32", *args.only.split(",")}
        variants = {k: v for k, v in variants.items() if k in keep}
    names = list(variants)
    # Warm up every variant (first calls allocate, JIT-pick kernels, fill pools).
    warm = texts[: min(64, len(texts))]
    for fn in variants.values():
        fn(warm)
    if epool is not None:  # its worker has loaded the model: the rounds measure steady state
        epool.wait_ready()
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    vecs: dict[str, np.ndarray] = {}
    try:
        for r in range(args.repeats):
            order = names[r % len(names) :] + names[: r % len(names)]
            for n in order:
                t, c = time.perf_counter(), time.process_time()
                v = variants[n](texts)
                times[n].append(time.perf_counter() - t)
                cpu[n].append(time.process_time() - c)
                vecs.setdefault(n, np.asarray(v, dtype=np.float32))
                # progress on stderr (stdout holds the table or the JSON)
                print(f"  round {r + 1} {n:18s} {len(texts) / times[n][-1]:8.1f} sent/s", file=sys.stderr)
    finally:
        if pool is not None:
            st.stop_multi_process_pool(pool)
        if epool is not None:
            epool.close()
    base = vecs["st-fp32-b32"]
    base_rate = len(texts) / statistics.median(times["st-fp32-b32"])
    rows = []
    for n in names:
        rate = len(texts) / statistics.median(times[n])
        cos = np.sum(vecs[n] * base, axis=1)
        rows.append(
            {
                "variant": n,
                "sent_per_s": round(rate, 1),
                "runs_sent_per_s": [round(len(texts) / t, 1) for t in times[n]],
                "x_plain_fp32": round(rate / base_rate, 3),
                # CPU seconds of this process per 1000 sentences (the pool's workers are not counted)
                "cpu_s_per_1k": round(1000 * statistics.median(cpu[n]) / len(texts), 2),
                "min_cosine": round(float(cos.min()), 6),
                "mean_cosine": round(float(cos.mean()), 6),
            }
        )
    return {
        "sentences": len(texts),
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": _cpu_flags(),
        "rows": rows,
    }


def _cpu_flags() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    return ",".join(f for f in ("amx_bf16", "avx512_bf16", "avx512_vnni") if f in flags) or "none"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model name or path (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--sentences", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default="", help="comma-separated variant names (the baseline always runs)")
    p.add_argument("--no-onnx", action="store_true")
    p.add_argument("--no-pool", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    res = run(args)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(
        f"{res['sentences']} SQuAD-dev sentences, {res['repeats']} interleaved rounds, "
        f"torch threads {res['torch_threads']}, CPU {res['cpu_bf16']}"
    )
    print(f"{'variant':18s} {'sent/s':>8s} {'x fp32':>7s} {'cpu s/1k':>8s} {'min cos':>9s} {'mean cos':>9s}  runs")
    for r in res["rows"]:
        print(
            f"{r['variant']:18s} {r['sent_per_s']:8.1f} {r['x_plain_fp32']:7.3f} {r['cpu_s_per_1k']:8.2f} "
            f"{r['min_cosine']:9.6f} {r['mean_cosine']:9.6f}  {r['runs_sent_per_s']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
