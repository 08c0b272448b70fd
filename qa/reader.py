"""The reader: a small cross-encoder that reads a question and one sentence
together and says how well the sentence answers it.

Dense cosine and BM25 look at the question and the sentence separately, so
"Why did the talks fail?" ranks a sentence that merely mentions the talks
as high as the one that gives the cause.  Reading both at once sees the
cause, the measure, the category.  The model is MiniLM's six layers
fine-tuned in this repository (`python -m qa.reader_train --layers 6`;
data, licences and training time in qa/models/reader/MODEL_CARD.md), and it
ships: it met issue 26's keep rule (docs/evaluation.md, the seventh
attempt).  Nothing is downloaded.  It scores only the few best candidates
(qa.engine.READ_MOST), so a question costs a handful of short sequences,
run in ONNX Runtime with int8 weights (`load_reader`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qa.config import cache_root
from qa.encoder import cpu_has_amx
from qa.errors import ModelUnavailableError

READER_DIR = Path(__file__).with_name("models") / "reader"
ONNX_INT8 = "onnx-int8"
log = logging.getLogger(__name__)
MAX_LENGTH = 96  # question + sentence tokens; a news sentence is ~30, longer ones are cut


def reader_net(bert):  # noqa: ANN001, ANN201 - torch is imported only when a reader loads
    """The reader's network: MiniLM layers over "[CLS] question [SEP]
    sentence [SEP]", mean-pooled, one linear unit.

    Mean pooling, not BERT's [CLS] pooler: MiniLM was trained to mean-pool
    (sentence-transformers), and a fresh head on its [CLS] token did not
    learn (docs/evaluation.md, the learned reader); mean-pooled, the loss
    falls from the first steps."""
    import torch

    class ReaderNet(torch.nn.Module):
        def __init__(self, bert) -> None:  # noqa: ANN001
            super().__init__()
            self.bert = bert
            self.head = torch.nn.Linear(bert.config.hidden_size, 1)
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)

        def forward(self, input_ids, attention_mask, token_type_ids=None):  # noqa: ANN001, ANN201
            h = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return self.head((h * m).sum(1) / m.sum(1))[:, 0]

    return ReaderNet(bert)


@dataclass
class Reader:
    """A loaded reader: tokenizer, model, and how it runs."""

    tokenizer: Any
    model: Any
    info: dict
    max_length: int = MAX_LENGTH
    # "onnx-int8" (`model` an ONNX Runtime session of the int8 graph), or torch: "int8" (dynamic
    # quantisation of the linear layers), "bf16" or "fp32"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # one forward pass at a time: either runtime already uses every core

    def score(self, question: str, sentences: Sequence[str]) -> np.ndarray:
        """A logit per sentence: higher = more likely to answer `question`."""
        if not sentences:
            return np.zeros(0, dtype=np.float32)
        onnx = self.precision == ONNX_INT8
        batch = self.tokenizer(
            [question] * len(sentences),
            list(sentences),
            padding=True,
            truncation="only_second",
            max_length=self.max_length,
            return_tensors="np" if onnx else "pt",
        )
        if onnx:
            feed = {i.name: batch[i.name].astype(np.int64) for i in self.model.get_inputs()}
            with self._lock:
                return np.asarray(self.model.run(None, feed)[0], dtype=np.float32)
        import torch

        with self._lock, torch.inference_mode():
            logits = self.model(**batch)
        return logits.float().numpy().astype(np.float32)


def available(path: Path = READER_DIR) -> bool:
    return (Path(path) / "model.safetensors").is_file()


def load_reader(path: str | Path | None = None, precision: str = "auto") -> Reader:
    """The installed reader (or one saved by qa.reader_train at `path`).

    "auto" runs it in ONNX Runtime with int8 weights per channel
    (`ONNX_INT8`): its logits are closer to the trained network's than torch's
    int8, and a question's few short sequences cost about two thirds of
    torch's int8 and half its bf16 on CPUs without AMX (docs/performance.md).
    The graph is exported from the safetensors once and cached (`onnx_file`).
    Where that cannot be done (a read-only cache, a failed export), "auto"
    falls back to torch:
    bf16 with AMX, int8 elsewhere, chosen by the CPU and not timed at load (a
    near-tie could give two processes different precisions, and so
    different orders where scores are close).  "int8", "bf16" and "fp32"
    ask for torch.  Raises ModelUnavailableError when no reader is there.
    """
    p = Path(path) if path is not None else READER_DIR
    if not available(p):
        raise ModelUnavailableError(f"no reader model at {p}: train one with python -m qa.reader_train")
    return _load(str(p.resolve()), precision)


def onnx_file(path: Path) -> Path:
    """The int8 ONNX graph of the reader saved at `path`, exported from its
    safetensors the first time and kept in the cache (config.cache_root()),
    named by the weights' digest and the exporter's and quantiser's versions:
    other weights or versions get a graph of their own.  Written to a
    temporary name and renamed, so a process never reads a half-written one."""
    import onnxruntime
    import torch

    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()[:16]
    out = (
        cache_root()
        / "reader"
        / f"{digest}-torch{torch.__version__}-ort{onnxruntime.__version__}.int8-per-channel.onnx"
    )
    if out.is_file():
        return out
    import tempfile
    import warnings

    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.parent.mkdir(parents=True, exist_ok=True)
    model = _torch_model(str(path))
    tokenizer = _tokenizer(str(path))
    sample = tokenizer(["Who won?"] * 2, ["A won.", "B lost the final."], padding=True, return_tensors="pt")
    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in sample]
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on tracing; the test compares the scores
        fp32, int8 = Path(tmp) / "reader.onnx", Path(tmp) / "reader.int8.onnx"
        with torch.inference_mode():
            torch.onnx.export(
                model,
                tuple(sample[k] for k in names),
                str(fp32),
                input_names=names,
                output_names=["logit"],
                dynamic_axes={**{k: {0: "batch", 1: "tokens"} for k in names}, "logit": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        # per channel: one scale per output column keeps this fine-tuned network's logits within ~0.4 of
        # fp32's on news candidates, where one scale per matrix (and torch's int8) missed by ~1
        # (benchmarks/reader.py, docs/performance.md)
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(int8, out)
    return out


def save_reader(model, tokenizer, out: Path, info: dict) -> None:  # noqa: ANN001
    """The network as fp16 safetensors (half the bytes; read back as fp32),
    its BERT config, the tokenizer and `info` (reader_info.json)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    model.bert.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "reader_info.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")


