# syntax=docker/dockerfile:1
# The portal's image: the web server, the Celery worker and beat, the asynchronous invocations'
# dispatcher and the migrations all run from it (charts/faas-portal picks the command). Build it
# from the repository's root: `docker build -t ghcr.io/faas-portal/faas-portal:<version> .`
#
# Base images are pinned to exact versions. Pin them by digest too where you build (the digest of a
# tag is the registry's, not this file's: `docker buildx imagetools inspect <image>` shows it).
# Nothing secret is built in: the settings collectstatic needs are throwaway values (Makefile's
# OFFLINE_ENV) that only let the settings load; the portal's real ones come at run time.

# -- The JavaScript and CSS bundle (package.json's build: esbuild into static/dist).
FROM node:22.17.0-bookworm-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY static/src static/src
RUN npm run --silent build

# -- The Python dependencies, from the full lock, into a virtualenv the last stage copies whole.
FROM python:3.11.14-slim-bookworm AS python
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --quiet -r /tmp/requirements.txt

# -- The image: the virtualenv, the application (root-owned, read-only for its user), the
# collected static files, and a numeric non-root user.
FROM python:3.11.14-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=portal.settings
RUN groupadd --system --gid 10001 portal \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin portal
WORKDIR /app
COPY --from=python /opt/venv /opt/venv
COPY . /app
COPY --from=assets /src/static/dist /app/static/dist
RUN PORTAL_SECRET_KEY=offline DATABASE_URL=postgres://offline/none REDIS_URL=redis://offline:1/0 \
    python manage.py collectstatic --noinput --verbosity 0
USER 10001:10001
EXPOSE 8000
# The web server's liveness (the chart's probes use /healthz and /readyz themselves).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["python", "-m", "uvicorn", "portal.asgi:application", "--host=0.0.0.0", "--port=8000", \
     "--ws=websockets-sansio", "--lifespan=off", "--no-access-log", "--proxy-headers"]
