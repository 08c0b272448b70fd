"""The web chat, tested through a real server and Debian's headless chromium
(driven by Playwright; never `playwright install`).

One server per module: a temp copy of the seeds plus a hostile article,
built into a temp index with the real builder and model.  Every page state
is saved as a screenshot under the test's tmp dir, and failures name it.
"""

from __future__ import annotations

import html
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO, SEEDS

pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")

# Gradio's queue trips pandas deprecations of its own; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
REPLY_TIMEOUT_MS = 60_000  # a busy 2-core CI box; replies normally take well under a second

CALL_Q = "How long did the call between Biden and Netanyahu last?"
THURSDAY_Q = "How many Palestinian prisoners would be released under the deal?"
FOLLOWUP_Q = "How many of them were convicted of murder?"
FRANCE_Q = "What is the capital of France?"
UNANSWERABLE_Q = "What is the population of Tokyo?"
HOSTILE_Q = "What did the mayor of Springfield announce on Monday?"
HOSTILE_TITLE = "Springfield <b>bold</b> council <script>alert(1)</script>"
HOSTILE_BODY = (
    "The mayor of Springfield announced on Monday that <script>alert(1)</script> the new <b>bold</b> bridge "
    "**will open** in `May` with $$x^2$$ lanes <img src=x onerror=alert(2)> and [a link](javascript:alert(3)).\n\n"
    "Council members said the <i>bridge</i> budget was approved without objections."
)
UPLOAD_FACT = "The Quokka Festival in Perth drew 12,345 visitors on Saturday, organisers said."
UPLOAD_Q = "How many visitors did the Quokka Festival in Perth draw?"


def start_chat(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, list[str]]:
    """`qa chat ARGS` in its own process, returned once it says it is serving
    (its output keeps being collected in the list)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qa", "chat", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "source-qa chat on" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(300):
        proc.terminate()
        proc.wait(30)
        raise AssertionError("qa chat did not start:\n" + "".join(lines))
    return proc, lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(backend) -> tuple[object, str]:
    from qa.chat import create_app, launch

    demo = create_app(backend)
    port = free_port()
    launch(demo, "127.0.0.1", port, block=False, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A running chat over seeds + a hostile article, and its backend."""
    from index_build import build
    from qa.chat_backend import ChatBackend
    from qa.config import BuildConfig

    root = tmp_path_factory.mktemp("chat-site")
    src = root / "sources"
    shutil.copytree(SEEDS, src)
    (src / "hostile.txt").write_text(f"{HOSTILE_TITLE}\n\n{HOSTILE_BODY}\n", encoding="utf-8")
    build([src], root / "index", BuildConfig(progress=False), log=lambda m: None)
    backend = ChatBackend(root / "index", src)
    backend.refresh()
    demo, url = start(backend)
    yield {"url": url, "backend": backend, "root": root, "sources": src}
    demo.close()
    backend.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); .ci/run does")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A browser tab on the chat, with screenshots and dialog tracking."""

    def __init__(self, browser, url: str, shots: Path) -> None:
        self.ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.ctx.new_page()
        self.page.set_default_timeout(REPLY_TIMEOUT_MS)
        self.shots = shots
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.n = 0
        self.page.goto(url)
        self.page.wait_for_selector("#sqa-question textarea")
        self.page.wait_for_selector(".sqa-sources, .sqa-error")

    def shot(self, name: str) -> str:
        self.n += 1
        path = self.shots / f"{self.n:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return str(path)

    def replies(self):
        return self.page.locator("#sqa-chat .sqa-reply")

    def ask(self, question: str, name: str):
        """Type, press Enter, wait for the new reply; returns (reply, screenshot)."""
        before = self.replies().count()
        box = self.page.locator("#sqa-question textarea")
        box.fill(question)
        box.press("Enter")
        try:
            self.page.wait_for_function(
                f"document.querySelectorAll('#sqa-chat .sqa-reply').length > {before}", timeout=REPLY_TIMEOUT_MS
            )
        except sync_api.TimeoutError:
            raise AssertionError(
                f"no reply to {question!r} within {REPLY_TIMEOUT_MS} ms; screenshot: {self.shot(name + '-timeout')}"
            ) from None
        reply = self.replies().nth(before)
        reply.scroll_into_view_if_needed()
        return reply, self.shot(name)

    def close(self) -> None:
        self.ctx.close()