@lru_cache(maxsize=4)
def _load(path: str, precision: str) -> Reader:
    tokenizer = _tokenizer(path)
    info_file = Path(path) / "reader_info.json"
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
    max_length = int(info.get("max_length", MAX_LENGTH))
    if precision in ("auto", ONNX_INT8):
        try:
            return Reader(tokenizer, _cached_session(Path(path)), info, max_length, ONNX_INT8)
        except Exception as e:  # noqa: BLE001 - any failure of the faster runtime leaves the reader in torch
            if precision == ONNX_INT8:
                raise
            log.warning("reader: ONNX Runtime unavailable (%s); running it in torch", e)
        precision = "bf16" if cpu_has_amx() else "int8"
    import torch

    model = _torch_model(path)
    if precision == "int8":
        model = _int8(model)
    elif precision == "bf16":
        model = model.to(torch.bfloat16)
    return Reader(tokenizer, model, info, max_length, precision)


def _tokenizer(path: str):  # noqa: ANN202
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    return AutoTokenizer.from_pretrained(path)


def _torch_model(path: str):  # noqa: ANN202
    """The saved network in fp32, in eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, BertModel

    model = reader_net(BertModel(AutoConfig.from_pretrained(path), add_pooling_layer=False))
    state = {k: v.float() for k, v in load_file(str(Path(path) / "model.safetensors")).items()}
    model.load_state_dict(state)
    return model.eval()


def _cached_session(path: Path):  # noqa: ANN202
    """An ONNX Runtime session of the reader at `path`; a cached graph that
    does not load (damaged on disk) is exported again, once."""
    file = onnx_file(path)
    try:
        return _onnx_session(file)
    except Exception:  # noqa: BLE001 - onnxruntime raises its own classes for a bad file
        file.unlink(missing_ok=True)
        return _onnx_session(onnx_file(path))


def _onnx_session(file: Path):  # noqa: ANN202
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    # idle threads sleep at once rather than spin: the question's encoder runs on the same cores next
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(file), so, providers=["CPUExecutionProvider"])


def _int8(model):  # noqa: ANN001, ANN202
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch 2.13 notes that its quantized tensors are deprecated; they still run, and a user
        # asking a question should not read about them on every load
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
