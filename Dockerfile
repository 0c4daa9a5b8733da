# syntax=docker/dockerfile:1
# Quire runtime image: the `quire` console script with the exact dependency set of
# requirements.lock. The same image serves the API (default command), runs one-shot commands
# such as `quire migrate` and `prefect deploy --all`, and runs the Prefect worker that executes
# Quire's flows (`prefect worker start --pool quire`; see docker-compose.yml).
#
#   docker build -t quire .
#   docker run --rm -p 8000:8000 -e QUIRE_JWT_SECRET=... -e DATABASE_URL=... quire

# Matches `requires-python = ">=3.11"` in pyproject.toml and the interpreter the lock was frozen on.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The source tree stays at /app (read-only for the runtime user): prefect.yaml lives there for
# `prefect deploy --all`, and its pull step makes the worker run flows from there (the worker's
# QUIRE_APP_DIR=/app in docker-compose.yml; tests/test_docker_compose.py keeps them equal).
WORKDIR /app

# Dependencies first, from the lock alone: this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip install -r requirements.lock

# Then the project itself, as a regular (non-editable) install: everything is already resolved
# above, so --no-deps guarantees nothing outside the lock sneaks in.
COPY . .
RUN pip install --no-deps . && rm -rf build ./*.egg-info

# Unprivileged runtime user. Its home is the data directory (QUIRE_DATA_DIR), the one place the
# application writes to: the SQLite database and the generated JWT secret when DATABASE_URL /
# QUIRE_JWT_SECRET are not set, and Prefect's home (PREFECT_HOME: profiles, and by default the
# flow runs' persisted results, which a resumed QA run reads back).
RUN groupadd --system --gid 10001 quire \
    && useradd --system --uid 10001 --gid quire --home-dir /var/lib/quire --no-create-home \
        --shell /usr/sbin/nologin quire \
    && install --directory --owner=quire --group=quire --mode=0750 /var/lib/quire

# Setting names are the validation aliases of quire.settings.Settings (QUIRE_*) and Prefect
# settings (PREFECT_*). Binding 0.0.0.0 is required in a container: the Settings default
# (127.0.0.1) is unreachable from outside.
ENV QUIRE_DATA_DIR=/var/lib/quire \
    QUIRE_API_HOST=0.0.0.0 \
    QUIRE_API_PORT=8000 \
    PREFECT_HOME=/var/lib/quire/prefect

USER quire

EXPOSE 8000

# `quire api` takes host and port from QUIRE_API_HOST / QUIRE_API_PORT when no flags are given.
# Exec form: uvicorn is PID 1 and receives SIGTERM directly for a graceful shutdown.
CMD ["quire", "api"]