@pytest.fixture
def page(browser, site, tmp_path):
    p = Page(browser, site["url"], tmp_path)
    yield p
    p.close()


def answers(reply) -> list[str]:
    return reply.locator(".sqa-answer .sqa-quote").all_inner_texts()


# -- in the browser ------------------------------------------------------------


def test_seed_question_shows_quote_citation_context_and_article(page):
    reply, shot = page.ask(CALL_Q, "answered")
    assert "sqa-found" in (reply.get_attribute("class") or ""), f"seed question not answered; screenshot: {shot}"
    first = reply.locator(".sqa-answer").first
    assert "lasted about 45 minutes" in first.locator(".sqa-quote").inner_text(), (
        f"wrong first quote; screenshot: {shot}"
    )
    cite = first.locator(".sqa-cite").inner_text()
    assert "Netanyahu and Biden" in cite and "002_35521e549324248f.txt" in cite, (
        f"citation {cite!r}; screenshot: {shot}"
    )
    assert first.locator(".sqa-conf").count() == 1, f"no confidence indicator; screenshot: {shot}"
    # the user's question is shown as typed
    assert CALL_Q in page.page.locator("#sqa-chat").inner_text(), f"question not shown; screenshot: {shot}"

    # expandable context: the sentence highlighted inside its neighbours
    first.locator("details.sqa-context summary").click()
    hit = first.locator("details.sqa-context mark.sqa-hit")
    sync_api.expect(hit, f"context not expanded; screenshot: {page.shot('context')}").to_be_visible()
    assert "lasted about 45 minutes" in hit.inner_text()
    assert len(first.locator(".sqa-context-text").inner_text()) > len(hit.inner_text()) + 20

    # the citation opens the full article with the quoted sentence highlighted
    first.locator("a.sqa-doc").first.click()
    art = page.page.locator("#sqa-article .sqa-article")
    sync_api.expect(art, f"article did not open; screenshot: {page.shot('article-timeout')}").to_contain_text(
        "Netanyahu and Biden"
    )
    shot = page.shot("article")
    focus = page.page.locator("#sqa-article mark.sqa-focus")
    assert focus.count() == 1 and "lasted about 45 minutes" in focus.inner_text(), f"no highlight; screenshot: {shot}"
    assert "a senior administration official quoted by CNN" in art.inner_text(), (
        f"not the full text; screenshot: {shot}"
    )
    assert not page.dialogs and not page.errors, (page.dialogs, page.errors)


def test_followup_is_resolved_from_history(page):
    page.ask(THURSDAY_Q, "thursday")
    reply, shot = page.ask(FOLLOWUP_Q, "followup")
    searched = reply.locator(".sqa-searched")
    assert searched.count() == 1, f"follow-up shows no 'searched for'; screenshot: {shot}"
    text = searched.inner_text()
    assert text.startswith("searched for:") and "Palestinian" in text and "prisoners" in text, (
        f"resolved query {text!r}; screenshot: {shot}"
    )
    assert "sqa-found" in (reply.get_attribute("class") or ""), f"follow-up not answered; screenshot: {shot}"
    assert "500 convicted of murder" in answers(reply)[0], (
        f"follow-up answered {answers(reply)[:1]}; screenshot: {shot}"
    )
    # a self-contained first question shows no "searched for"
    assert page.replies().first.locator(".sqa-searched").count() == 0, f"screenshot: {shot}"


@pytest.mark.parametrize(
    "question",
    [
        UNANSWERABLE_Q,
        FRANCE_Q,
    ],
)
def test_unanswerable_question_says_not_in_sources(page, question):
    reply, shot = page.ask(question, "unanswerable")
    assert "sqa-notfound" in (reply.get_attribute("class") or ""), f"answered the unanswerable; screenshot: {shot}"
    assert "The sources do not answer this question." in reply.inner_text(), f"screenshot: {shot}"
    closest = reply.locator(".sqa-closest .sqa-answer")
    if closest.count():
        assert "Closest matches" in reply.inner_text(), f"screenshot: {shot}"
        opacity = float(closest.first.evaluate("e => getComputedStyle(e).opacity"))
        assert opacity < 0.9, f"closest matches not visibly weaker (opacity {opacity}); screenshot: {shot}"
        assert reply.locator(".sqa-closest .sqa-conf-low").count() == closest.count(), f"screenshot: {shot}"


