// A stack viewport: draws one slice of a SeriesLoader on a canvas and handles scrolling, window,
// zoom/pan (with tiles.js at high zoom for frames larger than the full-resolution
// pass), invert, cine, length measurement, corner overlays, a scrollbar and the loading bar.
// Geometry is in device pixels: `scale` is device pixels per image pixel, so scale 1 is "actual
// size" and draws the server's rendering unresampled.

import * as api from './api.js';
import { TileLayer } from './tiles.js';
import { CT_PRESETS } from './shortcuts.js';


function el(tag, cls, parent) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

function fmt(v, digits = 0) {
  return Number.isFinite(v) ? v.toFixed(digits) : '';
}

export class Viewport extends EventTarget {
  constructor(parent, index) {
    super();
    this.slot = index;
    this.root = el('div', 'viewport', parent);
    this.root.tabIndex = 0;
    this.root.setAttribute('role', 'region');
    this.root.setAttribute('aria-label', `Image viewport ${index + 1}`);
    this.root.dataset.slot = String(index);
    this.canvas = el('canvas', 'image-layer', this.root);
    this.overlay = el('canvas', 'annotation-layer', this.root);
    this.corners = {};
    for (const c of ['tl', 'tr', 'bl', 'br']) this.corners[c] = el('div', `corner ${c}`, this.root);
    this.readout = el('div', 'measure-readout', this.root);
    this.message = el('div', 'message', this.root);
    this.scrollbar = el('div', 'scrollbar', this.root);
    this.thumb = el('div', 'thumb', this.scrollbar);
    this.progress = el('div', 'progress', this.root);
    this.lowBar = el('div', 'bar low', this.progress);
    this.fullBar = el('div', 'bar full', this.progress);
    this.ctx = this.canvas.getContext('2d', { alpha: false });
    this.octx = this.overlay.getContext('2d');
    this.loader = null;
    this.info = null;
    this.index = 0;
    this.scale = 1;
    this.panX = 0; this.panY = 0;
    this.fitMode = true;
    this.inverted = false;
    this.tool = 'scroll';
    this.cine = { playing: false, fps: 15, last: 0, raf: 0 };
    this.measurements = new Map();
    this.drawing = null;
    this.pointers = new Map();
    this.tileLayer = new TileLayer(this);
    this.frameRequested = false;
    this.showMessage('Drop a series here, or pick one on the left.');
    this.bind();
    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(this.root);
  }

  // Tile progress, read by the browser tests.
  get tileRequests() { return this.tileLayer.requests; }
  get tilesMissing() { return this.tileLayer.missing; }

  // --- loading -----------------------------------------------------------------------------------

  setSeries(loader, info) {
    this.stopCine();
    if (this.loader) this.loader.close();
    this.loader = loader;
    this.info = info;
    this.index = loader.current;
    this.measurements.clear();
    this.tileLayer.clear();
    this.inverted = false;
    this.fitMode = true;
    this.root.dataset.series = loader.series;
    this.root.classList.remove('has-image');
    this.showMessage('Loading series…');
    const redraw = () => this.requestDraw();
    loader.addEventListener('listed', () => {
      this.index = loader.current;
      this.fit();
      this.requestDraw();
    });
    loader.addEventListener('image', (e) => { if (e.detail === this.index) redraw(); });
    // Loading progress moves the bars only, at most ten times a second: redrawing the image for every
    // arriving slice cost the browser more CPU than decoding them (software rendering, two cores
    // shared with the server). The image is redrawn when the viewed slice's own image changes.
    loader.addEventListener('progress', () => this.requestBars());
    loader.addEventListener('error', (e) => this.showMessage(api.describe(e.detail, 'series')));
    this.dispatchEvent(new Event('change'));
  }

  get item() { return this.loader && this.loader.n ? this.loader.items[this.index] : null; }

