"""Offline index builder: `python -m index_build [SOURCES ...] [--index DIR]`.

The library entry point is `build()`; the CLI is a thin layer over it.
"""

from index_build.build import build
from index_build.report import BuildReport

__all__ = ["build", "BuildReport"]