def test_hostile_article_renders_as_text(page):
    reply, shot = page.ask(HOSTILE_Q, "hostile")
    text = reply.inner_text()
    for literal in (
        "<script>alert(1)</script>",
        "<b>bold</b>",
        "**will open**",
        "`May`",
        "<img src=x onerror=alert(2)>",
        "[a link](javascript:alert(3))",
        "$$x^2$$",
        HOSTILE_TITLE,
    ):
        assert literal in text, f"{literal!r} not shown literally; screenshot: {shot}"
    chat = page.page.locator("#sqa-chat")
    assert chat.locator("script, img, b, i, strong, em, code, .katex").count() == 0, (
        f"markup rendered; screenshot: {shot}"
    )
    assert chat.locator("a[href^='javascript']").count() == 0, f"screenshot: {shot}"

    # the sources panel and the article view escape it too
    page.page.locator("#sqa-tab-sources-button, button[role='tab']:has-text('Sources')").first.click()
    panel = page.page.locator("#sqa-sources")
    sync_api.expect(panel, f"screenshot: {page.shot('sources-timeout')}").to_contain_text(HOSTILE_TITLE)
    panel.locator("a.sqa-doc", has_text="Springfield").click()
    art = page.page.locator("#sqa-article .sqa-article")
    sync_api.expect(art, f"screenshot: {page.shot('hostile-article-timeout')}").to_contain_text("<i>bridge</i>")
    shot = page.shot("hostile-article")
    assert page.page.locator("#sqa-article script, #sqa-article img, #sqa-article b, #sqa-article i").count() == 0, (
        f"markup rendered in the article view; screenshot: {shot}"
    )
    assert page.page.locator("#sqa-article mark.sqa-cited").count() >= 1, f"cited sentence not highlighted; {shot}"
    page.page.wait_for_timeout(300)  # give any injected script the chance to fire
    assert page.dialogs == [], f"a dialog fired: {page.dialogs}; screenshot: {shot}"
    assert page.page.evaluate("typeof window.__sqaBound") == "boolean"  # our own script ran; nothing else did


def test_engine_error_is_a_chat_message_and_the_server_keeps_serving(page, site, monkeypatch):
    def broken(*a, **kw):
        raise RuntimeError("simulated engine failure")

    monkeypatch.setattr(site["backend"], "ask", broken)
    reply, shot = page.ask(CALL_Q, "engine-error")
    text = reply.inner_text()
    assert "sqa-error" in (reply.get_attribute("class") or "") and "simulated engine failure" in text, shot
    assert reply.locator(".sqa-fix-cmd").inner_text().startswith("python -m index_build"), f"screenshot: {shot}"
    monkeypatch.undo()
    reply, shot = page.ask(CALL_Q, "after-error")
    assert "lasted about 45 minutes" in answers(reply)[0], f"server did not recover; screenshot: {shot}"


def test_sources_panel_k_and_clear(page, site):
    rows, manifest = site["backend"].documents()
    panel = page.page.locator("#sqa-sources")
    shot = page.shot("sources")
    info = panel.locator(".sqa-index-info").inner_text()
    assert f"{len(rows)} articles" in info and "index built" in info, f"panel header {info!r}; screenshot: {shot}"
    assert manifest.built_at[:10] in info, f"no build time in {info!r}; screenshot: {shot}"
    table = panel.locator("tbody tr")
    assert table.count() == len(rows), f"screenshot: {shot}"
    texts = table.all_inner_texts()
    for r, t in zip(rows, texts):
        assert r.title in t and str(r.n_sentences) in t and Path(r.path).name in t, f"row {t!r}; screenshot: {shot}"

    # k: fewer quotes per answer
    k_box = page.page.locator("#sqa-k input[type='number']")
    k_box.fill("2")
    k_box.press("Enter")
    reply, shot = page.ask(CALL_Q, "k2")
    assert reply.locator(".sqa-answer").count() == 2, f"k=2 gave {reply.locator('.sqa-answer').count()}; {shot}"

    # an example question answers with one click
    before = page.replies().count()
    page.page.locator(".sqa-example", has_text="How many hostages").click()
    page.page.wait_for_function(f"document.querySelectorAll('#sqa-chat .sqa-reply').length > {before}")
    shot = page.shot("example")
    assert "freed 112 of our hostages" in answers(page.replies().nth(before))[0], f"screenshot: {shot}"

    page.page.locator("#sqa-clear").click()
    page.page.wait_for_function("document.querySelectorAll('#sqa-chat .sqa-reply').length === 0")
    shot = page.shot("cleared")
    assert page.replies().count() == 0, f"chat not cleared; screenshot: {shot}"
    # after clearing, a follow-up has no history to lean on
    reply, shot = page.ask(FOLLOWUP_Q, "after-clear")
    assert reply.locator(".sqa-searched").count() == 0, f"history survived clear; screenshot: {shot}"


