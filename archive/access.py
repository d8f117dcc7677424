"""Who may see what: API tokens, share links and study grants, kept in ``<data>/access.sqlite``.

Secrets are never stored: a token is ``tsr_<kind><id>_<secret>`` and only the SHA-256 of the secret is
kept (the secret is 256 random bits, so a slow password hash would add nothing). Kinds: ``t`` an API
token with a role, ``s`` a share link scoped to one study. Grants give a referrer (by name) one study.
``Principal`` is the resolved caller; ``studies`` is ``None`` for callers that may read everything.

Must not know HTTP: web/auth.py turns headers and cookies into calls here.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from archive.errors import ArchiveError

#: Roles in order of privilege. ``share`` is the role of a share link, never given to a token.
ROLES = ("admin", "radiologist", "uploader", "referrer")
SHARE_ROLE = "share"
_PREFIX = "tsr_"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, secret_sha256 TEXT NOT NULL,
    created REAL NOT NULL, expires REAL, revoked REAL
);
CREATE TABLE IF NOT EXISTS share_links (
    id TEXT PRIMARY KEY, study_uid TEXT NOT NULL, secret_sha256 TEXT NOT NULL, created_by TEXT NOT NULL,
    created REAL NOT NULL, expires REAL NOT NULL, revoked REAL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, credential TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL, ended REAL
);
CREATE TABLE IF NOT EXISTS grants (
    grantee TEXT NOT NULL, study_uid TEXT NOT NULL, created_by TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (grantee, study_uid)
);
"""


class AccessError(ArchiveError):
    """A token, share or grant request that cannot be carried out (bad role, unknown id)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``studies`` None = every study; otherwise only those."""

    name: str
    role: str
    kind: str  # token, share, oidc, anonymous
    credential_id: str = ""
    studies: frozenset[str] | None = None
    expires: float | None = None

    def may_read(self, study_uid: str) -> bool:
        return self.studies is None or study_uid in self.studies


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    name: str
    role: str
    created: float
    expires: float | None
    revoked: float | None


@dataclass(frozen=True, slots=True)
class ShareLink:
    id: str
    study_uid: str
    created_by: str
    created: float
    expires: float
    revoked: float | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(text: str) -> tuple[str, str, str] | None:
    """(kind, id, secret) of a Tessera token, or None when ``text`` is not shaped like one."""
    if not text.startswith(_PREFIX) or len(text) > 200 or not text.isascii():
        return None
    body = text[len(_PREFIX):]
    head, sep, secret = body.partition("_")
    if not sep or len(head) != 13 or head[0] not in "ts" or not secret:
        return None
    return head[0], head[1:], secret


