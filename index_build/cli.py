"""`python -m index_build` / `index-build`: a thin CLI over `index_build.build`.

Exit codes: 0 built, 1 bad input (the message names the file and the fix),
2 usage error, 130 interrupted (the previous index is untouched).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from qa.config import DEFAULT_INDEX, DEFAULT_SOURCES, BuildConfig


def parser() -> argparse.ArgumentParser:
    d = BuildConfig()
    p = argparse.ArgumentParser(
        prog="index-build",
        description="Build (or update) the source-qa index from article files: .txt, .md, .html/.htm, .pdf.",
    )
    p.add_argument(
        "sources",
        nargs="*",
        type=Path,
        metavar="SOURCES",
        help=f"files or folders (searched recursively); default: {DEFAULT_SOURCES}",
    )
    p.add_argument("--index", type=Path, default=DEFAULT_INDEX, metavar="DIR", help="index directory (default: index/)")
    p.add_argument(
        "--model",
        default=d.model,
        help="sentence-transformers model name or local path (default: %(default)s, packaged)",
    )
    p.add_argument("--full", action="store_true", help="rebuild from nothing: re-embed every sentence")
    p.add_argument(
        "--strict", action="store_true", help="fail on any unreadable, empty or unsupported file instead of skipping it"
    )
    p.add_argument("--json", action="store_true", help="print the build report as JSON")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=d.precision,
        help="encoder precision; auto = bf16 where the CPU has it and it matches fp32 (default)",
    )
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size, help="sentences per encoder batch (default: %(default)s)"
    )
    p.add_argument(
        "--passage-size", type=int, default=d.passage_size, help="sentences per passage (default: %(default)s)"
    )
    p.add_argument(
        "--passage-stride",
        type=int,
        default=d.passage_stride,
        help="sentences between passage starts (default: %(default)s)",
    )
    p.add_argument(
        "--passage-embedding",
        choices=("mean", "encode"),
        default=d.passage_embedding,
        help="passage vectors: mean of sentence vectors, or encode the passage text (default: %(default)s)",
    )
    p.add_argument(
        "--max-file-mb",
        type=float,
        default=d.max_file_bytes / 2**20,
        metavar="MB",
        help="skip (with a warning) files larger than this (default: %(default)g)",
    )
    p.add_argument(
        "--store",
        default=d.store,
        metavar="STORE",
        help="where the sentence vectors are searched: faiss (default, in the index folder), "
        "milvus:PATH.db[#collection] (Milvus Lite) or milvus:http://HOST:19530[#collection] "
        '(a Milvus server; needs pip install "source-qa[milvus]")',
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="encode on Ray: a running cluster's HOST:PORT, or no address for a local Ray instance "
        '(needs pip install "source-qa[ray]")',
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--columns",
        default=None,
        metavar="MAP",
        help="columns of .jsonl/.csv dumps the usual names miss, e.g. text=body,date=pub_date,url=link",
    )
    return p


def _terminate(signum, frame):  # noqa: ANN001
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for name, value in (
        ("--batch-size", args.batch_size),
        ("--passage-size", args.passage_size),
        ("--passage-stride", args.passage_stride),
    ):
        if value < 1:
            parser().error(f"{name} must be at least 1")
    if not args.max_file_mb > 0:
        parser().error("--max-file-mb must be more than 0")
    from index_build.dumps import parse_columns

    try:
        columns = parse_columns(args.columns)
    except ValueError as e:
        parser().error(str(e))
    cfg = BuildConfig(
        model=args.model,
        precision=args.precision,
        batch_size=args.batch_size,
        passage_size=args.passage_size,
        passage_stride=args.passage_stride,
        passage_embedding=args.passage_embedding,
        strict=args.strict,
        full=args.full,
        max_file_bytes=int(args.max_file_mb * 2**20),
        store=args.store,
        ray=args.ray,
        progress=not args.no_progress and not args.json,
        columns=columns,
    )
    signal.signal(signal.SIGTERM, _terminate)  # kill: clean up like Ctrl-C
    from index_build.build import build
    from qa.errors import QAError

    try:
        report = build(args.sources or [DEFAULT_SOURCES], args.index, cfg)
    except QAError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: nothing was written; the previous index at {args.index} is unchanged", file=sys.stderr)
        return 130
    print(report.to_json() if args.json else report.table())
    return 0
