//! Checks on URLs that we, or Kie for us, will fetch: client-supplied image
//! URLs and result URLs.
//!
//! A URL is judged by the host a fetcher will connect to, and that host is
//! whatever the WHATWG URL parser (the runtime's `new URL()`) makes of it: it
//! reads `127.1`, `0x7f.0.0.1` and `0177.0.0.1` as `127.0.0.1`, writes IPv6 in
//! compressed hex (`[::ffff:127.0.0.1]` becomes `[::ffff:7f00:1]`), lowercases
//! names, and in http(s) treats `\` as `/`. So the edge lets the runtime parse
//! and hands the normalised `hostname` to [`check_public_url`], which calls
//! [`classify_host`]. Native callers without a URL parser use
//! [`check_image_url`], which reads the host out of the URL as the parser
//! would and normalises it with [`normalize_host`], a small reimplementation
//! of the same rules that refuses whatever it cannot read the same way
//! (percent-escapes, non-ASCII names, `http:\\host`).
//!
//! Names that resolve to private addresses are not caught here: no DNS in the
//! pure core.

use super::error::{AppError, AppResult};

/// The longest URL we pass on.
pub const MAX_URL_LEN: usize = 2048;

/// What a (normalised) hostname is, as far as fetching from it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostClass {
    /// A domain name of two labels or more, under none of the local-only suffixes.
    PublicName,
    /// A globally reachable IPv4 address.
    PublicIpv4([u8; 4]),
    /// A globally reachable IPv6 address (or one embedding a globally
    /// reachable IPv4 address, for the mapped, translated and 6to4 forms).
    PublicIpv6([u8; 16]),
    /// A name or address the public internet does not reach, or that would
    /// make a fetcher reach into a private network; the text names the range.
    NonPublic(&'static str),
    /// Not a hostname as the URL parser leaves it: empty, an empty label, a
    /// bad IPv6 literal, a number that is not dotted decimal, a character
    /// outside `a-z 0-9 - _ .`.
    Malformed,
}

impl HostClass {
    pub fn is_public(self) -> bool {
        matches!(self, HostClass::PublicName | HostClass::PublicIpv4(_) | HostClass::PublicIpv6(_))
    }
}

/// Domain suffixes that never lead to the public internet: `localhost`,
/// `local` (mDNS), `internal`, `home.arpa` (home networks), and the special-use
/// `test`, `invalid`, `onion`, `alt`. Each matches the name itself and every
/// name under it.
const LOCAL_SUFFIXES: [&str; 8] = ["localhost", "local", "internal", "home.arpa", "test", "invalid", "onion", "alt"];

/// Classifies a hostname as `URL.hostname` gives it after WHATWG parsing:
/// IPv6 in brackets, IPv4 in dotted decimal, names in lowercase ASCII. Exactly
/// one trailing dot is ignored (`localhost.` is `localhost`). Anything that is
/// not in that normal form is `Malformed`, never public.
pub fn classify_host(hostname: &str) -> HostClass {
    let name = hostname.strip_suffix('.').unwrap_or(hostname);
    if let Some(inner) = name.strip_prefix('[') {
        return match inner.strip_suffix(']').and_then(parse_ipv6) {
            Some(addr) => classify_ipv6(addr),
            None => HostClass::Malformed,
        };
    }
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')) {
        return HostClass::Malformed;
    }
    if name.split('.').any(str::is_empty) {
        return HostClass::Malformed;
    }
    if ends_in_a_number(name) {
        return match parse_dotted_decimal(name) {
            Some(addr) => classify_ipv4(addr),
            None => HostClass::Malformed,
        };
    }
    if LOCAL_SUFFIXES.iter().any(|s| name == *s || name.strip_suffix(s).is_some_and(|rest| rest.ends_with('.'))) {
        return HostClass::NonPublic("local-only name");
    }
    if !name.contains('.') {
        return HostClass::NonPublic("single-label name");
    }
    HostClass::PublicName
}

