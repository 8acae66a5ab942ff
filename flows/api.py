"""``freshrec serve``: the HTTP API and the web console, on FastAPI.

Reads are one Redis round trip, like an app's GET (``state/redis_store.py``);
``POST /events`` validates with the flow's own parser and produces to the
events topic, keyed by user (``operators/ingest.py``). The console
(``flows/console/``, static HTML and JS) is served at ``/``; its live
figures come from the flow's ``/metrics`` endpoints through ``GET /stats``.
The API's own Prometheus metrics are at ``GET /metrics``.
"""

from __future__ import annotations

import gc
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
import redis
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from swagger_ui_bundle import swagger_ui_path

from flows.settings import Settings
from operators.feeds import CatalogueTail
from operators.ingest import MAX_EVENTS, BadBody, EventProducer, check_body, kafka_reachable
from operators.kafka_io import KeyTail, ServiceError
from state import metrics
from state.keys import item_key, popular_key, user_key
from state.live import LiveStats
from state.redis_store import pick, redact

log = logging.getLogger(__name__)
CONSOLE = Path(__file__).parent / "console"
MAX_K = 1000

# Parameter types of the routes (module level: FastAPI resolves the annotations here).
Creds = Annotated[
    HTTPAuthorizationCredentials | None, Security(HTTPBearer(auto_error=False, description="a key of --api-keys-file"))
]
K = Annotated[int | None, Query(ge=1, le=MAX_K, description="at most this many items")]
Exclude = Annotated[str, Query(description="comma-separated items to leave out")]


def load_keys(path: str) -> dict[bytes, str]:
    """API keys from ``path``: one ``KEY [NAME]`` per line, ``#`` comments; key -> name (the name is what logs show).

    Raises ValueError naming the file and line of a bad entry.
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as ex:
        raise ValueError(f"--api-keys-file {path}: cannot read it ({ex.strerror})") from ex
    keys: dict[bytes, str] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) > 2 or len(fields[0]) < 16:
            raise ValueError(
                f"--api-keys-file {path} line {number}: expected 'KEY [NAME]' with a KEY of 16 characters or more"
            )
        key = fields[0].encode()
        if key in keys:
            raise ValueError(f"--api-keys-file {path} line {number}: this key is already on an earlier line")
        keys[key] = fields[1] if len(fields) == 2 else f"key-{len(keys) + 1}"
    if not keys:
        raise ValueError(f"--api-keys-file {path}: no key in it; one 'KEY [NAME]' per line")
    return keys


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


class _Timing:
    """ASGI middleware: ``freshrec_api_request_seconds`` and ``freshrec_api_responses_total`` by route template."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}  # labelled children, looked up once

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            series = self._series.get((route, status[0]))
            if series is None:
                series = metrics.API_SECONDS.labels(route), metrics.API_RESPONSES.labels(route, str(status[0]))
                self._series[route, status[0]] = series
            series[0].observe(time.perf_counter() - start)
            series[1].inc()


def from_env() -> FastAPI:
    """The app of the ``FRESHREC_*`` settings: what each worker process of ``freshrec serve`` runs."""
    return create_app(Settings.from_env())


