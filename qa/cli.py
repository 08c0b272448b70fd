"""`qa` / `python -m qa`: ask questions from the command line.

    qa ask "How long did the call last?" --history "What did Biden and Netanyahu discuss on Thursday?"
    qa ask "What did the council decide?" --since 2024-01-01 --until 2024-06-30 --outlet "Coastal Courier"
    qa chat [--index DIR] [--sources DIR] [--host 127.0.0.1] [--port 7860] [--auth USER:PASS]

Exit codes: 0 answered (or plainly not in the sources), 1 bad input or a
missing/damaged index (one line naming the fix), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any


def _cite(s: Any) -> str:
    """outlet, date, title [doc id]: what a reporter needs to cite the quote."""
    head = ", ".join(x for x in (s.outlet, s.published) if x)
    return f"{head}: {s.title} [{s.doc_id}]" if head else f"{s.title} [{s.doc_id}]"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qa", description="Ask questions of your articles; get back quoted source sentences."
    )
    sub = p.add_subparsers(dest="command", required=True)
    ask = sub.add_parser("ask", help="answer one question with quotes and citations")
    ask.add_argument("question")
    ask.add_argument(
        "--index", type=Path, default=Path("index"), metavar="DIR", help="index directory (default: index/)"
    )
    ask.add_argument("-k", type=int, default=5, help="how many sentences (default: 5)")
    ask.add_argument(
        "--history",
        action="append",
        default=[],
        metavar="Q",
        help="an earlier question of the conversation (repeat, oldest first)",
    )
    ask.add_argument("--json", action="store_true", help="print the result as JSON")
    ask.add_argument(
        "--since", metavar="DATE", default=None, help="only articles published on or after DATE (2024-01-31)"
    )
    ask.add_argument("--until", metavar="DATE", default=None, help="only articles published on or before DATE")
    ask.add_argument(
        "--outlet",
        action="append",
        default=[],
        metavar="NAME",
        help="only articles from this outlet (repeat for several)",
    )
    ask.add_argument(
        "--store",
        default=None,
        metavar="STORE",
        help="reach the index's Milvus collection at this address (milvus:PATH.db|URI[#collection]); "
        "default: the one the index was built with",
    )

    from qa.config import DEFAULT_INDEX, DEFAULT_SOURCES

    chat = sub.add_parser("chat", help="serve the web chat (builds the index from the sources on first start)")
    chat.add_argument(
        "--index", type=Path, default=DEFAULT_INDEX, metavar="DIR", help="index directory (default: index/)"
    )
    chat.add_argument(
        "--sources",
        type=Path,
        default=DEFAULT_SOURCES,
        metavar="DIR",
        help="folder of articles: builds the index on first start, receives uploads (default: seeds/)",
    )
    chat.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    chat.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    chat.add_argument(
        "--auth",
        metavar="USER:PASS",
        default=None,
        help="require this login (or set $SOURCE_QA_AUTH); needed when --host is not local",
    )
    chat.add_argument("--no-upload", action="store_true", help="hide the 'Add articles' control")
    chat.add_argument(
        "--store",
        default=None,
        metavar="STORE",
        help="vector store: builds into it on first start (faiss, milvus:PATH.db[#collection], "
        "milvus:http://HOST:19530[#collection]); default: the index's own",
    )
    return p


def render(res) -> str:  # noqa: ANN001 - qa.answers.Result
    lines = []
    if res.followup:
        lines.append(f"(searched for: {res.query})")
    if not res.found:
        lines.append("The sources do not answer this question.")
        if res.answers:
            lines.append("Closest matches (weak):")
    for i, a in enumerate(res.answers, 1):
        lines.append(textwrap.fill(f"{i}. “{a.text}”", width=100, subsequent_indent="   "))
        first = a.sources[0]
        more = f" (+ {len(a.sources) - 1} more)" if len(a.sources) > 1 else ""
        lines.append(f"   — {_cite(first)}{more}   confidence {a.score:.2f}")
        if first.url:
            lines.append(f"     {first.url}")
        for s in a.sources[1:4]:
            lines.append(f"     also in {_cite(s)}" + (f': "{s.text}"' if s.text != a.text else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "chat":
        from qa.chat import serve

        return serve(
            args.index,
            args.sources,
            host=args.host,
            port=args.port,
            auth=args.auth,
            allow_upload=not args.no_upload,
            store=args.store,
        )
    import qa
    from qa.errors import QAError

    try:
        engine = qa.load(args.index, warm=False, store=args.store)  # one question: no warm-up to share the CPU with
        res = engine.ask(
            args.question,
            history=args.history,
            k=args.k,
            since=args.since,
            until=args.until,
            outlets=args.outlet or None,
        )
    except (QAError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(res.to_dict(), indent=2, ensure_ascii=False) if args.json else render(res))
    return 0
