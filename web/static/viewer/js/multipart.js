// Incremental multipart/related reader (RFC 2046 5.1, as PS3.18 8.6.1.2 uses it) over a fetch
// Response's ReadableStream: yields each part as soon as its bytes are in, without waiting for the
// whole body. A part normally ends where the next delimiter starts, but the server sends the next
// part's delimiter only once that part is rendered; so a part whose bytes already end with its image
// format's end marker (JPEG EOI, PNG IEND chunk) is yielded then, and its delimiter checked later.

const enc = new TextEncoder();
const dec = new TextDecoder('latin1');
const PNG_END = Uint8Array.of(0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82);

export function boundaryOf(contentType) {
  const m = /boundary=("([^"]+)"|[^;\s]+)/i.exec(contentType || '');
  if (!m) throw new Error(`no boundary in Content-Type ${contentType}`);
  return m[2] || m[1];
}

function endsWith(buf, end, at) {
  if (at < end.length) return false;
  for (let i = 0; i < end.length; i++) if (buf[at - end.length + i] !== end[i]) return false;
  return true;
}

function complete(buf, start, end, type) {
  if (type === 'image/jpeg') return end - start > 4 && buf[end - 2] === 0xff && buf[end - 1] === 0xd9;
  if (type === 'image/png') return end - start > 20 && endsWith(buf, PNG_END, end);
  return false;
}

function indexOfSeq(buf, seq, from, to) {
  const first = seq[0];
  const last = to - seq.length;
  let i = from;
  while (i <= last) {
    i = buf.indexOf(first, i);
    if (i < 0 || i > last) return -1;
    let j = 1;
    while (j < seq.length && buf[i + j] === seq[j]) j++;
    if (j === seq.length) return i;
    i++;
  }
  return -1;
}

function parseHeaders(text) {
  const out = {};
  for (const line of text.split('\r\n')) {
    const c = line.indexOf(':');
    if (c > 0) out[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
  }
  return out;
}

// Yields {headers, body: Uint8Array} for each part of `response` (a multipart/related answer).
export async function* parts(response) {
  const boundary = boundaryOf(response.headers.get('content-type'));
  const delim = enc.encode(`\r\n--${boundary}`);
  const reader = response.body.getReader();
  // The body starts with "--boundary": a virtual CRLF in front makes every delimiter "\r\n--boundary".
  let buf = new Uint8Array(1 << 20);
  buf.set([13, 10]);
  let len = 2;
  let pos = 0; // where the next delimiter is searched from
  let part = null; // {headers, type, start, yielded}
  let finished = false;
  try {
    while (!finished) {
      const { value, done } = await reader.read();
      if (done) break;
      if (len + value.length > buf.length) {
        // Drop what is consumed, then grow if still needed.
        const from = part ? part.start : pos; // headers of the current part are already parsed
        if (from > 0) {
          buf.copyWithin(0, from, len);
          len -= from; pos -= from;
          if (part) { part.start -= from; if (part.end !== undefined) part.end -= from; }
        }
        if (len + value.length > buf.length) {
          let size = buf.length * 2;
          while (size < len + value.length) size *= 2;
          const bigger = new Uint8Array(size);
          bigger.set(buf.subarray(0, len));
          buf = bigger;
        }
      }
      buf.set(value, len);
      len += value.length;
      for (;;) {
        if (part === null) {
          const d = indexOfSeq(buf, delim, pos, len);
          if (d < 0 || d + delim.length + 2 > len) break;
          const after = d + delim.length;
          if (buf[after] === 0x2d && buf[after + 1] === 0x2d) { finished = true; break; }
          const h = indexOfSeq(buf, enc.encode('\r\n\r\n'), after, len);
          if (h < 0) break;
          const headers = parseHeaders(dec.decode(buf.subarray(after + 2, h)));
          const type = (headers['content-type'] || '').split(';')[0].trim().toLowerCase();
          part = { headers, type, start: h + 4, yielded: false };
          pos = part.start;
        }
        const d = indexOfSeq(buf, delim, Math.max(pos, part.start), len);
        if (d < 0) {
          // Keep searching from near the end next time (a delimiter may straddle two chunks).
          pos = Math.max(part.start, len - delim.length);
          if (!part.yielded && complete(buf, part.start, len, part.type)) {
            part.yielded = true;
            part.end = len;
            yield { headers: part.headers, body: buf.slice(part.start, len) };
          }
          break;
        }
        if (!part.yielded) {
          yield { headers: part.headers, body: buf.slice(part.start, d) };
        } else if (d !== part.end) {
          // The end marker was a coincidence inside the data: give the whole part again (it replaces).
          yield { headers: part.headers, body: buf.slice(part.start, d) };
        }
        pos = d;
        part = null;
      }
    }
  } finally {
    if (!finished) reader.cancel().catch(() => {}); // consumer stopped early: stop the download
  }
  if (!finished) throw new Error('multipart stream ended before its closing delimiter');
}
