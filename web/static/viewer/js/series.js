// One series' images for a stack viewport, loaded progressively (issue 6):
//  1. the instance list (QIDO, with the few attributes the viewer needs) and, at the same time, the
//     whole series at low resolution through the series stream (`.../rendered?viewport=128,128`,
//     interleaved: middle, ends, then halving the gaps), parsed part by part as it arrives;
//  2. the viewed slice and its neighbours at full resolution, each as its own frame request;
//  3. the rest at full resolution through a second series stream, in the background.
// A slice is drawable as soon as any resolution of it is decoded, so scrolling never waits for the
// network. Full-resolution frames are lossless PNG: what is on the canvas is the server's rendering.
// A window change starts a new generation: images of the old window stay drawable (marked stale)
// until the new window's arrive.

import * as api from './api.js';
import { parts } from './multipart.js';
import { Raster, drawable, readStoredPng } from './raster.js';

export const LOW_BOX = 128;
const NEIGHBOURS = 2;
const PRIORITY_IN_FLIGHT = 2;
const INCLUDE = ['00280010', '00280011', '00280008', '00280030', '00181164', '00281050', '00281051',
  '00281055', '00200013', '00201041', '00180050', '00280004', '00080060'].join(',');
const LOCATION = /\/instances\/([^/?]+)\/frames\/(\d+)\/rendered/;

// 0..n-1 as middle, first, last, then the midpoints of every gap, level by level (the server's
// interleaved order, cache/prefetch.py).
export function interleavedOrder(n) {
  if (n <= 0) return [];
  const mid = Math.floor((n - 1) / 2);
  const order = [...new Set([mid, 0, n - 1])];
  let gaps = [[0, mid], [mid, n - 1]];
  while (gaps.length) {
    const next = [];
    for (const [lo, hi] of gaps) {
      if (hi - lo > 1) { const m = Math.floor((lo + hi) / 2); order.push(m); next.push([lo, m], [m, hi]); }
    }
    gaps = next;
  }
  return order;
}

// Whether full-resolution images come as uncompressed PNG (`compression=none`): 2-5x the bytes of
// the server's deflated PNG (5x for a CT slice, mostly air), but a tenth of its encoding CPU and read here without an image
// decoder (raster.js), which on a shared two-core machine is what limits the full pass. Chosen for a
// server on this machine or a private network, where bytes are cheap; `?transfer=compact` or
// `?transfer=fast` in the page's address overrides it.
export function storedTransfer(loc = window.location) {
  const asked = new URLSearchParams(loc.search).get('transfer');
  if (asked === 'compact') return false;
  if (asked === 'fast') return true;
  const h = loc.hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\./.test(h) || /^10\./.test(h) || /^192\.168\./.test(h)
    || /^172\.(1[6-9]|2\d|3[01])\./.test(h) || /^f[cd][0-9a-f]{2}:/i.test(h);
}

// Stats the benchmark and the tests read: one entry per series opened, times in ms since navigation.
export const stats = (window.__tesseraStats = window.__tesseraStats || { series: [] });

function decodedBudget() {
  // Decoded full-resolution bitmaps cost 4 bytes a pixel; beyond the budget the farthest from the
  // viewed slice are dropped back to their (compressed) PNG and decoded again when needed.
  const gb = navigator.deviceMemory || 4;
  return Math.min(1536, gb * 192) * 1024 * 1024;
}

// Decoded full-resolution bitmaps of every loader on the page (all viewports share one budget).
const SHARED = { bytes: 0 };

// Parts read between two yields to the page's task queue (see stream()).
const YIELD_EVERY = 16;

// Resolves in a new task (not a microtask) without setTimeout's clamping to 4 ms.
function nextTask() {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => { channel.port1.close(); resolve(); };
    channel.port2.postMessage(null);
  });
}

// Resolves at the next animation frame (after the callbacks already requested for it), or after
// `ms` at the latest.
function nextFrame(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    requestAnimationFrame(() => { clearTimeout(timer); resolve(); });
  });
}

function num(v) { const n = Number(v); return Number.isFinite(n) ? n : undefined; }

