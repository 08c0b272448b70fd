"""Regenerate the README's screenshots of the web chat.

    python docs/screenshots.py

Serves the chat over a temp index of seeds/, drives Debian's headless
chromium (Playwright) and writes docs/chat-answer.png and docs/chat-followup.png.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


_SCROLL_TOP = """() => {
  let el = document.querySelector('#sqa-chat .sqa-reply');
  while (el && !(el.scrollHeight > el.clientHeight + 4 && getComputedStyle(el).overflowY !== 'visible')) el = el.parentElement;
  if (el) el.scrollTop = 0;
}"""


def ask(page, question: str) -> None:
    n = page.locator("#sqa-chat .sqa-reply").count()
    box = page.locator("#sqa-question textarea")
    box.fill(question)
    box.press("Enter")
    page.wait_for_function(f"document.querySelectorAll('#sqa-chat .sqa-reply').length > {n}")


def main() -> int:
    from playwright.sync_api import sync_playwright

    from index_build import build
    from qa.chat import create_app, launch
    from qa.chat_backend import ChatBackend
    from qa.config import BuildConfig

    tmp = Path(tempfile.mkdtemp(prefix="qa-shots-"))
    try:
        src = tmp / "seeds"
        shutil.copytree(REPO / "seeds", src)
        build([src], tmp / "index", BuildConfig(progress=False), log=lambda m: None)
        backend = ChatBackend(tmp / "index", src)
        demo = create_app(backend)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        launch(demo, "127.0.0.1", port, block=False, quiet=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1360, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(".sqa-sources")
            k = page.locator("#sqa-k input[type='number']")
            k.fill("2")
            k.press("Enter")

            ask(page, "How long did the call between Biden and Netanyahu last?")
            first = page.locator("#sqa-chat .sqa-answer").first
            first.locator("details.sqa-context summary").click()
            first.locator("a.sqa-doc").first.click()
            page.wait_for_selector("#sqa-article mark.sqa-focus")
            page.wait_for_timeout(300)
            page.evaluate(_SCROLL_TOP)  # show the question above the reply
            page.wait_for_timeout(200)
            page.screenshot(path=str(REPO / "docs" / "chat-answer.png"))

            page.locator("#sqa-clear").click()
            page.wait_for_function("document.querySelectorAll('#sqa-chat .sqa-reply').length === 0")
            page.locator("button[role='tab']:has-text('Sources')").first.click()
            ask(page, "What did Biden and Netanyahu discuss on Thursday?")
            ask(page, "How long did it last?")
            page.locator("#sqa-chat .sqa-reply").last.scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            page.screenshot(path=str(REPO / "docs" / "chat-followup.png"))
            browser.close()
        demo.close()
        backend.close()
        print("wrote docs/chat-answer.png and docs/chat-followup.png")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
