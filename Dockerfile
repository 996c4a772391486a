# syntax=docker/dockerfile:1
# PaulyOps server image: `paulyops docker up` builds it (docs/operators/docker.md).
# Two stages: the build stage has uv and compiles everything; the final image holds only
# Python, the virtual environment, bubblewrap for the agent sandbox and a non-root user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/paulyops/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m pip install "uv==${UV_VERSION}"
WORKDIR /opt/paulyops
# Dependencies first (cached while only the code changes), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
RUN uv sync --frozen --no-dev --no-editable \
    && /opt/paulyops/.venv/bin/python -m compileall -q /opt/paulyops/.venv

FROM ${PYTHON_IMAGE} AS runtime
# bubblewrap: the agent sandbox; tini: signals and zombies for PID 1.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 paulyops \
    && useradd --system --uid 10001 --gid paulyops --home-dir /var/lib/paulyops \
        --shell /usr/sbin/nologin paulyops \
    && install -d -o paulyops -g paulyops -m 0700 /var/lib/paulyops
COPY --from=build /opt/paulyops/.venv /opt/paulyops/.venv
ENV PATH=/opt/paulyops/.venv/bin:$PATH \
    PAULYOPS_HOME=/var/lib/paulyops \
    PAULYOPS_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/paulyops
VOLUME ["/var/lib/paulyops"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/api/livez', timeout=4).status != 200)"]
ENTRYPOINT ["tini", "--", "paulyops"]
CMD ["serve"]
