# Production image: the service only (no test tools, no compiler), run as a non-root user. See docs/deployment.md.
#
# Stage 1 builds everything that needs a toolchain: the venv (llama-cpp-python compiled for any AVX2 CPU by
# scripts/setup, never for the build machine's CPU) and the widget bundle (Node.js).
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
# The service's dependencies only; the local model is proved by `lorechat serve` on the CPU that runs it.
RUN LORECHAT_SETUP_EXTRAS= LORECHAT_SETUP_DOCTOR=0 scripts/setup \
    && rm -rf frontend/node_modules .venv/setup-logs /root/.cache \
    && mkdir -p data

# Stage 2: the runtime, without compilers or Node.js. The venv lives at the same path as in the build stage
# (its scripts name their interpreter by absolute path).
FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --uid 10001 lorechat
WORKDIR /app
COPY --from=build --chown=lorechat:lorechat /app /app
USER lorechat
ENV LORECHAT_SERVER__HOST=0.0.0.0 \
    LORECHAT_DATA_DIR=/app/data \
    PATH=/app/.venv/bin:$PATH
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["lorechat", "serve"]
