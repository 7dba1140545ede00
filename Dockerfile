# polaris-bot: the Errbot plugin that invites people to Rubrik Security Cloud from Slack.
#
#   docker build -t polaris-bot .
#   docker run -d --name polaris-bot --env-file polaris.env \
#     -v polaris-data:/data -v /secure/rsc-service-account.json:/run/secrets/rsc.json:ro \
#     polaris-bot
#
# Secrets (Slack tokens, the RSC service account) come at run time from the
# environment or a mounted file, never from this file: see docs/operations.md.
# scripts/check_dockerfile.py checks the rules this file keeps.

# A full version tag: rebuilds get the same Python. Pin the digest too once built
# (python:3.11.13-slim-bookworm@sha256:...) for byte-identical rebuilds.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BOT_DATA_DIR=/data \
    WEBSERVER_HOST=127.0.0.1 \
    WEBSERVER_PORT=3141

# A fixed uid/gid so a host directory mounted on /data can be given to it.
RUN groupadd --system --gid 10001 polaris \
    && useradd --system --uid 10001 --gid polaris --home-dir /app --shell /usr/sbin/nologin polaris

WORKDIR /app

# Dependencies first: this layer is rebuilt only when the pinned list changes.
# TODO: pin transitive dependencies too (a hashed lock file); requirements.txt pins
# only the direct ones, so a rebuild can pick up a newer flask or dulwich.
COPY requirements.txt ./
RUN pip install --no-cache-dir --no-compile -r requirements.txt

# Only what the bot runs: no tests, no RSC stand-in, no benchmark.
COPY config.py ./
COPY plugins/ ./plugins/
COPY docker/entrypoint.py docker/healthcheck.py ./docker/

RUN mkdir -p /data && chown polaris:polaris /data
VOLUME /data

USER polaris:polaris

# /health answers only while the bot is connected to chat (Errbot deactivates the
# plugins on disconnect), so "unhealthy" means "not talking to Slack".
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/docker/healthcheck.py"]

# Exec form: Python is PID 1 and receives SIGTERM itself; the entry point turns it
# into Errbot's clean shutdown (see docker/entrypoint.py).
ENTRYPOINT ["python", "/app/docker/entrypoint.py"]
