"""The benchmark's DICOMweb client: one code path for every server under test.

Responsible for: building STOW-RS multipart/related bodies once in memory (PS3.18 10.5), posting them
with a pool of keep-alive `requests` sessions, and timing JSON GETs (WADO-RS metadata, PS3.18 10.4;
QIDO-RS, PS3.18 10.6) while checking the number of answers. Must not know which server it talks to:
no server-specific URLs, headers or tolerances live here.
"""

from __future__ import annotations

import gc
import queue
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

DICOM_JSON = "application/dicom+json"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"


class BenchCheckError(RuntimeError):
    """A server answered, but not what the benchmark requires (status, count, failed instances)."""


@dataclass(frozen=True, slots=True)
class StowBody:
    """One multipart/related request body and its Content-Type header."""

    content_type: str
    body: bytes
    instances: int


def build_stow_bodies(files: list[bytes], batch: int) -> list[StowBody]:
    """Split `files` into bodies of `batch` application/dicom parts each (PS3.18 10.5.1.2)."""
    bodies = []
    for start in range(0, len(files), batch):
        chunk = files[start:start + batch]
        boundary = uuid.uuid4().hex
        parts = []
        for data in chunk:
            parts.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            parts.append(data)
            parts.append(b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        bodies.append(StowBody(content_type=content_type, body=b"".join(parts), instances=len(chunk)))
    return bodies


@dataclass(frozen=True, slots=True)
class StowResult:
    """One timed STOW-RS run of a whole series."""

    seconds: float
    instances: int
    requests: int

    @property
    def per_second(self) -> float:
        return self.instances / self.seconds


def _session_pool(size: int, warm_url: str) -> queue.Queue[requests.Session]:
    """`size` keep-alive sessions, each with an open connection (one untimed GET each)."""
    pool: queue.Queue[requests.Session] = queue.Queue()
    for _ in range(size):
        session = requests.Session()
        session.get(warm_url, headers={"Accept": DICOM_JSON}, timeout=30).close()
        pool.put(session)
    return pool


def stow_series(base: str, bodies: list[StowBody], *, concurrency: int, timeout_s: float = 120.0) -> StowResult:
    """POST every body to `{base}/studies` with `concurrency` requests in flight; time the whole series.

    Raises BenchCheckError when a request is not 200/202 or reports a failed SOP instance, or when the
    server acknowledges fewer instances than were sent.
    """
    pool = _session_pool(concurrency, f"{base}/studies?limit=1")
    url = f"{base}/studies"

    def post(item: StowBody) -> int:
        session = pool.get()
        try:
            resp = session.post(url, data=item.body, timeout=timeout_s,
                                headers={"Content-Type": item.content_type, "Accept": DICOM_JSON})
        finally:
            pool.put(session)
        if resp.status_code not in (200, 202):
            raise BenchCheckError(f"STOW-RS {url} answered {resp.status_code}: {resp.text[:300]}")
        answer = resp.json() if resp.content else {}
        if answer.get(FAILED_SOP_SEQUENCE, {}).get("Value"):
            raise BenchCheckError(f"STOW-RS {url} reported failed instances: {str(answer)[:300]}")
        return len(answer.get(REFERENCED_SOP_SEQUENCE, {}).get("Value", []))

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as executor:
        acknowledged = sum(executor.map(post, bodies))
    seconds = time.perf_counter() - start
    while not pool.empty():
        pool.get().close()
    sent = sum(b.instances for b in bodies)
    if acknowledged != sent:
        raise BenchCheckError(f"STOW-RS {url}: sent {sent} instances, server referenced {acknowledged}")
    return StowResult(seconds=seconds, instances=sent, requests=len(bodies))


@dataclass(slots=True)
class Timings:
    """Latencies of one query against one server, in milliseconds."""

    ms: list[float] = field(default_factory=list)
    count: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {"min": min(self.ms), "median": statistics.median(self.ms), "max": max(self.ms)}


def timed_get_json(session: requests.Session, url: str, *, expect: int) -> tuple[float, list[dict]]:
    """GET `url` as DICOM JSON; return (milliseconds including body read and JSON parse, answers).

    Raises BenchCheckError when the status is not 200 or the number of answers is not `expect`.
    """
    # The client's own garbage collector must not land inside one server's timing: parsing a large
    # JSON answer allocates enough objects to trigger 20-40 ms collections at random.
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        resp = session.get(url, headers={"Accept": DICOM_JSON}, timeout=120)
        answers = resp.json() if resp.status_code == 200 else []
        ms = (time.perf_counter() - start) * 1000.0
    finally:
        gc.enable()
    if resp.status_code != 200:
        raise BenchCheckError(f"GET {url} answered {resp.status_code}: {resp.text[:300]}")
    if len(answers) != expect:
        raise BenchCheckError(f"GET {url} gave {len(answers)} answers, expected {expect}")
    return ms, answers


def time_queries(bases: dict[str, str], paths: dict[str, str], *, expect: int, warmups: int,
                 repeats: int, present_tags: dict[str, tuple[str, ...]]) -> dict[str, dict[str, Timings]]:
    """Time every query path on every server, interleaving servers (order alternates each repeat).

    `present_tags` names tags whose presence in the first answer is recorded in the notes (for
    example whether metadata is full or whether QIDO returns Rows), so a fast but thin answer shows.
    Returns timings[query][server].
    """
    sessions = {name: requests.Session() for name in bases}
    names = list(bases)
    results: dict[str, dict[str, Timings]] = {q: {n: Timings() for n in names} for q in paths}
    try:
        for query, path in paths.items():
            for name in names:
                for _ in range(warmups):
                    _, answers = timed_get_json(sessions[name], bases[name] + path, expect=expect)
                first = answers[0]
                for tag in present_tags.get(query, ()):
                    if tag not in first:
                        results[query][name].notes.append(f"({tag[:4]},{tag[4:]}) missing")
            for rep in range(repeats):
                order = names if rep % 2 == 0 else names[::-1]
                for name in order:
                    ms, answers = timed_get_json(sessions[name], bases[name] + path, expect=expect)
                    results[query][name].ms.append(ms)
                    results[query][name].count = len(answers)
    finally:
        for session in sessions.values():
            session.close()
    return results
