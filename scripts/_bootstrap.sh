# Sourced by scripts/start and scripts/test: find Python 3.11+, get uv, create .venv.
# Works where the system Python is "externally managed": uv lives in its own small
# virtual environment (.bootstrap/), and the project's environment is .venv/.
set -eu
UV_VERSION="0.13.9"

find_python() {
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 python; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "PaulyOps needs Python 3.11 or newer; none found on PATH (set PYTHON=/path/to/python3)." >&2
    return 1
}

PY="$(find_python)"
if [ ! -x .bootstrap/bin/uv ]; then
    echo "==> Preparing the installer (uv) in .bootstrap/ ..." >&2
    "$PY" -m venv .bootstrap
    .bootstrap/bin/python -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
fi
UV="$PWD/.bootstrap/bin/uv"
export UV_PYTHON="$PY"
export UV_PYTHON_DOWNLOADS=never
export UV_PROJECT_ENVIRONMENT="$PWD/.venv"
# Compile bytecode at install: uv does not by default, and where PYTHONDONTWRITEBYTECODE=1
# is set (common in containers) every start would otherwise compile ~1,000 modules again
# (setup --quick: 5-8 s instead of ~2 s).
export UV_COMPILE_BYTECODE=1

# uv compiles site-packages; PaulyOps itself is installed editable from src/, so compile
# that too (quietly, only what changed).
compile_project() {
    .venv/bin/python -m compileall -q -j 0 src >/dev/null
}
