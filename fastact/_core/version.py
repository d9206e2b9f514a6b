"""fastact's version (part of the compile-cache folder's name)."""

__version__ = "0.1.0"
