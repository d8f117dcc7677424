// DICOMweb access for the viewer: every data call goes through `request`, which adds the bearer token
// of embed mode (share links: cookies are not sent to a cross-site iframe), turns HTTP and network
// failures into ApiError with words a user can read, and announces a 401 so the app can show sign-in.

export const DICOMWEB = new URL('../dicomweb', document.baseURI).pathname.replace(/\/$/, '');
export const AUTH = new URL('../auth', document.baseURI).pathname.replace(/\/$/, '');

let bearer = null;
export const events = new EventTarget();

export function setBearer(token) { bearer = token || null; }
export function hasBearer() { return bearer !== null; }

export class ApiError extends Error {
  constructor(status, message, url) {
    super(message);
    this.status = status;
    this.url = url;
  }
}

// What a user reads for a failed call; `what` names the thing asked for ("study", "series").
export function describe(err, what = 'data') {
  if (!(err instanceof ApiError)) return `Something went wrong in the viewer: ${err && err.message ? err.message : err}`;
  switch (err.status) {
    case 0: return 'Cannot reach the server: the network may be down. Try again when the connection is back.';
    case 401: return 'You are not signed in (or your session has ended). Sign in to see this ' + what + '.';
    case 403: return 'You do not have permission to see this ' + what + '.';
    case 404: return `The ${what} was not found on this server.`;
    case 406: return `The server cannot render this ${what} as an image.`;
    case 429: return 'Too many requests: wait a moment and try again.';
    default:
      if (err.status >= 500) return `The server failed to answer (error ${err.status}). Try again later.`;
      return `The request for this ${what} was refused (${err.status}): ${err.message}`;
  }
}

export function headers(extra = {}) {
  const h = { ...extra };
  if (bearer) h.Authorization = `Bearer ${bearer}`;
  return h;
}

// fetch with the viewer's credentials; resolves to an ok Response, else throws ApiError.
export async function request(url, { method = 'GET', accept, body, signal, contentType } = {}) {
  const h = headers();
  if (accept) h.Accept = accept;
  if (contentType) h['Content-Type'] = contentType;
  let res;
  try {
    res = await fetch(url, { method, headers: h, body, signal, credentials: 'same-origin' });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network error', url);
  }
  if (res.ok || res.status === 204) return res;
  let message = res.statusText || `HTTP ${res.status}`;
  try {
    const text = await res.text();
    try { message = JSON.parse(text).error || message; } catch { if (text) message = text.slice(0, 200); }
  } catch { /* body unreadable: keep the status text */ }
  const err = new ApiError(res.status, message, url);
  if (res.status === 401) events.dispatchEvent(new CustomEvent('unauthorized', { detail: err }));
  throw err;
}

export async function json(url, opts = {}) {
  const res = await request(url, { ...opts, accept: 'application/dicom+json, application/json' });
  if (res.status === 204) return [];
  const text = await res.text();
  return text ? JSON.parse(text) : [];
}

// --- DICOM JSON (PS3.18 F.2) helpers ----------------------------------------------------------

export function value(obj, tag, i = 0) {
  const el = obj && obj[tag];
  if (!el || !el.Value || el.Value.length <= i) return undefined;
  return el.Value[i];
}

export function values(obj, tag) {
  const el = obj && obj[tag];
  return el && el.Value ? el.Value : [];
}

export function personName(obj, tag) {
  const v = value(obj, tag);
  if (!v) return '';
  const alpha = typeof v === 'string' ? v : (v.Alphabetic || v.Ideographic || '');
  const [family = '', given = '', middle = '', prefix = '', suffix = ''] = alpha.split('^');
  const rest = [prefix, given, middle].filter(Boolean).join(' ');
  let out = family;
  if (rest) out += (out ? ', ' : '') + rest;
  if (suffix) out += ' ' + suffix;
  return out;
}

export function formatDate(da) {
  if (!da || da.length < 8) return da || '';
  return `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}`;
}

export function studyUrl(study) { return `${DICOMWEB}/studies/${encodeURIComponent(study)}`; }
export function seriesUrl(study, series) { return `${studyUrl(study)}/series/${encodeURIComponent(series)}`; }
export function frameUrl(study, series, sop, frame) {
  return `${seriesUrl(study, series)}/instances/${encodeURIComponent(sop)}/frames/${frame}`;
}

// Blob URL of an image resource fetched with the viewer's credentials (so it works with a bearer
// token, where a plain <img src> would not); the caller revokes it.
export async function imageObjectUrl(url, signal) {
  const res = await request(url, { signal, accept: 'image/jpeg, image/png' });
  return URL.createObjectURL(await res.blob());
}
