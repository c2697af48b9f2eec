# The intraday image: one image for every production entry point (docker-compose.yml picks the
# subcommand): intraday worker | sink | dashboard | migrate | replay ...
#
# The migrations are read at runtime from sql/ next to the package (intraday/sink/db.py: SQL_DIR is
# <repo>/sql), so the whole source tree is kept in /app and installed editable; a plain
# `pip install .` would leave sql/ behind.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies in their own layer: rebuilt only when pyproject.toml changes.
COPY pyproject.toml /app/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The whole tree (packages and sql/; .dockerignore keeps out .venv, .git, state and caches).
COPY . /app
RUN pip install --no-deps -e /app \
    && python -m compileall -q /app/intraday

# Non-root; its home is the writable state directory (Faust worker data, embedded-mode state).
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/intraday \
        --shell /usr/sbin/nologin intraday
ENV INTRADAY_STATE_DIR=/var/lib/intraday \
    INTRADAY_WORKER_DATADIR=/var/lib/intraday/worker
USER intraday
WORKDIR /var/lib/intraday

EXPOSE 8050
ENTRYPOINT ["intraday"]
CMD ["--help"]
