//! Recognising images by their bytes, never by a name or a header.
//!
//! A file counts as an image when the start of its structure is sound, not
//! when its first few bytes happen to match a signature: a PNG signature
//! followed by 45 MB of zeros is not an image. [`ImageProbe`] reads that
//! structure from the first bytes of a stream, fed in chunks of any size, and
//! answers as soon as it can; it keeps at most a few dozen bytes and never
//! looks further than [`PROBE_LIMIT`] bytes into the stream, so a caller can
//! hand it the head of a stream and let the rest flow elsewhere untouched.
//!
//! What is checked, per format:
//! - PNG: the signature, then a first chunk that is an IHDR of length 13 with
//!   a correct CRC, dimensions in `1..=MAX_DIMENSION`, a bit depth allowed for
//!   its colour type, compression and filter method 0, interlace 0 or 1.
//! - JPEG: SOI, then the marker stream (fill bytes, standalone markers,
//!   length-prefixed segments skipped by their length) up to a frame header
//!   SOFn (C0–CF except C4, C8, CC) whose length matches its 1 to 4 components,
//!   with a sensible precision and sampling factors; EOI or SOS before the frame
//!   header, reserved markers and impossible lengths are refused.
//! - WebP: `RIFF`, size, `WEBP`, then a first chunk `VP8 ` (a shown keyframe
//!   with the start code 9D 01 2A), `VP8L` (signature 0x2F, version 0) or
//!   `VP8X` (10 bytes, canvas size); the RIFF size must hold that chunk.
//!
//! Anything else (HTML, SVG, GIF, an empty file) is not an image.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Jpeg,
    Png,
    Webp,
}

impl ImageKind {
    /// The kind of a complete file (or of a prefix long enough to hold its
    /// header) if its header is sound; see [`probe`] for the reason when not.
    pub fn sniff(bytes: &[u8]) -> Option<ImageKind> {
        let mut p = ImageProbe::new();
        p.feed(bytes);
        match p.finish() {
            Probe::Valid(info) => Some(info.kind),
            Probe::NeedMore | Probe::Invalid(_) => None,
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Png => "image/png",
            ImageKind::Webp => "image/webp",
        }
    }
    pub fn extension(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "jpg",
            ImageKind::Png => "png",
            ImageKind::Webp => "webp",
        }
    }
    fn name(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "JPEG",
            ImageKind::Png => "PNG",
            ImageKind::Webp => "WebP",
        }
    }
}

/// The smallest file we accept as a generated image.
pub const MIN_RESULT_BYTES: usize = 64;

/// The largest width or height accepted, in pixels. Twenty thousand is above
/// anything the image models produce (4K-class outputs) or that a camera takes
/// (a 200 MP sensor is 16320 wide), and 20000 × 20000 is already 400 MP;
/// a larger side is far more likely garbage than a picture. WebP cannot
/// exceed 16384 anyway; JPEG could reach 65535 and PNG 2³¹−1.
pub const MAX_DIMENSION: u32 = 20_000;

/// How far into a stream the header must be complete. A PNG's IHDR ends at
/// byte 33 and a WebP's first chunk header by byte 30, but a JPEG may carry
/// EXIF, XMP, ICC and Photoshop segments (each up to 64 KiB) before its frame
/// header; 256 KiB leaves room for several of those. Skipped segments are not
/// kept, so the bound costs no memory.
pub const PROBE_LIMIT: usize = 256 * 1024;

/// What the header says about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub kind: ImageKind,
    pub width: u32,
    pub height: u32,
}

/// Why some bytes are not an image we accept. `Display` gives a short reason
/// for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidImage {
    /// The bytes start like none of JPEG, PNG or WebP.
    UnknownFormat,
    /// The stream ended after `len` bytes, before the header was complete.
    Truncated { kind: Option<ImageKind>, len: usize },
    /// No complete header within the first `limit` bytes.
    HeaderNotFound { kind: Option<ImageKind>, limit: usize },
    /// The header breaks a rule of its format.
    Malformed { kind: ImageKind, reason: &'static str },
    /// A well-formed header declaring a side outside `1..=MAX_DIMENSION`.
    Dimensions { kind: ImageKind, width: u32, height: u32 },
}

impl fmt::Display for InvalidImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |k: &Option<ImageKind>| k.map_or("image", ImageKind::name);
        match self {
            InvalidImage::UnknownFormat => write!(f, "not a JPEG, PNG or WebP file"),
            InvalidImage::Truncated { kind, len } => write!(f, "{} header truncated after {len} bytes", name(kind)),
            InvalidImage::HeaderNotFound { kind, limit } => write!(f, "{} header not found within {limit} bytes", name(kind)),
            InvalidImage::Malformed { kind, reason } => write!(f, "{}: {reason}", kind.name()),
            InvalidImage::Dimensions { kind, width, height } => {
                write!(f, "{}: dimensions {width}x{height} outside 1..={MAX_DIMENSION}", kind.name())
            }
        }
    }
}

impl std::error::Error for InvalidImage {}

/// The probe's answer so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Sound so far; the header is not complete yet.
    NeedMore,
    Valid(ImageInfo),
    Invalid(InvalidImage),
}

/// Probes a prefix of a file in one go: `NeedMore` means the prefix ends
/// before the header does (see [`ImageProbe::finish`] for a whole file).
pub fn probe(bytes: &[u8]) -> Probe {
    ImageProbe::new().feed(bytes)
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
/// Length, type, 13 bytes of data and CRC of the IHDR chunk.
const PNG_IHDR_CHUNK: usize = 4 + 4 + 13 + 4;

/// Where the probe is in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The first bytes, compared one at a time with the three signatures.
    Signature,
    /// PNG: the whole first chunk, which must be IHDR.
    PngIhdr,
    /// JPEG: the 0xFF that starts a marker.
    JpegMarkerStart,
    /// JPEG: the marker code, after any number of 0xFF fill bytes.
    JpegMarkerCode,
    /// JPEG: the two-byte length of a segment.
    JpegLength { marker: u8 },
    /// JPEG: the rest of a frame header (SOFn).
    JpegFrame { marker: u8 },
    /// WebP: the header of the first chunk inside the RIFF container.
    WebpChunkHeader { riff_size: u32 },
    /// WebP: the start of the first chunk's payload.
    WebpChunk { fourcc: [u8; 4], chunk_size: u32 },
}

