"""`qa chat`: the web chat (Gradio Blocks).

    qa chat [--index DIR] [--sources DIR] [--host 127.0.0.1] [--port 7860] [--auth USER:PASS]

Replies are HTML built by qa.chat_render with every source string escaped;
the Chatbot renders them with Markdown and LaTeX off and HTML sanitised, so
an article can never run code or restyle the page.  The engine and uploads
live in qa.chat_backend.  Gradio is imported here only, so `import qa` and
`qa ask` stay light.
"""

from __future__ import annotations

import html
import os
import queue
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402  (only `qa chat` imports this module)

from qa import chat_render as R  # noqa: E402
from qa.chat_backend import ChatBackend, Unavailable  # noqa: E402

EXAMPLES = [
    "How long did the call between Biden and Netanyahu last?",
    "How many hostages has Israel freed so far?",
    "What is Hamas demanding as a precondition for a deal?",
    "Where did Israel send a delegation for hostage talks?",
]
AUTH_ENV = "SOURCE_QA_AUTH"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
MAX_CITES = 2000  # cited spans remembered per conversation (for the article view)

# Delegated handlers, bound once per page: clicking a citation in a reply or a
# title in the sources table opens the article; the filter box filters the table.
_SOURCES_JS = """
window.__sqaOpen = (a) => {
  const h = new URLSearchParams((a.getAttribute('href') || '').replace(/^#/, '').replace(/^sqa-doc=/, 'doc='));
  const start = h.get('start');
  trigger('click', {doc: h.get('doc') || '', start: start === null ? null : Number(start)});
};
if (!window.__sqaBound) {
  window.__sqaBound = true;
  const pick = (t) => (t && t.closest) ? t.closest('a.sqa-doc') : null;
  document.addEventListener('click', (ev) => {
    const a = pick(ev.target);
    if (!a) return;
    ev.preventDefault(); ev.stopPropagation();
    window.__sqaOpen(a);
  }, true);
  // the sources panel: words, outlet and date range together; rows without a date fail a date bound
  const FILTERS = '.sqa-filter, .sqa-filter-outlet, .sqa-filter-since, .sqa-filter-until';
  const val = (root, sel) => { const e = root.querySelector(sel); return e ? e.value : ''; };
  const applyFilters = (root) => {
    const q = val(root, '.sqa-filter').toLowerCase(), o = val(root, '.sqa-filter-outlet');
    const since = val(root, '.sqa-filter-since'), until = val(root, '.sqa-filter-until');
    const rows = root.querySelectorAll('tbody tr');
    let shown = 0;
    rows.forEach((tr) => {
      const d = tr.dataset.date || '';
      const ok = (!q || tr.textContent.toLowerCase().includes(q)) && (!o || tr.dataset.outlet === o)
        && (!since || (d && d >= since)) && (!until || (d && d <= until));
      tr.style.display = ok ? '' : 'none';
      if (ok) shown += 1;
    });
    const c = root.querySelector('.sqa-shown');
    if (c) c.textContent = shown === rows.length ? `${shown} shown` : `${shown} of ${rows.length} shown`;
  };
  const onFilter = (ev) => {
    const t = ev.target;
    if (t && t.matches && t.matches(FILTERS)) applyFilters(t.closest('.sqa-sources'));
  };
  document.addEventListener('input', onFilter);
  document.addEventListener('change', onFilter);
  // a column header sorts by it (again: the other way); empty values stay last either way
  document.addEventListener('click', (ev) => {
    const b = ev.target && ev.target.closest ? ev.target.closest('th.sqa-sort button') : null;
    if (!b) return;
    const th = b.closest('th'), root = th.closest('.sqa-sources'), key = th.dataset.key;
    const dir = th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
    root.querySelectorAll('th.sqa-sort').forEach((h) => h.setAttribute('aria-sort', 'none'));
    th.setAttribute('aria-sort', dir);
    const tbody = root.querySelector('tbody');
    const num = key === 'sentences';
    const rows = Array.from(tbody.rows);
    rows.sort((a, z) => {
      const x = a.dataset[key] || '', y = z.dataset[key] || '';
      if (!x || !y) return x ? -1 : (y ? 1 : 0);
      const c = num ? Number(x) - Number(y) : x.localeCompare(y);
      return dir === 'ascending' ? c : -c;
    });
    rows.forEach((r) => tbody.appendChild(r));
  });
}
"""

