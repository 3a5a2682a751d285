"""One typed Settings object, read once from the environment."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """A configuration value is missing or malformed."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit the API enforces, in one place."""

    max_page_size: int = 100
    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 5_000
    max_query_cost: int = 50_000
    max_name_length: int = 200
    max_headline_length: int = 300
    max_text_length: int = 10_000
    max_slug_length: int = 80
    max_sports: int = 10
    max_list_input: int = 100
    max_capacity: int = 500
    max_duration_weeks: int = 104
    max_body_bytes: int = 1_000_000
    # doors: what an HTTP request or WebSocket message may carry, and how slowly a body may come
    # (a piece at least every body_read_timeout_ms; after that grace, on average at least
    # body_min_bytes_per_second); JSON nesting counts every level, the body's own included
    max_header_bytes: int = 32_768  # all request headers together
    max_header_bytes_each: int = 8_192  # one header, name and value
    max_json_depth: int = 64
    body_read_timeout_ms: int = 10_000
    body_min_bytes_per_second: int = 4_096
    rate_limit_per_minute: int = 6_000
    rate_limit_burst: int = 600
    max_matches: int = 50
    gc_young_threshold: int = 50_000  # allocations between young collections (gc_tuning)
    match_candidates: int = 30
    # the learned collaborative signal (coachgraph.graph.collab): vector size, the candidates it
    # adds to the graph's, athletes per statement of a full rebuild, and the half-life of an
    # assignment's or enrollment's weight
    collab_dims: int = 128
    collab_candidates: int = 30  # coaches nearest by vector, added to the graph's candidates
    collab_rebuild_chunk: int = 2_000
    collab_half_life_days: int = 365
    # the blend's weights, fitted by `reindex --vectors` on the latest assignments of this many
    # athletes, at most this share of those assigned (the rest is the history the fit learns
    # from; coachgraph.graph.blend); with fewer than the minimum, the content weights;
    # matchCoaches re-reads the stored fit at most every `collab_weights_ttl_seconds`
    collab_fit_samples: int = 2_000
    collab_fit_share_percent: int = 20
    collab_fit_min_samples: int = 200
    collab_weights_ttl_seconds: int = 300
    projector_batch: int = 500
    # media: bytes per kind, URL lifetimes, and how long an unfinished upload may linger
    # (decimal units: 2 GB fits GraphQL's 32-bit Int, which sizeBytes is in API.md)
    max_avatar_bytes: int = 10_000_000
    max_image_bytes: int = 10_000_000
    max_video_bytes: int = 2_000_000_000
    max_document_bytes: int = 50_000_000
    media_upload_ttl_seconds: int = 900
    media_download_ttl_seconds: int = 900
    media_pending_max_age_seconds: int = 86_400
    media_purge_interval_seconds: int = 3_600
    # search
    max_search_length: int = 200
    max_search_words: int = 8
    # search cursors are offsets into the ranked matches; a deep one makes the backend rank every
    # match before it (Elasticsearch's max_result_window is the same idea and number)
    max_search_offset: int = 10_000
    search_candidates: int = 1_000  # matches ranked per query (Postgres); a prefix can match most
    search_facet_limit: int = 10_000  # facets are exact up to this many matches (Postgres)
    search_min_prefix: int = 2  # shorter words match whole words only (Postgres)
    meili_max_total_hits: int = 100_000  # exact counts and deepest page (Meilisearch)
    meili_task_timeout_ms: int = 120_000
    # personal ranking: an athlete's top text matches, re-ranked by graph fit to its goals
    personal_rank_window: int = 50
    personal_rank_weight_percent: int = 35  # of the blended score; text relevance is the rest
    # coaching depth: compliance windows, questionnaires and their answers, leaderboards
    max_compliance_days: int = 366
    max_questions: int = 50  # per questionnaire
    max_question_choices: int = 30
    max_answer_length: int = 2_000  # a TEXT answer's characters, and its max bound
    max_answer_history: int = 100  # answers to one question over time, per request
    max_leaderboard_size: int = 100
    # live sessions
    max_samples_per_batch: int = 1_000
    max_ndjson_lines: int = 50_000
    max_ndjson_line_bytes: int = 1_000
    ndjson_copy_chunk: int = 10_000  # lines per COPY; the next chunk parses meanwhile
    # wearable files (POST /ingest/sessions/{id}/files: FIT, TCX, GPX), read whole, then parsed
    max_wearable_file_bytes: int = 16_777_216  # 16 MiB: a 10-hour TCX at 1 Hz is about 10
    max_wearable_file_samples: int = 200_000  # 4 kinds at 1 Hz for almost 14 hours
    # the live session page (GET /live/sessions/{id}): heart-rate zones Z1..Z5 start at
    # 50, 60, 70, 80 and 90 % of this maximum (bpm)
    live_page_max_heart_rate: int = 190
    max_sample_page: int = 5_000
    max_series_buckets: int = 10_000
    subscriber_queue: int = 256  # broker messages (one per ingested batch) per subscriber
    stream_max_length: int = (
        100_000  # entries the shared Redis stream keeps (history is in Postgres)
    )
    # live matches: a projector batch is announced with the ids it changed, up to this many
    # (more: "everything changed"); a matchUpdates subscriber that a change concerns waits this
    # long for more to arrive, then recomputes once for all of them
    graph_change_max_ids: int = 500
    match_update_coalesce_ms: int = 50
    # store outages: a store that does not answer within store_timeout_ms is unavailable
    # (healthz checks, Redis and graph calls); background work (projector, Redis reader, the
    # projector's LISTEN connection) retries with exponential backoff from store_retry_initial_ms
    # doubling up to store_retry_max_ms
    store_timeout_ms: int = 2_000
    graph_query_timeout_ms: int = 30_000
    store_retry_initial_ms: int = 100
    store_retry_max_ms: int = 5_000
    # rate limits per client (token subject, else peer address) and door, shared through Redis
    # when REDIS_URL is set; rate_limit_per_minute/_burst above are GraphQL over HTTP. A burst
    # is the most in any one second; every request counts, refusals (401, 413...) too.
    ws_operation_rate_per_minute: int = 6_000  # subscribe/start messages over WebSocket
    ws_operation_rate_burst: int = 600
    ws_connect_rate_per_minute: int = 600  # WebSocket handshakes per peer address
    ws_connections_per_client: int = 256  # open at once, per process
    ingest_rate_per_minute: int = 1_200
    ingest_rate_burst: int = 120
    media_rate_per_minute: int = 6_000  # signed upload and download routes
    media_rate_burst: int = 600
    # how a client is told apart, and the rate limiter's own Redis (fallback: counted in-process)
    max_token_chars: int = 8_192  # a longer Authorization header is not decoded: the address counts
    max_forwarded_hops: int = 32  # X-Forwarded-For hops looked at behind trusted proxies
    limiter_redis_timeout_ms: int = 1_000  # per command and per connect
    limiter_local_fallback_ms: int = 5_000  # after Redis fails, count in-process this long
    # GraphQL documents: parsed and validated documents remembered, per process
    parser_cache_size: int = 256
    validation_cache_size: int = 256
    plan_cache_size: int = 256  # compiled operations (coachgraph.engine)
    # graph: the Neo4j driver, the projector's own connection, rebuilds, skill paths
    neo4j_pool_size: int = 50  # driver connections
    neo4j_connect_timeout_ms: int = 30_000  # to connect, and to wait for a pooled connection
    projector_connect_timeout_ms: int = 10_000  # to open (and close) its LISTEN connection
    graph_rebuild_chunk: int = 20_000  # records read per statement when the graph is rebuilt
    skill_path_max_programs: int = 10  # programs suggested along a skill path
    # search: rebuilds (both backends), spelling corrections and facet values (Postgres),
    # Meilisearch's HTTP calls and facet values
    search_rebuild_batch: int = 5_000  # records per statement when an index is rebuilt
    search_max_corrections: int = 3  # closest spellings that stand in for an unknown word
    search_facet_cache_size: int = 100_000  # distinct (sports, city, level) combinations kept
    meili_request_timeout_seconds: int = 30  # one HTTP call to Meilisearch (whole seconds)
    meili_max_facet_values: int = 100  # distinct values counted per facet
    # broker: the Redis stream reader (one per process)
    redis_read_block_ms: int = 1_000  # how long one XREAD waits for new entries
    redis_read_count: int = 1_000  # entries one XREAD takes at most
    redis_read_linger_ms: int = 5  # after a read that did not fill: wait before the next
    # media: local files are read and written in chunks (one worker-thread hop each); stale
    # PENDING uploads are purged in batches
    media_io_chunk_bytes: int = 1_048_576  # 1 MiB
    media_cache_max_age_seconds: int = 60  # Cache-Control: private, max-age= on a download
    media_purge_batch: int = 500  # stale uploads removed per statement
    # data lifecycle (issue 15): raw samples kept this many days in daily partitions (created
    # this many days ahead), then rolled up into 1-minute buckets kept `rollup_retention_days`;
    # the retention job runs every `retention_interval_seconds`, sessions per stray batch
    raw_sample_retention_days: int = 30
    rollup_retention_days: int = 365
    metric_partitions_ahead_days: int = 7
    retention_interval_seconds: int = 86_400
    retention_batch: int = 500
    # erasures left pending by a crash or an outage are finished, and other replicas' learnt
    # (their athletes' tokens refused), this often
    erasure_resume_interval_seconds: int = 5
    # data exports: how long the signed download URL works; samples written per piece
    export_url_ttl_seconds: int = 900
    export_chunk_rows: int = 1_000
    # live sessions: how far a sample's time may lie before its session's start or after now
    sample_clock_slack_ms: int = 5_000
    # protocols (API.md): operations in one batched request (each counted as a request by the
    # rate limiter); automatic persisted queries remembered (per process, and in Redis with
    # REDIS_URL, shared); how long a shared cache may keep an anonymous persisted GET answer
    max_batch_size: int = 20
    persisted_queries_max: int = 10_000
    persisted_get_max_age_seconds: int = 60
    # metrics: distinct operation names kept as labels; later ones are counted as "other"
    metrics_max_operations: int = 200


