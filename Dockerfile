# One image for both processes: `python -m api` (the default) or `python -m worker`.
# `make lint` runs hadolint on this file; tests/test_dockerfile.py checks what it promises.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    AGG_DB_PATH=/data/aggregator.db

# A fixed numeric uid: `USER` by number is what Kubernetes' runAsNonRoot can verify, and the
# files on the volume keep one owner whichever container of this image wrote them. /data is
# created here, owned by that user, before the VOLUME line: Docker copies it, ownership included,
# into a named volume that is empty when first mounted, so the non-root processes can write
# there. (A bind mount keeps the host folder's owner: make it writable by uid 10001.)
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app \
    && mkdir /data \
    && chown app:app /data

WORKDIR /app

# Dependencies first, read from pyproject.toml alone: this layer is rebuilt only when that file
# changes, not on every code change. The build backend is installed here too, so the code layer
# below builds without build isolation and needs no network.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); print('\n'.join(p['build-system']['requires'] + p['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the code. README.md is the package's readme in pyproject.toml, so the build needs it.
COPY README.md ./
COPY aggregator ./aggregator
COPY api ./api
COPY worker ./worker
# The load generator, for a demo inside the compose network: `docker compose run --rm api
# python -m producer --url http://api:8080 --count 10000`.
COPY producer ./producer
RUN pip install --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info

USER 10001:10001
VOLUME ["/data"]
# 8080: the API (AGG_PORT). 9101: the worker's Prometheus metrics (AGG_METRICS_PORT; with
# --workers N, 9101 to 9101+N-1), which its healthcheck asks.
EXPOSE 8080 9101
# Process-aware (aggregator/healthcheck.py): the API's /healthz, or the worker's metrics port.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-m", "aggregator.healthcheck"]
CMD ["python", "-m", "api"]
