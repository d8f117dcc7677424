"""``create_app(settings, archive, cache)``: the Starlette application and its shared resources.

Owns the two bounded thread pools (CPU work sized to the cores; blocking I/O: index queries and file
reads), so nothing blocking runs on the event loop or in Starlette's shared pool. Routes live in one
module per DICOMweb transaction family. Must not hold domain logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, Router

from archive import parsepool
from archive.access import AccessStore
from archive.allocator import tune_allocator
from archive.audit import AuditLog
from archive.errors import NotFound
from archive.index import InstanceRecord
from archive.records import RecordCache
from archive.renditions import RenditionPolicy, RenditionWorker
from archive.service import Archive
from cache.frames import DecodedFrameCache
from cache.metrics import exposition
from cache.prefetch import Prefetcher
from cache.singleflight import SingleFlight
from cache.tiered import TieredCache
from render import kernels
from web import access, errors, openapi, qido, rendered, stow, stream, tiles, viewer, wado
from web.auth import Authenticator, SecurityMiddleware, protect
from web.cpupool import CpuPool
from web.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
DICOMWEB_ROOT = "/dicomweb"


def cpu_threads_for(cores: int, processes: int) -> int:
    """CPU-pool threads of one server process: one more than its share of the cores (rounded up)."""
    return -(-cores // max(1, processes)) + 1


class Runtime:
    """What request handlers share: settings, the archive, the cache and the thread pools."""

    def __init__(self, settings: Settings, archive: Archive, cache: TieredCache | None = None) -> None:
        self.settings = settings
        self.archive = archive
        self.cache = cache or TieredCache.build(
            memory_bytes=settings.cache_memory_bytes,
            redis_url=settings.redis_url,
            ttl_seconds=settings.cache_ttl_seconds,
        )
        self.decoded = DecodedFrameCache(settings.decoded_cache_bytes)
        self.flight = SingleFlight(self.cache, io=self.io)
        self.prefetch = Prefetcher()
        # Per-process memory of what prefetch already did: series warmed (id, parameters) and the
        # reading order of recently opened series (when checked, the index generation it was read at).
        self.warmed: set[tuple[str, str, str]] = set()
        # Warming a whole series pays off only where every request can use it: one process, or a
        # shared Redis cache. Separate processes without one would each render the series again, and
        # beside a viewer streaming that series from another process they doubled its time to full
        # resolution (bench/viewer_bench.py: 2.9 s to 4.5 s). Neighbours are warmed in any case.
        # (0 = not decided here: ``tessera serve`` resolves it to the core count before deciding to
        # start worker processes, so an app created with 0 runs in one process.)
        processes = settings.workers or 1
        self.warm_series = bool(settings.redis_url) or processes == 1
        self.series_cache: dict[str, tuple[float, int, list[Any]]] = {}
        # Instance records for the event loop's thread, valid until the index changes.
        self.records = RecordCache(lambda: self.archive.index.data_version())
        self.cores = os.cpu_count() or 2
        # One thread more than this process's share of the cores: each job holds the GIL between
        # its GIL-free stretches (reading the frame, numpy set-up, handing over the result) and the
        # event loop holds it while serving HTTP, so with one thread per core a core sat idle
        # waiting for the GIL: rendered JPEG-LS at concurrency 16 (wrk over the render benchmark's
        # series, one process, caches off, interleaved A/B over four rounds) gave 186-202 frames/s
        # at 169-173% CPU with 2 threads, 206-215 at 184-186% with 3. With several processes the
        # others fill those gaps, and more threads only add switches and smaller result batches:
        # two processes on two cores, 2 threads each against 3 (`bench/render_ab.py --workers 2
        # A= B=TESSERA_CPU_THREADS:2`) were faster in 10 of 11 interleaved rounds, medians +4%
        # and +1.6% over two runs.
        self.cpu_threads = settings.cpu_threads or cpu_threads_for(self.cores, processes)
        # Under a backlog, results go to the loop in batches (web/cpupool.py): a batch of two rounds
        # of the threads is rarely filled at the rendering rates here, so mostly the timer or the
        # queue getting shorter than a round ends one.
        hold_ms = settings.cpu_hold_ms
        self.cpu_pool = CpuPool(self.cpu_threads, "tessera-cpu", batch=2 * self.cpu_threads if hold_ms > 0 else 1,
                                max_hold=hold_ms / 1000)
        # I/O waits (disk, SQLite) do not use a core: more threads keep the disk queue full.
        self.io_threads = max(8, 4 * self.cores)
        self.io_pool = ThreadPoolExecutor(self.io_threads, thread_name_prefix="tessera-io")
        self.ready = False
        # Who may do what (tokens, share links, grants) and the append-only audit trail.
        self.access = AccessStore(settings.data)
        self.audit = AuditLog(settings.data / "audit")
        self.authenticator = Authenticator(self.access, settings, self.io)
        # Background HTJ2K transcoder (archive/renditions.py), started once ready; lowest priority.
        self.renditions: RenditionWorker | None = None
        if settings.renditions:
            self.renditions = RenditionWorker(
                archive,
                RenditionPolicy.from_modalities(settings.rendition_modalities),
                cpu=self.cpu,
                io=self.io,
                busy=lambda: self.prefetch.busy,
                threads=settings.rendition_threads,
            )

    async def cpu(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # A caller that stops waiting (a cancelled stream) leaves a started job running, counted in
        # ``cpu_pool.pending`` until it ends; a job not started yet is skipped.
        return await self.cpu_pool.submit(partial(fn, *args, **kwargs))

    def frame_threads(self) -> int:
        """Threads one frame's decode may use now: every CPU thread when the pool has nothing else
        to do (a lone cold JPEG 2000 frame then decodes in half the time), else one. Other worker
        processes are not counted: at worst the two cores are briefly oversubscribed."""
        return min(self.cpu_threads, self.cores) if self.cpu_pool.pending == 0 else 1

    async def io(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.io_pool, partial(fn, *args, **kwargs))

    async def on_frame_source(
        self, record: InstanceRecord, frame: int, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """``fn(data, frame_info, *args, **kwargs)`` in the CPU pool on what ``render_source`` gives for
        ``frame``. Local storage reads are page-cache copies of a frame's bytes, cheaper than a second
        pool trip (0.11 ms of CPU and 0.15 ms of latency here): the CPU thread reads them itself.
        Other storage reads in the I/O pool first."""
        if self.archive.storage.local_reads:
            return await self.cpu(_on_source, self.archive, record, frame, fn, *args, **kwargs)
        data, info = await self.io(self.archive.render_source, record, frame)
        return await self.cpu(fn, data, info, *args, **kwargs)

    async def record(self, study: str, series: str, sop: str) -> InstanceRecord:
        """The instance's index record; from memory while the index is unchanged (no pool trip),
        else looked up, and then its whole series loaded behind it. Raises NotFound."""
        record = self.records.get(study, series, sop)
        if record is not None:
            return record
        version = self.records.version()
        record = await self.io(self.archive.index.instance, study, series, sop)
        self.records.fill(version, [record])
        if self.records.claim_series(study, series):
            task = asyncio.ensure_future(self._load_series(version, study, series))
            task.add_done_callback(partial(self._series_loaded, study, series))
        return record

    async def _load_series(self, version: int, study: str, series: str) -> None:
        records = await self.io(self.archive.index.instances, study, series)
        self.records.fill(version, records, series=(study, series))

    def _series_loaded(self, study: str, series: str, task: asyncio.Future[None]) -> None:
        # A done callback, so the claim is released even for a task cancelled before it started.
        self.records.release_series(study, series)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, NotFound):  # a series deleted meanwhile is no news
            log.warning("loading a series' records failed: %s", exc)

    async def start_threads(self) -> None:
        """Start every pool thread now rather than on the first requests, each I/O thread with its
        index connection open (about a millisecond each). Every task waits until all of its pool's
        run, so each lands on a thread of its own."""

        async def start(run: Callable[..., Any], n: int, fn: Callable[[], object]) -> None:
            barrier = threading.Barrier(n)

            def task() -> None:
                fn()
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait(timeout=5)

            await asyncio.gather(*(run(task) for _ in range(n)))

        await start(self.io, self.io_threads, self.archive.index.generation)
        await start(self.cpu, self.cpu_threads, lambda: None)

    async def aclose(self) -> None:
        if self.renditions is not None:
            await self.renditions.aclose()
        await self.prefetch.aclose()
        await self.flight.drain()
        self.cache.close()
        self.shutdown()
        self.archive.index.close()
        self.access.close()
        self.audit.close()
        self.authenticator.close()

    def shutdown(self) -> None:
        self.cpu_pool.shutdown()
        self.io_pool.shutdown(wait=False, cancel_futures=True)


def _on_source(
    archive: Archive, record: InstanceRecord, frame: int, fn: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    data, info = archive.render_source(record, frame)
    return fn(data, info, *args, **kwargs)


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def base_url(request: Request) -> str:
    """The DICOMweb root as the client reached it, for RetrieveURL and BulkDataURI.

    TESSERA_PUBLIC_URL wins when set (behind a reverse proxy). Otherwise the Host header; when it has
    no port although the server listens on a non-default one (dicomweb-client sends such a Host),
    the listening port is added so the URL still works.
    """
    public = runtime(request).settings.public_url
    if public:
        return public.rstrip("/") + DICOMWEB_ROOT
    url = request.base_url
    server = request.scope.get("server")
    if url.port is None and server and server[1] not in (80, 443) and "x-forwarded-host" not in request.headers:
        url = url.replace(port=server[1])
    return str(url).rstrip("/") + DICOMWEB_ROOT


async def metrics_route(request: Request) -> Response:
    rt = runtime(request)
    body, content_type = exposition(request.headers.get("accept"), rt.settings.metrics_dir or None)
    return Response(body, media_type=content_type)


async def healthz(request: Request) -> Response:
    rt = runtime(request)
    if not rt.ready:
        return PlainTextResponse("starting", status_code=503)
    return PlainTextResponse("ok")


def create_app(settings: Settings, archive: Archive, cache: TieredCache | None = None) -> Starlette:
    settings.check()
    tune_allocator()
    rt = Runtime(settings, archive, cache)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Compile (or load from numba's cache) every kernel before /healthz says ready, in the CPU
        # pool, so no request pays for compilation and the loop stays free meanwhile.
        # The ingest parser processes start meanwhile (each imports pydicom: about a second).
        await asyncio.gather(rt.cpu(kernels.warm_up), rt.io(parsepool.start, archive.config.parse_processes))
        # Streaming responses run in an anyio task group, whose asyncio backend anyio imports on
        # first use: 20-40 ms that the first series stream of every new process paid before its
        # first image. The index connection of the loop's thread (archive/records.py) opens here too.
        await anyio.lowlevel.checkpoint()
        rt.records.version()
        await rt.start_threads()
        rt.ready = True
        log.info("tessera ready: archive at %s", settings.data)
        # Start-up objects (pydicom dictionaries, compiled kernels) never die: keeping them out of the
        # collector's full passes turns 30 ms pauses on large answers into sub-millisecond ones.
        gc.collect()
        gc.freeze()
        if rt.renditions is not None:
            rt.renditions.start()
        try:
            yield
        finally:
            await rt.aclose()
            parsepool.shutdown()

    # Rendered frames are the busiest routes: Starlette tries routes in order, so they come first.
    dicomweb_routes = [*rendered.routes(), *stream.routes(), *tiles.routes(), *wado.routes(), *qido.routes(),
                       *stow.routes()]
    app = Starlette(
        routes=[
            # No trailing-slash redirects under the DICOMweb root: a client following one for
            # DELETE .../studies/{s}/ would delete the study; an unknown path is simply a 404.
            # First: nearly every request is under it.
            Mount(DICOMWEB_ROOT, app=Router(dicomweb_routes, redirect_slashes=False)),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_route, methods=["GET"]),
            *openapi.routes(),
            *viewer.routes(),
            *access.routes(),
        ],
        exception_handlers=errors.exception_handlers(),  # type: ignore[arg-type]
        lifespan=lifespan,
        middleware=_middleware(settings, rt),
    )
    # Every route but the public ones checks the caller's role and scope and is audited (web/auth.py).
    protect(app.router.routes, rt.audit)
    app.state.runtime = rt
    return app


def _middleware(settings: Settings, rt: Runtime) -> list[Middleware]:
    stack = []
    if settings.cors_origins:
        # Outside authentication, so a browser's preflight (which carries no credentials) is answered.
        stack.append(Middleware(
            CORSMiddleware,
            allow_origins=[o.strip() for o in settings.cors_origins.split(",") if o.strip()],
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Accept", "Range", "If-None-Match"],
            expose_headers=["ETag", "Content-Location", "Content-Range"],
            allow_credentials=False,
        ))
    stack.append(Middleware(SecurityMiddleware, auth=rt.authenticator, audit=rt.audit, settings=settings))
    return stack


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` worker processes: settings from TESSERA_* variables."""
    from web.cli import build_archive, configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return create_app(settings, build_archive(settings))
