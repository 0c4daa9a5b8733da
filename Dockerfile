# syntax=docker/dockerfile:1
# Quire runtime image: the `quire` console script with the exact dependency set of
# requirements.lock. The same image serves the API (default command) and runs one-shot
# commands such as `quire migrate` (see docker-compose.yml).
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

# Dependencies first, from the lock alone: this layer is rebuilt only when the lock changes.
COPY requirements.lock /tmp/requirements.lock
RUN pip install -r /tmp/requirements.lock && rm /tmp/requirements.lock

# Then the project itself, as a regular (non-editable) install: everything already resolved
# above, so --no-deps guarantees nothing outside the lock sneaks in. The source tree is
# removed afterwards; the image runs the installed packages (migrations included).
COPY . /tmp/src
RUN pip install --no-deps /tmp/src && rm -rf /tmp/src

# Unprivileged runtime user; its home is the data directory (QUIRE_DATA_DIR), the only place
# the application writes to (SQLite database and generated JWT secret when those are not
# configured through DATABASE_URL / QUIRE_JWT_SECRET).
RUN groupadd --system --gid 10001 quire \
    && useradd --system --uid 10001 --gid quire --home-dir /var/lib/quire --no-create-home \
        --shell /usr/sbin/nologin quire \
    && install --directory --owner=quire --group=quire --mode=0750 /var/lib/quire

# Setting names are the validation aliases of quire.settings.Settings. Binding 0.0.0.0 is
# required in a container: the Settings default (127.0.0.1) is unreachable from outside.
ENV QUIRE_DATA_DIR=/var/lib/quire \
    QUIRE_API_HOST=0.0.0.0 \
    QUIRE_API_PORT=8000

USER root
WORKDIR /var/lib/quire

EXPOSE 8000

# `quire api` takes host and port from QUIRE_API_HOST / QUIRE_API_PORT when no flags are given.
# Exec form: uvicorn is PID 1 and receives SIGTERM directly for a graceful shutdown.
CMD ["quire", "api"]
