"""source-qa: ask questions of a pile of articles, get back the exact sentences
that answer them, with their sources.

Heavy modules (torch, faiss, gradio) are imported only when used, so
`import qa` stays cheap.
"""

__version__ = "0.1.0"
