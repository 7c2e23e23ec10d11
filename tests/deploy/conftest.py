"""The deployment tests run the HTTP suite's replicas: its ingested index, this run's PostgreSQL database, Redis
and the scripted upstream, imported (not copied) from tests/backend/api/conftest.py."""

from tests.backend.api.conftest import api_index, api_pg_url, api_redis_url, fake, upstream

__all__ = ["api_index", "api_pg_url", "api_redis_url", "fake", "upstream"]
