//! The incoming request as the runtime hands it over. What every request
//! reads (method, URL, `cf-ray`) crosses into wasm in one call
//! (`request.mjs`); other headers are read when a handler asks, through the
//! headers object fetched once; the body only by the handlers that take one.

use std::cell::OnceCell;
use wasm_bindgen::prelude::wasm_bindgen;
use worker::web_sys;
use worker::Method;

#[wasm_bindgen(module = "/src/http/request.mjs")]
extern "C" {
    fn request_head(request: &web_sys::Request) -> String;
}

pub struct Request {
    raw: web_sys::Request,
    method: Method,
    url: String,
    cf_ray: Option<String>,
    headers: OnceCell<web_sys::Headers>,
}

impl Request {
    pub fn new(raw: web_sys::Request) -> Request {
        let head = request_head(&raw);
        let mut lines = head.split('\n');
        let method = Method::from(lines.next().unwrap_or_default().to_string());
        let url = lines.next().unwrap_or_default().to_string();
        let cf_ray = lines.next().filter(|v| !v.is_empty()).map(str::to_string);
        Request { raw, method, url, cf_ray, headers: OnceCell::new() }
    }

    /// One header's value, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get_or_init(|| self.raw.headers()).get(name).ok().flatten()
    }

    /// Cloudflare's ray id header, as sent.
    pub fn cf_ray(&self) -> Option<&str> {
        self.cf_ray.as_deref()
    }

    pub fn method(&self) -> Method {
        self.method.clone()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The runtime's request, for reading its body.
    pub fn inner(&self) -> &web_sys::Request {
        &self.raw
    }
}
