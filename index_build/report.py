"""The build summary: a table for people, the same numbers as JSON for machines."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class BuildReport:
    index: str
    files_read: int = 0
    files_skipped: list[dict[str, str]] = field(default_factory=list)  # path, reason
    legacy_encodings: list[dict[str, str]] = field(default_factory=list)  # path, encoding
    # articles declaring each of published / outlet / author / url (index_build.metadata)
    metadata: dict[str, int] = field(default_factory=dict)
    metadata_warnings: list[dict[str, str]] = field(default_factory=list)  # path, warning (files read this build)
    # per .jsonl/.csv/.rss/.atom file: path, articles, rows_skipped, first_skipped [{line, reason}]
    dump_rows: list[dict] = field(default_factory=list)
    documents: int = 0
    sentences: int = 0  # answer sentences, all occurrences
    non_answer_lines: int = 0  # headlines, captions
    unique_sentences: int = 0
    exact_duplicates_merged: int = 0
    near_duplicates_merged: int = 0
    passages: int = 0
    sentences_embedded: int = 0  # newly encoded this build
    sentences_reused: int = 0  # taken from the previous index
    passages_embedded: int = 0
    passages_reused: int = 0
    precision: str = "fp32"
    bf16_min_cosine: float | None = None
    stale_temp_dirs_removed: int = 0
    # articles added by appending the new rows of grown dumps to the previous
    # index (index_build.append); None when the build read every file
    appended: int | None = None
    vector_store: str = "faiss"  # where the sentence vectors are searched (qa.vector_store)
    seconds: float = 0.0

    @property
    def sentences_per_second(self) -> float:
        return self.unique_sentences / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sentences_per_second"] = round(self.sentences_per_second, 1)
        d["seconds"] = round(self.seconds, 3)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def table(self) -> str:
        rows = [
            ("index", self.index),
            ("files read", self.files_read),
            ("files skipped", len(self.files_skipped)),
            ("documents", self.documents),
            ("sentences", self.sentences),
            ("headlines/captions (not answers)", self.non_answer_lines),
            ("unique sentences", self.unique_sentences),
            ("identical sentences merged", self.exact_duplicates_merged),
            ("near-duplicates merged", self.near_duplicates_merged),
            ("passages", self.passages),
            (
                "dated / with outlet / author / URL",
                " / ".join(str(self.metadata.get(k, 0)) for k in ("published", "outlet", "author", "url")),
            ),
            ("sentences embedded / reused", f"{self.sentences_embedded} / {self.sentences_reused}"),
            ("passages embedded / reused", f"{self.passages_embedded} / {self.passages_reused}"),
            ("vector store", self.vector_store),
            (
                "precision",
                self.precision
                + (f" (min cosine to fp32 {self.bf16_min_cosine:.5f})" if self.bf16_min_cosine is not None else ""),
            ),
            *([("appended to the previous index", f"{self.appended} articles")] if self.appended is not None else []),
            ("seconds", f"{self.seconds:.2f}"),
            ("unique sentences/s", f"{self.sentences_per_second:.1f}"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
        for s in self.files_skipped:
            lines.append(f"skipped: {s['path']}: {s['reason']}")
        for e in self.legacy_encodings:
            lines.append(f"decoded as {e['encoding']}: {e['path']}")
        for d in self.dump_rows:
            lines.append(
                f"dump {d['path']}: {d['articles']} articles"
                + (
                    f", {d['rows_skipped']} rows skipped: "
                    + ", ".join(f"line {k['line']} ({k['reason']})" for k in d["first_skipped"])
                    + (" ..." if d["rows_skipped"] > len(d["first_skipped"]) else "")
                    if d["rows_skipped"]
                    else ""
                )
            )
        for w in self.metadata_warnings:
            lines.append(f"metadata: {w['path']}: {w['warning']}")
        return "\n".join(lines)