/// The special-purpose IPv4 blocks (IANA IPv4 Special-Purpose Address
/// Registry) that are refused. A few parts of them are marked globally
/// reachable there (192.0.0.9 and 192.0.0.10, AS112, AMT, the old 6to4 relay
/// anycast), but they are routing infrastructure, never a place images are
/// served from, so each block is refused whole.
const IPV4_SPECIAL: [([u8; 4], u32, &str); 18] = [
    ([0, 0, 0, 0], 8, "0.0.0.0/8 this network"),
    ([10, 0, 0, 0], 8, "10.0.0.0/8 private"),
    ([100, 64, 0, 0], 10, "100.64.0.0/10 shared address space"),
    ([127, 0, 0, 0], 8, "127.0.0.0/8 loopback"),
    ([169, 254, 0, 0], 16, "169.254.0.0/16 link-local"),
    ([172, 16, 0, 0], 12, "172.16.0.0/12 private"),
    ([192, 0, 0, 0], 24, "192.0.0.0/24 IETF protocol assignments"),
    ([192, 0, 2, 0], 24, "192.0.2.0/24 documentation"),
    ([192, 31, 196, 0], 24, "192.31.196.0/24 AS112"),
    ([192, 52, 193, 0], 24, "192.52.193.0/24 AMT"),
    ([192, 88, 99, 0], 24, "192.88.99.0/24 6to4 relay anycast"),
    ([192, 168, 0, 0], 16, "192.168.0.0/16 private"),
    ([192, 175, 48, 0], 24, "192.175.48.0/24 AS112 direct delegation"),
    ([198, 18, 0, 0], 15, "198.18.0.0/15 benchmarking"),
    ([198, 51, 100, 0], 24, "198.51.100.0/24 documentation"),
    ([203, 0, 113, 0], 24, "203.0.113.0/24 documentation"),
    ([224, 0, 0, 0], 4, "224.0.0.0/4 multicast"),
    ([240, 0, 0, 0], 4, "240.0.0.0/4 reserved and broadcast"),
];

pub fn classify_ipv4(addr: [u8; 4]) -> HostClass {
    let a = u32::from_be_bytes(addr);
    for (net, prefix, name) in IPV4_SPECIAL {
        let mask = u32::MAX << (32 - prefix);
        if a & mask == u32::from_be_bytes(net) & mask {
            return HostClass::NonPublic(name);
        }
    }
    HostClass::PublicIpv4(addr)
}

/// IPv6 addresses outside global unicast (`2000::/3`) are refused, as are
/// the special blocks inside it. `2001::/23` (IETF protocol assignments) is
/// refused whole, including the few anycast services in it that are globally
/// reachable. Forms that embed an IPv4 address (IPv4-mapped `::ffff:0:0/96`,
/// IPv4-translated `::ffff:0:0:0/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`)
/// are judged by that address; the local-use NAT64 prefix `64:ff9b:1::/48` is
/// refused whole, since the network that translates it is a private one.
pub fn classify_ipv6(addr: [u8; 16]) -> HostClass {
    let seg = |i: usize| u16::from_be_bytes([addr.get(2 * i).copied().unwrap_or(0), addr.get(2 * i + 1).copied().unwrap_or(0)]);
    let s: [u16; 8] = std::array::from_fn(seg);
    let v4 = |from: usize| {
        let b = |i: usize| addr.get(from + i).copied().unwrap_or(0);
        [b(0), b(1), b(2), b(3)]
    };
    let embedded = |inner: [u8; 4]| match classify_ipv4(inner) {
        HostClass::PublicIpv4(_) => HostClass::PublicIpv6(addr),
        refused => refused,
    };
    match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => HostClass::NonPublic(":: unspecified"),
        [0, 0, 0, 0, 0, 0, 0, 1] => HostClass::NonPublic("::1 loopback"),
        [0, 0, 0, 0, 0, 0xFFFF, _, _] => embedded(v4(12)),
        [0, 0, 0, 0, 0xFFFF, 0, _, _] => embedded(v4(12)),
        [0, 0, 0, 0, 0, 0, _, _] => HostClass::NonPublic("::/96 IPv4-compatible"),
        [0x64, 0xFF9B, 0, 0, 0, 0, _, _] => embedded(v4(12)),
        [0x64, 0xFF9B, 1, ..] => HostClass::NonPublic("64:ff9b:1::/48 local-use NAT64"),
        [0x100, 0, 0, 0, ..] => HostClass::NonPublic("100::/64 discard-only"),
        [0x2001, 0x0000..=0x01FF, ..] => HostClass::NonPublic("2001::/23 IETF protocol assignments"),
        [0x2001, 0x0DB8, ..] => HostClass::NonPublic("2001:db8::/32 documentation"),
        [0x2002, ..] => embedded(v4(2)),
        [0x3FFF, 0x0000..=0x0FFF, ..] => HostClass::NonPublic("3fff::/20 documentation"),
        [0xFC00..=0xFDFF, ..] => HostClass::NonPublic("fc00::/7 unique local"),
        [0xFE80..=0xFEBF, ..] => HostClass::NonPublic("fe80::/10 link-local"),
        [0xFEC0..=0xFEFF, ..] => HostClass::NonPublic("fec0::/10 site-local"),
        [0xFF00..=0xFFFF, ..] => HostClass::NonPublic("ff00::/8 multicast"),
        [0x2000..=0x3FFF, ..] => HostClass::PublicIpv6(addr),
        _ => HostClass::NonPublic("outside global unicast 2000::/3"),
    }
}

