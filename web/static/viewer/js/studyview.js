// The study view: series thumbnails with their image counts, 1x1 / 1x2 / 2x2 viewports (a series
// is dropped or tapped into one), the toolbar and the keyboard. Also the whole page in embed mode.

import * as api from './api.js';
import { SeriesLoader } from './series.js';
import { CT_PRESETS } from './shortcuts.js';
import { h, showError } from './ui.js';
import { Viewport } from './viewport.js';
import { toggleHelp, helpOpen } from './help.js';

const LAYOUTS = { '1x1': 1, '1x2': 2, '2x2': 4 };
const TOOLS = [['scroll', 'Scroll', 'S'], ['pan', 'Pan', 'P'], ['zoom', 'Zoom', 'Z'], ['window', 'Window', 'W'],
  ['measure', 'Length', 'M']];
const NON_IMAGE = new Set(['SR', 'PR', 'KO', 'DOC', 'RWV', 'REG', 'FID']);
const SERIES_INCLUDE = '0008103E,00200011,00201209,00080060';
const STUDY_INCLUDE = '00081030,00100030,00100040,00101010';

let current = null;

export function currentStudyView() { return current; }

export class StudyView {
  constructor(root, study, { embed = false, back = null } = {}) {
    if (current) current.destroy();
    current = this;
    this.root = root;
    this.study = study;
    this.embed = embed;
    this.back = back;
    this.viewports = [];
    this.active = null;
    this.tool = 'scroll';
    this.layout = '1x1';
    this.thumbUrls = [];
    // Series thumbnails wait until the first series shown has its first image (or 800 ms): on two
    // cores their renders otherwise compete with that image (bench/viewer_bench.py).
    this.thumbsGate = new Promise((resolve) => { this.openThumbs = resolve; setTimeout(resolve, 800); });
    this.onKey = (e) => this.key(e);
    document.addEventListener('keydown', this.onKey);
    // Aborts this view's own requests (study, series, thumbnails) when it is left: an answer that
    // comes later must never put this study back on screen under another one.
    this.controller = new AbortController();
    this.destroyed = false;
    window.__tesseraViewer = this;
  }

  destroy() {
    this.destroyed = true;
    this.controller.abort();
    document.removeEventListener('keydown', this.onKey);
    for (const v of this.viewports) v.destroy();
    for (const u of this.thumbUrls) URL.revokeObjectURL(u);
    this.viewports = [];
    if (current === this) current = null;
  }

  async load() {
    this.root.replaceChildren(h('p', { class: 'loading-note' }, 'Loading study…'));
    let studyRow; let series;
    try {
      const signal = this.controller.signal;
      // The study and its series are asked for at once.
      const [found, rows] = await Promise.all([
        api.json(`${api.DICOMWEB}/studies?StudyInstanceUID=${encodeURIComponent(this.study)}&includefield=${STUDY_INCLUDE}`, { signal }),
        api.json(`${api.studyUrl(this.study)}/series?includefield=${SERIES_INCLUDE}`, { signal }),
      ]);
      if (this.destroyed) return;
      if (!found.length) throw new api.ApiError(404, 'study not found', '');
      studyRow = found[0];
      series = rows;
    } catch (e) {
      // Left meanwhile, or not signed in (the sign-in form is already showing): nothing to say here.
      if (this.destroyed || e.name === 'AbortError' || (e && e.status === 401)) return;
      this.fail(api.describe(e, 'study'));
      return;
    }
    this.info = {
      patientName: api.personName(studyRow, '00100010') || '(no name)',
      patientId: api.value(studyRow, '00100020') || '',
      patientExtra: [api.value(studyRow, '00100040'), api.value(studyRow, '00101010'),
        api.formatDate(api.value(studyRow, '00100030'))].filter(Boolean).join(' · '),
      studyDescription: api.value(studyRow, '00081030') || '',
      studyDate: api.formatDate(api.value(studyRow, '00080020')),
      accession: api.value(studyRow, '00080050') || '',
    };
    this.series = series.map((s) => ({
      uid: api.value(s, '0020000E'),
      number: api.value(s, '00200011'),
      description: api.value(s, '0008103E') || '',
      modality: api.value(s, '00080060') || '',
      count: Number(api.value(s, '00201209')) || 0,
    })).sort((a, b) => (Number(a.number) || 0) - (Number(b.number) || 0));
    this.build();
    const images = this.series.filter((s) => !NON_IMAGE.has(s.modality));
    if (!images.length) {
      this.viewports[0].showMessage('This study has no image series to show.');
      return;
    }
  }