@dataclass(frozen=True, slots=True)
class Settings:
    """Configuration of one coachgraph process; unset service URLs mean embedded defaults."""

    data_dir: Path
    jwt_secret: str | None = None
    jwt_ttl_seconds: int = 3600
    database_url: str | None = None
    db_pool_min: int = 2
    db_pool_max: int = 10
    neo4j_uri: str | None = None
    neo4j_user: str | None = None
    neo4j_password: str | None = None
    neo4j_database: str | None = None
    meili_url: str | None = None
    meili_api_key: str | None = None
    meili_index: str = "coachgraph"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    aws_region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    public_url: str | None = None
    redis_url: str | None = None
    # peers whose X-Forwarded-For is believed (COACHGRAPH_TRUSTED_PROXIES); none by default
    trusted_proxies: tuple[IPNetwork, ...] = ()
    graphiql: bool = True
    # operations run through compiled plans (coachgraph.engine); off: graphql-core for all
    compiled_execution: bool = True
    # matchCoaches blends in the learned collaborative signal (graph/collab.py) with the weights
    # fitted on this deployment's history (graph/blend.py; content weights until a fit finds
    # the blend better): on by default; off, the content ranking whatever was fitted
    learned_matching: bool = True
    # the garbage collector tuned for a server (COACHGRAPH_GC_TUNING): what start-up built is
    # frozen out of every collection (the embedded graph is millions of objects), and young
    # collections wait for `gc_young_threshold` allocations, not 700: a request's response
    # dicts live until it is encoded, and counting alone frees them
    gc_tuning: bool = True
    # log lines as text, or one JSON object per line with the request id (COACHGRAPH_LOG_FORMAT)
    log_format: str = "text"
    # OpenTelemetry traces (the [otel] extra; exporter from the OTEL_* variables): off by default
    tracing: bool = False
    projector_poll_seconds: float = 1.0
    neo4j_write_batch: int = 1000
    limits: Limits = field(default_factory=Limits)
    # the persisted-query manifest of trusted documents: only its operations run
    trusted_documents: Path | None = None
    # serve: worker processes on one port (COACHGRAPH_WORKERS: a number, or `auto` for the
    # cores this process may run on), and this process's index among them (the supervisor
    # sets it: worker 0 feeds the search sink)
    workers: int = 1
    worker_index: int = 0
    # the broker (COACHGRAPH_BROKER: memory, postgres or redis); unset: redis with REDIS_URL,
    # postgres with more than one worker, else memory
    broker: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment; raise SettingsError with a clear message."""
        env = os.environ if env is None else env

        def opt(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        settings = cls(
            data_dir=Path(opt("COACHGRAPH_DATA_DIR") or default_data_dir()).expanduser(),
            jwt_secret=opt("COACHGRAPH_JWT_SECRET"),
            jwt_ttl_seconds=_int(env, "COACHGRAPH_JWT_TTL", 3600, minimum=60),
            database_url=opt("DATABASE_URL"),
            db_pool_min=_int(env, "COACHGRAPH_DB_POOL_MIN", 2, minimum=1),
            db_pool_max=_int(env, "COACHGRAPH_DB_POOL_MAX", 10, minimum=1),
            neo4j_uri=opt("NEO4J_URI"),
            neo4j_user=opt("NEO4J_USER"),
            neo4j_password=opt("NEO4J_PASSWORD"),
            neo4j_database=opt("NEO4J_DATABASE"),
            neo4j_write_batch=_int(env, "COACHGRAPH_NEO4J_WRITE_BATCH", 1000, minimum=1),
            meili_url=opt("MEILI_URL"),
            meili_api_key=opt("MEILI_API_KEY"),
            meili_index=opt("MEILI_INDEX") or "coachgraph",
            s3_bucket=opt("S3_BUCKET"),
            s3_endpoint_url=opt("S3_ENDPOINT_URL"),
            aws_region=opt("AWS_REGION"),
            aws_access_key_id=opt("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=opt("AWS_SECRET_ACCESS_KEY"),
            public_url=opt("COACHGRAPH_PUBLIC_URL"),
            redis_url=opt("REDIS_URL"),
            trusted_proxies=_networks(env, "COACHGRAPH_TRUSTED_PROXIES"),
            graphiql=_bool(env, "COACHGRAPH_GRAPHIQL", True),
            compiled_execution=_bool(env, "COACHGRAPH_COMPILED_EXECUTION", True),
            learned_matching=_bool(env, "COACHGRAPH_LEARNED_MATCHING", True),
            gc_tuning=_bool(env, "COACHGRAPH_GC_TUNING", True),
            log_format=_choice(env, "COACHGRAPH_LOG_FORMAT", ("text", "json")),
            tracing=_bool(env, "COACHGRAPH_TRACING", False),
            projector_poll_seconds=_int(env, "COACHGRAPH_PROJECTOR_POLL_MS", 1000, minimum=10)
            / 1000,
            limits=_limits(env),
            trusted_documents=_path(opt("COACHGRAPH_TRUSTED_DOCUMENTS")),
            workers=workers_from(opt("COACHGRAPH_WORKERS"), name="COACHGRAPH_WORKERS"),
            broker=_choice(env, "COACHGRAPH_BROKER", BROKERS) if opt("COACHGRAPH_BROKER") else None,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse inconsistent settings at start rather than at the first request."""
        if self.db_pool_min > self.db_pool_max:
            raise SettingsError("COACHGRAPH_DB_POOL_MIN must not exceed COACHGRAPH_DB_POOL_MAX")
        if self.database_url and not self.database_url.startswith(("postgres://", "postgresql://")):
            raise SettingsError("DATABASE_URL must be a postgresql:// URL")
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < 32:
            # RFC 7518 3.2: an HS256 key at least as long as the hash
            raise SettingsError("COACHGRAPH_JWT_SECRET must be at least 32 bytes")
        if self.jwt_secret is not None and is_known_secret(self.jwt_secret):
            # anyone who read the docs or the compose file could sign an admin token with it
            raise SettingsError(
                "COACHGRAPH_JWT_SECRET is a published placeholder; generate one, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        if self.s3_endpoint_url and not self.s3_bucket:
            raise SettingsError("S3_ENDPOINT_URL is set but S3_BUCKET is not")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise SettingsError("COACHGRAPH_PUBLIC_URL must be an http(s):// URL")
        if self.limits.media_download_ttl_seconds > 900:
            raise SettingsError("media download URLs must expire within 15 minutes (900 s)")
        if self.limits.personal_rank_weight_percent > 100:
            raise SettingsError("COACHGRAPH_LIMIT_PERSONAL_RANK_WEIGHT_PERCENT is a percentage")
        if self.meili_url and not self.meili_url.startswith(("http://", "https://")):
            raise SettingsError("MEILI_URL must be an http(s):// URL")
        if self.broker == "redis" and not self.redis_url:
            raise SettingsError("COACHGRAPH_BROKER=redis needs REDIS_URL")

    @property
    def broker_name(self) -> str:
        """The broker in use: COACHGRAPH_BROKER, else redis with REDIS_URL, postgres with more
        than one worker (they share nothing else), else the in-process one."""
        if self.broker:
            return self.broker
        if self.redis_url:
            return "redis"
        return "postgres" if self.workers > 1 else "memory"

    def with_(self, **changes: object) -> Settings:
        """A copy with some values changed (tests and the CLI use this)."""
        return replace(self, **changes)  # type: ignore[arg-type]


_PLACEHOLDER = re.compile(r"change[-_ ]?me|replace[-_ ]?me|your[-_ ]?secret|^(.)\1*$", re.I)


def is_known_secret(secret: str) -> bool:
    """A placeholder from documentation or examples ("change-me-…"), or one repeated character."""
    return bool(_PLACEHOLDER.search(secret.strip()))


MAX_WORKERS = 64
BROKERS = ("memory", "postgres", "redis")


def workers_from(text: str | None, *, name: str = "--workers") -> int:
    """A worker count: a number from 1 to MAX_WORKERS, or `auto` (the cores this process may
    run on); unset: 1."""
    if text is None:
        return 1
    if text.strip().lower() == "auto":
        return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))
    try:
        count = int(text)
    except ValueError:
        raise SettingsError(
            f"{name} must be a number from 1 to {MAX_WORKERS} or `auto`, got {text!r}"
        ) from None
    if not 1 <= count <= MAX_WORKERS:
        raise SettingsError(
            f"{name} must be a number from 1 to {MAX_WORKERS} or `auto`, got {count}"
        )
    return count


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "coachgraph"


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _path(raw: str | None) -> Path | None:
    return Path(raw).expanduser() if raw else None