def create_app(s: Settings) -> FastAPI:
    """The API for settings ``s`` (Redis, Kafka, keys, limits); raises ValueError on a bad setting."""
    keys = load_keys(s.api_keys_file) if s.api_keys_file else {}
    parse_config = s.parse_config()
    extra = s.kafka_extra()
    ns = s.namespace
    store = aioredis.Redis.from_url(s.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    producer = EventProducer(s.kafka, s.topic, extra, s.partitions)
    tail = KeyTail(s.kafka, s.topic, extra)
    live = LiveStats([u.strip() for u in s.flow_metrics.split(",") if u.strip()])
    items = CatalogueTail(s.kafka, s.items_topic, extra)
    catalogue = items.catalogue

    def keep(category: str = "") -> Callable[[str], bool] | None:
        if category and not len(catalogue):
            raise HTTPException(
                400,
                f"category= needs the item catalogue, and topic {s.items_topic} has no items yet: "
                "load one with `freshrec catalogue load FILE`",
            )
        return catalogue.keep(category)

    # async: a plain def dependency would run in a worker thread, a thread hop per request.
    async def require_key(credentials: Creds) -> None:
        if credentials is None:
            raise HTTPException(
                401, "an API key is needed: send 'Authorization: Bearer KEY'", headers={"WWW-Authenticate": "Bearer"}
            )
        token = credentials.credentials.encode()
        if not any(hmac.compare_digest(token, key) for key in keys):
            log.warning("request with an unknown API key refused (403)")
            raise HTTPException(403, "this API key is not valid")

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        log.info(
            "freshrec serve on http://%s:%d: Redis %s namespace %s, Kafka %s topic %s, %d API key(s), reads %s",
            s.host,
            s.port,
            redact(s.redis_url),
            ns,
            s.kafka,
            s.topic,
            len(keys),
            "need a key" if keys and s.api_reads == "key" else "open",
        )
        # Everything made at start-up moves to the permanent generation: a full
        # collection then only walks request garbage, not the whole of FastAPI,
        # pydantic and kafka-python (p99 of GET /recommend, bench/RESULTS.md).
        gc.collect()
        gc.freeze()
        items.start()
        live.start()
        yield
        live.stop()
        items.stop()
        await store.aclose()
        producer.close()
        tail.close()

    app = FastAPI(
        title="freshrec",
        summary="Fresh recommendations from Redis, events into Kafka.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served below from the swagger-ui-bundle package, not a CDN: /docs works offline
        redoc_url=None,
    )
    app.add_middleware(_Timing)
    # Open reads have no dependency at all (the cheapest request FastAPI can answer).
    Read = [Depends(require_key)] if keys and s.api_reads == "key" else []
    Write = [Depends(require_key)] if keys else []

    async def mget(*names: str) -> list[bytes | str | None]:
        try:
            return await store.mget(names)
        except redis.RedisError as ex:
            raise HTTPException(503, f"Redis at {redact(s.redis_url)} is unreachable: {ex}") from ex

    def split(text: str) -> list[str]:
        return [x for x in text.split(",") if x]

    @app.get("/recommend/{user}", dependencies=Read, tags=["read"])
    async def recommend(user: str, k: K = None, exclude: Exclude = "", category: str = "") -> Response:
        """The user's list (the popular list for an unknown user, ``"source"`` says which), as in Redis.

        Items the catalogue marks unavailable are left out, as are ``exclude``\\ d ones and,
        with ``category``, items of other categories.
        """
        mine, popular = await mget(user_key(ns, user), popular_key(ns))
        return _json({"user": user, **pick(mine, popular, "user", k, split(exclude), keep(category))})

    @app.get("/similar/{item}", dependencies=Read, tags=["read"])
    async def similar(item: str, k: K = None, exclude: Exclude = "", category: str = "") -> Response:
        """The items most similar to ``item`` (the popular list for an item without one)."""
        mine, popular = await mget(item_key(ns, item), popular_key(ns))
        return _json({"item": item, **pick(mine, popular, "item", k, [item, *split(exclude)], keep(category))})

    @app.get("/popular", dependencies=Read, tags=["read"])
    async def popular(k: K = None, exclude: Exclude = "", category: str = "") -> Response:
        """The decayed-popular list."""
        (raw,) = await mget(popular_key(ns))
        return _json(pick(raw, None, "popular", k, split(exclude), keep(category)))

    @app.get("/inspect/{user}", dependencies=Read, tags=["console"])
    async def inspect(user: str, k: K = 10, similar_k: Annotated[int, Query(ge=0, le=50)] = 5) -> Response:
        """The console's user view: the list, and the similar items of each listed item (two round trips)."""
        mine, popular = await mget(user_key(ns, user), popular_key(ns))
        allowed = keep()
        doc = pick(mine, popular, "user", k, keep=allowed)
        lists = await mget(*(item_key(ns, i) for i in doc["items"])) if doc["items"] and similar_k else []
        doc["similar"] = {
            i: pick(raw, None, "item", similar_k, [i], allowed)["items"] for i, raw in zip(doc["items"], lists) if raw
        }
        return _json({"user": user, **doc})

    @app.get("/users/{user}/events", dependencies=Read, tags=["console"])
    async def user_events(user: str, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> Response:
        """The user's newest events in the topic (from the last 5,000 messages of its partition), newest first."""
        try:
            found = await run_in_threadpool(tail.newest, user.encode(), limit)
        except ServiceError as ex:
            raise HTTPException(503, str(ex)) from ex
        events = []
        for ts, value in found:
            try:
                event = orjson.loads(value)
            except orjson.JSONDecodeError:
                event = value.decode("utf-8", "replace")
            events.append({"kafka_ts": ts, "event": event})
        return _json({"user": user, "events": events})

    @app.post("/events", dependencies=Write, tags=["write"])
    async def post_events(request: Request) -> Response:
        """One event object, or a JSON array of up to 1,000, in the event schema of the topic.

        Valid events are produced to the topic keyed by user; the answer comes once Kafka has them.
        Invalid ones are answered in ``rejected`` (``index`` in the body, ``reason_code``, ``reason``).
        """
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > s.max_body_bytes:
            raise HTTPException(413, f"the body is {declared} bytes; at most {s.max_body_bytes} (--max-body-bytes)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > s.max_body_bytes:
                raise HTTPException(413, f"the body is over {s.max_body_bytes} bytes (--max-body-bytes)")
            chunks.append(chunk)
        try:
            checked = check_body(b"".join(chunks), parse_config, MAX_EVENTS)
        except BadBody as ex:
            raise HTTPException(ex.status, str(ex)) from ex
        for r in checked.rejected:
            metrics.API_EVENTS.labels("rejected", r["reason_code"]).inc()
        try:
            await run_in_threadpool(producer.send, checked.accepted)
        except ServiceError as ex:
            raise HTTPException(503, str(ex)) from ex
        return _json({"accepted": len(checked.accepted), "rejected": checked.rejected})

    @app.get("/stats", dependencies=Read, tags=["console"])
    async def stats() -> Response:
        """The flow's live figures (events/s, freshness p50/p99, lag, hit-rate@10), one point a second, oldest first."""
        return _json({"endpoints": live.urls, "points": await run_in_threadpool(live.series)})

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> Response:
        """The process is up."""
        return _json({"status": "ok"})

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> Response:
        """Redis and Kafka are reachable and the catalogue was read to its end (503 and what is missing, otherwise)."""
        problems = {}
        try:
            await store.ping()
        except redis.RedisError as ex:
            problems["redis"] = f"{redact(s.redis_url)}: {ex}"
        kafka = await run_in_threadpool(kafka_reachable, s.kafka, extra)
        if kafka:
            problems["kafka"] = kafka
        elif not items.caught_up.is_set():
            problems["catalogue"] = f"still reading {s.items_topic} ({len(catalogue)} items so far)"
        return _json({"status": "not ready", **problems} if problems else {"status": "ready"}, 503 if problems else 200)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def api_metrics() -> Response:
        return Response(generate_latest(metrics.API_REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="freshrec API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(CONSOLE / "index.html")

    app.mount("/console", StaticFiles(directory=CONSOLE), name="console")
    return app
