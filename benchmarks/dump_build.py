"""A news archive as one JSONL dump: full build time and peak memory, then an
incremental rebuild after adding rows.

    HF_HUB_OFFLINE=1 python benchmarks/dump_build.py [--rows 100000] [--add 100] [--bbc DIR] [--work DIR] [--json]

The dump repeats the 2,225 BBC articles under new ids and dates (their text
repeats, so embedding stays cheap and the run measures reading, dedup,
metadata and writing).  The rows added first repeat BBC text too; then as
many rows of text no row holds (SQuAD dev paragraphs) are added, which the
build must encode: what a day's new articles cost.  Each build runs as `python -m index_build` in a
child process that reports its own peak RSS (the build's or an encoder
worker's, whichever is larger).  Targets (issue 27):
peak RSS under 2 GB at 100,000 rows, and adding 100 rows rebuilds in under 5%
of the full build's time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_dump(bbc: Path, out: Path, rows: int, start: int = 0) -> int:
    """Append `rows` rows (ids start..start+rows-1); returns the bytes written."""
    files = sorted(p for p in bbc.rglob("*.txt") if p.name != "README.TXT")
    day0 = dt.date(2004, 1, 1)
    n = 0
    with open(out, "a", encoding="utf-8") as f:
        for i in range(start, start + rows):
            p = files[i % len(files)]
            raw = p.read_bytes().decode("utf-8", errors="replace")
            title, _, body = raw.partition("\n")
            line = json.dumps(
                {
                    "id": f"r{i}",
                    "headline": title.strip(),
                    "body": body.strip(),
                    "date": (day0 + dt.timedelta(days=i % 3650)).isoformat(),
                    "source": "BBC News",
                    "url": f"https://example.org/{p.parent.name}/{p.stem}/{i}",
                }
            )
            n += f.write(line + "\n")
    return n


# `python -m index_build` that reports its own peak RSS (the larger of the build process and of any encoder
# worker it started), so each build's peak is measured apart from the ones before it.
_CHILD = (
    "import resource, runpy, sys\n"
    "sys.argv = ['index_build'] + sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module('index_build', run_name='__main__', alter_sys=True)\n"
    "finally:\n"
    "    peak = max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))\n"
    "    print(f'PEAK_RSS_KB {peak}', file=sys.stderr)\n"
)


def write_new_text(paragraphs: Path, out: Path, rows: int, start: int) -> int:
    """Append `rows` rows of text the dump does not hold yet (SQuAD dev paragraphs)."""
    n = 0
    with open(paragraphs, encoding="utf-8") as src, open(out, "a", encoding="utf-8") as f:
        for i, line in zip(range(start, start + rows), src):
            p = json.loads(line)
            row = {"id": f"n{i}", "headline": p["title"].replace("_", " "), "body": p["context"]}
            n += f.write(json.dumps({**row, "date": "2016-01-01", "source": "Wikipedia"}) + "\n")
    return n


def run_build(dump_dir: Path, index: Path, full: bool) -> dict:
    cmd = [sys.executable, "-c", _CHILD, str(dump_dir), "--index", str(index), "--json", "--no-progress"]
    if full:
        cmd.append("--full")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"build failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
    peak_kb = int(err.rsplit("PEAK_RSS_KB", 1)[1].split()[0])
    report = json.loads(out)
    return {
        "seconds": round(wall, 1),
        "peak_rss_mb": round(peak_kb / 1024),
        "documents": report["documents"],
        "unique_sentences": report["unique_sentences"],
        "sentences_embedded": report["sentences_embedded"],
        "appended": report.get("appended"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--add", type=int, default=100)
    p.add_argument("--bbc", type=Path, default=REPO.parent / "shared" / "bench" / "bbc")
    p.add_argument(
        "--paragraphs",
        type=Path,
        default=REPO.parent / "shared" / "bench" / "squad_v1.1" / "squad_dev_v1.1_paragraphs.jsonl",
    )
    p.add_argument("--work", type=Path, default=Path("/tmp/source-qa-dump-bench"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    dump_dir = args.work / "sources"
    dump_dir.mkdir(exist_ok=True)
    dump = dump_dir / "archive.jsonl"
    dump.unlink(missing_ok=True)
    size = write_dump(args.bbc, dump, args.rows)
    index = args.work / "index"
    full = run_build(dump_dir, index, full=True)
    write_dump(args.bbc, dump, args.add, start=args.rows)
    inc = run_build(dump_dir, index, full=False)
    write_new_text(args.paragraphs, dump, args.add, start=args.rows + args.add)
    new = run_build(dump_dir, index, full=False)
    out = {
        "rows": args.rows,
        "dump_mb": round(size / 2**20, 1),
        "full": full,
        "added_rows": args.add,
        "incremental": inc,
        "incremental_share": round(inc["seconds"] / full["seconds"], 3),
        "incremental_new_text": new,
        "incremental_new_text_share": round(new["seconds"] / full["seconds"], 3),
    }
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(
            f"{args.rows:,} rows ({out['dump_mb']} MB): full build {full['seconds']} s, peak RSS "
            f"{full['peak_rss_mb']} MB (target < 2048), {full['documents']:,} articles, "
            f"{full['unique_sentences']:,} unique sentences"
        )
        print(
            f"+{args.add} rows: incremental build {inc['seconds']} s = {out['incremental_share']:.1%} of the full "
            f"build (target < 5%), {inc['sentences_embedded']} sentences embedded"
        )
        print(
            f"+{args.add} rows of new text: {new['seconds']} s = {out['incremental_new_text_share']:.1%} of the full "
            f"build, {new['sentences_embedded']} sentences embedded"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