def test_upload_makes_article_answerable(page, site, tmp_path):
    before, _ = page.ask(UPLOAD_Q, "before-upload")
    assert not any("12,345 visitors" in a for a in answers(before)), "the fact is in the seeds already?"
    good = tmp_path / "quokka festival (Perth).txt"
    # header lines a news export carries: they become the citation, not text
    good.write_text(
        f"Title: Quokka Festival report\nDate: 12 March 2024\nSource: Rottnest Times\n"
        f"URL: https://example.org/quokka-festival\n\n{UPLOAD_FACT} The event ran for two days.\n",
        encoding="utf-8",
    )
    bad = tmp_path / "broken.txt"
    bad.write_bytes(b"\x00\x01\x02binary junk" * 10)
    # an export of many articles: one a row, with its columns for citations
    export = tmp_path / "island export.csv"
    export.write_text(
        "id,headline,body,date,source\n"
        "k1,Kayak race,The island kayak race drew 214 paddlers on Sunday.,2024-06-02,Harbour Weekly\n"
        "k2,Market day,The farmers market moved to the old pier for the summer.,2024-06-09,Harbour Weekly\n",
        encoding="utf-8",
    )

    page.page.locator("button[role='tab']:has-text('Add articles')").first.click()
    page.page.locator("#sqa-upload input[type='file']").set_input_files([str(good), str(bad), str(export)])
    # the chat keeps answering while the index is rebuilt
    reply, shot = page.ask(CALL_Q, "during-rebuild")
    assert "lasted about 45 minutes" in answers(reply)[0], f"no answer during rebuild; screenshot: {shot}"
    status = page.page.locator("#sqa-upload-status .sqa-upload-outcome")
    sync_api.expect(status, f"upload never finished; screenshot: {page.shot('upload-timeout')}").to_be_visible(
        timeout=180_000
    )
    shot = page.shot("uploaded")
    text = status.inner_text()
    assert "Added 3 articles" in text and "quokka_festival_Perth.txt" in text, f"status {text!r}; screenshot: {shot}"
    assert "island_export.csv (2 articles)" in text, f"status {text!r}; screenshot: {shot}"
    assert "broken.txt" in text and "binary" in text, f"bad file not reported: {text!r}; screenshot: {shot}"
    saved = site["sources"] / "quokka_festival_Perth.txt"
    assert saved.read_text(encoding="utf-8").startswith("Title: Quokka Festival report")
    assert not (site["sources"] / "broken.txt").exists(), "an unreadable upload was left in the sources"
    assert "Quokka Festival report" in page.page.locator("#sqa-sources").inner_text(), f"panel stale; {shot}"

    reply, shot = page.ask(UPLOAD_Q, "after-upload")
    assert "sqa-found" in (reply.get_attribute("class") or ""), f"uploaded article not found; screenshot: {shot}"
    assert "12,345 visitors" in answers(reply)[0], f"answers {answers(reply)[:2]}; screenshot: {shot}"
    cite = reply.locator(".sqa-cite").first
    assert "quokka_festival_Perth.txt" in cite.inner_text(), f"screenshot: {shot}"
    # outlet, date, and the title linking to the article's own page in a new tab
    assert "Rottnest Times" in cite.inner_text() and "12 Mar 2024" in cite.inner_text(), f"screenshot: {shot}"
    link = cite.locator("a.sqa-url")
    assert (
        link.inner_text() == "Quokka Festival report"
        and link.get_attribute("href") == "https://example.org/quokka-festival"
    ), f"screenshot: {shot}"
    assert link.get_attribute("target") == "_blank" and "noopener" in (link.get_attribute("rel") or "")
    assert "12,345 visitors" not in cite.inner_text()

    reply, shot = page.ask("How many paddlers took part in the kayak race?", "csv-row")
    assert "214 paddlers" in answers(reply)[0], f"answers {answers(reply)[:2]}; screenshot: {shot}"
    cite = reply.locator(".sqa-cite").first.inner_text()
    assert "Harbour Weekly" in cite and "2 Jun 2024" in cite and "island_export.csv#k1" in cite, f"{cite!r}; {shot}"

    # the filter row: only the outlet asked for is searched and cited
    box = lambda eid: page.page.locator(f"#{eid} textarea, #{eid} input").first  # noqa: E731
    box("sqa-outlets").fill("rottnest times")
    reply, shot = page.ask(CALL_Q, "outlet-filter")
    cites = reply.locator(".sqa-cite").all_inner_texts()
    assert cites and all("Rottnest Times" in c for c in cites), f"cites {cites}; screenshot: {shot}"
    assert "Biden" not in " ".join(cites), f"screenshot: {shot}"
    # a filter that keeps nothing says so, with what the index holds
    box("sqa-since").fill("2030-01-01")
    reply, shot = page.ask(UPLOAD_Q, "filter-keeps-nothing")
    assert "sqa-error" in (reply.get_attribute("class") or ""), f"screenshot: {shot}"
    assert "no article matches the filter" in reply.inner_text() and "2024-03-12" in reply.inner_text(), shot
    box("sqa-since").fill("")
    box("sqa-outlets").fill("")

    # the sources panel: sorted by a column, filtered by outlet and by date range
    page.page.locator("button[role='tab']:has-text('Sources')").first.click()
    panel = page.page.locator("#sqa-sources .sqa-sources")
    rows = panel.locator("tbody tr")
    visible = lambda: [t.split("\t")[0] for t in panel.locator("tbody tr:visible").all_inner_texts()]  # noqa: E731
    panel.locator("th[data-key='date'] button").click()
    shot = page.shot("panel-by-date")
    dates = [rows.nth(i).get_attribute("data-date") for i in range(rows.count())]
    assert dates[:3] == ["2024-03-12", "2024-06-02", "2024-06-09"] and not any(dates[3:]), f"{dates}; {shot}"
    panel.locator("th[data-key='date'] button").click()  # again: newest first, undated still last
    dates = [rows.nth(i).get_attribute("data-date") for i in range(rows.count())]
    assert dates[:3] == ["2024-06-09", "2024-06-02", "2024-03-12"] and not any(dates[3:]), f"{dates}"
    assert panel.locator("th[data-key='date']").get_attribute("aria-sort") == "descending"
    panel.locator("th[data-key='sentences'] button").click()
    counts = [int(rows.nth(i).get_attribute("data-sentences") or 0) for i in range(rows.count())]
    assert counts == sorted(counts) and len(set(counts)) > 1, f"sentences {counts}"

    panel.locator("select.sqa-filter-outlet").select_option("Harbour Weekly")
    shot = page.shot("panel-outlet")
    assert sorted(visible()) == ["Kayak race", "Market day"], f"{visible()}; {shot}"
    assert panel.locator(".sqa-shown").inner_text() == f"2 of {rows.count()} shown", shot
    panel.locator(".sqa-filter-since").fill("2024-06-05")  # and the date range: one of the two left
    shot = page.shot("panel-outlet-since")
    assert visible() == ["Market day"], f"{visible()}; {shot}"
    panel.locator("select.sqa-filter-outlet").select_option("")
    panel.locator(".sqa-filter-since").fill("")
    panel.locator(".sqa-filter-until").fill("2024-05-31")  # undated articles fail a date bound
    assert visible() == ["Quokka Festival report"], f"{visible()}; {page.shot('panel-until')}"
    panel.locator(".sqa-filter-until").fill("")
    assert len(visible()) == rows.count() and panel.locator(".sqa-shown").inner_text() == f"{rows.count()} shown"


