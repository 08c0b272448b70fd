"""source-qa: ask questions of a pile of articles, get back the exact sentences
that answer them, with their sources.

Heavy modules (torch, faiss, gradio) are imported only when used, so
`import qa` stays cheap.
"""

from pathlib import Path as _Path
from typing import TYPE_CHECKING, Any

from qa.version import __version__  # noqa: F401

if TYPE_CHECKING:  # pragma: no cover
    from qa.answers import Answer, Context, Result, Source
    from qa.engine import Engine

__all__ = ["load", "ask", "Engine", "Result", "Answer", "Source", "Context", "QAError", "IndexLoadError"]

from qa.errors import IndexLoadError, QAError  # noqa: E402  (light)

_default: "Engine | None" = None


def load(
    index_dir: str | _Path = "index",
    model: str | None = None,
    warm: bool = True,
    store: str | None = None,
    reader: bool = True,
) -> "Engine":
    """Open an index for asking questions.

    Checks manifest.json, every index file and the model, and raises
    IndexLoadError naming what is wrong and the command that fixes it.
    `warm=False` skips the background warm-up that makes later questions
    faster (worth it for a single question).  `store` ("milvus:URI[#name]")
    reaches the Milvus collection the index was built into by another
    address; without it the manifest's is used.  `reader=False` leaves out
    a learned reader the user trained (qa.reader, qa/models/reader; none
    ships: docs/evaluation.md).
    """
    from qa.engine import Engine

    return Engine.load(index_dir, model=model, warm=warm, store=store, reader=reader)


def ask(
    question: str,
    history: Any = None,
    k: int = 5,
    index_dir: str | _Path | None = None,
    since: str | None = None,
    until: str | None = None,
    outlets: list[str] | None = None,
) -> "Result":
    """Ask the default index (``$SOURCE_QA_INDEX`` or ./index), building it
    from the bundled seeds/ on first use if it does not exist yet.
    `since` / `until` / `outlets`: search only those articles (Engine.ask)."""
    import os

    global _default
    path = _Path(index_dir or os.environ.get("SOURCE_QA_INDEX", "index"))
    if _default is None or _default.data.path != path:
        if not (path / "manifest.json").exists():
            from index_build import build  # the app layer may build; the engine never does
            from qa.config import DEFAULT_SOURCES

            build([DEFAULT_SOURCES], path)
        _default = load(path)
    return _default.ask(question, history=history, k=k, since=since, until=until, outlets=outlets)


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from qa.engine import Engine

        return Engine
    if name in ("Result", "Answer", "Source", "Context"):
        from qa import answers

        return getattr(answers, name)
    raise AttributeError(f"module 'qa' has no attribute {name!r}")
