"""`python -m qa.eval`: every quality number of source-qa, side by side."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qa.eval", description=__doc__)
    p.add_argument(
        "suites",
        nargs="*",
        default=["squad", "seeds", "canard", "inscit", "bbc", "news"],
        help="which suites (default: all): squad seeds canard inscit bbc news",
    )
    p.add_argument("--fit", action="store_true", help="refit the fusion weights on the SQuAD dev half first")
    p.add_argument("--limit", type=int, default=None, help="SQuAD: evaluate an even sample of this many questions")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    results = {}
    for suite in args.suites:
        if suite == "squad":
            from qa.eval import squad

            results["squad"] = squad.run(fit_weights=args.fit, limit=args.limit)
            if not args.json:
                print(squad.table(results["squad"]), flush=True)
        else:
            try:
                mod = __import__(f"qa.eval.{suite}", fromlist=["run", "table"])
            except ImportError:
                print(f"unknown suite {suite!r}", file=sys.stderr)
                return 2
            results[suite] = mod.run()
            if not args.json:
                print(mod.table(results[suite]), flush=True)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