class AccessStore:
    """Tokens, share links and grants in one small SQLite file (WAL, one connection per thread)."""

    def __init__(self, data: Path) -> None:
        data.mkdir(parents=True, exist_ok=True)
        self.path = data / "access.sqlite"
        # Owner-only: it holds the session signing key and the token hashes. SQLite gives its -wal and
        # -shm files the database file's mode, so creating it 0600 covers them too.
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600))
        os.chmod(self.path, 0o600)
        self._local = threading.local()
        with self._connect() as conn:
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key='session_key'").fetchone()
            if row is None:
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('session_key', ?)", (secrets.token_hex(32),))
                row = conn.execute("SELECT value FROM meta WHERE key='session_key'").fetchone()
        #: HMAC key of session cookies, made once per archive so every worker process agrees.
        self.session_key = bytes.fromhex(row[0])

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        yield conn

    # --- API tokens ---------------------------------------------------------------------------------

    def create_token(self, name: str, role: str, expires_in: float | None = None) -> tuple[TokenRecord, str]:
        """A new API token; returns its record and the token text (shown once). Raises AccessError."""
        if role not in ROLES:
            raise AccessError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if not name or len(name) > 128:
            raise AccessError("name must be 1 to 128 characters")
        if expires_in is not None and expires_in <= 0:
            raise AccessError("a token's lifetime must be above 0 seconds (or no expiry)")
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        now = time.time()
        expires = now + expires_in if expires_in is not None else None
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, NULL)", (token_id, name, role, _digest(secret), now, expires)
            )
        return TokenRecord(token_id, name, role, now, expires, None), f"{_PREFIX}t{token_id}_{secret}"

    def list_tokens(self) -> list[TokenRecord]:
        with self._connect() as conn:
            rows = conn.execute("SELECT id, name, role, created, expires, revoked FROM tokens ORDER BY created").fetchall()
        return [TokenRecord(*row) for row in rows]

    def revoke_token(self, id_or_name: str) -> int:
        """Revoke a token by id, or every token of that name; returns how many were revoked."""
        with self._connect() as conn:
            cur = conn.execute(
                "UPDATE tokens SET revoked=? WHERE (id=? OR name=?) AND revoked IS NULL", (time.time(), id_or_name, id_or_name)
            )
            return cur.rowcount

    # --- share links and grants ---------------------------------------------------------------------

    def create_share_link(self, study_uid: str, created_by: str, expires_in: float) -> tuple[ShareLink, str]:
        """A link token that reads ``study_uid`` only, until ``expires_in`` seconds from now."""
        if expires_in <= 0:
            raise AccessError("a share link needs a lifetime above 0 seconds")
        link_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        now = time.time()
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO share_links VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (link_id, study_uid, _digest(secret), created_by, now, now + expires_in),
            )
        return ShareLink(link_id, study_uid, created_by, now, now + expires_in, None), f"{_PREFIX}s{link_id}_{secret}"

    def list_share_links(self) -> list[ShareLink]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, study_uid, created_by, created, expires, revoked FROM share_links ORDER BY created"
            ).fetchall()
        return [ShareLink(*row) for row in rows]

    def revoke_share_link(self, link_id: str) -> bool:
        with self._connect() as conn:
            cur = conn.execute("UPDATE share_links SET revoked=? WHERE id=? AND revoked IS NULL", (time.time(), link_id))
            return cur.rowcount > 0

    def grant(self, grantee: str, study_uid: str, created_by: str) -> None:
        """Let the referrer named ``grantee`` read ``study_uid``."""
        with self._connect() as conn:
            conn.execute("INSERT OR IGNORE INTO grants VALUES (?, ?, ?, ?)", (grantee, study_uid, created_by, time.time()))

    def revoke_grant(self, grantee: str, study_uid: str) -> bool:
        with self._connect() as conn:
            cur = conn.execute("DELETE FROM grants WHERE grantee=? AND study_uid=?", (grantee, study_uid))
            return cur.rowcount > 0

    def granted_studies(self, grantee: str) -> frozenset[str]:
        with self._connect() as conn:
            rows = conn.execute("SELECT study_uid FROM grants WHERE grantee=?", (grantee,)).fetchall()
        return frozenset(r[0] for r in rows)

    def list_grants(self) -> list[tuple[str, str]]:
        with self._connect() as conn:
            return [(r[0], r[1]) for r in conn.execute("SELECT grantee, study_uid FROM grants ORDER BY grantee")]

    # --- viewer sessions ---------------------------------------------------------------------------

    def create_session(self, credential: str, expires: float) -> str:
        """A server-side session for ``credential`` (a token or share link id); returns its id."""
        session_id = secrets.token_urlsafe(24)
        with self._connect() as conn:
            conn.execute("DELETE FROM sessions WHERE expires < ?", (time.time() - 86400,))
            conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, NULL)", (session_id, credential, time.time(), expires))
        return session_id

    def end_session(self, session_id: str) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE sessions SET ended=? WHERE id=? AND ended IS NULL", (time.time(), session_id))

    def resolve_session(self, session_id: str, now: float | None = None) -> Principal | None:
        """The caller of a live session (not ended, not expired, its credential still valid), or None."""
        now = time.time() if now is None else now
        with self._connect() as conn:
            row = conn.execute("SELECT credential, expires, ended FROM sessions WHERE id=?", (session_id,)).fetchone()
        if row is None or row[2] is not None or row[1] <= now:
            return None
        principal = self.resolve_id(row[0][:1], row[0][1:], None, now)
        if principal is None:
            return None
        return replace(principal, expires=row[1] if principal.expires is None else min(row[1], principal.expires))

    # --- resolving credentials ----------------------------------------------------------------------

    def resolve(self, token: str, now: float | None = None) -> Principal | None:
        """The caller a token belongs to, or None (unknown, wrong secret, expired or revoked)."""
        parts = split_token(token)
        if parts is None:
            return None
        kind, cred_id, secret = parts
        return self.resolve_id(kind, cred_id, _digest(secret), now)

    def resolve_id(self, kind: str, cred_id: str, digest: str | None, now: float | None = None) -> Principal | None:
        """As ``resolve``; ``digest`` None skips the secret check (a signed session already proved it)."""
        now = time.time() if now is None else now
        with self._connect() as conn:
            if kind == "t":
                row = conn.execute(
                    "SELECT name, role, secret_sha256, expires, revoked FROM tokens WHERE id=?", (cred_id,)
                ).fetchone()
                if row is None:
                    return None
                name, role, stored, expires, revoked = row
                studies = self.granted_studies(name) if role == "referrer" else None
            elif kind == "s":
                row = conn.execute(
                    "SELECT study_uid, created_by, secret_sha256, expires, revoked FROM share_links WHERE id=?", (cred_id,)
                ).fetchone()
                if row is None:
                    return None
                study, _creator, stored, expires, revoked = row
                name, role, studies = f"share:{cred_id}", SHARE_ROLE, frozenset([study])
            else:
                return None
        if digest is not None and not hmac.compare_digest(stored, digest):
            return None
        if revoked is not None or (expires is not None and expires <= now):
            return None
        return Principal(name, role, "token" if kind == "t" else "share", kind + cred_id, studies, expires)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
