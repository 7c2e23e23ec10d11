# Production image: the service with PostgreSQL, Redis and a Qdrant server from docker-compose.yml.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN scripts/setup
ENV LORECHAT_SERVER__HOST=0.0.0.0
EXPOSE 8000
CMD [".venv/bin/lorechat", "serve"]