def test_missing_index_shows_fix_and_recovers(browser, site, tmp_path):
    from qa.chat_backend import ChatBackend

    index = tmp_path / "no-index-yet"
    backend = ChatBackend(index, site["sources"])
    demo, url = start(backend)
    p = Page(browser, url, tmp_path)
    try:
        reply, shot = p.ask(CALL_Q, "missing-index")
        assert "sqa-error" in (reply.get_attribute("class") or ""), f"screenshot: {shot}"
        assert "no index at" in reply.inner_text(), f"screenshot: {shot}"
        fix = reply.locator(".sqa-fix-cmd").inner_text()
        assert fix.startswith("python -m index_build") and str(index) in fix, f"fix {fix!r}; screenshot: {shot}"
        assert "sqa-error" in (p.page.locator("#sqa-sources .sqa-error").get_attribute("class") or ""), shot

        # a stale index from another format: the fix rebuilds from scratch
        shutil.copytree(site["root"] / "index", index)
        manifest = index / "manifest.json"
        from qa.index_format import FORMAT_VERSION

        stale = manifest.read_text().replace(f'"format_version": {FORMAT_VERSION}', '"format_version": 99')
        assert '"format_version": 99' in stale
        manifest.write_text(stale)
        reply, shot = p.ask(CALL_Q, "stale-index")
        assert "format version 99" in reply.inner_text(), f"screenshot: {shot}"
        assert reply.locator(".sqa-fix-cmd").inner_text().endswith("--full"), f"screenshot: {shot}"

        # the server kept serving: once the index is fixed, the same page answers
        shutil.rmtree(index)
        shutil.copytree(site["root"] / "index", index)
        reply, shot = p.ask(CALL_Q, "fixed-index")
        assert "sqa-found" in (reply.get_attribute("class") or ""), f"not recovered; screenshot: {shot}"
        panel = p.page.locator("#sqa-sources .sqa-sources .sqa-index-info")
        sync_api.expect(
            panel, f"sources panel still shows the error; screenshot: {p.shot('panel-timeout')}"
        ).to_contain_text("articles")
        assert p.dialogs == [] and p.errors == [], (p.dialogs, p.errors)
    finally:
        p.close()
        demo.close()
        backend.close()