/// Parses IPv6 text without brackets: eight groups of 1 to 4 hex digits, one
/// `::` standing for one or more zero groups, and optionally a dotted-decimal
/// IPv4 address in place of the last two groups. No zone identifier.
pub fn parse_ipv6(text: &str) -> Option<[u8; 16]> {
    let groups = |part: &str, v4_tail: bool| -> Option<Vec<u16>> {
        let mut out = Vec::new();
        if part.is_empty() {
            return Some(out);
        }
        let pieces: Vec<&str> = part.split(':').collect();
        for (i, piece) in pieces.iter().enumerate() {
            if v4_tail && i + 1 == pieces.len() && piece.contains('.') {
                let [a, b, c, d] = parse_dotted_decimal(piece)?;
                out.extend([u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])]);
            } else if (1..=4).contains(&piece.len()) && piece.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(u16::from_str_radix(piece, 16).ok()?);
            } else {
                return None;
            }
        }
        Some(out)
    };
    let all = match text.split_once("::") {
        None => groups(text, true).filter(|g| g.len() == 8)?,
        Some((head, tail)) => {
            if tail.contains("::") {
                return None;
            }
            let (head, tail) = (groups(head, false)?, groups(tail, true)?);
            let zeros = 8usize.checked_sub(head.len() + tail.len()).filter(|z| *z >= 1)?;
            [head, vec![0; zeros], tail].concat()
        }
    };
    let mut addr = [0u8; 16];
    for (pair, g) in addr.chunks_exact_mut(2).zip(all) {
        pair.copy_from_slice(&g.to_be_bytes());
    }
    Some(addr)
}

/// IPv6 the way the WHATWG URL serializer writes it: lowercase hex without
/// leading zeros, the first longest run of two or more zero groups as `::`,
/// no brackets.
pub fn format_ipv6(addr: [u8; 16]) -> String {
    let groups: Vec<u16> =
        addr.chunks_exact(2).map(|p| u16::from_be_bytes([p.first().copied().unwrap_or(0), p.get(1).copied().unwrap_or(0)])).collect();
    let (mut best, mut best_len, mut run_start, mut run_len) = (0, 0, 0, 0);
    for (i, g) in groups.iter().enumerate() {
        if *g == 0 {
            if run_len == 0 {
                run_start = i;
            }
            run_len += 1;
            if run_len > best_len {
                (best, best_len) = (run_start, run_len);
            }
        } else {
            run_len = 0;
        }
    }
    let hex = |gs: &[u16]| gs.iter().map(|g| format!("{g:x}")).collect::<Vec<_>>().join(":");
    if best_len < 2 {
        return hex(&groups);
    }
    let head = groups.get(..best).unwrap_or_default();
    let tail = groups.get(best + best_len..).unwrap_or_default();
    format!("{}::{}", hex(head), hex(tail))
}

