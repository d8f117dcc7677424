// The help overlay: every shortcut of shortcuts.js, opened with "?" or the toolbar's "?" button.

import { SHORTCUTS } from './shortcuts.js';
import { h } from './ui.js';

let overlay = null;

function build() {
  const close = h('button', { type: 'button', class: 'help-close', 'aria-label': 'Close help', onclick: () => toggleHelp(false) }, '×');
  const sections = SHORTCUTS.map(([title, rows]) => h('section', {}, h('h3', {}, title),
    h('table', {}, h('tbody', {}, rows.map(([k, what]) => h('tr', {}, h('th', { scope: 'row' }, h('kbd', {}, k)), h('td', {}, what)))))));
  overlay = h('div', { class: 'help-overlay', role: 'dialog', 'aria-modal': 'true', 'aria-label': 'Keyboard shortcuts', hidden: true,
    onclick: (e) => { if (e.target === overlay) toggleHelp(false); } },
  h('div', { class: 'help-panel' }, h('header', {}, h('h2', {}, 'Keyboard shortcuts and mouse'), close),
    h('div', { class: 'help-grid' }, sections)));
  document.body.appendChild(overlay);
}

export function helpOpen() { return !!overlay && !overlay.hidden; }

export function toggleHelp(show) {
  if (!overlay) build();
  overlay.hidden = show === undefined ? !overlay.hidden : !show;
  if (!overlay.hidden) overlay.querySelector('.help-close').focus();
}
