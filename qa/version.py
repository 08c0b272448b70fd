"""The package version, in a module of its own: the builder records it in every
index without importing the package root (which builds the default index)."""

__version__ = "0.1.0"