export class SeriesLoader extends EventTarget {
  constructor(study, series, { fullBox = 1024, expected = 0 } = {}) {
    super();
    this.expected = expected > 0 ? expected : 0; // frames the series QIDO announced (single-frame count)
    this.study = study;
    this.series = series;
    this.fullBox = fullBox;
    // The full pass as uncompressed PNG on a fast network (storedTransfer). Not the 128x128 low pass:
    // there the JPEG's decode is small, and uncompressed parts (16 kB against 5 kB) measured no faster.
    this.fullCompression = storedTransfer() ? 'none' : null;
    this.items = [];
    this.keyIndex = new Map();
    this.window = null; // {center, width} or null for the file's own window
    this.gen = 0;
    this.low = [];
    this.full = [];
    this.pending = []; // parts that arrived before the instance list
    this.current = 0;
    this.controller = new AbortController();
    this.streamController = null;
    this.priorityQueue = [];
    this.priorityInFlight = new Map();
    this._decoded = 0;
    this.lowCount = 0;
    this.fullCount = 0;
    this.budget = decodedBudget();
    this.error = null;
    this.sliceErrors = new Map(); // slice index -> ApiError of its own full-resolution request
    this.retries = 0; // series streams restarted after breaking
    this.closed = false;
    this.stat = { series, n: 0, opened: performance.now(), listed: null, firstImage: null, firstDrawn: null,
      allLow: null, allFull: null, lowCount: 0, fullCount: 0, lowBytes: 0, fullBytes: 0,
      lowReceived: null, fullReceived: null, lowParts: 0, fullParts: 0 };
    this.arrivals = 0;
    this.firstPart = new Promise((resolve) => { this.gotFirstPart = resolve; });
    if (this.expected) this.provisionalStack(this.expected);
    stats.series.push(this.stat);
    this.ready = this.open();
  }

