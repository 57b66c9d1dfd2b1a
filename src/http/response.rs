//! A response as plain data until it leaves: handlers and the edge set its
//! status, headers and body in wasm, and [`Response::into_web`] builds the
//! runtime's `Response` in one call (`response.mjs`). workers-rs' type made one
//! JS call per header set or read, and copied a byte body twice.

use crate::adapters::js_message;
use serde_json::Value;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;
use worker::web_sys;

#[wasm_bindgen(module = "/src/http/response.mjs")]
extern "C" {
    #[wasm_bindgen(catch, js_name = respond)]
    fn respond_text(status: u16, head: &str, body: &str) -> Result<web_sys::Response, JsValue>;
    #[wasm_bindgen(catch, js_name = respond)]
    fn respond_stream(status: u16, head: &str, body: Option<&web_sys::ReadableStream>) -> Result<web_sys::Response, JsValue>;
    #[wasm_bindgen(catch)]
    fn respond_bytes(status: u16, head: &str, bytes: &[u8]) -> Result<web_sys::Response, JsValue>;
}

pub enum Body {
    Empty,
    Text(String),
    /// Compiled into the Worker (the page's files).
    Static(&'static [u8]),
    Stream(web_sys::ReadableStream),
}

pub struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Body,
}

impl Response {
    pub fn new(status: u16, body: Body) -> Response {
        Response { status, headers: Vec::new(), body }
    }

    pub fn empty(status: u16) -> Response {
        Response::new(status, Body::Empty)
    }

    /// `body` as JSON, with its content type.
    pub fn json(status: u16, body: &Value) -> Response {
        // Serialising a `Value` cannot fail (its keys are strings).
        let text = serde_json::to_string(body).unwrap_or_default();
        Response::new(status, Body::Text(text)).with_header("Content-Type", "application/json; charset=utf-8")
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.set_header(name, value);
        self
    }

    /// Sets `name`, replacing any value it had.
    pub fn set_header(&mut self, name: &'static str, value: impl Into<String>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name, value.into()));
    }

    /// Adds a value for `name` (`Set-Cookie`), keeping those it had.
    pub fn append_header(&mut self, name: &'static str, value: impl Into<String>) {
        self.headers.push((name, value.into()));
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The runtime's `Response`, in one call. A header value with a line
    /// break is left out (the runtime would refuse the whole response).
    pub fn into_web(self) -> Result<web_sys::Response, String> {
        let mut head = String::new();
        for (name, value) in self.headers.iter().filter(|(_, v)| !v.contains(['\n', '\r'])) {
            head.push_str(name);
            head.push('\n');
            head.push_str(value);
            head.push('\n');
        }
        match &self.body {
            Body::Empty => respond_stream(self.status, &head, None),
            Body::Text(text) => respond_text(self.status, &head, text),
            Body::Static(bytes) => respond_bytes(self.status, &head, bytes),
            Body::Stream(stream) => respond_stream(self.status, &head, Some(stream)),
        }
        .map_err(|e| js_message(&e))
    }
}
