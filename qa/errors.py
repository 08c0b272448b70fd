"""Errors users see.  Each message is one line naming the problem and the fix."""


class QAError(Exception):
    """Base of every error source-qa raises on purpose."""


class ModelUnavailableError(QAError):
    """The embedding model cannot be loaded offline."""


class IndexLoadError(QAError):
    """An index directory is missing, damaged, stale or from another model."""


class BuildError(QAError):
    """The builder cannot run with these inputs (exit code 1)."""


class BuildRunningError(BuildError):
    """Another build of the same index holds its lock (callers that share an index may wait and retry)."""
