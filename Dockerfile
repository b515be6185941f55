# The service against an external PostgreSQL (14+). Build: docker build -t timebank .
# Run:  docker run -e TIMEBANK_DATABASE_URL=postgresql://timebank_app@db/timebank \
#         -e TIMEBANK_MIGRATION_DATABASE_URL=postgresql://timebank_owner@db/timebank \
#         -p 8000:8000 timebank
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TIMEBANK_DATA_DIR=/var/lib/timebank
WORKDIR /srv/timebank

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
# Editable: the migrations folder and alembic.ini stay beside the package.
RUN pip install --no-cache-dir -e . \
    && useradd --system --home /var/lib/timebank timebank \
    && mkdir -p /var/lib/timebank && chown timebank /var/lib/timebank

USER timebank
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c \
    "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
# `serve` migrates (as TIMEBANK_MIGRATION_DATABASE_URL, the owner role) before serving.
CMD ["timebank", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