_ARTICLE_JS = """
const focus = () => {
  const m = element.querySelector('mark.sqa-focus') || element.querySelector('mark.sqa-cited');
  const box = element.querySelector('.sqa-article-text');
  if (m && box) box.scrollTop = Math.max(0, m.offsetTop - box.offsetTop - box.clientHeight / 3);
};
watch('value', focus);
focus();
"""

_PLACEHOLDER = (
    "<div class='sqa-placeholder'><p><strong>Ask a question about the articles.</strong></p>"
    "<p>Every answer is a sentence quoted from a source, with its citation; nothing is generated. "
    "Follow-up questions (“How long did it last?”) use the conversation. "
    "Click a citation to read the article with the quoted sentences highlighted.</p></div>"
)


def _theme() -> Any:
    # System fonts: the default theme fetches web fonts, which an offline or
    # intranet machine cannot reach (and which would slow the first paint).
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
    )


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text")
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return ""


def history_questions(messages: Any) -> list[str]:
    """The user's earlier questions, as typed, from the Chatbot's messages
    (user messages hold the escaped question)."""
    out = []
    for m in messages or []:
        if isinstance(m, dict) and m.get("role") == "user":
            text = html.unescape(re.sub(r"<[^>]*>", "", _message_text(m.get("content"))))
            if text.strip():
                out.append(text)
    return out


