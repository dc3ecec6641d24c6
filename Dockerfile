# facegate: the API with the shipped model. CPU by default; `--build-arg TORCH_INDEX_URL=...cu130` gives the
# CUDA build of torch, and the server uses the GPU whenever the container has one (FACEGATE_DEVICE=auto).
# The image runs the README's commands: scripts/setup.sh to install, scripts/serve.sh to start.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_EXTRA_INDEX_URL=${TORCH_INDEX_URL} PIP_NO_CACHE_DIR=1
WORKDIR /srv/facegate
COPY pyproject.toml README.md ./
COPY app ./app
COPY model ./model
COPY migrations ./migrations
COPY alembic.ini ./
COPY scripts ./scripts
RUN scripts/setup.sh

FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 facegate
WORKDIR /srv/facegate
COPY --from=build --chown=facegate:facegate /srv/facegate /srv/facegate
USER facegate
ENV FACEGATE_HOST=0.0.0.0 FACEGATE_PORT=8000 FACEGATE_DATABASE_URL=sqlite:////srv/facegate/data/facegate.db
# data: the SQLite default's file; audit-spool: audit rows waiting while the database is away (mount a volume)
RUN mkdir -p /srv/facegate/data /srv/facegate/audit-spool
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/srv/facegate/.venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["scripts/serve.sh"]
