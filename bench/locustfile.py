"""Locust reading room: simulated radiologists reading studies through Tessera's DICOMweb API.

Each user (one reader) loops forever over this session, like a viewer would drive the server:

1. open the worklist: QIDO-RS ``/studies?limit=50`` (with includefield of the usual worklist columns);
2. pick the next study (readers start at different studies and go round the list) and open it:
   ``/studies/{s}/series`` (series QIDO), then for each series its thumbnail
   (``/studies/{s}/series/{r}/thumbnail``) and its metadata (``/studies/{s}/series/{r}/metadata``),
   from which the viewer learns the instances and sorts them by InstanceNumber;
3. scroll the largest series at ``FPS`` frames/s (default 15; the request for the next slice is sent
   when the previous image has arrived and its frame time has passed, so a slow server slows the
   reader down instead of piling up requests, as a viewer does): forward from the middle to the end,
   then back to the start, ``/instances/{i}/frames/1/rendered``;
4. change window (``window=c,w,linear`` from a few presets: soft tissue, lung, bone) and scroll back
   over a stretch of the series with it;
5. think for a moment, then move to the next study.

Requests are grouped under a few names (``name=``) so statistics stay per resource, not per URL.
Every answer is checked (status, a JPEG body for images, a non-empty JSON list for queries); anything
else is a failure. Host: the server root, e.g. ``--host http://127.0.0.1:8044``; the DICOMweb prefix
comes from ``TESSERA_PREFIX`` (default ``/dicomweb``).

    .venv/bin/locust -f bench/locustfile.py --headless -u 50 -r 5 -t 5m --host http://127.0.0.1:8044 \
        --csv bench/out/reading_room
"""

from __future__ import annotations

import itertools
import os
import random
import time

import gevent
from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser

PREFIX = os.environ.get("TESSERA_PREFIX", "/dicomweb")
FPS = float(os.environ.get("READING_FPS", "15"))
#: (center, width) presets in HU: soft tissue, lung, bone.
WINDOWS = ((40, 400), (-600, 1500), (400, 1800))
#: How far back a reader scrolls after a window change.
WINDOW_STRETCH = int(os.environ.get("READING_WINDOW_STRETCH", "60"))
STUDY_UID, SERIES_UID, SOP_UID, INSTANCE_NUMBER = "0020000D", "0020000E", "00080018", "00200013"
_reader_numbers = itertools.count()


def _value(item: dict, tag: str):
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


class Reader(FastHttpUser):
    wait_time = between(1, 3)  # between studies: dictate, fill in the report
    connection_timeout = 30.0
    network_timeout = 60.0

    def on_start(self) -> None:
        self.number = next(_reader_numbers)
        self.studies: list[str] = []
        self.position = self.number  # readers start on different studies

    # --- checked requests --------------------------------------------------------------------------

    def _json(self, path: str, name: str) -> list[dict]:
        with self.client.get(PREFIX + path, name=name, headers={"Accept": "application/dicom+json"},
                             catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}")
                return []
            try:
                body = resp.json()
            except ValueError:
                resp.failure("not JSON")
                return []
            if not isinstance(body, list) or not body:
                resp.failure("empty answer")
                return []
            return body

    def _image(self, path: str, name: str) -> bool:
        with self.client.get(PREFIX + path, name=name, headers={"Accept": "image/jpeg"},
                             catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}")
                return False
            content = resp.content or b""
            if not content.startswith(b"\xff\xd8"):
                resp.failure(f"not a JPEG ({len(content)} bytes)")
                return False
            return True

    # --- the session ---------------------------------------------------------------------------------

    @task
    def read_next_study(self) -> None:
        worklist = self._json("/studies?limit=50&includefield=00081030&includefield=00201208", "QIDO /studies")
        self.studies = [s for s in (_value(item, STUDY_UID) for item in worklist) if s]
        if not self.studies:
            return
        study = self.studies[self.position % len(self.studies)]
        self.position += 1

        series_list = self._json(f"/studies/{study}/series", "QIDO /studies/{s}/series")
        series_uids = [r for r in (_value(item, SERIES_UID) for item in series_list) if r]
        stacks: list[tuple[str, list[str]]] = []
        for series in series_uids:
            self._image(f"/studies/{study}/series/{series}/thumbnail", "series thumbnail")
            metadata = self._json(f"/studies/{study}/series/{series}/metadata", "series metadata")
            ordered = sorted(
                ((_value(m, INSTANCE_NUMBER) or 0, _value(m, SOP_UID)) for m in metadata if _value(m, SOP_UID)),
            )
            stacks.append((series, [sop for _n, sop in ordered]))
        if not stacks:
            return
        series, sops = max(stacks, key=lambda s: len(s[1]))
        base = f"/studies/{study}/series/{series}/instances"

        # Scroll: from the middle to the end, then all the way back to the start.
        middle = len(sops) // 2
        order = list(range(middle, len(sops))) + list(range(len(sops) - 1, -1, -1))
        if not self._scroll(base, sops, order, ""):
            return
        # Window change, then scroll back up over a stretch with it.
        center, width = random.choice(WINDOWS)
        start = random.randrange(len(sops))
        stretch = [i for i in range(start, min(len(sops), start + WINDOW_STRETCH))]
        self._scroll(base, sops, stretch, f"?window={center},{width},linear")

    def _scroll(self, base: str, sops: list[str], order: list[int], query: str) -> bool:
        period = 1.0 / FPS
        name = "rendered frame (window)" if query else "rendered frame"
        for i in order:
            started = time.monotonic()
            if not self._image(f"{base}/{sops[i]}/frames/1/rendered{query}", name):
                return False
            left = period - (time.monotonic() - started)
            if left > 0:
                gevent.sleep(left)
        return True


@events.quitting.add_listener
def _exit_code(environment, **_kwargs) -> None:
    # --headless exits 1 on any failure already; make that explicit for the wrapper's logs.
    if environment.stats.total.num_failures:
        print(f"reading room: {environment.stats.total.num_failures} failed requests")
