"""Settings: one frozen dataclass read from ``TESSERA_*`` environment variables, in this one place.

Every field is documented here; the CLI turns its flags into the same variables so ``--workers``
processes read identical settings. Nothing else in the code base reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path


class SettingsError(ValueError):
    """A TESSERA_* variable has a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Settings:
    #: Folder holding the archive (blobs under objects/, index.sqlite). TESSERA_DATA.
    data: Path = Path("./data")
    #: Address and port ``tessera serve`` binds. TESSERA_HOST, TESSERA_PORT.
    host: str = "127.0.0.1"
    port: int = 8000
    #: Server processes sharing the archive (and Redis); 0 = one per core. On two cores two workers
    #: served 1.5x the cached frames/s of one at the same latency (bench/cached_bench.py).
    #: TESSERA_WORKERS.
    workers: int = 0
    #: fsync blobs and the index before acknowledging a store. TESSERA_FSYNC (1/0).
    fsync: bool = True
    #: Same SOP Instance UID with different bytes replaces the stored one instead of a 409. TESSERA_OVERWRITE.
    overwrite: bool = False
    #: Largest STOW-RS request body in bytes (413 above). TESSERA_MAX_REQUEST_BYTES.
    max_request_bytes: int = 2 << 30
    #: Largest single instance in bytes. TESSERA_MAX_INSTANCE_BYTES.
    max_instance_bytes: int = 2 << 30
    #: Largest declared uncompressed pixel data per instance, refused before decoding. TESSERA_MAX_PIXEL_BYTES.
    max_pixel_bytes: int = 4 << 30
    #: Threads for CPU work (parse, decode, render); 0 = number of cores. TESSERA_CPU_THREADS.
    cpu_threads: int = 0
    #: Largest QIDO-RS page. TESSERA_MAX_QIDO_LIMIT.
    max_qido_limit: int = 10000
    #: Redis for the shared cache (e.g. redis://127.0.0.1:6379/0); empty = no Redis. TESSERA_REDIS_URL.
    redis_url: str = ""
    #: Bytes of rendered images kept in each process's memory cache; 0 = off. TESSERA_CACHE_MEMORY_BYTES.
    cache_memory_bytes: int = 512 << 20
    #: Bytes of decoded frames kept in each process for re-windowing and zoom; 0 = off.
    #: TESSERA_DECODED_CACHE_BYTES.
    decoded_cache_bytes: int = 1 << 30
    #: Lifetime of cached entries in seconds (content-keyed, so only to free space). TESSERA_CACHE_TTL_SECONDS.
    cache_ttl_seconds: int = 86400
    #: Slices before and after an opened one that are rendered ahead of time; 0 = no prefetch.
    #: TESSERA_PREFETCH_NEIGHBOURS.
    prefetch_neighbours: int = 4
    #: Transcode frames stored in slow lossless codecs (J2K, JPEG-LS, lossless JPEG) into verified
    #: HTJ2K copies in the background, used for rendering (archive/renditions.py). TESSERA_RENDITIONS (1/0).
    renditions: bool = True
    #: Modalities that get renditions, comma-separated (e.g. ``CT,MR``); empty = every modality.
    #: TESSERA_RENDITION_MODALITIES.
    rendition_modalities: str = ""
    #: Instances the rendition worker transcodes at once, each as one CPU-pool job at a time (so at most
    #: this many cores), paused while interactive renders are in flight. TESSERA_RENDITION_THREADS.
    rendition_threads: int = 1
    #: Folder where worker processes write metrics for a merged /metrics (prometheus-client
    #: multiprocess mode); set by ``--workers``. TESSERA_METRICS_DIR.
    metrics_dir: str = ""
    #: External base URL (scheme://host[:port]) used in RetrieveURL/BulkDataURI; empty = from the request.
    #: TESSERA_PUBLIC_URL.
    public_url: str = ""
    #: Log level name. TESSERA_LOG_LEVEL.
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read TESSERA_<FIELD> for every field; ``overrides`` (non-None) win. Raises SettingsError."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get("TESSERA_" + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data" in values:
            values["data"] = Path(str(values["data"]))
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The same settings as TESSERA_* variables (for worker processes)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out["TESSERA_" + f.name.upper()] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return out


def _convert(name: str, kind: object, raw: str) -> object:
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if kind_name == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind_name == "int":
            return int(raw)
        return raw
    except ValueError:
        raise SettingsError(f"TESSERA_{name.upper()}: value {raw!r} is invalid for a {kind_name}") from None