  fail(text) {
    const back = this.back ? h('button', { type: 'button', class: 'primary', onclick: this.back }, 'Back to the study list') : null;
    this.root.replaceChildren(h('section', { class: 'page-error', role: 'alert' }, h('h2', {}, 'Cannot show this study'),
      h('p', {}, text), back));
  }

  build() {
    const i = this.info;
    const header = h('header', { class: 'study-header' },
      this.back ? h('button', { type: 'button', class: 'back', onclick: this.back, title: 'Back to the study list' }, '‹ Studies') : null,
      h('div', { class: 'study-title' }, h('strong', {}, i.patientName), h('span', {}, i.patientId ? `ID ${i.patientId}` : ''),
        h('span', {}, i.studyDate), h('span', {}, i.studyDescription)));
    this.toolbar = this.buildToolbar();
    this.seriesList = h('aside', { class: 'series-list', 'aria-label': 'Series' },
      this.series.map((s) => this.seriesItem(s)));
    this.grid = h('main', { class: `viewports layout-${this.layout}` });
    const body = h('div', { class: 'study-body' }, this.seriesList, this.grid);
    this.root.replaceChildren(h('section', { class: 'study-view' }, header, this.toolbar, body));
    this.setLayout(this.layout);
  }

  buildToolbar() {
    const group = (label, ...children) => h('div', { class: 'group', role: 'group', 'aria-label': label }, ...children);
    this.layoutButtons = Object.keys(LAYOUTS).map((l) => h('button', { type: 'button', class: 'layout', dataset: { layout: l },
      title: `${l} layout`, onclick: () => this.setLayout(l) }, l));
    this.toolButtons = TOOLS.map(([t, label, key]) => h('button', { type: 'button', class: 'tool', dataset: { tool: t },
      title: `${label} tool (${key})`, onclick: () => this.setTool(t) }, label));
    this.windowSelect = h('select', { class: 'window-preset', 'aria-label': 'Window preset',
      onchange: (e) => this.pickWindow(e.target.value) });
    this.fpsSelect = h('select', { class: 'fps', 'aria-label': 'Cine frame rate', onchange: (e) => this.active && this.active.setFps(Number(e.target.value)) },
      [5, 10, 15, 20, 30, 60].map((f) => h('option', { value: f, selected: f === 15 }, `${f} fps`)));
    this.cineButton = h('button', { type: 'button', class: 'cine', title: 'Play / stop cine (C)', onclick: () => this.active && this.active.toggleCine() }, 'Play');
    this.invertButton = h('button', { type: 'button', class: 'invert', title: 'Invert (I)', onclick: () => this.active && this.active.key({ key: 'i' }) }, 'Invert');
    return h('nav', { class: 'toolbar', 'aria-label': 'Viewer tools' },
      group('Layout', ...this.layoutButtons),
      group('Tool', ...this.toolButtons),
      group('Window', this.windowSelect, this.invertButton),
      group('Zoom', h('button', { type: 'button', class: 'fit', title: 'Fit (F)', onclick: () => this.active && this.active.fit() }, 'Fit'),
        h('button', { type: 'button', class: 'actual', title: 'Actual size, 1:1 (A)', onclick: () => this.active && this.active.actualSize() }, '1:1')),
      group('Cine', this.cineButton, this.fpsSelect),
      h('button', { type: 'button', class: 'help-button', title: 'Keyboard shortcuts (?)', onclick: () => toggleHelp() }, '?'));
  }

