// Images: PNG and JPEG encoders for result files, format and size sniffing for fetched inputs and uploads,
// and the result-image geometry (size from an aspect ratio and a resolution).
// Kie accepts jpeg/png/webp inputs (docs.kie.ai market/google/nano-banana-edit, 4o-image-api, flux-kontext-api).

import crypto from 'node:crypto';
import zlib from 'node:zlib';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(buf) {
  let crc = 0xffffffff;
  for (let i = 0; i < buf.length; i++) crc = CRC_TABLE[(crc ^ buf[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** Truecolour 8-bit PNG; pixel(x, y) -> [r, g, b]. */
export function makePng(width, height, pixel) {
  const row = width * 3 + 1;
  const raw = Buffer.alloc(row * height);
  for (let y = 0; y < height; y++) {
    raw[y * row] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      const [r, g, b] = pixel(x, y);
      const o = y * row + 1 + x * 3;
      raw[o] = r;
      raw[o + 1] = g;
      raw[o + 2] = b;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: truecolour
  ihdr[10] = 0;
  ihdr[11] = 0;
  ihdr[12] = 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zlib.deflateSync(raw)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/**
 * Baseline JPEG (YCbCr 4:4:4, 8x8 blocks of flat colour, DC-only coefficients).
 * width and height are rounded up to multiples of 8; block(bx, by) -> [r, g, b].
 */
export function makeJpeg(width, height, block) {
  const bw = Math.ceil(width / 8);
  const bh = Math.ceil(height / 8);
  const W = bw * 8;
  const H = bh * 8;
  const u16 = (n) => [(n >> 8) & 0xff, n & 0xff];
  const parts = [];
  parts.push(Buffer.from([0xff, 0xd8])); // SOI
  parts.push(Buffer.from([0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00])); // APP0 JFIF
  parts.push(Buffer.from([0xff, 0xdb, 0x00, 0x43, 0x00, ...new Array(64).fill(1)])); // DQT: all ones
  parts.push(Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, ...u16(H), ...u16(W), 0x03, 0x01, 0x11, 0x00, 0x02, 0x11, 0x00, 0x03, 0x11, 0x00])); // SOF0
  const dcBits = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
  const dcVals = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  parts.push(Buffer.from([0xff, 0xc4, ...u16(2 + 1 + 16 + dcVals.length), 0x00, ...dcBits, ...dcVals]));
  const acBits = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
  parts.push(Buffer.from([0xff, 0xc4, ...u16(2 + 1 + 16 + 1), 0x10, ...acBits, 0x00])); // AC table: EOB only, code "0"
  parts.push(Buffer.from([0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x3f, 0x00])); // SOS

  // canonical Huffman codes for the DC table
  const dcCode = [];
  {
    let c = 0;
    let idx = 0;
    for (let len = 1; len <= 16; len++) {
      for (let i = 0; i < dcBits[len - 1]; i++) {
        dcCode[dcVals[idx++]] = { code: c, len };
        c++;
      }
      c <<= 1;
    }
  }

  const out = [];
  let acc = 0;
  let nbits = 0;
  const put = (value, len) => {
    for (let i = len - 1; i >= 0; i--) {
      acc = (acc << 1) | ((value >> i) & 1);
      nbits++;
      if (nbits === 8) {
        out.push(acc);
        if (acc === 0xff) out.push(0x00);
        acc = 0;
        nbits = 0;
      }
    }
  };
  const pred = [0, 0, 0];
  for (let by = 0; by < bh; by++) {
    for (let bx = 0; bx < bw; bx++) {
      const [r, g, b] = block(bx, by);
      const ycc = [
        0.299 * r + 0.587 * g + 0.114 * b,
        -0.168736 * r - 0.331264 * g + 0.5 * b + 128,
        0.5 * r - 0.418688 * g - 0.081312 * b + 128,
      ];
      for (let c = 0; c < 3; c++) {
        const dc = Math.max(-1024, Math.min(1016, Math.round(8 * (ycc[c] - 128))));
        const diff = dc - pred[c];
        pred[c] = dc;
        const mag = Math.abs(diff);
        const cat = mag === 0 ? 0 : 32 - Math.clz32(mag);
        put(dcCode[cat].code, dcCode[cat].len);
        if (cat > 0) put(diff < 0 ? diff + (1 << cat) - 1 : diff, cat);
        put(0, 1); // EOB
      }
    }
  }
  if (nbits > 0) put((1 << (8 - nbits)) - 1, 8 - nbits);
  parts.push(Buffer.from(out));
  parts.push(Buffer.from([0xff, 0xd9])); // EOI
  return Buffer.concat(parts);
}

/** 'jpeg' | 'png' | 'webp' from the magic bytes, or null. */
export function sniffImage(buf) {
  if (!buf || buf.length < 4) return null;
  if (buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff) return 'jpeg';
  if (buf.length >= 8 && buf.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'png';
  if (buf.length >= 12 && buf.toString('latin1', 0, 4) === 'RIFF' && buf.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  return null;
}

const positive = (width, height) => (width > 0 && height > 0 ? { width, height } : null);

/** { width, height } from a PNG IHDR, a JPEG SOFn segment or a WebP VP8/VP8L/VP8X header; null when unreadable. */
export function imageSize(buf) {
  const kind = sniffImage(buf);
  if (kind === 'png') {
    if (buf.length < 24 || buf.toString('latin1', 12, 16) !== 'IHDR') return null;
    return positive(buf.readUInt32BE(16), buf.readUInt32BE(20));
  }
  if (kind === 'jpeg') return jpegSize(buf);
  if (kind === 'webp') return webpSize(buf);
  return null;
}

function jpegSize(buf) {
  let i = 2;
  while (i + 4 <= buf.length) {
    if (buf[i] !== 0xff) return null;
    const marker = buf[i + 1];
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {
      i += 2; // markers without a length
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return null; // end of image or scan data before any frame header
    // SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (i + 9 > buf.length) return null;
      return positive(buf.readUInt16BE(i + 7), buf.readUInt16BE(i + 5));
    }
    const len = buf.readUInt16BE(i + 2);
    if (len < 2) return null;
    i += 2 + len;
  }
  return null;
}

function webpSize(buf) {
  const chunk = buf.toString('latin1', 12, 16);
  if (chunk === 'VP8 ' && buf.length >= 30) {
    // lossy: 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height (little-endian)
    if (buf[23] !== 0x9d || buf[24] !== 0x01 || buf[25] !== 0x2a) return null;
    return positive(buf.readUInt16LE(26) & 0x3fff, buf.readUInt16LE(28) & 0x3fff);
  }
  if (chunk === 'VP8L' && buf.length >= 25) {
    // lossless: signature 0x2f, then width-1 and height-1 in 14 bits each
    if (buf[20] !== 0x2f) return null;
    const bits = buf.readUInt32LE(21);
    return positive((bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1);
  }
  if (chunk === 'VP8X' && buf.length >= 30) {
    // extended: canvas width-1 and height-1 in 24 bits each
    return positive(buf.readUIntLE(24, 3) + 1, buf.readUIntLE(27, 3) + 1);
  }
  return null;
}

/** The "W:H" ratio of a size, reduced (40×30 → "4:3"). */
export function ratioOf(width, height) {
  const gcd = (a, b) => (b ? gcd(b, a % b) : a);
  const g = gcd(width, height);
  return `${width / g}:${height / g}`;
}

/** Result size: the long side is 64 px per 1K step, the short side follows the "W:H" ratio (multiples of 8). */
export function dimsFor(aspect, resolution) {
  const scale = { '1K': 1, '2K': 2, '4K': 4 }[resolution] || 1;
  const long = 64 * scale;
  let w = 1;
  let h = 1;
  const m = /^(\d+):(\d+)$/.exec(aspect || '');
  if (m) {
    w = Number(m[1]);
    h = Number(m[2]);
  }
  if (w >= h) return [long, Math.max(8, Math.round((long * h) / w / 8) * 8)];
  return [Math.max(8, Math.round((long * w) / h / 8) * 8), long];
}

function colourSeed(taskId, index) {
  const h = crypto.createHash('sha256').update(`${taskId}:${index}`).digest();
  return [h[0], h[1], h[2]];
}

/** The bytes of a registered result file: a gradient in a colour derived from the task id. */
export function renderImage(file) {
  const [w, h] = dimsFor(file.aspect, file.resolution);
  const [r0, g0, b0] = colourSeed(file.taskId, file.index);
  const px = (x, y) => [(r0 + Math.floor((x * 160) / w)) & 0xff, (g0 + Math.floor((y * 160) / h)) & 0xff, b0];
  if (file.format === 'png') return makePng(w, h, px);
  return makeJpeg(w, h, (bx, by) => px(bx * 8 + 4, by * 8 + 4));
}