# -- the API ---------------------------------------------------------------------


def test_gradio_client_api(site):
    from gradio_client import Client

    client = Client(site["url"], verbose=False)
    res = client.predict(CALL_Q, [], 3, api_name="/ask")
    assert res["found"] is True and len(res["answers"]) == 3
    assert "lasted about 45 minutes" in res["answers"][0]["text"]
    src = res["answers"][0]["sources"][0]
    assert src["doc_id"] == "002_35521e549324248f" and src["file"] == "002_35521e549324248f.txt" and "path" not in src
    follow = client.predict(FOLLOWUP_Q, [THURSDAY_Q], 2, api_name="/ask")
    assert follow["followup"] is True and "prisoners" in follow["query"]
    assert "500 convicted of murder" in follow["answers"][0]["text"]
    with pytest.raises(Exception, match="question is empty"):
        client.predict("   ", [], 3, api_name="/ask")


def test_cli_first_start_builds_then_serves_with_auth(tmp_path):
    """`qa chat` on an empty index dir builds from the sources (with progress),
    then serves; $SOURCE_QA_AUTH protects it."""
    from gradio_client import Client

    src = tmp_path / "sources"
    shutil.copytree(SEEDS, src)
    index, port = tmp_path / "index", free_port()
    proc, lines = start_chat(
        ["--index", str(index), "--sources", str(src), "--port", str(port)], {"SOURCE_QA_AUTH": "ann:s3cret"}
    )
    try:
        out = "".join(lines)
        assert "No index at" in out and "embedding" in out and "unique sentences" in out, out
        assert "warning" not in out.lower(), out
        assert (index / "manifest.json").is_file()
        url = f"http://127.0.0.1:{port}/"
        res = Client(url, auth=("ann", "s3cret"), verbose=False).predict(CALL_Q, [], 1, api_name="/ask")
        assert "lasted about 45 minutes" in res["answers"][0]["text"]
        with pytest.raises(Exception, match="(?i)credentials|login|auth"):
            Client(url, verbose=False)
    finally:
        proc.terminate()
        proc.wait(30)