  seriesItem(s) {
    const img = h('img', { alt: '', draggable: 'false' });
    const item = h('div', {
      class: 'series-item', draggable: 'true', tabindex: '0', role: 'button', dataset: { series: s.uid },
      title: 'Drag into a viewport, or click to show in the active one',
      ondragstart: (e) => { e.dataTransfer.setData('application/x-tessera-series', s.uid); e.dataTransfer.setData('text/plain', s.uid); e.dataTransfer.effectAllowed = 'copy'; },
      onclick: () => this.active && this.show(this.active, s),
      onkeydown: (e) => { if (e.key === 'Enter') { e.stopPropagation(); this.active && this.show(this.active, s); } },
    }, h('div', { class: 'thumb' }, img),
    h('div', { class: 'series-text' }, h('div', { class: 'series-title' }, `${s.modality} ${s.number !== undefined ? `#${s.number}` : ''}`),
      h('div', { class: 'series-desc' }, s.description || '(no description)'),
      h('div', { class: 'series-count' }, `${s.count} ${s.count === 1 ? 'image' : 'images'}`)));
    if (!NON_IMAGE.has(s.modality)) {
      this.thumbsGate.then(() => {
        if (this.destroyed) throw new DOMException('left', 'AbortError');
        return api.imageObjectUrl(`${api.seriesUrl(this.study, s.uid)}/thumbnail?accept=image/jpeg`, this.controller.signal);
      }).then((u) => {
        if (this.destroyed) { URL.revokeObjectURL(u); return; }
        this.thumbUrls.push(u);
        img.src = u;
      }).catch(() => { img.replaceWith(h('span', { class: 'no-thumb' }, 'no image')); });
    } else {
      img.replaceWith(h('span', { class: 'no-thumb' }, s.modality));
    }
    return item;
  }

  setLayout(layout) {
    this.layout = layout;
    const n = LAYOUTS[layout];
    this.grid.className = `viewports layout-${layout}`;
    while (this.viewports.length < n) this.addViewport();
    while (this.viewports.length > n) {
      const v = this.viewports.pop();
      if (v === this.active) this.active = null;
      v.destroy();
    }
    if (!this.active) this.activate(this.viewports[0]);
    // New viewports get the next series not shown yet.
    const shown = new Set(this.viewports.filter((v) => v.loader).map((v) => v.loader.series));
    for (const v of this.viewports) {
      if (v.loader || !this.series) continue;
      const next = this.series.find((s) => !NON_IMAGE.has(s.modality) && !shown.has(s.uid));
      if (next) { shown.add(next.uid); this.show(v, next); }
    }
    for (const b of this.layoutButtons) b.classList.toggle('on', b.dataset.layout === layout);
  }

  addViewport() {
    const vp = new Viewport(this.grid, this.viewports.length);
    vp.tool = this.tool;
    vp.addEventListener('activate', () => this.activate(vp));
    vp.addEventListener('change', () => { if (vp === this.active) this.syncToolbar(); });
    vp.root.addEventListener('dragover', (e) => { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; vp.root.classList.add('drop'); });
    vp.root.addEventListener('dragleave', () => vp.root.classList.remove('drop'));
    vp.root.addEventListener('drop', (e) => {
      e.preventDefault();
      vp.root.classList.remove('drop');
      const uid = e.dataTransfer.getData('application/x-tessera-series') || e.dataTransfer.getData('text/plain');
      const s = this.series.find((x) => x.uid === uid);
      if (s) { this.activate(vp); this.show(vp, s); }
    });
    this.viewports.push(vp);
    return vp;
  }

  activate(vp) {
    if (this.active === vp) return;
    if (this.active) this.active.root.classList.remove('active');
    this.active = vp;
    vp.root.classList.add('active');
    this.syncToolbar();
  }

  show(vp, s) {
    const loader = new SeriesLoader(this.study, s.uid, { expected: s.count });
    const label = `Se ${s.number ?? ''} ${s.description}`.trim();
    vp.setSeries(loader, { ...this.info, seriesLabel: label, modality: s.modality });
    loader.addEventListener('listed', () => { if (vp === this.active) this.syncToolbar(); });
    loader.addEventListener('image', () => this.openThumbs(), { once: true });
    loader.addEventListener('error', (e) => { if (e.detail && e.detail.status === 401) showError(api.describe(e.detail, 'series')); });
    for (const el of this.seriesList.querySelectorAll('.series-item')) {
      el.classList.toggle('shown', this.viewports.some((v) => v.loader && v.loader.series === el.dataset.series));
    }
  }

  setTool(tool) {
    this.tool = tool;
    for (const v of this.viewports) v.tool = tool;
    this.syncToolbar();
  }

  pickWindow(value) {
    const vp = this.active;
    if (!vp || !value) return;
    if (value === 'default') vp.setWindow(null);
    else {
      const [c, w] = value.split('/').map(Number);
      vp.setWindow({ center: c, width: w });
    }
    this.syncToolbar();
  }

  syncToolbar() {
    const vp = this.active;
    for (const b of this.toolButtons) b.classList.toggle('on', b.dataset.tool === this.tool);
    if (!vp) return;
    this.cineButton.textContent = vp.cine.playing ? 'Stop' : 'Play';
    this.cineButton.classList.toggle('on', vp.cine.playing);
    this.invertButton.classList.toggle('on', vp.inverted);
    this.fpsSelect.value = String(vp.cine.fps);
    if (![...this.fpsSelect.options].some((o) => o.value === String(vp.cine.fps))) {
      this.fpsSelect.appendChild(h('option', { value: vp.cine.fps }, `${vp.cine.fps} fps`));
      this.fpsSelect.value = String(vp.cine.fps);
    }
    const item = vp.item;
    const opts = [h('option', { value: '' }, 'Window…'), h('option', { value: 'default' }, "Image's own window")];
    if (item) {
      for (const w of item.windows) opts.push(h('option', { value: `${w.center}/${w.width}` }, `${w.name} (${w.width}/${w.center})`));
    }
    if (!item || item.modality === 'CT' || (vp.info && vp.info.modality === 'CT')) {
      CT_PRESETS.forEach((p, k) => opts.push(h('option', { value: `${p.center}/${p.width}` }, `${k + 1} CT ${p.name} (${p.width}/${p.center})`)));
    }
    this.windowSelect.replaceChildren(...opts);
    this.windowSelect.value = '';
  }

  key(e) {
    const t = e.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA')) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === '?') { toggleHelp(); e.preventDefault(); return; }
    if (e.key === 'Escape' && helpOpen()) { toggleHelp(false); e.preventDefault(); return; }
    // Tab moves between viewports only from inside the viewports: elsewhere it moves the focus as usual.
    if (e.key === 'Tab' && this.viewports.length > 1 && t && t.closest && t.closest('.viewports')) {
      const i = this.viewports.indexOf(this.active);
      this.activate(this.viewports[(i + (e.shiftKey ? -1 : 1) + this.viewports.length) % this.viewports.length]);
      e.preventDefault();
      return;
    }
    const tool = TOOLS.find(([, , k]) => k.toLowerCase() === e.key.toLowerCase());
    if (tool) { this.setTool(tool[0]); e.preventDefault(); return; }
    if (t && t.tagName === 'BUTTON' && (e.key === ' ' || e.key === 'Enter')) return;
    if (this.active && this.active.key(e)) {
      e.preventDefault();
      this.syncToolbar();
    }
  }
}