/// Strict dotted decimal: four parts, each 0 to 255 without leading zeros.
fn parse_dotted_decimal(text: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = text.split('.');
    for slot in &mut out {
        let part = parts.next()?;
        let canonical =
            !part.is_empty() && part.len() <= 3 && part.bytes().all(|b| b.is_ascii_digit()) && (part == "0" || !part.starts_with('0'));
        if !canonical {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The WHATWG host parser's test for "this is an IPv4 address": the last
/// label (after one empty trailing label) is all digits, or `0x` and hex.
fn ends_in_a_number(host: &str) -> bool {
    let mut labels: Vec<&str> = host.split('.').collect();
    if labels.len() > 1 && labels.last() == Some(&"") {
        labels.pop();
    }
    let last = labels.last().copied().unwrap_or_default();
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    ipv4_number(last).is_some()
}

/// One part of a WHATWG IPv4 address: decimal, `0x` hex or `0` octal.
fn ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (part.get(1..).unwrap_or_default(), 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.bytes().all(|b| char::from(b).is_digit(radix)) {
        return None;
    }
    // Too large for u64 is too large for an address part anyway.
    u64::from_str_radix(digits, radix).ok()
}

/// The WHATWG IPv4 parser: one to four parts, the last filling the remaining
/// bytes (`127.1` is `127.0.0.1`, `0x7f000001` too).
fn whatwg_ipv4(host: &str) -> Option<[u8; 4]> {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    if parts.len() > 4 {
        return None;
    }
    let numbers = parts.iter().map(|p| ipv4_number(p)).collect::<Option<Vec<u64>>>()?;
    let (last, init) = numbers.split_last()?;
    if init.iter().any(|n| *n > 255) || *last >= 1u64 << (8 * (5 - numbers.len())) {
        return None;
    }
    let mut value = *last;
    for (i, n) in init.iter().enumerate() {
        value += n << (8 * (3 - i));
    }
    Some(u32::try_from(value).ok()?.to_be_bytes())
}

/// Normalises a host the way the WHATWG URL parser would, for callers that
/// have no URL parser: IPv6 (with or without brackets) to bracketed compressed
/// form, IPv4 in any WHATWG form to dotted decimal, names to lowercase. `None`
/// for what it cannot read exactly as the parser does (invalid numbers or
/// IPv6, percent-escapes, non-ASCII names, which the parser would map through
/// IDNA): refuse those.
pub fn normalize_host(host: &str) -> Option<String> {
    if let Some(inner) = host.strip_prefix('[') {
        return parse_ipv6(inner.strip_suffix(']')?).map(|a| format!("[{}]", format_ipv6(a)));
    }
    if host.contains(':') {
        return parse_ipv6(host).map(|a| format!("[{}]", format_ipv6(a)));
    }
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return None;
    }
    let lower = host.to_ascii_lowercase();
    if ends_in_a_number(&lower) {
        return whatwg_ipv4(&lower).map(|[a, b, c, d]| format!("{a}.{b}.{c}.{d}"));
    }
    Some(lower)
}

/// The scheme (`"http"` or `"https"`) and raw host (IPv6 in brackets) of an
/// http(s) URL, read as the WHATWG parser reads special URLs: tabs and
/// newlines removed, scheme in any case, the authority ending at `/`, `\`, `?`
/// or `#`, credentials before the last `@`, a port of digits. Forms it does not
/// read (`http:host`, `http:\\host`, extra slashes) give `None`.
fn http_parts(url: &str) -> Option<(&'static str, String)> {
    let url: String = url.trim_matches(|c: char| c <= ' ').chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
    let scheme_end = url.find("://")?;
    let scheme = match url.get(..scheme_end)?.to_ascii_lowercase().as_str() {
        "http" => "http",
        "https" => "https",
        _ => return None,
    };
    let rest = url.get(scheme_end + 3..)?;
    let authority = rest.split(['/', '\\', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let (host, port) = if host_port.starts_with('[') {
        let end = host_port.find(']')? + 1;
        let (host, after) = host_port.split_at_checked(end)?;
        if !after.is_empty() && !after.starts_with(':') {
            return None;
        }
        (host, after.strip_prefix(':'))
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let port_ok = port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()) && (p.is_empty() || p.parse::<u16>().is_ok()));
    (!host.is_empty() && port_ok).then(|| (scheme, host.to_ascii_lowercase()))
}

/// The host part of an http(s) URL, lowercased, without port or credentials
/// (IPv6 without brackets). Not normalised: see [`normalize_host`].
pub fn http_host(url: &str) -> Option<String> {
    let (_, host) = http_parts(url)?;
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return Some(v6.to_string());
    }
    Some(host)
}

/// True for hosts that a public service like Kie could never reach (or that
/// would make it reach into a private network), including any host that
/// [`normalize_host`] cannot read.
pub fn is_private_host(host: &str) -> bool {
    !normalize_host(host).is_some_and(|h| classify_host(&h).is_public())
}

/// Checks a URL the runtime's URL parser has already read: `scheme` as
/// `URL.protocol` gives it (`"https:"`; `"https"` also accepted), `hostname`
/// as `URL.hostname` gives it, `url_len` the length of the URL as received.
/// http(s) only, at most [`MAX_URL_LEN`] characters, a public host. Errors are
/// 422 `validation_failed` with `details.field` set to `field`; the refused
/// range goes to the log only.
pub fn check_public_url(field: &str, scheme: &str, hostname: &str, url_len: usize) -> AppResult<()> {
    if url_len > MAX_URL_LEN {
        return Err(AppError::validation(field, "The image URL is longer than 2048 characters."));
    }
    if !matches!(scheme, "http:" | "https:" | "http" | "https") {
        return Err(AppError::validation(field, "Image URLs must start with http:// or https://."));
    }
    match classify_host(hostname) {
        c if c.is_public() => Ok(()),
        HostClass::NonPublic(range) => {
            Err(AppError::validation(field, "The image URL points at a private address the image service cannot reach.")
                .with_internal(format!("host {hostname}: {range}")))
        }
        _ => Err(AppError::validation(field, "The image URL does not have a valid host name.")
            .with_internal(format!("host {hostname}: malformed"))),
    }
}

/// Checks one client-supplied image URL: http(s), at most 2048 characters,
/// not a private address. For callers without a URL parser; the host is
/// normalised by [`normalize_host`] and then judged as [`check_public_url`]
/// judges it.
pub fn check_image_url(index: usize, url: &str) -> AppResult<()> {
    let field = format!("image_urls[{index}]");
    if url.len() > MAX_URL_LEN {
        return Err(AppError::validation(&field, "The image URL is longer than 2048 characters."));
    }
    let (scheme, host) = http_parts(url).ok_or_else(|| AppError::validation(&field, "Image URLs must start with http:// or https://."))?;
    let hostname = normalize_host(&host).ok_or_else(|| {
        AppError::validation(&field, "The image URL does not have a valid host name.")
            .with_internal(format!("host {host}: not normalisable"))
    })?;
    check_public_url(&field, scheme, &hostname, url.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::ErrorCode;

    fn refused(hostname: &str) -> bool {
        !classify_host(hostname).is_public()
    }

    #[test]
    fn hosts_are_extracted() {
        assert_eq!(http_host("https://Img.Example.com:8443/a.png?x=1").as_deref(), Some("img.example.com"));
        assert_eq!(http_host("http://user:pw@10.0.0.1/a").as_deref(), Some("10.0.0.1"));
        assert_eq!(http_host("http://[::1]:80/a").as_deref(), Some("::1"));
        assert_eq!(http_host("ftp://x/a"), None);
        assert_eq!(http_host("https:///a"), None);
    }

    #[test]
    fn hosts_are_extracted_as_a_url_parser_reads_them() {
        // In http(s), `\` ends the authority like `/`: the host is 127.0.0.1, not example.com.
        assert_eq!(http_host("http://127.0.0.1\\@example.com/a.png").as_deref(), Some("127.0.0.1"));
        assert_eq!(http_host("http://a@b@10.0.0.1/").as_deref(), Some("10.0.0.1"));
        assert_eq!(http_host("HTTPS://Example.com/a").as_deref(), Some("example.com"));
        assert_eq!(http_host("  http://loc\talhost\n/a ").as_deref(), Some("localhost"));
        assert_eq!(http_host("http://example.com#@127.0.0.1/").as_deref(), Some("example.com"));
        assert_eq!(http_host("http://example.com?@127.0.0.1/").as_deref(), Some("example.com"));
        assert_eq!(http_host("javascript:alert('http://example.com')"), None);
        assert_eq!(http_host("http:\\\\127.0.0.1/"), None);
        assert_eq!(http_host("http://[::1]:8080/").as_deref(), Some("::1"));
        assert_eq!(http_host("http://example.com:/a").as_deref(), Some("example.com"));
        assert_eq!(http_host("http://example.com:99999/a"), None);
        assert_eq!(http_host("http://example.com:8o/a"), None);
        assert_eq!(http_host("http://[::1]x/a"), None);
        assert_eq!(http_host("http://[::1/a"), None);
        assert!(check_image_url(0, "http://[127.0.0.1]/a.png").is_err());
        assert!(check_image_url(0, "http://[1]/a.png").is_err());
    }

    #[test]
    fn private_hosts_are_refused() {
        for bad in [
            "http://localhost/a.png",
            "http://127.0.0.1:8787/a",
            "http://10.1.2.3/a",
            "http://172.20.0.1/a",
            "http://192.168.1.1/a",
            "http://169.254.169.254/latest",
            "http://[::1]/a",
            "http://intranet/a",
            "file:///etc/passwd",
            "javascript:alert(1)",
        ] {
            assert!(check_image_url(0, bad).is_err(), "{bad}");
        }
        for good in ["https://images.example.com/cat.png", "http://8.8.8.8/a.jpg", "https://172.32.0.1/a"] {
            assert!(check_image_url(0, good).is_ok(), "{good}");
        }
        let e = check_image_url(3, "http://127.0.0.1/x").unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "image_urls[3]");
    }

    #[test]
    fn known_bypasses_are_refused_in_their_normalised_form() {
        // What `new URL("http://<host>/").hostname` gives for each written form.
        for (written, hostname) in [
            ("127.1", "127.0.0.1"),
            ("0x7f.0.0.1", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("[::ffff:127.0.0.1]", "[::ffff:7f00:1]"),
            ("[::ffff:7f00:1]", "[::ffff:7f00:1]"),
            ("[0:0:0:0:0:0:0:1]", "[::1]"),
            ("localhost.", "localhost."),
            ("169.254.169.254.", "169.254.169.254"),
            ("[::ffff:a9fe:a9fe]", "[::ffff:a9fe:a9fe]"),
            ("198.18.0.1", "198.18.0.1"),
        ] {
            assert!(refused(hostname), "{hostname}");
            assert_eq!(normalize_host(written).as_deref(), Some(hostname), "{written}");
            assert!(is_private_host(written), "{written}");
            assert!(check_public_url("image_urls[0]", "http:", hostname, 30).is_err(), "{hostname}");
            assert!(check_image_url(0, &format!("http://{written}/a.png")).is_err(), "{written}");
        }
        // Left as written (trailing dot kept), it is still refused.
        assert!(refused("169.254.169.254."));
        assert!(check_image_url(0, "http://127.0.0.1\\@example.com/a.png").is_err());
        assert!(check_image_url(0, "http://2130706433/a.png").is_err());
        assert!(check_image_url(0, "http://0x7f000001/a.png").is_err());
        assert!(check_image_url(0, "http://127.0.0.1%2f@x/a.png").is_err());
        assert!(check_image_url(0, "http://%31%32%37.0.0.1/a.png").is_err());
        assert!(check_image_url(0, "http://\u{ff11}\u{ff12}\u{ff17}\u{3002}0\u{3002}0\u{3002}1/a.png").is_err());
    }

    #[test]
    fn public_hosts_pass() {
        for hostname in [
            "8.8.8.8",
            "[2606:4700::1111]",
            "images.example.com",
            "example.com.",
            "172.32.0.1",
            "100.128.0.1",
            "1.1.1.1",
            "[2001:4860:4860::8888]",
            "xn--bcher-kva.de",
            "my_bucket.s3.amazonaws.com",
            "127.0.0.1.nip.io",
            "[::ffff:808:808]",
            "[64:ff9b::808:808]",
            "[2002:808:808::1]",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.255",
        ] {
            assert!(classify_host(hostname).is_public(), "{hostname}: {:?}", classify_host(hostname));
            assert!(check_public_url("image_urls[0]", "https:", hostname, 40).is_ok(), "{hostname}");
        }
        assert_eq!(classify_host("8.8.8.8"), HostClass::PublicIpv4([8, 8, 8, 8]));
        assert_eq!(classify_host("example.com."), HostClass::PublicName);
        assert!(matches!(classify_host("[2606:4700::1111]"), HostClass::PublicIpv6(_)));
        for url in [
            "https://images.example.com/cat.png",
            "http://8.8.8.8/a.jpg",
            "https://[2606:4700::1111]:443/a",
            "https://example.com./a",
            "http://100.128.0.1/a",
            "https://u:p@cdn.example.org/a.webp?x=1#y",
        ] {
            assert!(check_image_url(0, url).is_ok(), "{url}");
        }
    }

    #[test]
    fn every_special_ipv4_block_is_refused_at_both_ends() {
        for (net, prefix, name) in IPV4_SPECIAL {
            let first = u32::from_be_bytes(net);
            let last = first | (u32::MAX >> prefix);
            for a in [first, last, first + (last - first) / 2] {
                assert_eq!(classify_ipv4(a.to_be_bytes()), HostClass::NonPublic(name));
            }
            // Just outside the block (where that is not another special block).
            for outside in [first.wrapping_sub(1), last.wrapping_add(1)] {
                let c = classify_ipv4(outside.to_be_bytes());
                assert!(c != HostClass::NonPublic(name), "{outside:x} is outside {name}");
            }
        }
        for hostname in [
            "0.0.0.0",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.255.255.254",
            "169.254.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.9",
            "192.0.2.1",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.99.1",
            "192.168.0.1",
            "192.175.48.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(refused(hostname), "{hostname}");
        }
        for hostname in [
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "11.0.0.0",
            "126.255.255.255",
            "128.0.0.0",
        ] {
            assert!(!refused(hostname), "{hostname}");
        }
    }

    #[test]
    fn special_ipv6_blocks_are_refused() {
        for (hostname, range) in [
            ("[::]", ":: unspecified"),
            ("[::1]", "::1 loopback"),
            ("[::ffff:7f00:1]", "127.0.0.0/8 loopback"),
            ("[::ffff:a9fe:a9fe]", "169.254.0.0/16 link-local"),
            ("[::ffff:0:a00:1]", "10.0.0.0/8 private"),
            ("[::7f00:1]", "::/96 IPv4-compatible"),
            ("[::808:808]", "::/96 IPv4-compatible"),
            ("[64:ff9b::a9fe:a9fe]", "169.254.0.0/16 link-local"),
            ("[64:ff9b::7f00:1]", "127.0.0.0/8 loopback"),
            ("[64:ff9b:1::808:808]", "64:ff9b:1::/48 local-use NAT64"),
            ("[100::1]", "100::/64 discard-only"),
            ("[2001::1]", "2001::/23 IETF protocol assignments"),
            ("[2001:1ff:ffff::1]", "2001::/23 IETF protocol assignments"),
            ("[2001:db8::1]", "2001:db8::/32 documentation"),
            ("[2002:a9fe:a9fe::1]", "169.254.0.0/16 link-local"),
            ("[2002:c0a8:101::]", "192.168.0.0/16 private"),
            ("[3fff::1]", "3fff::/20 documentation"),
            ("[fc00::1]", "fc00::/7 unique local"),
            ("[fdff:ffff::1]", "fc00::/7 unique local"),
            ("[fe80::1]", "fe80::/10 link-local"),
            ("[febf::1]", "fe80::/10 link-local"),
            ("[fec0::1]", "fec0::/10 site-local"),
            ("[ff02::1]", "ff00::/8 multicast"),
            ("[4000::1]", "outside global unicast 2000::/3"),
            ("[5f00::1]", "outside global unicast 2000::/3"),
            ("[1::1]", "outside global unicast 2000::/3"),
        ] {
            assert_eq!(classify_host(hostname), HostClass::NonPublic(range), "{hostname}");
        }
        assert!(!refused("[2001:200::1]"));
        assert!(!refused("[2001:db7:ffff::1]"));
        assert!(!refused("[3fff:1000::1]"));
    }

    #[test]
    fn local_names_are_refused_with_or_without_one_trailing_dot() {
        for name in [
            "localhost",
            "a.localhost",
            "printer.local",
            "metadata.google.internal",
            "nas.home.arpa",
            "home.arpa",
            "intranet",
            "com",
            "x.test",
            "a.invalid",
            "abc.onion",
            "foo.alt",
            "local",
            "internal",
        ] {
            assert_eq!(classify_host(name), classify_host(&format!("{name}.")), "{name}");
            assert!(refused(name), "{name}");
            assert!(refused(&format!("{name}.")), "{name}.");
        }
        assert_eq!(classify_host("localhost"), HostClass::NonPublic("local-only name"));
        assert_eq!(classify_host("intranet."), HostClass::NonPublic("single-label name"));
        // Suffixes match whole labels only.
        assert!(!refused("notlocalhost.com"));
        assert!(!refused("local.example.com"));
        assert!(!refused("mylocal.io"));
        assert!(!refused("internal.example."));
    }

    #[test]
    fn unnormalised_or_broken_hostnames_are_malformed() {
        for hostname in [
            "",
            ".",
            "..",
            "localhost..",
            "example..com",
            ".example.com",
            "127.1",
            "0x7f.0.0.1",
            "0177.0.0.1",
            "127.0.0.01",
            "2130706433",
            "256.0.0.1",
            "1.2.3.4.5",
            "Example.com",
            "exa mple.com",
            "ex%41mple.com",
            "b\u{fc}cher.de",
            "[::1",
            "::1",
            "[::1]]",
            "[fe80::1%25eth0]",
            "[1:2:3:4:5:6:7:8:9]",
            "[1::2::3]",
            "[12345::]",
            "[::ffff:127.0.0.01]",
            "[127.0.0.1]",
            "example.0x1",
            "a.123",
        ] {
            assert_eq!(classify_host(hostname), HostClass::Malformed, "{hostname:?}");
            assert!(check_public_url("f", "https:", hostname, 10).is_err(), "{hostname:?}");
        }
    }

    #[test]
    fn ipv6_text_is_parsed_in_all_its_forms() {
        let loopback = {
            let mut a = [0u8; 16];
            a[15] = 1;
            a
        };
        for text in ["::1", "0:0:0:0:0:0:0:1", "0000:0000:0000:0000:0000:0000:0000:0001", "0::1", "::0:1", "0:0:0::0:0:1", "::0.0.0.1"] {
            assert_eq!(parse_ipv6(text), Some(loopback), "{text}");
        }
        assert_eq!(parse_ipv6("::"), Some([0; 16]));
        assert_eq!(parse_ipv6("1:2:3:4:5:6:7::"), parse_ipv6("1:2:3:4:5:6:7:0"));
        assert_eq!(parse_ipv6("::2:3:4:5:6:7:8"), parse_ipv6("0:2:3:4:5:6:7:8"));
        assert_eq!(parse_ipv6("::ffff:127.0.0.1"), parse_ipv6("::ffff:7f00:1"));
        assert_eq!(parse_ipv6("1:2:3:4:5:6:1.2.3.4"), parse_ipv6("1:2:3:4:5:6:102:304"));
        assert_eq!(parse_ipv6("2606:4700::1111").map(format_ipv6).as_deref(), Some("2606:4700::1111"));
        assert_eq!(parse_ipv6("FE80::ABCD").map(format_ipv6).as_deref(), Some("fe80::abcd"));
        for bad in [
            "",
            ":",
            ":::",
            "1::2::3",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8:9",
            "::1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8::",
            ":1::2",
            "1::2:",
            "12345::",
            "g::1",
            "+1::",
            "::1.2.3",
            "::1.2.3.4.5",
            "::256.0.0.1",
            "::01.2.3.4",
            "1.2.3.4::",
            "::1.2.3.4:5",
            "fe80::1%eth0",
            " ::1",
        ] {
            assert_eq!(parse_ipv6(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ipv6_is_written_as_the_url_serializer_writes_it() {
        for (text, written) in [
            ("0:0:0:0:0:0:0:1", "::1"),
            ("0:0:0:0:0:0:0:0", "::"),
            ("::ffff:127.0.0.1", "::ffff:7f00:1"),
            ("::ffff:169.254.169.254", "::ffff:a9fe:a9fe"),
            ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
            ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
            ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
            ("2001:0db8:0000:0000:0000:0000:0000:0000", "2001:db8::"),
        ] {
            assert_eq!(parse_ipv6(text).map(format_ipv6).as_deref(), Some(written), "{text}");
        }
    }

    #[test]
    fn hosts_are_normalised_as_the_url_parser_does() {
        for (host, normal) in [
            ("127.1", Some("127.0.0.1")),
            ("127.0.1", Some("127.0.0.1")),
            ("0x7f.1", Some("127.0.0.1")),
            ("0X7F.0.0.1", Some("127.0.0.1")),
            ("2130706433", Some("127.0.0.1")),
            ("017700000001", Some("127.0.0.1")),
            ("0x7f000001", Some("127.0.0.1")),
            ("0", Some("0.0.0.0")),
            ("0x", Some("0.0.0.0")),
            ("1.2.3.4.", Some("1.2.3.4")),
            ("4294967295", Some("255.255.255.255")),
            ("4294967296", None),
            ("256.0.0.1", None),
            ("1.2.3.4.5", None),
            ("1.2.3.09", None),
            ("1..2", None),
            ("a.1", None),
            ("1.0x", Some("1.0.0.0")),
            ("Images.Example.COM", Some("images.example.com")),
            ("localhost.", Some("localhost.")),
            ("1.2.3.4.nip.io", Some("1.2.3.4.nip.io")),
            ("::1", Some("[::1]")),
            ("[0:0::1]", Some("[::1]")),
            ("[127.0.0.1]", None),
            ("[::1", None),
            ("b\u{fc}cher.de", None),
            ("ex%41mple.com", None),
            ("", None),
        ] {
            assert_eq!(normalize_host(host).as_deref(), normal, "{host:?}");
        }
    }

    #[test]
    fn the_edge_check_gives_the_same_errors_as_before() {
        assert!(check_public_url("image_urls[1]", "https:", "images.example.com", 2048).is_ok());
        assert!(check_public_url("image_urls[1]", "http", "images.example.com", 100).is_ok());
        let e = check_public_url("image_urls[1]", "https:", "images.example.com", 2049).unwrap_err();
        assert_eq!((e.code, e.details.unwrap()["field"].as_str()), (ErrorCode::ValidationFailed, Some("image_urls[1]")));
        for scheme in ["ftp:", "file:", "javascript:", "data:", "HTTP:", ""] {
            let e = check_public_url("image_urls[2]", scheme, "images.example.com", 10).unwrap_err();
            assert_eq!(e.message, "Image URLs must start with http:// or https://.");
            assert_eq!(e.details.unwrap()["field"], "image_urls[2]");
        }
        let e = check_public_url("image_urls[0]", "http:", "[::ffff:7f00:1]", 30).unwrap_err();
        assert_eq!(e.status(), 422);
        assert_eq!(e.message, "The image URL points at a private address the image service cannot reach.");
        assert_eq!(e.internal.as_deref(), Some("host [::ffff:7f00:1]: 127.0.0.0/8 loopback"));
        assert_eq!(e.details.unwrap()["field"], "image_urls[0]");
        let e = check_public_url("image_urls[0]", "http:", "127.1", 30).unwrap_err();
        assert_eq!(e.message, "The image URL does not have a valid host name.");
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert_eq!(check_image_url(0, &long).unwrap_err().message, "The image URL is longer than 2048 characters.");
    }
}