def test_old_engine_answers_consistently_after_its_index_is_replaced(tmp_path):
    """A rebuild swaps a new directory in under the chat; the engine in use
    must keep reading the files it was loaded from (a fresh thread reopening
    meta.sqlite by path would read the new one: wrong sentence ids)."""
    from index_build import build
    from qa.chat_backend import ChatBackend
    from qa.config import BuildConfig

    src, index = tmp_path / "sources", tmp_path / "index"
    shutil.copytree(SEEDS, src)
    build([src], index, BuildConfig(progress=False), log=lambda m: None)
    backend = ChatBackend(index, src)
    try:
        old = backend.refresh()
        # sorts first, so every old sentence id now means another sentence on disk
        (src / "0000_harbour.txt").write_text(
            "Harbour news\n\nThe harbour in Wellington froze over on Tuesday for the first time.\n\n"
            "Officials said all ferries were cancelled.\n",
            encoding="utf-8",
        )
        build([src], index, BuildConfig(progress=False), log=lambda m: None)
        got: dict = {}
        t = threading.Thread(target=lambda: got.update(r=old.run(lambda e: e.ask(CALL_Q, k=2))))
        t.start()
        t.join(60)
        top = got["r"].answers[0]
        assert "lasted about 45 minutes" in top.text and top.sources[0].doc_id == "002_35521e549324248f", top
        assert top.sources[0].text == top.text or "45 minutes" in top.sources[0].text
        # the next question goes to the new index
        res = backend.ask("Where did the harbour freeze over?").result
        assert backend._slot is not old and "Wellington" in res.answers[0].text
    finally:
        backend.close()


def test_exposure_warning_and_auth_parsing():
    from qa.chat import exposure_warning, parse_auth

    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("localhost", None) is None
    assert exposure_warning("0.0.0.0", ("a", "b")) is None
    warn = exposure_warning("0.0.0.0", None)
    assert warn and "without a password" in warn and "--auth" in warn and "SOURCE_QA_AUTH" in warn
    assert parse_auth("ann:pa:ss") == ("ann", "pa:ss") and parse_auth(None) is None
    for bad in ("ann", ":pw", "ann:"):
        with pytest.raises(ValueError, match="USER:PASS"):
            parse_auth(bad)


# -- without a browser -------------------------------------------------------------


def test_render_escapes_everything():
    from qa import chat_render as R

    nasty = "<script>alert(1)</script> **b** _i_ `c` [l](u) $x$ # h | t ~s~ \\ \" ' &amp;"
    out = R.esc(nasty)
    assert "<" not in out and ">" not in out and '"' not in out and "'" not in out
    for ch in "*_`[]$#|~\\":
        assert ch not in out.replace("&#", "").replace(";", ""), ch
    assert html.unescape(out) == nasty
    art = R.render_article("d", nasty, "/x/d.txt", nasty + " end", [R.Cite("d", 0, 8, nasty)], focus=0)
    assert "<script>" not in art and html.unescape(art).count("<script>alert(1)</script>") >= 2


@pytest.mark.parametrize(
    "name, expect",
    [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\win.md", "win.md"),
        ("/abs/path/Report 2024 (final).PDF", "Report_2024_final.pdf"),
        (".hidden.txt", "hidden.txt"),
        ("...txt", "article.txt"),
        ("naïve café.html", "naïve_café.html"),
        ("a" * 300 + ".txt", "a" * 80 + ".txt"),
    ],
)
def test_safe_name(name, expect):
    from qa.chat_backend import safe_name

    assert safe_name(name) == expect


@pytest.mark.parametrize("name", ["evil.exe", "noext", "archive.txt.zip", "x.php"])
def test_safe_name_rejects(name):
    from qa.chat_backend import UploadRejected, safe_name

    with pytest.raises(UploadRejected, match="unsupported file type"):
        safe_name(name)


def test_save_upload_never_leaves_the_sources_folder(tmp_path):
    from qa.chat_backend import ChatBackend, UploadRejected

    src = tmp_path / "sources"
    src.mkdir()
    backend = ChatBackend(tmp_path / "index", src, max_upload_bytes=1000)
    up = tmp_path / "up.txt"
    up.write_text("A headline\n\nSomething happened in Springfield on Monday.\n", encoding="utf-8")
    assert backend.save_upload("../../outside.txt", up) == "outside.txt"
    with pytest.raises(UploadRejected, match="already in the sources"):
        backend.save_upload("outside.txt", up)
    up.write_text("Another article\n\nA different thing happened.\n", encoding="utf-8")
    assert backend.save_upload("outside.md", up) == "outside-2.md"  # same stem = same doc id: renamed
    big = tmp_path / "big.txt"
    big.write_text("x " * 1000)
    with pytest.raises(UploadRejected, match="limit"):
        backend.save_upload("big.txt", big)
    assert sorted(p.name for p in src.iterdir()) == ["outside-2.md", "outside.txt"]
    assert not (tmp_path / "outside.txt").exists()
