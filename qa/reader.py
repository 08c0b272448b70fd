"""The reader: a small cross-encoder that reads a question and one sentence
together and says how well the sentence answers it.

Dense cosine and BM25 look at the question and the sentence separately, so
"Why did the talks fail?" ranks a sentence that merely mentions the talks
as high as the one that gives the cause.  Reading both at once sees the
cause, the measure, the category.  The model is MiniLM's six layers
fine-tuned in this repository (`python -m qa.reader_train --layers 6`;
data, licences and training time in qa/models/reader/MODEL_CARD.md), and it
ships: it met issue 26's keep rule (docs/evaluation.md, the seventh
attempt).  Nothing is downloaded.  It scores only the few best candidates of
the best answer's article (qa.engine.READ_MOST), so a question costs a
handful of short sequences.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qa.encoder import cpu_has_amx
from qa.errors import ModelUnavailableError

READER_DIR = Path(__file__).with_name("models") / "reader"
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
    precision: str = "fp32"  # "int8" (dynamic quantisation of the linear layers), "bf16" or "fp32"

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # one forward pass at a time: torch already uses every core

    def score(self, question: str, sentences: Sequence[str]) -> np.ndarray:
        """A logit per sentence: higher = more likely to answer `question`."""
        if not sentences:
            return np.zeros(0, dtype=np.float32)
        import torch

        batch = self.tokenizer(
            [question] * len(sentences),
            list(sentences),
            padding=True,
            truncation="only_second",
            max_length=self.max_length,
            return_tensors="pt",
        )
        with self._lock, torch.inference_mode():
            logits = self.model(**batch)
        return logits.float().numpy().astype(np.float32)


def available(path: Path = READER_DIR) -> bool:
    return (Path(path) / "model.safetensors").is_file()


def load_reader(path: str | Path | None = None, precision: str = "auto") -> Reader:
    """The installed reader (or one saved by qa.reader_train at `path`).

    int8 dynamic quantisation of the linear layers runs the few short
    sequences of a question faster than fp32 on CPUs with VNNI or AVX-512, at
    no measurable cost in ranking (docs/performance.md); bf16 is faster still
    where the CPU has AMX and slower where it has not (measured: 16.7 against
    12.2 ms for 4 news pairs on AVX512-BF16 without AMX).  "auto" picks by
    the CPU: bf16 with AMX, int8 elsewhere.  Not timed at load: a near-tie
    in timing could give two processes on one machine different precisions,
    and so different orders where scores are close.  Raises
    ModelUnavailableError when no reader is there.
    """
    p = Path(path) if path is not None else READER_DIR
    if not available(p):
        raise ModelUnavailableError(f"no reader model at {p}: train one with python -m qa.reader_train")
    return _load(str(p.resolve()), precision)


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
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer, BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = reader_net(BertModel(AutoConfig.from_pretrained(path), add_pooling_layer=False))
    state = {k: v.float() for k, v in load_file(str(Path(path) / "model.safetensors")).items()}
    model.load_state_dict(state)
    model.eval()
    if precision == "auto":
        precision = "bf16" if cpu_has_amx() else "int8"
    if precision == "int8":
        model = _int8(model)
    elif precision == "bf16":
        model = model.to(torch.bfloat16)
    info_file = Path(path) / "reader_info.json"
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
    return Reader(tokenizer, model, info, int(info.get("max_length", MAX_LENGTH)), precision)


def _int8(model):  # noqa: ANN001, ANN202
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch 2.13 notes that its quantized tensors are deprecated; they still run, and a user
        # asking a question should not read about them on every load
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
