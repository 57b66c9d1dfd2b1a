//! Checks on image URLs that clients hand us for Kie to fetch.

use super::error::{AppError, AppResult};

/// The host part of an http(s) URL, lowercased, without port or credentials.
pub fn http_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?.to_string()
    } else {
        authority.split(':').next()?.to_string()
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// True for hosts that a public service like Kie could never reach (or that
/// would make it reach into a private network).
pub fn is_private_host(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") || host.ends_with(".local") || host.ends_with(".internal") {
        return true;
    }
    if host.contains(':') {
        // IPv6 literal: loopback, unspecified, link-local, unique-local.
        return host == "::1" || host == "::" || host.starts_with("fe80") || host.starts_with("fc") || host.starts_with("fd");
    }
    let octets: Vec<u8> = host.split('.').filter_map(|p| p.parse().ok()).collect();
    match (octets.as_slice(), host.split('.').count()) {
        ([a, b, _, _], 4) => {
            matches!((a, b), (0, _) | (10, _) | (127, _) | (169, 254) | (192, 168) | (100, 64..=127))
                || (*a == 172 && (16..=31).contains(b))
        }
        _ => !host.contains('.'),
    }
}

/// Checks one client-supplied image URL: http(s), at most 2048 characters,
/// not a private address.
pub fn check_image_url(index: usize, url: &str) -> AppResult<()> {
    let field = format!("image_urls[{index}]");
    if url.len() > 2048 {
        return Err(AppError::validation(&field, "The image URL is longer than 2048 characters."));
    }
    let host = http_host(url).ok_or_else(|| AppError::validation(&field, "Image URLs must start with http:// or https://."))?;
    if is_private_host(&host) {
        return Err(AppError::validation(&field, "The image URL points at a private address the image service cannot reach."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_extracted() {
        assert_eq!(http_host("https://Img.Example.com:8443/a.png?x=1").as_deref(), Some("img.example.com"));
        assert_eq!(http_host("http://user:pw@10.0.0.1/a").as_deref(), Some("10.0.0.1"));
        assert_eq!(http_host("http://[::1]:80/a").as_deref(), Some("::1"));
        assert_eq!(http_host("ftp://x/a"), None);
        assert_eq!(http_host("https:///a"), None);
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
}
