//! The incoming request as the runtime hands it over. workers-rs' own
//! `Request` reads `request.cf` and the URL on every request whether or not
//! anyone looks (about 0.1 ms); this one reads only what a handler asks for.

use worker::web_sys;
use worker::Method;

pub struct Request(web_sys::Request);

impl Request {
    pub fn new(raw: web_sys::Request) -> Request {
        Request(raw)
    }

    pub fn headers(&self) -> web_sys::Headers {
        self.0.headers()
    }

    /// One header's value, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.0.headers().get(name).ok().flatten()
    }

    pub fn method(&self) -> Method {
        Method::from(self.0.method())
    }

    pub fn inner(&self) -> &web_sys::Request {
        &self.0
    }
}
