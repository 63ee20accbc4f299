# One image for both processes: `python -m api` (the default) or `python -m worker`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AGG_DB_PATH=/data/aggregator.db

WORKDIR /app
RUN groupadd --system app \
    && useradd --system --gid app --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir /data \
    && chown app:app /data

# Dependencies first: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the code.
COPY README.md ./
COPY aggregator ./aggregator
COPY api ./api
COPY worker ./worker
RUN pip install --no-deps .

USER app
VOLUME ["/data"]
EXPOSE 8080
# Process-aware: the API answers /healthz; the worker's check is that its process is alive.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-m", "aggregator.healthcheck"]
CMD ["python", "-m", "api"]