  get n() { return this.items.length; }
  // This loader's decoded bytes; every change is mirrored in the page-wide total the budget applies to.
  get decodedBytes() { return this._decoded; }
  set decodedBytes(v) { SHARED.bytes += v - this._decoded; this._decoded = v; }
  get windowParam() {
    return this.window ? `${this.window.center},${this.window.width},linear` : null;
  }

  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.restartTimer);
    this.controller.abort();
    if (this.streamController) this.streamController.abort();
    for (const arr of [this.low, this.full]) {
      for (const e of arr) if (e && e.bitmap) e.bitmap.close();
    }
    this.low = []; this.full = [];
    this.decodedBytes = 0;
    for (const p of this.pending) p.bitmap.close();
    this.pending = [];
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  async open() {
    performance.mark(`tessera:open:${this.series}`);
    this.stat.opened = performance.now();
    this.startStreams();
    // The instance list waits for the first low-resolution part when the stack is provisional (its
    // size known from the series query), so the server answers the image first: the list's query
    // (500 instances with their spacing and windows) can hold a server process for tens of ms.
    if (this.provisional) await Promise.race([this.firstPart, new Promise((r) => setTimeout(r, 1000))]);
    const listing = this.list();
    try {
      await listing;
    } catch (e) {
      if (e.name === 'AbortError') return;
      this.fail(e);
      return;
    }
    this.emit('listed');
    for (const p of this.pending.splice(0)) this.place(p.key, p.level, p.bitmap, p.blob, p.gen);
    this.count();
  }

  fail(e) {
    if (this.error) return;
    this.error = e;
    this.emit('error', e);
  }

  async list() {
    const out = [];
    const page = 5000;
    for (let offset = 0; ; offset += page) {
      const url = `${api.seriesUrl(this.study, this.series)}/instances?includefield=${INCLUDE}&limit=${page}&offset=${offset}`;
      const rows = await api.json(url, { signal: this.controller.signal });
      out.push(...rows);
      if (rows.length < page) break;
    }
    const items = [];
    this.keyIndex = new Map();
    for (const r of out) {
      const rows = num(api.value(r, '00280010'));
      if (!rows) continue; // no pixel data (SR, presentation states): not in the stack
      const sop = api.value(r, '00080018');
      const frames = num(api.value(r, '00280008')) || 1;
      const ps = api.values(r, '00280030').map(Number);
      const ips = api.values(r, '00181164').map(Number);
      const centers = api.values(r, '00281050').map(Number);
      const widths = api.values(r, '00281051').map(Number);
      const names = api.values(r, '00281055');
      for (let f = 1; f <= frames; f++) {
        const item = {
          sop, frame: f, frames, rows, columns: num(api.value(r, '00280011')) || rows,
          instanceNumber: num(api.value(r, '00200013')), sliceLocation: num(api.value(r, '00201041')),
          sliceThickness: num(api.value(r, '00180050')),
          pixelSpacing: ps.length === 2 && ps[0] > 0 && ps[1] > 0 ? ps : null,
          imagerPixelSpacing: ips.length === 2 && ips[0] > 0 && ips[1] > 0 ? ips : null,
          windows: centers.map((c, i) => ({ center: c, width: widths[i], name: names[i] || `Window ${i + 1}` }))
            .filter((w) => Number.isFinite(w.center) && w.width >= 1),
          modality: api.value(r, '00080060') || '',
          photometric: api.value(r, '00280004') || '',
        };
        this.keyIndex.set(`${sop}/${f}`, items.length);
        items.push(item);
      }
    }
    if (!items.length) throw new api.ApiError(404, 'this series has no images', '');
    // Images placed before the list came (provisionally, by the stream's order) move to their
    // listed place: normally the same one.
    const placed = [];
    for (const arr of [this.low, this.full]) for (const e of arr) if (e) placed.push(e);
    const wasProvisional = this.provisional;
    this.provisional = false;
    this.items = items;
    this.low = new Array(items.length).fill(null);
    this.full = new Array(items.length).fill(null);
    this.decodedBytes = 0;
    for (const e of placed) {
      const i = this.keyIndex.get(e.key);
      if (i === undefined) { if (e.bitmap) e.bitmap.close(); continue; }
      (e.level === 'low' ? this.low : this.full)[i] = e;
      if (e.level === 'full' && e.bitmap) this.decodedBytes += e.bytes;
    }
    // Recentre unless the provisional stack (sized from the instance count) was right: a series of
    // multi-frame instances has more slices than instances.
    if (!wasProvisional || this.current >= items.length || items.length !== this.expected) {
      this.current = Math.floor((items.length - 1) / 2);
    }
    this.stat.n = items.length;
    this.stat.listed = performance.now();
  }

  // Before the instance list arrives, the low-resolution stream's parts are placed by the order the
  // server sends them in (cache/prefetch.py interleaved_order over the announced count), so the first
  // image is drawn without waiting for the list; the list then confirms or corrects each place.
  provisionalStack(n) {
    this.provisional = true;
    this.order = interleavedOrder(n);
    this.items = Array.from({ length: n }, () => ({ sop: null, frame: 1, rows: 0, columns: 0, provisional: true,
      windows: [], pixelSpacing: null, imagerPixelSpacing: null, modality: '' }));
    this.low = new Array(n).fill(null);
    this.full = new Array(n).fill(null);
    this.current = Math.floor((n - 1) / 2);
  }

  // Size the full-resolution pass asks for: the frame itself unless larger than fullBox (tiles take
  // over at high zoom for those).
  fullViewport(item) {
    if (item.rows <= this.fullBox && item.columns <= this.fullBox) return null;
    return `${this.fullBox},${this.fullBox}`;
  }

  query(extra) {
    const q = [];
    if (this.windowParam) q.push(`window=${this.windowParam}`);
    for (const [k, v] of Object.entries(extra)) if (v !== null && v !== undefined) q.push(`${k}=${v}`);
    return q.join('&');
  }

  startStreams() {
    if (this.streamController) this.streamController.abort();
    const controller = new AbortController();
    this.streamController = controller;
    const gen = this.gen;
    const run = async () => {
      const base = `${api.seriesUrl(this.study, this.series)}/rendered`;
      await this.stream(`${base}?${this.query({ viewport: `${LOW_BOX},${LOW_BOX}`, order: 'interleaved', accept: 'image/jpeg' })}`,
        'low', gen, controller.signal);
      if (this.provisional || !this.items.length) await this.ready;
      if (!this.items.length || this.closed) return;
      this.queueNeighbours();
      // Large frames come reduced to fullBox (tiles give the detail); a series mixing sizes asks for
      // the box whenever its first frame needs one.
      const vp = this.items.length ? this.fullViewport(this.items[0]) : null;
      await this.stream(`${base}?${this.query({ viewport: vp, order: 'interleaved', accept: 'image/png', compression: this.fullCompression })}`,
        'full', gen, controller.signal);
    };
    run().catch((e) => {
      if (e.name === 'AbortError' || controller.signal.aborted || this.closed) return;
      // A stream that breaks once images are in leaves them usable: the series is not failed for it,
      // and the passes start again after a pause (2, 4, 8 s; slices already in are not decoded again).
      if (this.lowCount > 0) {
        this.streamError = e;
        this.emit('progress');
        if (this.retries < 3 && gen === this.gen) {
          this.retries++;
          clearTimeout(this.retryTimer);
          this.retryTimer = setTimeout(() => { if (!this.closed && gen === this.gen) this.startStreams(); },
            1000 * 2 ** this.retries);
        }
        return;
      }
      this.fail(e);
    });
  }

  async stream(url, level, gen, signal) {
    if (gen === 0) this.stat[`${level}Requested`] = performance.now();
    const res = await api.request(url, { signal });
    if (gen === 0) {
      this.stat[`${level}Headers`] = performance.now();
      // The server's own time to the response start (Server-Timing app;dur), for the benchmark.
      const m = /app;dur=([\d.]+)/.exec(res.headers.get('server-timing') || '');
      this.stat[`${level}ServerMs`] = m ? Number(m[1]) : null;
    }
    const decodes = [];
    for await (const part of parts(res)) {
      if (signal.aborted) return;
      const m = LOCATION.exec(part.headers['content-location'] || '');
      if (!m) continue;
      const key = `${decodeURIComponent(m[1])}/${m[2]}`;
      if (level === 'low') {
        if (!this.stat.lowParts && gen === 0) this.stat.firstReceived = performance.now();
        this.stat.lowParts++; this.stat.lowReceived = performance.now(); this.gotFirstPart();
      }
      else { this.stat.fullParts++; this.stat.fullReceived = performance.now(); }
      if (this.provisional && level === 'low' && gen === 0 && !this.keyIndex.has(key)) {
        const k = this.arrivals++;
        if (k < this.order.length) this.keyIndex.set(key, this.order[k]);
      }
      const idx = this.keyIndex.get(key);
      if (level === 'full' && idx !== undefined && this.hasFull(idx, gen)) continue; // came by priority
      // After a restart, slices already in at this window are not decoded again.
      if (level === 'low' && idx !== undefined && ((this.low[idx] && this.low[idx].gen === gen) || this.hasFull(idx, gen))) continue;
      if (level === 'low') this.stat.lowBytes += part.body.length; else this.stat.fullBytes += part.body.length;
      const blob = { data: part.body, type: part.headers['content-type'] || (level === 'low' ? 'image/jpeg' : 'image/png') };
      const first = this.stat.firstImage === null && decodes.length === 0;
      decodes.push(this.decode(blob).then((bitmap) => {
        if (signal.aborted || this.closed) { bitmap.close(); return; }
        if (!this.items.length || !this.keyIndex.has(key)) this.pending.push({ key, level, bitmap, blob, gen });
        else this.place(key, level, bitmap, blob, gen);
      }));
      // Parts already buffered are read in microtasks, which would keep decoded images from being
      // placed and drawn until the stream pauses: the first image is placed before reading on, and
      // every few parts the loop lets pending tasks (decodes landing, frames drawn) run.
      if (first) {
        await decodes[0].catch(() => {}); // a failure is reported by Promise.all below
        // Then a frame, so the first image is drawn before the parts already in are read: a page
        // busy with tasks gets its rendering only when the browser deems it starved (it was drawn
        // 30-120 ms after being placed). Not waiting longer than 50 ms: a hidden page has no frames.
        await nextFrame(50);
      }
      else if (decodes.length % YIELD_EVERY === 0) await nextTask();
    }
    await Promise.all(decodes);
  }

  // An encoded image ({data: Uint8Array, type}, or a Blob) to an ImageBitmap, or to a Raster for an
  // uncompressed PNG (raster.js). No colour management: the server's grey levels go to the canvas
  // unchanged. Other bytes go through WebCodecs' ImageDecoder where the browser has it: a Blob per
  // image costs a trip to the browser process, and for the 500 PNGs of a series that path took 2.2 s
  // of the browser's CPU against 1.4 s for this one.
  decode(source) {
    if (!(source instanceof Blob) && source.type === 'image/png') {
      const raster = readStoredPng(source.data);
      if (raster) return Promise.resolve(raster);
    }
    if (!(source instanceof Blob) && typeof ImageDecoder !== 'undefined') {
      const decoder = new ImageDecoder({ data: source.data, type: source.type, colorSpaceConversion: 'none' });
      return decoder.decode().then(async ({ image }) => {
        try { return await createImageBitmap(image); } finally { image.close(); decoder.close(); }
      }, (e) => { decoder.close(); throw e; });
    }
    const blob = source instanceof Blob ? source : new Blob([source.data], { type: source.type });
    return createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  }

  hasFull(i, gen = this.gen) {
    const e = this.full[i];
    return !!e && e.gen === gen;
  }

  place(key, level, bitmap, blob, gen) {
    const i = this.keyIndex.get(key);
    if (i === undefined || this.closed) { bitmap.close(); return; }
    const arr = level === 'low' ? this.low : this.full;
    const old = arr[i];
    const before = {
      low: (this.low[i] && this.low[i].gen === this.gen) || (this.full[i] && this.full[i].gen === this.gen),
      full: this.full[i] && this.full[i].gen === this.gen,
    };
    if (old && old.gen > gen) { bitmap.close(); return; } // a newer window is already there
    if (old && old.bitmap) {
      old.bitmap.close();
      if (level === 'full') this.decodedBytes -= old.bytes;
    }
    // A Raster holds no more bytes than its uncompressed PNG: it is kept in the PNG's place (the PNG
    // is dropped), so like a PNG it stays outside the budget of decoded bitmaps and is never evicted.
    const raster = bitmap instanceof Raster;
    const entry = { bitmap, blob: raster ? null : blob, gen, key, level, bytes: raster ? 0 : bitmap.width * bitmap.height * 4 };
    const item = this.items[i];
    if (item.provisional && !item.columns) { item.columns = bitmap.width; item.rows = bitmap.height; }
    arr[i] = entry;
    if (level === 'full') {
      this.decodedBytes += entry.bytes;
      if (SHARED.bytes > this.budget) this.evict();
    }
    if (this.stat.firstImage === null) {
      this.stat.firstImage = performance.now();
      performance.mark(`tessera:first-image:${this.series}`);
    }
    this.counted(i, level, before);
    this.emit('image', i);
  }

  // Recount after a window change (place() keeps the counts up to date otherwise).
  count() {
    let low = 0; let full = 0;
    for (let i = 0; i < this.items.length; i++) {
      const f = this.full[i] && this.full[i].gen === this.gen;
      if (f) full++;
      if (f || (this.low[i] && this.low[i].gen === this.gen)) low++;
    }
    this.lowCount = low;
    this.fullCount = full;
    this.emit('progress');
  }

  counted(i, level, before) {
    // `before`: whether slice i had a current-generation image at low-or-full / full before.
    const hasLow = (this.low[i] && this.low[i].gen === this.gen) || (this.full[i] && this.full[i].gen === this.gen);
    const hasFull = this.full[i] && this.full[i].gen === this.gen;
    if (hasLow && !before.low) this.lowCount++;
    if (hasFull && !before.full) this.fullCount++;
    if (this.gen === 0) {
      // The benchmark's figures: the first window only, every slice decoded and ready to draw.
      this.stat.lowCount = this.lowCount; this.stat.fullCount = this.fullCount;
      if (this.stat.allLow === null && this.lowCount === this.items.length) {
        this.stat.allLow = performance.now();
        performance.mark(`tessera:all-low:${this.series}`);
      }
      if (this.stat.allFull === null && this.fullCount === this.items.length) {
        this.stat.allFull = performance.now();
        performance.mark(`tessera:all-full:${this.series}`);
      }
    }
    this.emit('progress');
  }

  evict() {
    // Drop decoded full-resolution bitmaps farthest from the viewed slice (the PNG stays).
    const order = [];
    for (let i = 0; i < this.full.length; i++) if (this.full[i] && this.full[i].bitmap && this.full[i].blob) order.push(i);
    order.sort((a, b) => Math.abs(b - this.current) - Math.abs(a - this.current));
    for (const i of order) {
      if (SHARED.bytes <= this.budget * 0.9) break;
      const e = this.full[i];
      e.bitmap.close();
      e.bitmap = null;
      this.decodedBytes -= e.bytes;
    }
  }

  // The best drawable image of slice i: {bitmap, full, stale} or null, `bitmap` being anything
  // drawImage takes (a Raster's canvas is good until the next call). Never waits: a full-resolution
  // entry that was evicted is decoded again in the background (and an 'image' event follows).
  image(i) {
    const f = this.full[i]; const l = this.low[i];
    const cur = (e) => e && e.gen === this.gen;
    const shown = (e, full, stale) => ({ bitmap: drawable(e.bitmap, this), full, stale });
    if (cur(f) && f.bitmap) return shown(f, true, false);
    if (cur(f) && !f.bitmap) this.redecode(i);
    if (cur(l)) return shown(l, false, false);
    if (f && f.bitmap) return shown(f, true, true);
    if (l) return shown(l, false, true);
    return null;
  }

  redecode(i) {
    const e = this.full[i];
    if (!e || e.bitmap || e.decoding) return;
    e.decoding = true;
    this.decode(e.blob).then((bitmap) => {
      e.decoding = false;
      if (this.full[i] !== e || this.closed) { bitmap.close(); return; }
      e.bitmap = bitmap;
      this.decodedBytes += e.bytes;
      if (SHARED.bytes > this.budget) this.evict();
      this.emit('image', i);
    }).catch(() => { e.decoding = false; });
  }

  // The viewed slice changed: its full-resolution image and its neighbours' come first.
  setCurrent(i) {
    this.current = i;
    this.queueNeighbours();
  }

  queueNeighbours() {
    if (!this.items.length || this.provisional) return;
    const want = [this.current];
    for (let d = 1; d <= NEIGHBOURS; d++) want.push(this.current + d, this.current - d);
    this.priorityQueue = want.filter((i) => i >= 0 && i < this.n && !this.hasFull(i)
      && !this.priorityInFlight.has(`${this.gen}/${i}`));
    this.pump();
  }

  pump() {
    while (this.priorityInFlight.size < PRIORITY_IN_FLIGHT && this.priorityQueue.length) {
      const i = this.priorityQueue.shift();
      const gen = this.gen;
      const key = `${gen}/${i}`;
      if (this.hasFull(i) || this.priorityInFlight.has(key)) continue;
      const item = this.items[i];
      if (!item || !item.sop) continue;
      const url = `${api.frameUrl(this.study, this.series, item.sop, item.frame)}/rendered?${this.query({ viewport: this.fullViewport(item), accept: 'image/png', compression: this.fullCompression })}`;
      const p = api.request(url, { signal: this.controller.signal })
        .then(async (res) => ({ data: new Uint8Array(await res.arrayBuffer()), type: res.headers.get('content-type') || 'image/png' }))
        .then((blob) => this.decode(blob).then((bitmap) => {
          if (gen !== this.gen && this.full[i] && this.full[i].gen >= gen) { bitmap.close(); return; }
          this.place(`${item.sop}/${item.frame}`, 'full', bitmap, blob, gen);
        }))
        .catch((e) => {
          // One slice that cannot be had is that slice's problem, not the series': the viewport says
          // so on that slice, and the stream may still bring it.
          if (e.name !== 'AbortError') { this.sliceErrors.set(i, e); this.emit('image', i); }
        })
        .finally(() => { this.priorityInFlight.delete(key); this.pump(); });
      this.priorityInFlight.set(key, p);
    }
  }

  // A new window (null: the file's own): the viewed slice first, then both passes again.
  setWindow(win) {
    const same = (a, b) => (a === null && b === null) || (a && b && a.center === b.center && a.width === b.width);
    if (same(win, this.window)) return;
    this.window = win ? { center: win.center, width: win.width } : null;
    this.gen++;
    if (this.streamController) this.streamController.abort();
    this.streamController = null;
    this.priorityQueue = [];
    this.count();
    // Before the instance list the slices are provisional (no SOP UID yet): the restarted streams
    // bring the new window and queue the viewed slice once the list is in.
    this.priorityQueue = this.provisional ? [] : [this.current];
    this.pump();
    clearTimeout(this.restartTimer);
    // While the user drags the window only the viewed slice follows; the series once it settles.
    this.restartTimer = setTimeout(() => { if (!this.closed) this.startStreams(); }, 350);
  }
}
