"""Web chat latency, in a real browser: from pressing Enter to the reply being
rendered.

    python benchmarks/ui.py [--questions 20] [--fresh] [--index DIR]

Starts `qa chat`'s app on a free localhost port (over a temp index built from
seeds/, or --index), opens it in Debian's headless chromium via Playwright,
and asks the first N answerable questions of the seeds gold set
(qa/eval/seeds_gold.json) after two warm-up questions.  The clock runs inside
the page: it starts in a capture-phase `keydown` listener on Enter and stops
in the first animation frame after a MutationObserver sees the new reply in
the chat (so Playwright's own round trips are not counted).  By default all
questions go into one conversation (the chat grows, as in real use); --fresh
clears it before each question.

Prints every question's time, p50/p95/max, and the engine's own time per
question (the rest is Gradio's queue, the network and the browser's render).
Target: p50 < 300 ms.  The machine's load average is printed too: on a busy
2-core box, numbers are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
TARGET_MS = 300

_TIMER_JS = """
() => {
  window.__t = []; window.__t0 = null;
  const chat = document.querySelector('#sqa-chat');
  window.__n = chat.querySelectorAll('.sqa-reply').length;
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.target.closest && e.target.closest('#sqa-question')) window.__t0 = performance.now();
  }, true);
  new MutationObserver(() => {
    const n = chat.querySelectorAll('.sqa-reply').length;
    if (n !== window.__n) {
      const grew = n > window.__n;
      window.__n = n;
      if (grew && window.__t0 !== null) {
        const t0 = window.__t0; window.__t0 = null;
        requestAnimationFrame(() => window.__t.push(performance.now() - t0));
      }
    }
  }).observe(chat, {childList: true, subtree: true});
}
"""


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=20)
    ap.add_argument("--fresh", action="store_true", help="clear the chat before every question")
    ap.add_argument("--index", type=Path, help="an existing index (default: build seeds/ into a temp dir)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from qa.chat import create_app, launch
    from qa.chat_backend import ChatBackend

    gold = json.loads((REPO / "qa" / "eval" / "seeds_gold.json").read_text(encoding="utf-8"))
    questions = [q["question"] for q in gold["answerable"]][: args.questions]
    tmp = Path(tempfile.mkdtemp(prefix="qa-ui-bench-"))
    try:
        src = tmp / "sources"
        shutil.copytree(REPO / "seeds", src)
        index = args.index
        if index is None:
            from index_build import build
            from qa.config import BuildConfig

            index = tmp / "index"
            build([src], index, BuildConfig(progress=False), log=lambda m: None)
        backend = ChatBackend(index, src)
        backend.refresh()
        engine_ms: list[float] = []
        ask = backend.ask

        def timed_ask(*a, **kw):
            r = ask(*a, **kw)
            engine_ms.append(r.seconds * 1000)
            return r

        backend.ask = timed_ask  # type: ignore[method-assign]
        demo = create_app(backend)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        launch(demo, "127.0.0.1", port, block=False, quiet=True)
        times: list[float] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#sqa-question textarea")
            page.wait_for_selector(".sqa-sources")
            page.evaluate(_TIMER_JS)
            box = page.locator("#sqa-question textarea")
            warmup = ["How long did the call between Biden and Netanyahu last?", "What is Hamas demanding?"]
            for i, q in enumerate(warmup + questions):
                if args.fresh:
                    page.locator("#sqa-clear").click()
                    page.wait_for_function("document.querySelectorAll('#sqa-chat .sqa-reply').length === 0")
                box.fill(q)
                want = i + 1
                box.press("Enter")
                page.wait_for_function(f"window.__t.length >= {want}", timeout=60_000)
            times = page.evaluate("window.__t")[len(warmup) :]
            browser.close()
        demo.close()
        backend.close()
        engine = engine_ms[len(warmup) :]
        load = os.getloadavg()
        summary = {
            "questions": len(times),
            "conversation": "fresh" if args.fresh else "one growing conversation",
            "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(pct(times, 95), 1),
            "max_ms": round(max(times), 1),
            "engine_p50_ms": round(statistics.median(engine), 1),
            "engine_p95_ms": round(pct(engine, 95), 1),
            "target_p50_ms": TARGET_MS,
            "loadavg_1m": round(load[0], 2),
            "cpus": os.cpu_count(),
        }
        if args.json:
            print(json.dumps({**summary, "times_ms": [round(t, 1) for t in times]}, indent=2))
        else:
            for q, t, e in zip(questions, times, engine):
                print(f"{t:7.1f} ms  (engine {e:6.1f} ms)  {q}")
            print(
                f"\nEnter -> reply rendered, {summary['questions']} questions ({summary['conversation']}): "
                f"p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms, max {summary['max_ms']} ms "
                f"(target p50 < {TARGET_MS} ms: {'met' if summary['p50_ms'] < TARGET_MS else 'MISSED'})"
            )
            print(
                f"engine.ask alone: p50 {summary['engine_p50_ms']} ms, p95 {summary['engine_p95_ms']} ms; "
                f"load average {summary['loadavg_1m']} on {summary['cpus']} CPUs"
            )
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
