// The study list: a QIDO-RS search (PS3.18 10.6) by patient name or ID, accession number, study date
// range and modality; the answer (the most recent MAX matches, the server's order) is sorted and
// paged in the browser, since QIDO-RS has no sort parameter.

import * as api from './api.js';
import { h, showError, clearError } from './ui.js';

const MAX = 1000;
const PAGE = 25;
const INCLUDE = '00081030,00100030,00100040,00201206,00201208';
const MODALITIES = ['', 'CT', 'MR', 'CR', 'DX', 'US', 'XA', 'MG', 'NM', 'PT', 'RF', 'SM', 'OT'];
const COLUMNS = [
  ['patientName', 'Patient'], ['patientId', 'Patient ID'], ['date', 'Study date'], ['modalities', 'Modality'],
  ['description', 'Description'], ['accession', 'Accession'], ['instances', 'Images'],
];

// Kept across visits to a study, so "back" finds the list as it was left.
const state = { form: {}, rows: null, more: false, sort: { key: 'date', dir: -1 }, page: 0 };

function row(s) {
  return {
    uid: api.value(s, '0020000D'),
    patientName: api.personName(s, '00100010'),
    patientId: api.value(s, '00100020') || '',
    date: api.value(s, '00080020') || '',
    time: api.value(s, '00080030') || '',
    modalities: api.values(s, '00080061').join(', '),
    description: api.value(s, '00081030') || '',
    accession: api.value(s, '00080050') || '',
    series: Number(api.value(s, '00201206')) || 0,
    instances: Number(api.value(s, '00201208')) || 0,
  };
}

function wildcard(text, { contains }) {
  const t = text.trim();
  if (!t) return '';
  if (/[*?]/.test(t)) return t;
  return contains ? `*${t}*` : `${t}*`;
}

function dicomDate(v) { return (v || '').replaceAll('-', ''); }

export function queryFor(form) {
  const q = new URLSearchParams();
  const name = wildcard(form.patientName || '', { contains: true });
  if (name) q.set('PatientName', name);
  const id = wildcard(form.patientId || '', { contains: false });
  if (id) q.set('PatientID', id);
  const acc = wildcard(form.accession || '', { contains: false });
  if (acc) q.set('AccessionNumber', acc);
  const from = dicomDate(form.from); const to = dicomDate(form.to);
  if (from || to) q.set('StudyDate', from === to ? from : `${from}-${to}`);
  if (form.modality) q.set('ModalitiesInStudy', form.modality);
  q.set('includefield', INCLUDE);
  q.set('limit', String(MAX + 1));
  return q;
}

export function renderStudyList(root, open) {
  const field = (name, label, type = 'text', extra = {}) => h('label', { class: 'field' }, h('span', {}, label),
    h('input', { name, type, value: state.form[name] || '', autocomplete: 'off', ...extra }));
  const modality = h('select', { name: 'modality' }, MODALITIES.map((m) => h('option', { value: m, selected: (state.form.modality || '') === m }, m || 'Any')));
  const form = h('form', { class: 'search', role: 'search' },
    field('patientName', 'Patient name'), field('patientId', 'Patient ID'), field('accession', 'Accession'),
    field('from', 'Date from', 'date'), field('to', 'Date to', 'date'),
    h('label', { class: 'field' }, h('span', {}, 'Modality'), modality),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary' }, 'Search'),
      h('button', { type: 'button', class: 'clear' }, 'Clear')));
  const status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const head = h('tr', {}, COLUMNS.map(([key, label]) => h('th', { scope: 'col', dataset: { key } },
    h('button', { type: 'button', class: 'sort', onclick: () => sortBy(key) }, label))));
  const body = h('tbody');
  const table = h('table', { class: 'studies' }, h('thead', {}, head), body);
  const prev = h('button', { type: 'button', class: 'prev', onclick: () => { state.page--; draw(); } }, '‹ Previous');
  const next = h('button', { type: 'button', class: 'next', onclick: () => { state.page++; draw(); } }, 'Next ›');
  const pageInfo = h('span', { class: 'page-info' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev, pageInfo, next);
  root.replaceChildren(h('section', { class: 'study-list' }, form, status, h('div', { class: 'table-wrap' }, table), pager));

  function sortBy(key) {
    state.sort = state.sort.key === key ? { key, dir: -state.sort.dir } : { key, dir: key === 'date' ? -1 : 1 };
    state.page = 0;
    draw();
  }

  function sorted() {
    const { key, dir } = state.sort;
    const rows = [...(state.rows || [])];
    rows.sort((a, b) => {
      let c;
      if (key === 'instances') c = a.instances - b.instances;
      else if (key === 'date') c = (a.date + a.time).localeCompare(b.date + b.time);
      else c = String(a[key]).localeCompare(String(b[key]), undefined, { sensitivity: 'base', numeric: true });
      return c * dir;
    });
    return rows;
  }

  function draw() {
    for (const th of head.children) {
      const k = th.dataset.key;
      th.setAttribute('aria-sort', k === state.sort.key ? (state.sort.dir > 0 ? 'ascending' : 'descending') : 'none');
    }
    if (state.rows === null) { body.replaceChildren(); return; }
    const rows = sorted();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    state.page = Math.max(0, Math.min(pages - 1, state.page));
    const slice = rows.slice(state.page * PAGE, state.page * PAGE + PAGE);
    body.replaceChildren(...slice.map((r) => h('tr', {
      class: 'study-row', tabindex: '0', dataset: { study: r.uid },
      onclick: () => open(r.uid), onkeydown: (e) => { if (e.key === 'Enter') open(r.uid); },
    }, h('td', {}, r.patientName || '(no name)'), h('td', {}, r.patientId), h('td', {}, api.formatDate(r.date)),
    h('td', {}, r.modalities), h('td', {}, r.description), h('td', {}, r.accession),
    h('td', { class: 'num' }, `${r.instances}`))));
    const first = rows.length ? state.page * PAGE + 1 : 0;
    pageInfo.textContent = `${first}–${state.page * PAGE + slice.length} of ${rows.length}${state.more ? '+' : ''}`;
    prev.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
    if (!rows.length) status.textContent = 'No studies match this search.';
    else if (state.more) status.textContent = `More than ${MAX} studies match: showing the ${MAX} most recent. Narrow the search to see the others.`;
    else status.textContent = `${rows.length} ${rows.length === 1 ? 'study' : 'studies'}.`;
  }

  async function search() {
    const data = Object.fromEntries(new FormData(form).entries());
    state.form = data;
    status.textContent = 'Searching…';
    table.setAttribute('aria-busy', 'true');
    try {
      const found = await api.json(`${api.DICOMWEB}/studies?${queryFor(data)}`);
      state.more = found.length > MAX;
      state.rows = found.slice(0, MAX).map(row);
      state.page = 0;
      clearError();
    } catch (e) {
      state.rows = [];
      status.textContent = api.describe(e, 'study list');
      showError(api.describe(e, 'study list'));
      table.removeAttribute('aria-busy');
      body.replaceChildren();
      return;
    }
    table.removeAttribute('aria-busy');
    draw();
  }

  form.addEventListener('submit', (e) => { e.preventDefault(); search(); });
  form.querySelector('.clear').addEventListener('click', () => {
    for (const input of form.querySelectorAll('input')) input.value = '';
    modality.value = '';
    search();
  });
  if (state.rows === null) search(); else draw();
  return { search };
}
