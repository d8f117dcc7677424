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
    #: Threads for CPU work (parse, decode, render) per server process; 0 = one more than the process's
    #: share of the cores (the cores divided among the workers, rounded up). TESSERA_CPU_THREADS.
    cpu_threads: int = 0
    #: While CPU jobs wait for a thread, finished jobs' results go to the event loop together, the
    #: longest held this many milliseconds (fewer loop wake-ups: more frames/s under load); 0 = each
    #: at once. A lone request is never held. TESSERA_CPU_HOLD_MS.
    cpu_hold_ms: int = 10
    #: Processes parsing received instances for each server process (pydicom holds the GIL: parsed in
    #: threads, a process stored with about one core); 0 = the cores shared among the server
    #: processes, at least one. TESSERA_INGEST_PROCESSES.
    ingest_processes: int = 0
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
    #: Role given to callers without credentials (admin, radiologist, uploader, referrer); empty = none,
    #: so every route but /healthz, sign-in and the viewer's static files needs credentials. Refused
    #: unless ``host`` is a loopback address. TESSERA_ANONYMOUS_ROLE.
    anonymous_role: str = ""
    #: OpenID Connect issuer whose access tokens (JWT) are accepted; empty = OIDC off. TESSERA_OIDC_ISSUER.
    oidc_issuer: str = ""
    #: Audience (``aud``) the tokens must carry; required with an issuer. TESSERA_OIDC_AUDIENCE.
    oidc_audience: str = ""
    #: JWKS URL; empty = discovered from the issuer's /.well-known/openid-configuration. TESSERA_OIDC_JWKS_URL.
    oidc_jwks_url: str = ""
    #: Claim holding the caller's roles, a dotted path (e.g. ``realm_access.roles``). TESSERA_OIDC_ROLES_CLAIM.
    oidc_roles_claim: str = "roles"
    #: Claim naming the caller (in the audit trail, and the grantee name of referrer grants).
    #: TESSERA_OIDC_NAME_CLAIM.
    oidc_name_claim: str = "preferred_username"
    #: Lifetime of a viewer session cookie in seconds (never beyond its token's expiry).
    #: TESSERA_SESSION_SECONDS.
    session_seconds: int = 12 * 3600
    #: Seconds a process reuses a checked credential (a revoked token stops within this). TESSERA_AUTH_CACHE_SECONDS.
    auth_cache_seconds: int = 2
    #: Failed sign-ins per client address per minute before 429. TESSERA_SIGNIN_ATTEMPTS_PER_MINUTE.
    signin_attempts_per_minute: int = 10
    #: Origins allowed to call the API from a browser (CORS), comma-separated; empty = CORS off.
    #: TESSERA_CORS_ORIGINS.
    cors_origins: str = ""
    #: CSP frame-ancestors of /viewer/embed: the portals allowed to embed the viewer (e.g.
    #: ``https://portal.example.org``). TESSERA_FRAME_ANCESTORS.
    frame_ancestors: str = "'self'"
    #: Largest total size of a request's headers in bytes (431 above). TESSERA_MAX_HEADER_BYTES.
    max_header_bytes: int = 32 << 10
    #: PEM certificate and key files: serve HTTPS (and send HSTS). TESSERA_TLS_CERT, TESSERA_TLS_KEY.
    tls_cert: str = ""
    tls_key: str = ""
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

    def check(self) -> None:
        """Refuse combinations that would be unsafe. Raises SettingsError."""
        from archive.access import ROLES

        if self.anonymous_role:
            if self.anonymous_role not in ROLES:
                raise SettingsError(f"TESSERA_ANONYMOUS_ROLE: {self.anonymous_role!r} is not one of {', '.join(ROLES)}")
            if not is_loopback(self.host):
                raise SettingsError(
                    f"TESSERA_ANONYMOUS_ROLE is only allowed on a loopback bind, not on {self.host!r}"
                )
        if self.oidc_issuer and not self.oidc_audience:
            raise SettingsError(
                "TESSERA_OIDC_AUDIENCE is required with TESSERA_OIDC_ISSUER: without it, tokens the issuer made "
                "for any other application would be accepted"
            )
        if not 0 <= self.cpu_hold_ms <= 1000:
            raise SettingsError(f"TESSERA_CPU_HOLD_MS: {self.cpu_hold_ms} is outside 0-1000 milliseconds")
        if self.ingest_processes < 0:
            raise SettingsError(f"TESSERA_INGEST_PROCESSES: {self.ingest_processes} is below 0")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("TESSERA_TLS_CERT and TESSERA_TLS_KEY must be given together")

    def to_env(self) -> dict[str, str]:
        """The same settings as TESSERA_* variables (for worker processes)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out["TESSERA_" + f.name.upper()] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return out


def is_loopback(address: str) -> bool:
    """Whether a bind address or a client's address is this machine's loopback."""
    return address in ("127.0.0.1", "::1", "localhost") or address.startswith("127.")


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