impl Phase {
    fn kind(self) -> Option<ImageKind> {
        match self {
            Phase::Signature => None,
            Phase::PngIhdr => Some(ImageKind::Png),
            Phase::JpegMarkerStart | Phase::JpegMarkerCode | Phase::JpegLength { .. } | Phase::JpegFrame { .. } => Some(ImageKind::Jpeg),
            Phase::WebpChunkHeader { .. } | Phase::WebpChunk { .. } => Some(ImageKind::Webp),
        }
    }
}

/// Decides incrementally whether a stream starts with a sound JPEG, PNG or
/// WebP header. Feed it chunks in order; once it answers `Valid` or `Invalid`
/// the answer stays and further chunks are ignored.
#[derive(Debug, Clone)]
pub struct ImageProbe {
    phase: Phase,
    /// How many bytes `buf` must hold before the phase can be decided.
    want: usize,
    /// Bytes to pass over, unbuffered, before collecting into `buf`.
    skip: usize,
    /// At most `PNG_IHDR_CHUNK` bytes.
    buf: Vec<u8>,
    /// Bytes of the stream consumed so far (never more than `PROBE_LIMIT`).
    seen: usize,
    verdict: Option<Probe>,
}

impl Default for ImageProbe {
    fn default() -> Self {
        ImageProbe::new()
    }
}

impl ImageProbe {
    pub fn new() -> ImageProbe {
        ImageProbe { phase: Phase::Signature, want: 1, skip: 0, buf: Vec::with_capacity(PNG_IHDR_CHUNK), seen: 0, verdict: None }
    }

    /// Takes the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) -> Probe {
        if let Some(v) = self.verdict {
            return v;
        }
        let budget = PROBE_LIMIT.saturating_sub(self.seen);
        let mut data = chunk.get(..budget).unwrap_or(chunk);
        loop {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                data = data.get(n..).unwrap_or_default();
                self.skip -= n;
                self.seen += n;
                if self.skip > 0 {
                    break;
                }
            }
            let n = self.want.saturating_sub(self.buf.len()).min(data.len());
            let Some((head, rest)) = data.split_at_checked(n) else { break };
            self.buf.extend_from_slice(head);
            self.seen += n;
            data = rest;
            if self.buf.len() < self.want {
                break;
            }
            if let Some(v) = self.step() {
                return self.settle(v);
            }
        }
        if self.seen >= PROBE_LIMIT {
            return self.settle(Probe::Invalid(InvalidImage::HeaderNotFound { kind: self.phase.kind(), limit: PROBE_LIMIT }));
        }
        Probe::NeedMore
    }

    /// The stream has ended: a header still incomplete is truncated.
    pub fn finish(&mut self) -> Probe {
        match self.verdict {
            Some(v) => v,
            None => self.settle(Probe::Invalid(InvalidImage::Truncated { kind: self.phase.kind(), len: self.seen })),
        }
    }

    fn settle(&mut self, v: Probe) -> Probe {
        self.verdict = Some(v);
        self.buf = Vec::new();
        v
    }

    fn next(&mut self, phase: Phase, want: usize, skip: usize) -> Option<Probe> {
        self.phase = phase;
        self.want = want;
        self.skip = skip;
        self.buf.clear();
        None
    }

    /// Decides the current phase once `buf` holds `want` bytes: `None` to go
    /// on (with `phase`, `want` and `skip` updated), or the verdict.
    fn step(&mut self) -> Option<Probe> {
        match self.phase {
            Phase::Signature => self.signature(),
            Phase::PngIhdr => Some(png_ihdr(&self.buf)),
            Phase::JpegMarkerStart => match self.buf.first() {
                Some(0xFF) => self.next(Phase::JpegMarkerCode, 1, 0),
                _ => Some(jpeg_invalid("expected a marker")),
            },
            Phase::JpegMarkerCode => self.jpeg_marker(self.buf.first().copied().unwrap_or(0)),
            Phase::JpegLength { marker } => {
                let len = usize::from(be16(&self.buf, 0));
                if len < 2 {
                    return Some(jpeg_invalid("segment length below 2"));
                }
                if is_sof(marker) {
                    // Precision, height, width, component count, then 3 bytes per component (1 to 4).
                    let body = len - 2;
                    if !(6 + 3..=6 + 3 * 4).contains(&body) {
                        return Some(jpeg_invalid("frame header length is impossible"));
                    }
                    self.next(Phase::JpegFrame { marker }, body, 0)
                } else {
                    self.next(Phase::JpegMarkerStart, 1, len - 2)
                }
            }
            Phase::JpegFrame { marker } => Some(jpeg_frame(marker, &self.buf)),
            Phase::WebpChunkHeader { riff_size } => {
                let fourcc = [byte(&self.buf, 0), byte(&self.buf, 1), byte(&self.buf, 2), byte(&self.buf, 3)];
                let chunk_size = le32(&self.buf, 4);
                if u64::from(riff_size) < 4 + 8 + u64::from(chunk_size) {
                    return Some(webp_invalid("RIFF size is smaller than its first chunk"));
                }
                let want = match &fourcc {
                    b"VP8 " if chunk_size >= 10 => 10,
                    b"VP8L" if chunk_size >= 5 => 5,
                    b"VP8X" if chunk_size == 10 => 10,
                    b"VP8 " | b"VP8L" | b"VP8X" => return Some(webp_invalid("first chunk has an impossible size")),
                    _ => return Some(webp_invalid("first chunk is not VP8, VP8L or VP8X")),
                };
                self.next(Phase::WebpChunk { fourcc, chunk_size }, want, 0)
            }
            Phase::WebpChunk { fourcc, chunk_size } => Some(webp_chunk(&fourcc, chunk_size, &self.buf)),
        }
    }

    fn signature(&mut self) -> Option<Probe> {
        const JPEG: [Option<u8>; 2] = [Some(0xFF), Some(0xD8)];
        const WEBP: [Option<u8>; 12] =
            [Some(b'R'), Some(b'I'), Some(b'F'), Some(b'F'), None, None, None, None, Some(b'W'), Some(b'E'), Some(b'B'), Some(b'P')];
        let png = PNG_SIGNATURE.map(Some);
        let fits = |pattern: &[Option<u8>]| {
            self.buf.len() <= pattern.len() && self.buf.iter().zip(pattern).all(|(b, p)| p.is_none_or(|p| p == *b))
        };
        let complete = |pattern: &[Option<u8>]| fits(pattern) && self.buf.len() == pattern.len();
        if complete(&JPEG) {
            return self.next(Phase::JpegMarkerStart, 1, 0);
        }
        if complete(&png) {
            return self.next(Phase::PngIhdr, PNG_IHDR_CHUNK, 0);
        }
        if complete(&WEBP) {
            let riff_size = le32(&self.buf, 4);
            return self.next(Phase::WebpChunkHeader { riff_size }, 8, 0);
        }
        if fits(&JPEG) || fits(&png) || fits(&WEBP) {
            self.want += 1;
            return None;
        }
        Some(Probe::Invalid(InvalidImage::UnknownFormat))
    }

    fn jpeg_marker(&mut self, code: u8) -> Option<Probe> {
        match code {
            // Fill bytes: any number of 0xFF may precede a marker code.
            0xFF => self.next(Phase::JpegMarkerCode, 1, 0),
            // TEM and RST0–7 stand alone, without a length.
            0x01 | 0xD0..=0xD7 => self.next(Phase::JpegMarkerStart, 1, 0),
            0xD8 => Some(jpeg_invalid("second SOI before the frame header")),
            0xD9 => Some(jpeg_invalid("EOI before the frame header")),
            0xDA => Some(jpeg_invalid("SOS before the frame header")),
            0x00..=0xBF => Some(jpeg_invalid("invalid or reserved marker")),
            marker => self.next(Phase::JpegLength { marker }, 2, 0),
        }
    }
}

