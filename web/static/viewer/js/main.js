// Entry point of /viewer/ and /viewer/embed: credentials, then the study list or a study.
//
// Credentials (issue 7's contract): `#token=...` in the address is taken out of the address at once
// (history.replaceState). On /viewer/ it is exchanged for a session cookie (POST /auth/session); in
// embed mode (a cross-site iframe, where cookies are not sent) it is kept in memory and sent as a
// bearer token on every request. GET /auth/whoami tells who is signed in: 401 shows the sign-in form,
// 404 means the server has no authentication (anonymous access).

import * as api from './api.js';
import { renderStudyList } from './studylist.js';
import { StudyView, currentStudyView } from './studyview.js';
import { h, showError, clearError } from './ui.js';

const embed = document.body.classList.contains('embed');
const app = document.getElementById('app');
const userBox = document.getElementById('user');
let user = null; // whoami's answer, or {anonymous: true}

window.addEventListener('error', (e) => showError(`The viewer hit an error: ${e.message}`));
window.addEventListener('unhandledrejection', (e) => {
  const r = e.reason;
  if (r && r.name === 'AbortError') return;
  showError(api.describe(r));
});
api.events.addEventListener('unauthorized', () => {
  if (!document.querySelector('.signin')) signInPage('Your session has ended or you are not signed in.');
});

function takeFragmentToken() {
  const frag = new URLSearchParams(location.hash.replace(/^#/, ''));
  const token = frag.get('token');
  if (token !== null) history.replaceState(history.state, '', location.pathname + location.search);
  return token;
}

// POST /auth/session; null when signed in, else what to tell the user.
async function createSession(token) {
  if (embed) { api.setBearer(token); return null; }
  let res;
  try {
    res = await fetch(`${api.AUTH}/session`, { method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }) });
  } catch {
    return 'Cannot reach the server: the network may be down.';
  }
  if (res.ok) return null;
  if (res.status === 401) return 'That token was not accepted: it may be mistyped, expired or revoked.';
  if (res.status === 429) return 'Too many sign-in attempts: wait a minute, then try again.';
  if (res.status === 404) return null; // no authentication on this server: nothing to sign in to
  return `Sign-in failed (error ${res.status}).`;
}

// GET /auth/whoami: the user, 'signin' (401), or throws ApiError for anything else.
async function whoami() {
  let res;
  try {
    res = await fetch(`${api.AUTH}/whoami`, { credentials: 'same-origin', headers: api.headers({ Accept: 'application/json' }) });
  } catch {
    throw new api.ApiError(0, 'network error', `${api.AUTH}/whoami`);
  }
  if (res.status === 404) return { anonymous: true };
  if (res.status === 401) return 'signin';
  if (!res.ok) throw new api.ApiError(res.status, res.statusText, `${api.AUTH}/whoami`);
  return res.json();
}

function showUser() {
  if (!userBox) return;
  if (!user || user.anonymous) { userBox.replaceChildren(); return; }
  const anonymous = user.name === 'anonymous';
  const signOut = embed || api.hasBearer() || anonymous ? null : h('button', { type: 'button', class: 'signout', onclick: async () => {
    try { await fetch(`${api.AUTH}/session`, { method: 'DELETE', credentials: 'same-origin' }); } catch { /* shown below */ }
    user = null;
    showUser();
    signInPage('You are signed out.');
  } }, 'Sign out');
  userBox.replaceChildren(...[h('span', { class: 'user-name' }, `${user.name || 'signed in'}${user.role ? ` (${user.role})` : ''}`), signOut].filter(Boolean));
}

function signInPage(note) {
  const cur = currentStudyView();
  if (cur) cur.destroy();
  const error = h('p', { class: 'signin-error', role: 'alert' }, note || '');
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', required: true, 'aria-label': 'Access token' });
  const form = h('form', { class: 'signin' }, h('h2', {}, 'Sign in'),
    h('p', {}, embed ? 'This viewer needs a share link or an access token.' : 'Paste your access token to see the archive.'),
    input, h('button', { type: 'submit', class: 'primary' }, 'Sign in'), error);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = 'Signing in…';
    const problem = await createSession(input.value.trim());
    if (problem) { error.textContent = problem; return; }
    await start();
  });
  app.replaceChildren(h('section', { class: 'signin-page' }, form));
  input.focus();
}

function navigate(search) {
  history.pushState(null, '', location.pathname + search);
  route();
}

function route() {
  clearError();
  const params = new URLSearchParams(location.search);
  let study = params.get('study');
  if (!study && user && user.study) study = user.study; // a share link shows its one study
  if (study && user && user.study && study !== user.study) {
    // The archive would answer "not found" (it does not reveal other studies): say why instead.
    app.replaceChildren(h('section', { class: 'page-error', role: 'alert' }, h('h2', {}, 'Cannot show this study'),
      h('p', {}, 'You do not have permission to see this study: the share link you used opens another study.')));
    return;
  }
  if (embed) {
    if (!study) {
      app.replaceChildren(h('section', { class: 'page-error', role: 'alert' }, h('h2', {}, 'No study given'),
        h('p', {}, 'Open this page as /viewer/embed?study=<StudyInstanceUID>.')));
      return;
    }
    new StudyView(app, study, { embed: true }).load();
    return;
  }
  if (study) {
    const back = user && user.study ? null : () => navigate('');
    new StudyView(app, study, { back }).load();
    return;
  }
  const cur = currentStudyView();
  if (cur) cur.destroy();
  renderStudyList(app, (uid) => navigate(`?study=${encodeURIComponent(uid)}`));
}

async function start() {
  try {
    const who = await whoami();
    if (who === 'signin') {
      user = null; showUser();
      // A token from the link (embed mode keeps it in memory) that is refused: say so.
      signInPage(api.hasBearer() ? 'This link was not accepted: it may have expired or been revoked.' : '');
      return;
    }
    user = who;
  } catch (e) {
    app.replaceChildren(h('section', { class: 'page-error', role: 'alert' }, h('h2', {}, 'Cannot start the viewer'),
      h('p', {}, api.describe(e, 'sign-in state'))));
    return;
  }
  showUser();
  route();
}

async function boot() {
  const token = takeFragmentToken();
  if (token) {
    const problem = await createSession(token);
    if (problem) { signInPage(problem); return; }
  }
  await start();
}

window.addEventListener('popstate', () => { if (user) route(); });
document.getElementById('boot-note')?.remove();
boot();
