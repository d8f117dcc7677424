// Small DOM helpers shared by the pages: element building (text only, never HTML strings, so no
// data from the archive is ever parsed as markup) and the error banner.

export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function showError(text) {
  const box = document.getElementById('banner');
  if (!box) return;
  box.replaceChildren(h('span', { class: 'banner-text' }, text),
    h('button', { type: 'button', class: 'banner-close', 'aria-label': 'Dismiss', onclick: () => { box.hidden = true; } }, '×'));
  box.hidden = false;
}

export function clearError() {
  const box = document.getElementById('banner');
  if (box) box.hidden = true;
}