def _networks(env: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    """Comma-separated addresses or CIDR blocks ("10.0.0.0/8, 127.0.0.1, ::1")."""
    found: list[IPNetwork] = []
    for part in env.get(name, "").split(","):
        if not part.strip():
            continue
        try:
            found.append(ipaddress.ip_network(part.strip()))
        except ValueError as err:
            raise SettingsError(
                f"{name} must be comma-separated IP addresses or CIDR blocks; {err}"
            ) from None
    return tuple(found)


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (case-insensitive); unset means the first."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return choices[0]
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be a boolean, got {raw!r}")


LIMIT_PREFIX = "COACHGRAPH_LIMIT_"


def _limits(env: Mapping[str, str]) -> Limits:
    """Each limit may be overridden by COACHGRAPH_LIMIT_<NAME>; any other COACHGRAPH_LIMIT_
    variable is a misspelling, refused rather than silently ignored."""
    defaults = Limits()
    known = [f"{LIMIT_PREFIX}{f.name.upper()}" for f in fields(Limits)]
    for name in sorted(set(env) - set(known)):
        if name.upper().startswith(LIMIT_PREFIX):
            names = [f.name.upper() for f in fields(Limits)]
            close = difflib.get_close_matches(name.upper().removeprefix(LIMIT_PREFIX), names, n=1)
            hint = f"; did you mean {LIMIT_PREFIX}{close[0]}?" if close else ""
            raise SettingsError(f"{name} is not a known limit{hint}")
    values = {
        f.name: _int(env, f"{LIMIT_PREFIX}{f.name.upper()}", getattr(defaults, f.name), minimum=1)
        for f in fields(Limits)
    }
    return Limits(**values)
