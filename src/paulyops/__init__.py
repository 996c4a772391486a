"""PaulyOps: a self-hosted operations platform for small businesses."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("paulyops")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

__all__ = ["__version__"]
