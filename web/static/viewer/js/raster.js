// Images the viewer holds as plain pixels instead of browser-decoded bitmaps (issue 6).
//
// The full-resolution pass asks the server for `compression=none` PNGs on a fast network: zlib
// stored blocks, no row filter, so the pixels are in the file as they are and reading them is a copy
// (the stored blocks' payloads, 5 copies for 512x512 grey; WebCodecs' ImageDecoder took 1.9 ms
// for the server's deflated PNG in this Chromium). A Raster holds the scanlines as they are (a filter
// byte, then one or three bytes a pixel) and becomes a canvas only when drawn. Anything else (a deflated or filtered PNG, 16-bit, palette, interlaced) is not read
// here: readStoredPng returns null and the caller decodes it the usual way.

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const CHANNELS = { 0: 1, 2: 3 }; // PNG colour types: grey, RGB

export class Raster {
  // `lines`: height scanlines of 1 + width * channels bytes, each a filter byte (0) and the pixels.
  constructor(width, height, channels, lines) {
    this.width = width;
    this.height = height;
    this.channels = channels;
    this.lines = lines;
    this.bytes = lines.length;
  }

  close() { this.lines = null; }

  // RGBA pixels for putImageData.
  imageData() {
    const { width: w, height: h, lines: s } = this;
    const out = new ImageData(w, h);
    const px = new Uint32Array(out.data.buffer); // little-endian: R is the low byte
    const stride = 1 + w * this.channels;
    for (let y = 0, i = 0; y < h; y++) {
      let j = y * stride + 1;
      if (this.channels === 1) {
        for (const end = i + w; i < end; i++, j++) px[i] = 0xff000000 | (s[j] * 0x010101);
      } else {
        for (const end = i + w; i < end; i++, j += 3) px[i] = 0xff000000 | (s[j + 2] << 16) | (s[j + 1] << 8) | s[j];
      }
    }
    return out;
  }
}

function u32(b, p) { return ((b[p] << 24) >>> 0) + (b[p + 1] << 16) + (b[p + 2] << 8) + b[p + 3]; }

// A Raster of an 8-bit grey or RGB, non-interlaced PNG whose image data is zlib stored blocks with
// filter type 0 on every row; null for any other PNG (or bytes that are not a whole PNG).
export function readStoredPng(b) {
  if (b.length < 57) return null;
  for (let i = 0; i < 8; i++) if (b[i] !== SIGNATURE[i]) return null;
  let width = 0; let height = 0; let channels = 0;
  const idat = [];
  let p = 8;
  let ended = false;
  while (p + 12 <= b.length) {
    const len = u32(b, p);
    const type = String.fromCharCode(b[p + 4], b[p + 5], b[p + 6], b[p + 7]);
    if (p + 12 + len > b.length) return null;
    if (type === 'IHDR') {
      width = u32(b, p + 8); height = u32(b, p + 12);
      channels = CHANNELS[b[p + 17]] || 0;
      if (b[p + 16] !== 8 || !channels || b[p + 20] !== 0) return null; // depth, colour type, interlace
    } else if (type === 'IDAT') {
      idat.push(b.subarray(p + 8, p + 8 + len));
    } else if (type === 'PLTE') {
      return null;
    } else if (type === 'IEND') {
      ended = true;
      break;
    }
    p += 12 + len;
  }
  if (!ended || !width || !height || !idat.length) return null;
  // The zlib stream runs across the IDAT chunks (libpng cuts it every 8 kB): read it in place.
  let c = 0; let o = 0; // chunk, offset in it
  const more = () => { // past exhausted chunks; false at the end of the image data
    while (c < idat.length && o >= idat[c].length) { c++; o = 0; }
    return c < idat.length;
  };
  const byte = () => (more() ? idat[c][o++] : -1);
  const cmf = byte(); const flg = byte();
  if ((cmf & 0x0f) !== 8 || (flg & 0x20) || ((cmf << 8) | flg) % 31) return null; // deflate, no dictionary
  const stride = 1 + width * channels;
  const lines = new Uint8Array(stride * height);
  let at = 0;
  for (;;) {
    const header = byte();
    if (header < 0 || (header & 0b110)) return null; // the end, or a compressed block: not ours to read
    const len = byte() | (byte() << 8);
    const nlen = byte() | (byte() << 8);
    if (nlen < 0 || (len ^ nlen) !== 0xffff || at + len > lines.length) return null;
    for (let left = len; left > 0;) {
      if (!more()) return null;
      const n = Math.min(left, idat[c].length - o);
      lines.set(idat[c].subarray(o, o + n), at);
      at += n; o += n; left -= n;
    }
    if (header & 1) break;
  }
  if (at !== lines.length) return null;
  for (let i = 0; i < lines.length; i += stride) if (lines[i] !== 0) return null; // a row filter
  return new Raster(width, height, channels, lines);
}

// Something drawImage takes, for a Raster or a bitmap. A Raster is put into one canvas per `holder`,
// reused while the same Raster is asked for again (the canvas is only good until the next call).
export function drawable(source, holder) {
  if (!(source instanceof Raster)) return source;
  if (holder.scratchOf === source) return holder.scratch;
  if (!holder.scratch || holder.scratch.width !== source.width || holder.scratch.height !== source.height) {
    holder.scratch = new OffscreenCanvas(source.width, source.height);
  }
  holder.scratch.getContext('2d').putImageData(source.imageData(), 0, 0);
  holder.scratchOf = source;
  return holder.scratch;
}