  // --- geometry ----------------------------------------------------------------------------------

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const r = this.root.getBoundingClientRect();
    const w = Math.max(1, Math.round(r.width * dpr));
    const h = Math.max(1, Math.round(r.height * dpr));
    if (this.canvas.width === w && this.canvas.height === h) return;
    for (const c of [this.canvas, this.overlay]) { c.width = w; c.height = h; }
    if (this.fitMode) this.fit(); else this.requestDraw();
  }

  fit() {
    const item = this.item;
    this.fitMode = true;
    this.panX = 0; this.panY = 0;
    if (item && item.columns) {
      this.scale = Math.min(this.canvas.width / item.columns, this.canvas.height / item.rows);
      this.fitKey = `${item.columns}x${item.rows}x${this.canvas.width}x${this.canvas.height}`;
    }
    this.requestDraw();
  }

  actualSize() {
    this.fitMode = false;
    this.scale = 1;
    this.panX = 0; this.panY = 0;
    this.requestDraw();
  }

  // Top-left of the image on the canvas (device px); whole pixels at integer scales so that
  // "actual size" copies the rendered image pixel for pixel.
  origin() {
    const item = this.item;
    let x = this.canvas.width / 2 + this.panX - (item.columns * this.scale) / 2;
    let y = this.canvas.height / 2 + this.panY - (item.rows * this.scale) / 2;
    if (Number.isInteger(this.scale)) { x = Math.round(x); y = Math.round(y); }
    return [x, y];
  }

  clientToImage(cx, cy) {
    const r = this.canvas.getBoundingClientRect();
    const dpr = this.canvas.width / r.width;
    const [ox, oy] = this.origin();
    return { x: ((cx - r.left) * dpr - ox) / this.scale, y: ((cy - r.top) * dpr - oy) / this.scale };
  }

  imageToClient(ix, iy) {
    const r = this.canvas.getBoundingClientRect();
    const dpr = this.canvas.width / r.width;
    const [ox, oy] = this.origin();
    return { x: r.left + (ox + ix * this.scale) / dpr, y: r.top + (oy + iy * this.scale) / dpr };
  }

  zoomAt(factor, cx, cy) {
    if (!this.item) return;
    const before = cx === undefined ? null : this.clientToImage(cx, cy);
    this.scale = Math.min(40, Math.max(0.02, this.scale * factor));
    this.fitMode = false;
    if (before) {
      const after = this.imageToClient(before.x, before.y);
      const dpr = this.canvas.width / this.canvas.getBoundingClientRect().width;
      this.panX -= (after.x - cx) * dpr;
      this.panY -= (after.y - cy) * dpr;
    }
    this.requestDraw();
  }

  // --- slices ------------------------------------------------------------------------------------

  go(i) {
    if (!this.loader || !this.loader.n) return;
    const n = this.loader.n;
    const j = Math.max(0, Math.min(n - 1, Math.round(i)));
    if (j === this.index) return;
    this.index = j;
    this.loader.setCurrent(j);
    this.requestDraw();
  }

  step(d) { this.go(this.index + d); }

  // --- window ------------------------------------------------------------------------------------

  currentWindow() {
    if (this.loader && this.loader.window) return this.loader.window;
    const item = this.item;
    if (item && item.windows.length) return item.windows[0];
    return null;
  }

  setWindow(win) {
    if (!this.loader) return;
    this.loader.setWindow(win);
    this.tileLayer.clear();
    this.requestDraw();
  }

  preset(k) {
    const p = CT_PRESETS[k];
    if (p) this.setWindow({ center: p.center, width: p.width });
  }

  // --- cine --------------------------------------------------------------------------------------

  toggleCine() { if (this.cine.playing) this.stopCine(); else this.startCine(); }

  startCine() {
    if (!this.loader || !this.loader.n || this.cine.playing) return;
    this.cine.playing = true;
    this.cine.last = performance.now();
    const tick = (t) => {
      if (!this.cine.playing) return;
      const period = 1000 / this.cine.fps;
      if (t - this.cine.last >= period) {
        const steps = Math.floor((t - this.cine.last) / period);
        this.cine.last += steps * period;
        this.index = (this.index + steps) % this.loader.n;
        this.cineFrames = (this.cineFrames || 0) + 1;
        this.loader.current = this.index;
        this.draw();
      }
      this.cine.raf = requestAnimationFrame(tick);
    };
    this.cine.raf = requestAnimationFrame(tick);
    this.dispatchEvent(new Event('change'));
  }

  stopCine() {
    if (!this.cine.playing) return;
    this.cine.playing = false;
    cancelAnimationFrame(this.cine.raf);
    if (this.loader) this.loader.setCurrent(this.index);
    this.dispatchEvent(new Event('change'));
  }

  setFps(fps) {
    this.cine.fps = Math.max(1, Math.min(60, fps));
    this.dispatchEvent(new Event('change'));
  }

  // --- drawing -----------------------------------------------------------------------------------

  requestBars() {
    if (this.barsTimer) return;
    this.barsTimer = setTimeout(() => { this.barsTimer = null; this.updateBars(); }, 100);
  }

  requestDraw() {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => { this.frameRequested = false; this.draw(); });
  }

  showMessage(text) {
    this.message.textContent = text || '';
    this.message.hidden = !text;
  }

  draw() {
    const ctx = this.ctx;
    const W = this.canvas.width; const H = this.canvas.height;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.globalCompositeOperation = 'source-over';
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, W, H);
    this.updateBars();
    const item = this.item;
    if (!item) { this.drawOverlay(); return; }
    const img = this.loader.image(this.index);
    if (!img) {
      const sliceError = this.loader.sliceErrors && this.loader.sliceErrors.get(this.index);
      if (sliceError) this.showMessage(`Slice ${this.index + 1}: ${api.describe(sliceError, 'image')}`);
      else if (!this.loader.error) this.showMessage(`Loading slice ${this.index + 1}…`);
      this.root.classList.remove('has-image');
      this.drawOverlay();
      return;
    }
    if (!this.loader.error) this.showMessage('');
    if (this.fitMode && this.fitKey !== `${item.columns}x${item.rows}x${W}x${H}`) {
      this.scale = Math.min(W / item.columns, H / item.rows); // the geometry became known (or changed)
      this.fitKey = `${item.columns}x${item.rows}x${W}x${H}`;
    }
    const [x, y] = this.origin();
    const w = item.columns * this.scale; const h = item.rows * this.scale;
    // Whole-pixel scales show the pixels as they are (1 = the server's image exactly); other scales
    // and the low-resolution pass are interpolated.
    ctx.imageSmoothingEnabled = !(img.full && Number.isInteger(this.scale));
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(img.bitmap, 0, 0, img.bitmap.width, img.bitmap.height, x, y, w, h);
    if (img.full && img.bitmap.width < item.columns && this.scale > img.bitmap.width / item.columns * 1.01) {
      this.tileLayer.draw(item, x, y);
    }
    if (this.inverted) {
      ctx.globalCompositeOperation = 'difference';
      ctx.fillStyle = '#fff';
      ctx.fillRect(Math.max(0, x), Math.max(0, y), Math.min(W, w), Math.min(H, h));
      ctx.globalCompositeOperation = 'source-over';
    }
    this.root.classList.add('has-image');
    this.root.dataset.resolution = img.full ? 'full' : 'low';
    this.root.dataset.stale = img.stale ? '1' : '0';
    const st = this.loader.stat;
    if (st.firstDrawn === null) {
      st.firstDrawn = performance.now();
      performance.mark(`tessera:first-drawn:${this.loader.series}`);
    }
    this.lastDrawn = { index: this.index, full: img.full, stale: img.stale, scale: this.scale, inverted: this.inverted };
    this.drawOverlay(img);
  }

  updateBars() {
    const l = this.loader;
    const n = l && l.n ? l.n : 0;
    const low = n ? l.lowCount / n : 0;
    const full = n ? l.fullCount / n : 0;
    this.lowBar.style.width = `${(low * 100).toFixed(2)}%`;
    this.fullBar.style.width = `${(full * 100).toFixed(2)}%`;
    this.progress.title = n ? `low resolution ${l.lowCount}/${n}, full resolution ${l.fullCount}/${n}` : '';
    this.progress.dataset.low = String(l ? l.lowCount : 0);
    this.progress.dataset.full = String(l ? l.fullCount : 0);
    this.progress.classList.toggle('done', n > 0 && l.fullCount === n);
    if (n > 1) {
      const track = this.scrollbar.clientHeight;
      const th = Math.max(14, track / n);
      this.thumb.style.height = `${th}px`;
      this.thumb.style.top = `${(this.index / (n - 1)) * (track - th)}px`;
      this.scrollbar.hidden = false;
    } else {
      this.scrollbar.hidden = true;
    }
  }

  drawOverlay(img) {
    const o = this.octx;
    o.setTransform(1, 0, 0, 1, 0, 0);
    o.clearRect(0, 0, this.overlay.width, this.overlay.height);
    const item = this.item;
    const info = this.info || {};
    const n = this.loader ? this.loader.n : 0;
    const lines = (c, arr) => {
      this.corners[c].replaceChildren(...arr.filter((t) => t !== '' && t !== undefined && t !== null)
        .map((t) => { const d = document.createElement('div'); d.textContent = t; return d; }));
    };
    if (!this.loader) { for (const c of Object.keys(this.corners)) lines(c, []); this.readout.textContent = ''; return; }
    lines('tl', [info.patientName, info.patientId ? `ID ${info.patientId}` : '', info.patientExtra]);
    lines('tr', [info.studyDescription, info.studyDate, info.seriesLabel]);
    const loc = item && Number.isFinite(item.sliceLocation) ? `Loc ${fmt(item.sliceLocation, 1)} mm` : '';
    const res = img ? (img.full ? 'full resolution' : 'low resolution (loading)') + (img.stale ? ', window updating' : '') : '';
    lines('bl', [n ? `Im ${this.index + 1}/${n}` : '', loc, res,
      this.cine.playing ? `Cine ${this.cine.fps} fps` : '']);
    const win = this.currentWindow();
    const winText = win ? `W ${fmt(win.width)} L ${fmt(win.center)}` : 'W/L default';
    lines('br', [winText, item && !item.provisional ? `Zoom ${fmt(this.scale * 100)}%` : '', this.inverted ? 'Inverted' : '']);
    this.corners.bl.dataset.slice = String(this.index + 1);
    this.corners.br.dataset.zoom = String(this.scale);
    if (!item) return;
    // Measurements of this slice.
    const all = [...(this.measurements.get(this.index) || [])];
    if (this.drawing) all.push(this.drawing);
    const dpr = this.canvas.width / (this.canvas.getBoundingClientRect().width || 1);
    const [ox, oy] = this.origin();
    o.lineWidth = 1.5 * dpr;
    o.font = `${13 * dpr}px system-ui, sans-serif`;
    for (const m of all) {
      const ax = ox + m.a.x * this.scale; const ay = oy + m.a.y * this.scale;
      const bx = ox + m.b.x * this.scale; const by = oy + m.b.y * this.scale;
      o.strokeStyle = '#ffd54a';
      o.fillStyle = '#ffd54a';
      o.beginPath(); o.moveTo(ax, ay); o.lineTo(bx, by); o.stroke();
      for (const [px, py] of [[ax, ay], [bx, by]]) { o.beginPath(); o.arc(px, py, 3 * dpr, 0, Math.PI * 2); o.fill(); }
      const text = this.lengthText(m);
      o.strokeStyle = '#000';
      o.lineWidth = 3 * dpr;
      o.strokeText(text, bx + 6 * dpr, by - 6 * dpr);
      o.fillText(text, bx + 6 * dpr, by - 6 * dpr);
      o.lineWidth = 1.5 * dpr;
    }
  }

  // Length of a measurement (PS3.3 C.7.6.2.1.1 Pixel Spacing: row spacing, then column spacing).
  length(m) {
    const item = this.item;
    const dx = m.b.x - m.a.x; const dy = m.b.y - m.a.y;
    const px = Math.hypot(dx, dy);
    if (item.pixelSpacing) {
      const [rowSp, colSp] = item.pixelSpacing;
      return { value: Math.hypot(dx * colSp, dy * rowSp), unit: 'mm', px, note: '' };
    }
    if (item.imagerPixelSpacing) {
      const [rowSp, colSp] = item.imagerPixelSpacing;
      return { value: Math.hypot(dx * colSp, dy * rowSp), unit: 'mm', px,
        note: 'at the detector (Imager Pixel Spacing): not corrected for magnification' };
    }
    return { value: px, unit: 'px', px, note: 'This image has no Pixel Spacing: lengths are in pixels, not millimetres.' };
  }

  lengthText(m) {
    const l = this.length(m);
    return l.unit === 'mm' ? `${l.value.toFixed(1)} mm` : `${l.value.toFixed(1)} px`;
  }

  showReadout(m) {
    if (!m) { this.readout.textContent = ''; this.readout.hidden = true; return; }
    const l = this.length(m);
    this.readout.hidden = false;
    this.readout.dataset.value = String(l.value);
    this.readout.dataset.unit = l.unit;
    this.readout.textContent = `Length ${l.value.toFixed(2)} ${l.unit}` + (l.note ? ` — ${l.note}` : '');
  }

  // --- input -------------------------------------------------------------------------------------

  bind() {
    const target = this.overlay;
    target.addEventListener('contextmenu', (e) => e.preventDefault());
    target.addEventListener('pointerdown', (e) => this.pointerDown(e));
    target.addEventListener('pointermove', (e) => this.pointerMove(e));
    target.addEventListener('pointerup', (e) => this.pointerUp(e));
    target.addEventListener('pointercancel', (e) => this.pointerUp(e));
    target.addEventListener('dblclick', () => this.fit());
    target.addEventListener('wheel', (e) => this.wheel(e), { passive: false });
    this.root.addEventListener('pointerdown', () => this.dispatchEvent(new Event('activate')));
    this.scrollbar.addEventListener('pointerdown', (e) => {
      e.stopPropagation();
      this.dispatchEvent(new Event('activate'));
      this.scrollbar.setPointerCapture(e.pointerId);
      this.scrollTo(e);
      const move = (ev) => this.scrollTo(ev);
      const up = () => {
        this.scrollbar.removeEventListener('pointermove', move);
        this.scrollbar.removeEventListener('pointerup', up);
      };
      this.scrollbar.addEventListener('pointermove', move);
      this.scrollbar.addEventListener('pointerup', up);
    });
  }

  scrollTo(e) {
    if (!this.loader || !this.loader.n) return;
    const r = this.scrollbar.getBoundingClientRect();
    const f = Math.max(0, Math.min(1, (e.clientY - r.top) / r.height));
    this.go(f * (this.loader.n - 1));
  }

  pointerDown(e) {
    this.dispatchEvent(new Event('activate'));
    if (!this.item || this.item.provisional) return;
    this.overlay.setPointerCapture(e.pointerId);
    this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    if (this.pointers.size === 2) { this.gesture = { kind: 'pinch', ...this.pinchState() }; return; }
    let kind = this.tool;
    if (e.button === 1) kind = 'pan';
    if (e.button === 2) kind = 'window';
    e.preventDefault();
    const win = this.currentWindow() || this.guessWindow();
    this.gesture = { kind, x: e.clientX, y: e.clientY, startIndex: this.index, win: { ...win }, startScale: this.scale,
      panX: this.panX, panY: this.panY };
    if (kind === 'measure') {
      const p = this.clientToImage(e.clientX, e.clientY);
      this.drawing = { a: p, b: { ...p } };
    }
  }

  guessWindow() {
    const item = this.item;
    if (item && item.modality === 'CT') return { center: 40, width: 400 };
    return { center: 128, width: 256 };
  }

  pinchState() {
    const [p, q] = [...this.pointers.values()];
    return { d: Math.hypot(p.x - q.x, p.y - q.y), cx: (p.x + q.x) / 2, cy: (p.y + q.y) / 2 };
  }

  pointerMove(e) {
    if (!this.pointers.has(e.pointerId) || !this.gesture) return;
    const prev = this.pointers.get(e.pointerId);
    this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    const g = this.gesture;
    const dpr = this.canvas.width / this.canvas.getBoundingClientRect().width;
    if (g.kind === 'pinch') {
      if (this.pointers.size < 2) return;
      const now = this.pinchState();
      this.zoomAt(now.d / g.d, now.cx, now.cy);
      this.panX += (now.cx - g.cx) * dpr; this.panY += (now.cy - g.cy) * dpr;
      Object.assign(g, now);
      return;
    }
    const dx = e.clientX - g.x; const dy = e.clientY - g.y;
    switch (g.kind) {
      case 'scroll': {
        const n = this.loader.n;
        const per = Math.max(2, Math.min(20, this.root.clientHeight / Math.max(1, n)));
        this.go(g.startIndex + Math.round(dy / per));
        break;
      }
      case 'pan':
        this.panX += (e.clientX - prev.x) * dpr; this.panY += (e.clientY - prev.y) * dpr;
        this.fitMode = false;
        this.requestDraw();
        break;
      case 'zoom': {
        this.scale = g.startScale; this.panX = g.panX; this.panY = g.panY;
        this.zoomAt(Math.exp(-dy * 0.01), g.x, g.y);
        break;
      }
      case 'window': {
        const k = Math.max(0.25, g.win.width / 400);
        const width = Math.max(1, Math.round(g.win.width + dx * k * 2));
        const center = Math.round(g.win.center - dy * k);
        this.setWindow({ center, width });
        break;
      }
      case 'measure':
        this.drawing.b = this.clientToImage(e.clientX, e.clientY);
        this.showReadout(this.drawing);
        this.requestDraw();
        break;
      default:
    }
  }

  pointerUp(e) {
    this.pointers.delete(e.pointerId);
    const g = this.gesture;
    if (!g) return;
    if (g.kind === 'pinch') { if (this.pointers.size === 0) this.gesture = null; return; }
    if (g.kind === 'measure' && this.drawing) {
      const m = this.drawing;
      this.drawing = null;
      if (Math.hypot(m.b.x - m.a.x, m.b.y - m.a.y) * this.scale > 3) {
        const list = this.measurements.get(this.index) || [];
        list.push(m);
        this.measurements.set(this.index, list);
        this.showReadout(m);
      }
      this.requestDraw();
    }
    this.gesture = null;
  }

  wheel(e) {
    e.preventDefault();
    if (!this.item) return;
    const unit = e.deltaMode === 1 ? 33 : e.deltaMode === 2 ? 400 : 1;
    if (e.ctrlKey || e.metaKey) {
      this.zoomAt(Math.exp(-e.deltaY * unit * 0.002), e.clientX, e.clientY);
      return;
    }
    this.wheelAcc = (this.wheelAcc || 0) + e.deltaY * unit;
    const steps = Math.trunc(this.wheelAcc / 50);
    if (steps) { this.wheelAcc -= steps * 50; this.step(steps); }
  }

  // Keys of shortcuts.js that act on one viewport; true when handled.
  key(e) {
    const n = this.loader ? this.loader.n : 0;
    switch (e.key) {
      case 'ArrowDown': case 'ArrowRight': case 'PageDown': case 'j': this.step(e.key === 'PageDown' ? 10 : 1); return true;
      case 'ArrowUp': case 'ArrowLeft': case 'PageUp': case 'k': this.step(e.key === 'PageUp' ? -10 : -1); return true;
      case 'Home': this.go(0); return true;
      case 'End': this.go(n - 1); return true;
      case '1': case '2': case '3': case '4': case '5': this.preset(Number(e.key) - 1); return true;
      case '0': this.setWindow(null); return true;
      case 'i': case 'I': this.inverted = !this.inverted; this.requestDraw(); this.dispatchEvent(new Event('change')); return true;
      case 'f': case 'F': this.fit(); return true;
      case 'a': case 'A': this.actualSize(); return true;
      case '+': case '=': this.zoomAt(1.25); return true;
      case '-': this.zoomAt(0.8); return true;
      case 'c': case 'C': case ' ': this.toggleCine(); return true;
      case '[': this.setFps(this.cine.fps - (this.cine.fps > 10 ? 5 : 1)); return true;
      case ']': this.setFps(this.cine.fps + (this.cine.fps >= 10 ? 5 : 1)); return true;
      case 'r': case 'R': this.reset(); return true;
      case 'Delete': case 'Backspace': this.measurements.delete(this.index); this.showReadout(null); this.requestDraw(); return true;
      case 'Escape': if (this.drawing) { this.drawing = null; this.requestDraw(); return true; } return false;
      default: return false;
    }
  }

  reset() {
    this.stopCine();
    this.inverted = false;
    this.setWindow(null);
    this.fit();
    this.dispatchEvent(new Event('change'));
  }

  destroy() {
    clearTimeout(this.barsTimer);
    this.stopCine();
    this.resizeObserver.disconnect();
    if (this.loader) this.loader.close();
    this.tileLayer.clear();
    this.root.remove();
  }
}