fn is_sof(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

fn jpeg_invalid(reason: &'static str) -> Probe {
    Probe::Invalid(InvalidImage::Malformed { kind: ImageKind::Jpeg, reason })
}

fn png_invalid(reason: &'static str) -> Probe {
    Probe::Invalid(InvalidImage::Malformed { kind: ImageKind::Png, reason })
}

fn webp_invalid(reason: &'static str) -> Probe {
    Probe::Invalid(InvalidImage::Malformed { kind: ImageKind::Webp, reason })
}

fn sized(kind: ImageKind, width: u32, height: u32) -> Probe {
    let ok = |d: u32| (1..=MAX_DIMENSION).contains(&d);
    if ok(width) && ok(height) {
        Probe::Valid(ImageInfo { kind, width, height })
    } else {
        Probe::Invalid(InvalidImage::Dimensions { kind, width, height })
    }
}

/// The first PNG chunk: length, type, 13 bytes of IHDR data, CRC.
fn png_ihdr(b: &[u8]) -> Probe {
    if b.get(4..8) != Some(b"IHDR".as_slice()) {
        return png_invalid("first chunk is not IHDR");
    }
    if be32(b, 0) != 13 {
        return png_invalid("IHDR length is not 13");
    }
    if crc32(b.get(4..21).unwrap_or_default()) != be32(b, 21) {
        return png_invalid("IHDR CRC mismatch");
    }
    let (depth, colour) = (byte(b, 16), byte(b, 17));
    let depth_ok = match colour {
        0 => matches!(depth, 1 | 2 | 4 | 8 | 16),
        3 => matches!(depth, 1 | 2 | 4 | 8),
        2 | 4 | 6 => matches!(depth, 8 | 16),
        _ => return png_invalid("unknown colour type"),
    };
    if !depth_ok {
        return png_invalid("bit depth not allowed for its colour type");
    }
    if byte(b, 18) != 0 || byte(b, 19) != 0 {
        return png_invalid("unknown compression or filter method");
    }
    if byte(b, 20) > 1 {
        return png_invalid("unknown interlace method");
    }
    sized(ImageKind::Png, be32(b, 8), be32(b, 12))
}

/// The body of an SOFn segment: precision, height, width, component count and
/// 3 bytes (id, sampling factors, quantisation table) per component.
fn jpeg_frame(marker: u8, b: &[u8]) -> Probe {
    let components = usize::from(byte(b, 5));
    if !(1..=4).contains(&components) {
        return jpeg_invalid("component count must be 1 to 4");
    }
    if b.len() != 6 + 3 * components {
        return jpeg_invalid("frame header length does not match its components");
    }
    let precision = byte(b, 0);
    let precision_ok = match marker {
        0xC0 => precision == 8,
        // Lossless processes.
        0xC3 | 0xC7 | 0xCB | 0xCF => (2..=16).contains(&precision),
        _ => matches!(precision, 8 | 12),
    };
    if !precision_ok {
        return jpeg_invalid("sample precision not allowed for this frame type");
    }
    for c in 0..components {
        let sampling = byte(b, 6 + 3 * c + 1);
        let table = byte(b, 6 + 3 * c + 2);
        if !(1..=4).contains(&(sampling >> 4)) || !(1..=4).contains(&(sampling & 0x0F)) || table > 3 {
            return jpeg_invalid("component sampling factors or table out of range");
        }
    }
    sized(ImageKind::Jpeg, u32::from(be16(b, 3)), u32::from(be16(b, 1)))
}

/// The start of the first WebP chunk's payload.
fn webp_chunk(fourcc: &[u8; 4], chunk_size: u32, b: &[u8]) -> Probe {
    match fourcc {
        b"VP8 " => {
            let tag = u32::from(byte(b, 0)) | u32::from(byte(b, 1)) << 8 | u32::from(byte(b, 2)) << 16;
            if tag & 1 != 0 {
                return webp_invalid("VP8 frame is not a keyframe");
            }
            if (tag >> 1) & 7 > 3 {
                return webp_invalid("unknown VP8 version");
            }
            if (tag >> 4) & 1 == 0 {
                return webp_invalid("VP8 frame is not shown");
            }
            if tag >> 5 >= chunk_size {
                return webp_invalid("VP8 partition larger than its chunk");
            }
            if b.get(3..6) != Some([0x9D, 0x01, 0x2A].as_slice()) {
                return webp_invalid("missing VP8 start code");
            }
            sized(ImageKind::Webp, u32::from(le16(b, 6) & 0x3FFF), u32::from(le16(b, 8) & 0x3FFF))
        }
        b"VP8L" => {
            if byte(b, 0) != 0x2F {
                return webp_invalid("missing VP8L signature");
            }
            let bits = le32(b, 1);
            if bits >> 29 != 0 {
                return webp_invalid("unknown VP8L version");
            }
            sized(ImageKind::Webp, (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        }
        _ => sized(ImageKind::Webp, le24(b, 4) + 1, le24(b, 7) + 1),
    }
}

fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([byte(b, at), byte(b, at + 1)])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([byte(b, at), byte(b, at + 1), byte(b, at + 2), byte(b, at + 3)])
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([byte(b, at), byte(b, at + 1)])
}

fn le24(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([byte(b, at), byte(b, at + 1), byte(b, at + 2), 0])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([byte(b, at), byte(b, at + 1), byte(b, at + 2), byte(b, at + 3)])
}

/// CRC-32 (ISO-HDLC, as PNG uses it), bitwise: only ever run over 17 bytes.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { 0xEDB8_8320 ^ (crc >> 1) } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut typed = kind.to_vec();
        typed.extend_from_slice(data);
        out.extend_from_slice(&crc32(&typed).to_be_bytes());
        out
    }

    fn ihdr(width: u32, height: u32, depth: u8, colour: u8) -> Vec<u8> {
        let mut d = width.to_be_bytes().to_vec();
        d.extend_from_slice(&height.to_be_bytes());
        d.extend_from_slice(&[depth, colour, 0, 0, 0]);
        d
    }

    fn png_header(width: u32, height: u32, depth: u8, colour: u8) -> Vec<u8> {
        let mut out = PNG_SIGNATURE.to_vec();
        out.extend(chunk(b"IHDR", &ihdr(width, height, depth, colour)));
        out
    }

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        b << 16 | a
    }

    /// A complete 1×1 8-bit greyscale PNG: IHDR, IDAT (zlib, one stored block), IEND.
    fn tiny_png() -> Vec<u8> {
        let raw = [0u8, 0x80]; // filter "none", one grey pixel
        let mut z = vec![0x78, 0x01, 0x01, 0x02, 0x00, 0xFD, 0xFF];
        z.extend_from_slice(&raw);
        z.extend_from_slice(&adler32(&raw).to_be_bytes());
        let mut out = png_header(1, 1, 8, 0);
        out.extend(chunk(b"IDAT", &z));
        out.extend(chunk(b"IEND", &[]));
        out
    }

    fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0xFF, marker];
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn sof_body(precision: u8, width: u16, height: u16, components: u8) -> Vec<u8> {
        let mut b = vec![precision];
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&width.to_be_bytes());
        b.push(components);
        for id in 1..=components {
            b.extend_from_slice(&[id, if id == 1 { 0x22 } else { 0x11 }, u8::from(id > 1)]);
        }
        b
    }

    fn app0_jfif() -> Vec<u8> {
        segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0")
    }

    /// An APP1 EXIF segment with a big-endian TIFF header, one IFD entry, and
    /// bytes inside that look like markers (they must be skipped, not read).
    fn app1_exif() -> Vec<u8> {
        let mut body = b"Exif\0\0MM\0\x2a\0\0\0\x08".to_vec();
        body.extend_from_slice(&[0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&[0xFF, 0xD9, 0xFF, 0xDA, 0xFF, 0xC0, 0x00, 0x00]);
        segment(0xE1, &body)
    }

    fn dqt() -> Vec<u8> {
        let mut body = vec![0u8];
        body.extend_from_slice(&[1u8; 64]);
        segment(0xDB, &body)
    }

    fn dht() -> Vec<u8> {
        let mut body = vec![0x00, 0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
        body.extend(0..12u8);
        segment(0xC4, &body)
    }

    /// SOI, the given segments, then DHT, SOS, a little entropy-coded data and EOI.
    fn jpeg(segments: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        for s in segments {
            out.extend_from_slice(s);
        }
        out.extend(dht());
        out.extend(segment(0xDA, &[1, 1, 0, 0, 0x3F, 0]));
        out.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xD9]);
        out
    }

    fn baseline_jpeg() -> Vec<u8> {
        jpeg(&[app0_jfif(), app1_exif(), dqt(), segment(0xC0, &sof_body(8, 640, 480, 3))])
    }

    fn riff(chunks: &[u8]) -> Vec<u8> {
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&((chunks.len() + 4) as u32).to_le_bytes());
        out.extend_from_slice(b"WEBP");
        out.extend_from_slice(chunks);
        out
    }

    fn webp_chunk(fourcc: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = fourcc.to_vec();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
        if payload.len() % 2 == 1 {
            out.push(0);
        }
        out
    }

    fn vp8_payload(width: u16, height: u16) -> Vec<u8> {
        let first_partition = 20u32;
        let tag = first_partition << 5 | 1 << 4; // keyframe (bit 0 clear), version 0, shown
        let mut p = tag.to_le_bytes()[..3].to_vec();
        p.extend_from_slice(&[0x9D, 0x01, 0x2A]);
        p.extend_from_slice(&width.to_le_bytes());
        p.extend_from_slice(&height.to_le_bytes());
        p.resize(40, 0);
        p
    }

    fn vp8l_payload(width: u32, height: u32) -> Vec<u8> {
        let bits = (width - 1) | (height - 1) << 14 | 1 << 28; // alpha used, version 0
        let mut p = vec![0x2F];
        p.extend_from_slice(&bits.to_le_bytes());
        p.extend_from_slice(&[0x00, 0x10, 0x07]);
        p
    }

    fn vp8x_payload(width: u32, height: u32) -> Vec<u8> {
        let mut p = vec![0x10, 0, 0, 0]; // alpha flag
        p.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
        p.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
        p
    }

    fn valid(kind: ImageKind, width: u32, height: u32) -> Probe {
        Probe::Valid(ImageInfo { kind, width, height })
    }

    fn malformed(kind: ImageKind, reason: &'static str) -> Probe {
        Probe::Invalid(InvalidImage::Malformed { kind, reason })
    }

    /// Feeds one byte at a time: `NeedMore` until exactly `header_len` bytes,
    /// then the verdict (which stays).
    fn byte_by_byte(bytes: &[u8]) -> (usize, Probe) {
        let mut p = ImageProbe::new();
        for (i, b) in bytes.iter().enumerate() {
            match p.feed(std::slice::from_ref(b)) {
                Probe::NeedMore => {}
                v => {
                    assert_eq!(p.feed(&bytes[i + 1..]), v, "verdict is sticky");
                    return (i + 1, v);
                }
            }
        }
        (bytes.len(), p.finish())
    }

    /// Every way of cutting the bytes in two gives the same verdict as one feed.
    fn split_anywhere(bytes: &[u8]) -> Probe {
        let whole = probe(bytes);
        for cut in 0..=bytes.len() {
            let mut p = ImageProbe::new();
            let first = p.feed(&bytes[..cut]);
            let second = p.feed(&bytes[cut..]);
            assert_eq!(second, whole, "cut at {cut}");
            if first != Probe::NeedMore {
                assert_eq!(first, whole, "cut at {cut}");
            }
        }
        whole
    }

    #[test]
    fn a_complete_png_is_valid_with_its_size() {
        let png = tiny_png();
        assert_eq!(split_anywhere(&png), valid(ImageKind::Png, 1, 1));
        assert_eq!(ImageKind::sniff(&png), Some(ImageKind::Png));
        // The header ends with the IHDR CRC, at byte 33.
        assert_eq!(byte_by_byte(&png), (33, valid(ImageKind::Png, 1, 1)));
        assert_eq!(probe(&png[..32]), Probe::NeedMore);
        assert_eq!(probe(&png_header(1024, 768, 16, 6)), valid(ImageKind::Png, 1024, 768));
        assert_eq!(probe(&png_header(3, 5, 1, 3)), valid(ImageKind::Png, 3, 5));
        assert_eq!(probe(&png_header(MAX_DIMENSION, 1, 8, 2)), valid(ImageKind::Png, MAX_DIMENSION, 1));
    }

    #[test]
    fn a_png_signature_alone_is_not_an_image() {
        let mut zeros = PNG_SIGNATURE.to_vec();
        zeros.resize(1024 * 1024, 0);
        assert_eq!(probe(&zeros), malformed(ImageKind::Png, "first chunk is not IHDR"));
        assert_eq!(ImageKind::sniff(&zeros), None);
        assert_eq!(ImageKind::sniff(b"\x89PNG\r\n\x1a\n...."), None);
        let mut zero_length_ihdr = PNG_SIGNATURE.to_vec();
        zero_length_ihdr.extend(chunk(b"IHDR", &[]));
        zero_length_ihdr.resize(64, 0);
        assert_eq!(probe(&zero_length_ihdr), malformed(ImageKind::Png, "IHDR length is not 13"));
        let mut idat_first = PNG_SIGNATURE.to_vec();
        idat_first.extend(chunk(b"IDAT", &[0; 13]));
        assert_eq!(probe(&idat_first), malformed(ImageKind::Png, "first chunk is not IHDR"));
    }

    #[test]
    fn a_png_header_must_be_sound() {
        let mut bad_crc = png_header(10, 10, 8, 2);
        *bad_crc.last_mut().unwrap() ^= 1;
        assert_eq!(probe(&bad_crc), malformed(ImageKind::Png, "IHDR CRC mismatch"));
        let mut changed = png_header(10, 10, 8, 2);
        changed[17] = 11; // width changed after the CRC was computed
        assert_eq!(probe(&changed), malformed(ImageKind::Png, "IHDR CRC mismatch"));
        for (w, h) in [(0, 10), (10, 0), (0, 0), (MAX_DIMENSION + 1, 10), (10, u32::MAX)] {
            assert_eq!(
                probe(&png_header(w, h, 8, 2)),
                Probe::Invalid(InvalidImage::Dimensions { kind: ImageKind::Png, width: w, height: h })
            );
        }
        for (depth, colour) in [(16, 3), (4, 2), (1, 4), (2, 6), (3, 0), (0, 0), (32, 6)] {
            assert_eq!(
                probe(&png_header(10, 10, depth, colour)),
                malformed(ImageKind::Png, "bit depth not allowed for its colour type"),
                "{depth}/{colour}"
            );
        }
        for colour in [1, 5, 7, 255] {
            assert_eq!(probe(&png_header(10, 10, 8, colour)), malformed(ImageKind::Png, "unknown colour type"));
        }
        let with = |at: usize, v: u8| {
            let mut d = ihdr(10, 10, 8, 2);
            d[at] = v;
            let mut out = PNG_SIGNATURE.to_vec();
            out.extend(chunk(b"IHDR", &d));
            probe(&out)
        };
        assert_eq!(with(10, 1), malformed(ImageKind::Png, "unknown compression or filter method"));
        assert_eq!(with(11, 1), malformed(ImageKind::Png, "unknown compression or filter method"));
        assert_eq!(with(12, 1), valid(ImageKind::Png, 10, 10)); // Adam7
        assert_eq!(with(12, 2), malformed(ImageKind::Png, "unknown interlace method"));
    }

    #[test]
    fn a_baseline_jpeg_with_exif_before_its_frame_is_valid() {
        let j = baseline_jpeg();
        assert_eq!(split_anywhere(&j), valid(ImageKind::Jpeg, 640, 480));
        assert_eq!(ImageKind::sniff(&j), Some(ImageKind::Jpeg));
        let sof_end = 2 + app0_jfif().len() + app1_exif().len() + dqt().len() + 2 + 2 + 15;
        assert_eq!(byte_by_byte(&j), (sof_end, valid(ImageKind::Jpeg, 640, 480)));
        assert_eq!(probe(&j[..sof_end - 1]), Probe::NeedMore);
        let mut p = ImageProbe::new();
        p.feed(&j[..sof_end - 1]);
        assert_eq!(p.finish(), Probe::Invalid(InvalidImage::Truncated { kind: Some(ImageKind::Jpeg), len: sof_end - 1 }));
    }

    #[test]
    fn progressive_lossless_and_extended_frames_are_valid() {
        let progressive = jpeg(&[app0_jfif(), dqt(), segment(0xC2, &sof_body(8, 1920, 1080, 3))]);
        assert_eq!(split_anywhere(&progressive), valid(ImageKind::Jpeg, 1920, 1080));
        let grey = jpeg(&[segment(0xC2, &sof_body(8, 7, 9, 1))]);
        assert_eq!(probe(&grey), valid(ImageKind::Jpeg, 7, 9));
        let cmyk = jpeg(&[segment(0xEE, b"Adobe\0\x64\0\0\0\0\x02"), segment(0xC1, &sof_body(12, 300, 200, 4))]);
        assert_eq!(probe(&cmyk), valid(ImageKind::Jpeg, 300, 200));
        let lossless = jpeg(&[segment(0xC3, &sof_body(16, 64, 64, 1))]);
        assert_eq!(probe(&lossless), valid(ImageKind::Jpeg, 64, 64));
        let arithmetic = jpeg(&[segment(0xCC, &[0, 0x11]), segment(0xC9, &sof_body(8, 50, 60, 3))]);
        assert_eq!(probe(&arithmetic), valid(ImageKind::Jpeg, 50, 60));
    }

    #[test]
    fn jpeg_fill_bytes_standalone_markers_and_comments_are_walked() {
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xFF, 0xFF];
        j.extend(segment(0xFE, b"a comment \xFF\xD9"));
        j.extend_from_slice(&[0xFF, 0x01, 0xFF, 0xD3]); // TEM, RST3
        j.extend(segment(0xDD, &[0, 8])); // DRI
        j.extend_from_slice(&[0xFF, 0xFF]);
        j.extend(segment(0xC0, &sof_body(8, 16, 16, 3)));
        assert_eq!(split_anywhere(&j), valid(ImageKind::Jpeg, 16, 16));
        assert_eq!(byte_by_byte(&j).1, valid(ImageKind::Jpeg, 16, 16));
    }

    #[test]
    fn a_jpeg_needs_a_frame_header_before_anything_else() {
        let mut zeros = vec![0xFF, 0xD8, 0xFF];
        zeros.resize(1024 * 1024, 0);
        assert_eq!(probe(&zeros), malformed(ImageKind::Jpeg, "invalid or reserved marker"));
        assert_eq!(ImageKind::sniff(&zeros), None);
        let mut zeros_after_soi = vec![0xFF, 0xD8];
        zeros_after_soi.resize(4096, 0);
        assert_eq!(probe(&zeros_after_soi), malformed(ImageKind::Jpeg, "expected a marker"));
        assert_eq!(ImageKind::sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]), None);

        let sos_first = jpeg(&[app0_jfif(), dqt()]);
        assert_eq!(probe(&sos_first), malformed(ImageKind::Jpeg, "SOS before the frame header"));
        assert_eq!(probe(&[0xFF, 0xD8, 0xFF, 0xD9]), malformed(ImageKind::Jpeg, "EOI before the frame header"));
        assert_eq!(probe(&[0xFF, 0xD8, 0xFF, 0xD8]), malformed(ImageKind::Jpeg, "second SOI before the frame header"));
        assert_eq!(probe(&[0xFF, 0xD8, 0xFF, 0x02, 0, 2]), malformed(ImageKind::Jpeg, "invalid or reserved marker"));
        assert_eq!(probe(&[0xFF, 0xD8, 0xFF, 0xE1, 0, 1]), malformed(ImageKind::Jpeg, "segment length below 2"));
        // A segment whose length runs past its end lands the walk on bytes that are no marker.
        let mut overlong = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, b'J', b'F', b'I', b'F'];
        overlong.extend(segment(0xC0, &sof_body(8, 16, 16, 3)));
        assert_eq!(probe(&overlong), malformed(ImageKind::Jpeg, "expected a marker"));
    }

    #[test]
    fn a_jpeg_frame_header_must_be_sound() {
        let frame = |marker: u8, body: &[u8]| probe(&jpeg(&[segment(marker, body)]));
        assert_eq!(
            frame(0xC0, &sof_body(8, 0, 480, 3)),
            Probe::Invalid(InvalidImage::Dimensions { kind: ImageKind::Jpeg, width: 0, height: 480 })
        );
        assert_eq!(
            frame(0xC0, &sof_body(8, 640, 0, 3)),
            Probe::Invalid(InvalidImage::Dimensions { kind: ImageKind::Jpeg, width: 640, height: 0 })
        );
        assert_eq!(
            frame(0xC0, &sof_body(8, 65535, 10, 3)),
            Probe::Invalid(InvalidImage::Dimensions { kind: ImageKind::Jpeg, width: 65535, height: 10 })
        );
        assert_eq!(frame(0xC0, &sof_body(8, 10, 10, 0)), malformed(ImageKind::Jpeg, "frame header length is impossible"));
        let mut five = sof_body(8, 10, 10, 4);
        five[5] = 5;
        assert_eq!(frame(0xC0, &five), malformed(ImageKind::Jpeg, "component count must be 1 to 4"));
        let mut none = sof_body(8, 10, 10, 1);
        none[5] = 0;
        assert_eq!(frame(0xC0, &none), malformed(ImageKind::Jpeg, "component count must be 1 to 4"));
        five.extend_from_slice(&[5, 0x11, 0]);
        assert_eq!(frame(0xC0, &five), malformed(ImageKind::Jpeg, "frame header length is impossible"));
        let mut says_three_has_one = sof_body(8, 10, 10, 1);
        says_three_has_one[5] = 3;
        assert_eq!(frame(0xC0, &says_three_has_one), malformed(ImageKind::Jpeg, "frame header length does not match its components"));
        let mut padded = sof_body(8, 10, 10, 1);
        padded.extend_from_slice(&[0, 0, 0]);
        assert_eq!(frame(0xC0, &padded), malformed(ImageKind::Jpeg, "frame header length does not match its components"));
        assert_eq!(frame(0xC0, &sof_body(12, 10, 10, 3)), malformed(ImageKind::Jpeg, "sample precision not allowed for this frame type"));
        assert_eq!(frame(0xC2, &sof_body(0, 10, 10, 3)), malformed(ImageKind::Jpeg, "sample precision not allowed for this frame type"));
        let mut sampling = sof_body(8, 10, 10, 3);
        sampling[7] = 0x50;
        assert_eq!(frame(0xC0, &sampling), malformed(ImageKind::Jpeg, "component sampling factors or table out of range"));
        let mut table = sof_body(8, 10, 10, 3);
        table[8] = 4;
        assert_eq!(frame(0xC0, &table), malformed(ImageKind::Jpeg, "component sampling factors or table out of range"));
        // A huge SOF length is refused from its length alone.
        assert_eq!(probe(&[0xFF, 0xD8, 0xFF, 0xC0, 0xFF, 0xFF]), malformed(ImageKind::Jpeg, "frame header length is impossible"));
    }

    /// `count` APP2 segments of the largest size (65535 with the length).
    fn big_segments(count: usize) -> Vec<Vec<u8>> {
        let mut body = b"ICC_PROFILE\0".to_vec();
        body.resize(65533, 0xFF);
        vec![segment(0xE2, &body); count]
    }

    #[test]
    fn a_jpeg_frame_header_beyond_the_bound_is_not_found() {
        // Three maximal segments end at 2 + 3 * 65537 = 196613 bytes: within the bound.
        let near = jpeg(&[big_segments(3), vec![segment(0xC0, &sof_body(8, 800, 600, 3))]].concat());
        assert_eq!(probe(&near), valid(ImageKind::Jpeg, 800, 600));
        assert_eq!(byte_by_byte(&near).1, valid(ImageKind::Jpeg, 800, 600));
        // Four end at 262150, past 262144: the frame header is never reached.
        let far = jpeg(&[big_segments(4), vec![segment(0xC0, &sof_body(8, 800, 600, 3))]].concat());
        let reason = InvalidImage::HeaderNotFound { kind: Some(ImageKind::Jpeg), limit: PROBE_LIMIT };
        let not_found = Probe::Invalid(reason);
        assert_eq!(probe(&far), not_found);
        assert_eq!(ImageKind::sniff(&far), None);
        assert_eq!(byte_by_byte(&far), (PROBE_LIMIT, not_found));
        let mut p = ImageProbe::new();
        for piece in far.chunks(4096) {
            if p.feed(piece) != Probe::NeedMore {
                break;
            }
            assert!(p.buf.capacity() <= PNG_IHDR_CHUNK, "skipped segments are not buffered");
        }
        assert_eq!(p.feed(&[]), not_found);
        assert_eq!(reason.to_string(), "JPEG header not found within 262144 bytes");
    }

    #[test]
    fn real_webp_files_are_valid() {
        // 1×1 files made by libwebp (the ones feature detection scripts use).
        let decode = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        let lossy = decode("UklGRiIAAABXRUJQVlA4IBYAAAAwAQCdASoBAAEADsD+JaQAA3AAAAAA");
        let lossless = decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==");
        let alpha =
            decode("UklGRkoAAABXRUJQVlA4WAoAAAAQAAAAAAAAAAAAQUxQSAwAAAARBxAR/Q9ERP8DAABWUDggGAAAABQBAJ0BKgEAAQAAAP4AAA3AAP7mtQAAAA==");
        for (file, header_len) in [(lossy, 30), (lossless, 25), (alpha, 30)] {
            assert_eq!(split_anywhere(&file), valid(ImageKind::Webp, 1, 1));
            assert_eq!(byte_by_byte(&file), (header_len, valid(ImageKind::Webp, 1, 1)));
            assert_eq!(ImageKind::sniff(&file), Some(ImageKind::Webp));
        }
    }

    #[test]
    fn webp_headers_give_their_canvas_size() {
        assert_eq!(split_anywhere(&riff(&webp_chunk(b"VP8 ", &vp8_payload(400, 300)))), valid(ImageKind::Webp, 400, 300));
        // The top two bits of each VP8 dimension are a scale, not size.
        assert_eq!(probe(&riff(&webp_chunk(b"VP8 ", &vp8_payload(0xC000 | 16383, 0x4000 | 2)))), valid(ImageKind::Webp, 16383, 2));
        assert_eq!(split_anywhere(&riff(&webp_chunk(b"VP8L", &vp8l_payload(16384, 3)))), valid(ImageKind::Webp, 16384, 3));
        let mut extended = webp_chunk(b"VP8X", &vp8x_payload(5000, 7000));
        extended.extend(webp_chunk(b"VP8L", &vp8l_payload(5000, 7000)));
        assert_eq!(split_anywhere(&riff(&extended)), valid(ImageKind::Webp, 5000, 7000));
        assert_eq!(
            probe(&riff(&webp_chunk(b"VP8X", &vp8x_payload(1 << 24, 10)))),
            Probe::Invalid(InvalidImage::Dimensions { kind: ImageKind::Webp, width: 1 << 24, height: 10 })
        );
    }

    #[test]
    fn a_webp_header_must_be_sound() {
        assert_eq!(ImageKind::sniff(b"RIFF\0\0\0\0WEBPVP8 "), None);
        assert_eq!(probe(b"RIFF\0\0\0\0WEBPVP8 \0\0\0\0"), malformed(ImageKind::Webp, "RIFF size is smaller than its first chunk"));
        let mut small_riff = riff(&webp_chunk(b"VP8 ", &vp8_payload(4, 4)));
        small_riff[4..8].copy_from_slice(&20u32.to_le_bytes());
        assert_eq!(probe(&small_riff), malformed(ImageKind::Webp, "RIFF size is smaller than its first chunk"));
        let vp8 = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut p = vp8_payload(4, 4);
            edit(&mut p);
            probe(&riff(&webp_chunk(b"VP8 ", &p)))
        };
        assert_eq!(vp8(&|p| p[3] = 0x9C), malformed(ImageKind::Webp, "missing VP8 start code"));
        assert_eq!(vp8(&|p| p[0] |= 1), malformed(ImageKind::Webp, "VP8 frame is not a keyframe"));
        assert_eq!(vp8(&|p| p[0] &= !0x10), malformed(ImageKind::Webp, "VP8 frame is not shown"));
        assert_eq!(vp8(&|p| p[0] |= 0x0E), malformed(ImageKind::Webp, "unknown VP8 version"));
        assert_eq!(vp8(&|p| p[2] = 0xFF), malformed(ImageKind::Webp, "VP8 partition larger than its chunk"));
        assert_eq!(
            vp8(&|p| p[6..8].copy_from_slice(&[0, 0xC0])),
            Probe::Invalid(InvalidImage::Dimensions { kind: ImageKind::Webp, width: 0, height: 4 })
        );
        assert_eq!(
            vp8(&|p| p[8..10].copy_from_slice(&[0, 0])),
            Probe::Invalid(InvalidImage::Dimensions { kind: ImageKind::Webp, width: 4, height: 0 })
        );
        let mut lossless = vp8l_payload(4, 4);
        lossless[0] = 0x2E;
        assert_eq!(probe(&riff(&webp_chunk(b"VP8L", &lossless))), malformed(ImageKind::Webp, "missing VP8L signature"));
        lossless[0] = 0x2F;
        lossless[4] |= 0x20;
        assert_eq!(probe(&riff(&webp_chunk(b"VP8L", &lossless))), malformed(ImageKind::Webp, "unknown VP8L version"));
        assert_eq!(probe(&riff(&webp_chunk(b"VP8X", &[0; 12]))), malformed(ImageKind::Webp, "first chunk has an impossible size"));
        assert_eq!(probe(&riff(&webp_chunk(b"VP8 ", &[0; 8]))), malformed(ImageKind::Webp, "first chunk has an impossible size"));
        assert_eq!(probe(&riff(&webp_chunk(b"ALPH", &[0; 12]))), malformed(ImageKind::Webp, "first chunk is not VP8, VP8L or VP8X"));
        assert_eq!(probe(b"RIFF\x24\0\0\0WAVEfmt "), Probe::Invalid(InvalidImage::UnknownFormat));
    }

    #[test]
    fn other_content_is_not_an_image() {
        for other in [
            b"<html><body>png</body></html>".as_slice(),
            b"<svg xmlns='http://www.w3.org/2000/svg'/>",
            b"GIF89a\x01\0\x01\0\0\0\0;",
            b"\x89PNx",
            b"\xFF\xD9",
            b"{\"error\":\"not found\"}",
            b"\0\0\0\x0cjP  \r\n\x87\n",
        ] {
            assert_eq!(probe(other), Probe::Invalid(InvalidImage::UnknownFormat), "{other:?}");
            assert_eq!(ImageKind::sniff(other), None);
        }
        // Refused from its first byte, without waiting for more.
        assert_eq!(probe(b"<"), Probe::Invalid(InvalidImage::UnknownFormat));
        assert_eq!(probe(b""), Probe::NeedMore);
        assert_eq!(ImageProbe::new().finish(), Probe::Invalid(InvalidImage::Truncated { kind: None, len: 0 }));
        assert_eq!(ImageKind::sniff(b""), None);
        assert_eq!(probe(b"\x89PNG"), Probe::NeedMore);
        assert_eq!(probe(b"RIFF\xff\xff"), Probe::NeedMore);
    }

    #[test]
    fn truncated_headers_need_more_until_complete() {
        let mut extended = webp_chunk(b"VP8X", &vp8x_payload(640, 480));
        extended.extend(webp_chunk(b"VP8 ", &vp8_payload(640, 480)));
        let cases = [
            (tiny_png(), valid(ImageKind::Png, 1, 1)),
            (baseline_jpeg(), valid(ImageKind::Jpeg, 640, 480)),
            (riff(&webp_chunk(b"VP8 ", &vp8_payload(33, 44))), valid(ImageKind::Webp, 33, 44)),
            (riff(&webp_chunk(b"VP8L", &vp8l_payload(33, 44))), valid(ImageKind::Webp, 33, 44)),
            (riff(&extended), valid(ImageKind::Webp, 640, 480)),
        ];
        for (bytes, expected) in cases {
            let (at, verdict) = byte_by_byte(&bytes);
            assert_eq!(verdict, expected);
            for len in 0..at {
                assert_eq!(probe(&bytes[..len]), Probe::NeedMore, "{expected:?} cut to {len}");
                let mut p = ImageProbe::new();
                p.feed(&bytes[..len]);
                assert!(matches!(p.finish(), Probe::Invalid(InvalidImage::Truncated { .. })));
                assert_eq!(ImageKind::sniff(&bytes[..len]), None);
            }
        }
    }

    #[test]
    fn reasons_read_well_in_logs() {
        assert_eq!(InvalidImage::UnknownFormat.to_string(), "not a JPEG, PNG or WebP file");
        assert_eq!(InvalidImage::Truncated { kind: Some(ImageKind::Png), len: 20 }.to_string(), "PNG header truncated after 20 bytes");
        assert_eq!(InvalidImage::Truncated { kind: None, len: 0 }.to_string(), "image header truncated after 0 bytes");
        assert_eq!(InvalidImage::Malformed { kind: ImageKind::Png, reason: "IHDR CRC mismatch" }.to_string(), "PNG: IHDR CRC mismatch");
        assert_eq!(
            InvalidImage::Dimensions { kind: ImageKind::Webp, width: 0, height: 3 }.to_string(),
            "WebP: dimensions 0x3 outside 1..=20000"
        );
    }

    #[test]
    fn crc32_matches_the_reference_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }
}
