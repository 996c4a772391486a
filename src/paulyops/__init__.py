"""PaulyOps: a self-hosted operations platform for small businesses."""

# A literal, not importlib.metadata: reading the installed distribution's metadata scans
# site-packages and costs tens of milliseconds on every start of the CLI and the server.
# tests/test_version.py keeps it equal to pyproject.toml's [project] version.
__version__ = "0.1.0"

__all__ = ["__version__"]
