"""Import structlog without the Rich modules it loads for features PaulyOps does not use.

``structlog`` imports ``structlog.dev`` and ``structlog.tracebacks`` as a package, and
those import ``rich.traceback`` and ``rich.pretty`` when Rich is installed (it is: the
CLI prints with it), which pull in Pygments and attrs: about 0.07 s of CPU at every CLI
start. PaulyOps renders exceptions with ``structlog.dev.plain_traceback`` and never uses
structlog's rich tracebacks or rich reprs of locals, so those two modules are hidden
while structlog is first imported (structlog then takes Rich for absent, as its own
fallbacks allow) and are importable again right after, for anyone who wants them.
"""

from __future__ import annotations

import sys

_HIDDEN = ("rich.traceback", "rich.pretty")

_absent = [name for name in _HIDDEN if name not in sys.modules]
for _name in _absent:
    sys.modules[_name] = None  # type: ignore[assignment]  # "not importable", by design
try:
    import structlog
    from structlog.typing import EventDict, WrappedLogger
finally:
    for _name in _absent:
        if sys.modules.get(_name, 0) is None:
            del sys.modules[_name]

__all__ = ["EventDict", "WrappedLogger", "structlog"]