def split_outlets(text: str | None) -> list[str] | None:
    """The outlets box: names separated by commas (None when empty)."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    return names or None


def _as_cites(items: list[dict]) -> list[R.Cite]:
    return [R.Cite(**c) for c in items]


def create_app(backend: ChatBackend, *, examples: list[str] | None = None, title: str = "source-qa") -> Any:
    """The Blocks app.  Launch it with `launch()` (or demo.launch)."""
    examples = EXAMPLES if examples is None else examples

    # -- handlers ------------------------------------------------------------
    def answer(
        question: str, messages: list, k: float, cites: list, since: str = "", until: str = "", outlets: str = ""
    ) -> tuple[list, str, list]:
        messages = list(messages or [])
        cites = list(cites or [])
        question = question or ""
        turn = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "user") + 1
        try:
            reply = backend.ask(
                question,
                history=history_questions(messages),
                k=int(k or 5),
                since=since or None,
                until=until or None,
                outlets=split_outlets(outlets),
            )
        except Unavailable as e:
            body = R.render_error(e.message, e.fix, "The chat keeps running and uses the index as soon as it is built.")
        except ValueError as e:
            if not question.strip():
                return messages, question, cites  # Enter on an empty box: nothing to do
            body = R.render_error(str(e))
        except Exception as e:  # noqa: BLE001 - shown in the chat; the server keeps serving
            import traceback

            traceback.print_exc()
            body = R.render_error(
                f"the engine failed on this question ({type(e).__name__}: {e})",
                backend.build_command(full=True),
                "The server is still running; if a rebuilt index does not help, please report this question.",
            )
        else:
            body = R.render_result(reply.result)
            if reply.notice:
                body += R.render_notice(reply.notice)
            cites = (cites + [c.__dict__ for c in R.cites_of(reply.result, turn, question)])[-MAX_CITES:]
        messages += [{"role": "user", "content": R.render_question(question)}, {"role": "assistant", "content": body}]
        return messages, "", cites

    def clear() -> tuple[list, list, str, str]:
        return [], [], R.render_article_placeholder(), ""

    def sources_html() -> str:
        try:
            rows, m = backend.documents()
        except Unavailable as e:
            return R.render_error(e.message, e.fix)
        return R.render_sources(rows, m.built_at, m.build_seconds, m.counts.get("sentences"), str(backend.index_dir))

    def sources_panel() -> tuple[str, int]:
        gen = backend.generation
        return sources_html(), gen

    def sources_if_changed(shown: int | None) -> tuple[Any, Any]:
        """After each answer: redraw the panel only if the index was swapped
        (an upload, a rebuild on disk, a first successful load)."""
        if shown == backend.generation:
            return gr.skip(), gr.skip()
        return sources_panel()

    def open_article(cites: list, evt: gr.EventData) -> tuple[str, Any]:
        data = getattr(evt, "_data", None) or {}
        doc_id = str(data.get("doc") or "")
        start = data.get("start")
        try:
            got = backend.article(doc_id)
        except Unavailable as e:
            return R.render_error(e.message, e.fix), gr.Tabs(selected="article")
        if got is None:
            return R.render_article_placeholder(f"“{doc_id}” is not in the index (any more)."), gr.Tabs(
                selected="article"
            )
        title_, path, text = got
        focus = int(start) if isinstance(start, (int, float)) else None
        return R.render_article(doc_id, title_, path, text, _as_cites(cites or []), focus), gr.Tabs(selected="article")

    def add_articles(files: Any):
        files = files or []
        if isinstance(files, (str, os.PathLike)):
            files = [files]
        pairs: list[tuple[str, str | Path]] = [(Path(str(f)).name, str(f)) for f in files]
        if not pairs:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        msgs: queue.Queue = queue.Queue()
        result: dict = {}

        def work() -> None:
            result["out"] = backend.add_articles(pairs, progress=msgs.put)
            msgs.put(None)

        yield R.render_upload_status(f"Checking {len(pairs)} file(s) …"), gr.skip(), gr.skip(), gr.skip()
        threading.Thread(target=work, daemon=True, name="qa-add-articles").start()
        while (m := msgs.get()) is not None:
            yield R.render_upload_status(m), gr.skip(), gr.skip(), gr.skip()
        out = result["out"]
        panel, gen = sources_panel()
        yield R.render_upload_outcome(out, str(backend.sources_dir)), panel, None, gen

    def ask_api(
        question: str,
        history: list[str] | None = None,
        k: int = 5,
        since: str | None = None,
        until: str | None = None,
        outlets: list[str] | None = None,
    ) -> dict:
        """Ask the articles a question.  `history`: earlier questions of the
        conversation, oldest first; `since` / `until` (ISO dates) and
        `outlets` search only those articles.  Returns the qa Result as JSON:
        `found`, `query` (after follow-up resolution), `followup`, `threshold`,
        `answers` (text, score, weak, sources with doc_id/title/file/
        sentence_no/start/end/text/published/outlet/author/url, context)."""
        try:
            reply = backend.ask(
                question,
                history=history or [],
                k=int(k),
                since=since or None,
                until=until or None,
                outlets=outlets or None,
            )
        except Unavailable as e:
            raise gr.Error(f"{e.message}" + (f" -- fix: {e.fix}" if e.fix else "")) from e
        except ValueError as e:
            raise gr.Error(str(e)) from e
        d = reply.result.to_dict()
        for a in d.get("answers", []):
            for src in a.get("sources", []):
                # `file` (as cited) instead of the server's path: no server layout in the API, and
                # gradio_client would take any {"path": ...} for a file to download
                src["file"] = R.file_label(src["doc_id"], src.pop("path", ""))
        if reply.notice:
            d["notice"] = reply.notice
        return d

    # -- layout ----------------------------------------------------------------
    # delete_cache: uploads Gradio keeps in its temp dir go after an hour (they were copied into the sources)
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        cites = gr.State([])
        gr.HTML(
            "<div class='sqa-header'><h2 style='margin:0'>source-qa</h2>"
            "<p style='margin:0.1em 0 0 0;opacity:0.8'>Answers are sentences quoted verbatim from your articles, "
            "with citations. Nothing is generated.</p></div>",
            padding=False,
            js_on_load=None,
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=420):
                chatbot = gr.Chatbot(
                    elem_id="sqa-chat",
                    label="Quoted answers",
                    height="62vh",
                    render_markdown=False,
                    sanitize_html=True,
                    latex_delimiters=[],
                    feedback_options=None,
                    buttons=[],
                    placeholder=_PLACEHOLDER,
                    group_consecutive_messages=False,
                    allow_tags=False,
                    autoscroll=True,
                )
                with gr.Row(equal_height=True):
                    question = gr.Textbox(
                        elem_id="sqa-question",
                        show_label=False,
                        scale=8,
                        lines=1,
                        max_lines=4,
                        autofocus=True,
                        placeholder="Ask a question about the articles, then press Enter",
                        max_length=2000,
                        submit_btn="Ask",
                    )
                    clear_btn = gr.Button(
                        "Clear chat", elem_id="sqa-clear", scale=1, min_width=120, size="md", variant="secondary"
                    )
                with gr.Row(elem_id="sqa-examples"):
                    ex_buttons = [
                        gr.Button(q, size="sm", variant="secondary", elem_classes=["sqa-example"]) for q in examples
                    ]
                k = gr.Slider(1, 10, value=5, step=1, label="Quotes per answer (k)", elem_id="sqa-k")
                with gr.Row(elem_id="sqa-filters", equal_height=True):
                    since = gr.Textbox(
                        label="Published from",
                        placeholder="2024-01-01",
                        elem_id="sqa-since",
                        max_lines=1,
                        max_length=40,
                        scale=1,
                    )
                    until = gr.Textbox(
                        label="Published until",
                        placeholder="2024-12-31",
                        elem_id="sqa-until",
                        max_lines=1,
                        max_length=40,
                        scale=1,
                    )
                    outlets = gr.Textbox(
                        label="Outlets (comma-separated)",
                        placeholder="all",
                        elem_id="sqa-outlets",
                        max_lines=1,
                        max_length=400,
                        scale=2,
                    )
            with gr.Column(scale=2, min_width=320):
                with gr.Tabs(selected="sources") as tabs:
                    with gr.Tab("Sources", id="sources", elem_id="sqa-tab-sources"):
                        sources = gr.HTML(
                            "<p>Loading the list of articles …</p>", elem_id="sqa-sources", js_on_load=_SOURCES_JS
                        )
                    with gr.Tab("Article", id="article", elem_id="sqa-tab-article"):
                        article = gr.HTML(R.render_article_placeholder(), elem_id="sqa-article", js_on_load=_ARTICLE_JS)
                    with gr.Tab("Add articles", id="add", elem_id="sqa-tab-add"):
                        if backend.allow_upload:
                            gr.HTML(
                                R.render_upload_help(backend.max_upload_bytes, str(backend.sources_dir)),
                                js_on_load=None,
                            )
                            upload = gr.File(
                                file_count="multiple",
                                file_types=[
                                    ".txt",
                                    ".md",
                                    ".html",
                                    ".htm",
                                    ".pdf",
                                    ".docx",
                                    ".jsonl",
                                    ".ndjson",
                                    ".csv",
                                    ".rss",
                                    ".atom",
                                ],
                                label="Articles to add",
                                elem_id="sqa-upload",
                            )
                            upload_status = gr.HTML("", elem_id="sqa-upload-status", js_on_load=None)
                        else:
                            gr.HTML("<p>Adding articles is switched off on this server.</p>", js_on_load=None)

        # -- events ----------------------------------------------------------------
        chat_io: dict[str, Any] = dict(
            inputs=[question, chatbot, k, cites, since, until, outlets], outputs=[chatbot, question, cites]
        )
        panel_gen = gr.State(None)  # the index generation the sources panel shows
        refresh_io = dict(
            fn=sources_if_changed,
            inputs=[panel_gen],
            outputs=[sources, panel_gen],
            api_visibility="private",
            queue=False,
            show_progress="hidden",
        )
        question.submit(
            answer,
            **chat_io,
            api_visibility="undocumented",
            show_progress="minimal",
            concurrency_limit=backend.workers,
            concurrency_id="ask",
        ).then(**refresh_io)
        for b, q in zip(ex_buttons, examples):
            b.click(
                lambda m, kk, c, a, z, o, q=q: answer(q, m, kk, c, a, z, o),
                inputs=[chatbot, k, cites, since, until, outlets],
                outputs=[chatbot, question, cites],
                api_visibility="private",
                show_progress="minimal",
                concurrency_limit=backend.workers,
                concurrency_id="ask",
            ).then(**refresh_io)
        clear_btn.click(clear, outputs=[chatbot, cites, article, question], api_visibility="private", queue=False)
        chatbot.clear(
            lambda: ([], R.render_article_placeholder()),
            outputs=[cites, article],
            api_visibility="private",
            queue=False,
        )
        sources.click(open_article, inputs=[cites], outputs=[article, tabs], api_visibility="private")
        demo.load(sources_panel, outputs=[sources, panel_gen], api_visibility="private")
        if backend.allow_upload:
            upload.upload(
                add_articles,
                inputs=[upload],
                outputs=[upload_status, sources, upload, panel_gen],
                api_visibility="private",
                concurrency_limit=1,
                concurrency_id="add",
            )
        gr.api(ask_api, api_name="ask", concurrency_limit=backend.workers, concurrency_id="ask")
    demo.backend = backend  # for launch() and tests
    return demo


def launch(
    demo: Any,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    block: bool = True,
    quiet: bool = False,
) -> Any:
    """Serve the app; with block=False return at once (tests, benchmarks)."""
    backend: ChatBackend = demo.backend
    demo.queue(default_concurrency_limit=backend.workers)
    return demo.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        prevent_thread_lock=not block,
        quiet=quiet,
        show_error=True,
        ssr_mode=False,
        max_file_size=backend.max_upload_bytes,
        footer_links=["api"],
        theme=_theme(),
        css=R.CSS,
        auth_message="source-qa: sign in to ask the articles" if auth else None,
    )


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """USER:PASS -> (user, pass); ValueError with the fix when malformed."""
    if value is None or value == "":
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"--auth / ${AUTH_ENV} must look like USER:PASS (both non-empty)")
    return user, password


def exposure_warning(host: str, credentials: tuple[str, str] | None, allow_upload: bool = True) -> str | None:
    """The warning for serving beyond this machine without a password."""
    if credentials is not None or host in LOCAL_HOSTS or host.startswith("127."):
        return None
    return (
        f"warning: serving on {host} without a password: anyone who can reach this machine can read the "
        f"articles{' and add files to the sources' if allow_upload else ''}. "
        f"Pass --auth USER:PASS (or set ${AUTH_ENV}=USER:PASS)."
    )


def serve(
    index_dir: Path,
    sources_dir: Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: str | None = None,
    allow_upload: bool = True,
    build_missing: bool = True,
    store: str | None = None,
) -> int:
    """The `qa chat` command: build the index on first start, then serve."""
    try:
        credentials = parse_auth(auth if auth is not None else os.environ.get(AUTH_ENV))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    warning = exposure_warning(host, credentials, allow_upload)
    if warning:
        print(warning, file=sys.stderr)
    if build_missing and not (index_dir / "manifest.json").exists():
        from index_build import build
        from qa.config import BuildConfig
        from qa.errors import QAError

        print(
            f"No index at {index_dir} yet: building one from {sources_dir} (first start only) …",
            file=sys.stderr,
            flush=True,
        )
        try:
            report = build([sources_dir], index_dir, BuildConfig(progress=True, store=store or "faiss"))
        except QAError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted; no index was written", file=sys.stderr)
            return 130
        print(report.table(), file=sys.stderr, flush=True)
    backend = ChatBackend(index_dir, sources_dir, allow_upload=allow_upload, store=store)
    try:
        print(f"loading the index at {index_dir} …", file=sys.stderr, flush=True)
        backend.refresh()
    except Unavailable as e:
        print(
            f"warning: {e.message}\n  fix: {e.fix}\n  the chat starts anyway and shows this in its replies",
            file=sys.stderr,
        )
    demo = create_app(backend)
    try:
        launch(demo, host, port, credentials, block=False, quiet=True)
    except OSError as e:
        print(f"error: cannot serve on {host}:{port} ({e}): pass another --port or --host", file=sys.stderr)
        backend.close()
        return 1
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    print(f"source-qa chat on http://{shown}:{port}  (Ctrl-C to stop)", file=sys.stderr, flush=True)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while demo.is_running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("stopping the chat", file=sys.stderr)
    finally:
        demo.close()
        backend.close()
    return 0
