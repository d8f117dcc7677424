// Tiles of a frame larger than the full-resolution pass, for a viewport zoomed in past it: 256-px
// tiles of the resolution level that matches the zoom, from the rendered resource with a region
// viewport (the level list comes from the instance's `.../tiles` descriptor), kept in a byte-bounded
// LRU and drawn over the image. Owned by one Viewport.

import * as api from './api.js';

const TILE = 256;
const TILE_BUDGET = 128 * 1024 * 1024;
const TILES_IN_FLIGHT = 6;

export class TileLayer {
  constructor(viewport) {
    this.vp = viewport;
    this.tiles = new Map();
    this.controller = new AbortController();
    this.bytes = 0;
    this.inFlight = new Map();
    this.info = new Map(); // SOP Instance UID -> promise of its tile descriptor (null when it failed)
    this.ready = null; // SOP Instance UID -> tile descriptor, once in
    this.missing = 0; // tiles wanted for the last draw and not yet in (tests wait for 0)
    this.requests = 0; // tiles received
  }

  clear() {
    // Tile requests of what is no longer shown stop (a series change, a new window, leaving).
    if (this.controller) this.controller.abort();
    this.controller = new AbortController();
    for (const t of this.tiles.values()) if (t.bitmap) t.bitmap.close();
    this.tiles.clear();
    this.bytes = 0;
  }

  async levels(item) {
    const key = item.sop;
    if (!this.info.has(key)) {
      const url = `${api.seriesUrl(this.vp.loader.study, this.vp.loader.series)}/instances/${encodeURIComponent(item.sop)}/tiles`;
      // A failed lookup is forgotten, so the next draw asks again (a passing network error).
      this.info.set(key, api.json(url).catch(() => { this.info.delete(key); return null; }));
    }
    return this.info.get(key);
  }

  draw(item, x, y) {
    const infoP = this.levels(item);
    const ready = this.ready && this.ready.get(item.sop);
    if (!ready) {
      infoP.then((info) => {
        if (!info) return; // failed: the next draw (zoom, pan, scroll) asks again
        this.ready = this.ready || new Map();
        this.ready.set(item.sop, info);
        this.vp.requestDraw();
      });
      return;
    }
    const levels = ready.levels || [];
    if (!levels.length) return;
    const k = Math.max(0, Math.min(levels.length - 1, Math.floor(Math.log2(1 / this.vp.scale))));
    const s = TILE * 2 ** k;
    const W = this.vp.canvas.width; const H = this.vp.canvas.height;
    const ix0 = Math.max(0, (-x) / this.vp.scale); const iy0 = Math.max(0, (-y) / this.vp.scale);
    const ix1 = Math.min(item.columns, (W - x) / this.vp.scale); const iy1 = Math.min(item.rows, (H - y) / this.vp.scale);
    if (ix1 <= ix0 || iy1 <= iy0) return;
    const gen = this.vp.loader.gen;
    const want = [];
    for (let ty = Math.floor(iy0 / s); ty * s < iy1; ty++) {
      for (let tx = Math.floor(ix0 / s); tx * s < ix1; tx++) {
        const key = `${gen}|${item.sop}|${item.frame}|${k}|${tx}|${ty}`;
        const t = this.tiles.get(key);
        const sx = tx * s; const sy = ty * s;
        const sw = Math.min(s, item.columns - sx); const sh = Math.min(s, item.rows - sy);
        if (t && t.bitmap) {
          this.tiles.delete(key); this.tiles.set(key, t); // most recently used last
          this.vp.ctx.drawImage(t.bitmap, 0, 0, t.bitmap.width, t.bitmap.height,
            x + sx * this.vp.scale, y + sy * this.vp.scale, sw * this.vp.scale, sh * this.vp.scale);
        } else if (!this.inFlight.has(key)) {
          want.push({ key, sx, sy, vw: Math.ceil(sw / 2 ** k), vh: Math.ceil(sh / 2 ** k), s });
        }
      }
    }
    this.missing = want.length + this.inFlight.size; // tests wait for 0
    for (const t of want) {
      if (this.inFlight.size >= TILES_IN_FLIGHT) break;
      const loader = this.vp.loader;
      const q = [`viewport=${t.vw},${t.vh},${t.sx},${t.sy},${t.s},${t.s}`, 'accept=image/png'];
      if (loader.windowParam) q.push(`window=${loader.windowParam}`);
      const url = `${api.frameUrl(loader.study, loader.series, item.sop, item.frame)}/rendered?${q.join('&')}`;
      const p = api.request(url, { signal: this.controller.signal }).then((r) => r.blob()).then((b) => loader.decode(b)).then((bitmap) => {
        if (loader !== this.vp.loader) { bitmap.close(); return; }
        const bytes = bitmap.width * bitmap.height * 4;
        this.tiles.set(t.key, { bitmap, bytes });
        this.bytes += bytes;
        for (const [k2, v] of this.tiles) {
          if (this.bytes <= TILE_BUDGET) break;
          v.bitmap.close(); this.bytes -= v.bytes; this.tiles.delete(k2);
        }
        this.requests++;
        this.vp.requestDraw();
      }).catch(() => {}).finally(() => { this.inFlight.delete(t.key); });
      this.inFlight.set(t.key, p);
    }
  }
}
