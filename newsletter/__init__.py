"""Build and send a publication's weekly round-up of articles by email."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("newsletter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
