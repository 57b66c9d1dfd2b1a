//! Signature checks with the runtime's WebCrypto (`crypto.subtle`), so the
//! Worker carries no RSA or ECDSA code of its own: the key is imported from
//! its JWK and `verify` runs natively.

use super::js_message;
use crate::domain::error::{AppError, AppResult};
use crate::domain::jwt::JwsAlg;
use serde_json::Value;
use wasm_bindgen::{JsCast, JsValue};
use worker::js_sys::{self, Array, Function, Object, Promise, Reflect, Uint8Array, JSON};
use worker::wasm_bindgen_futures::JsFuture;

fn crypto_error(what: &str, e: JsValue) -> AppError {
    AppError::internal(format!("webcrypto {what}: {}", js_message(&e)))
}

fn get(obj: &JsValue, name: &str) -> AppResult<JsValue> {
    Reflect::get(obj, &JsValue::from_str(name)).map_err(|e| crypto_error(name, e))
}

/// `{name, …}` as a JavaScript object.
fn object(pairs: &[(&str, &str)]) -> AppResult<JsValue> {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), &JsValue::from_str(v)).map_err(|e| crypto_error("algorithm", e))?;
    }
    Ok(o.into())
}

async fn call(target: &JsValue, method: &str, args: &Array) -> AppResult<JsValue> {
    let f: Function = get(target, method)?.dyn_into().map_err(|e| crypto_error(method, e))?;
    let promise: Promise = f.apply(target, args).map_err(|e| crypto_error(method, e))?.dyn_into().map_err(|e| crypto_error(method, e))?;
    JsFuture::from(promise).await.map_err(|e| crypto_error(method, e))
}

/// Whether `signature` over `signed` verifies with the public key `jwk` (the
/// minimal JWK the domain chose). RS256: RSASSA-PKCS1-v1_5 with SHA-256;
/// ES256: ECDSA P-256 with SHA-256, whose JWS signature is the raw `r || s`
/// WebCrypto expects. A key the runtime cannot import is an error.
pub async fn verify(alg: JwsAlg, jwk: &Value, signed: &[u8], signature: &[u8]) -> AppResult<bool> {
    let subtle = get(&get(&js_sys::global().into(), "crypto")?, "subtle")?;
    let key_data = JSON::parse(&jwk.to_string()).map_err(|e| crypto_error("jwk", e))?;
    let (import_alg, verify_alg) = match alg {
        JwsAlg::Rs256 => (object(&[("name", "RSASSA-PKCS1-v1_5"), ("hash", "SHA-256")])?, object(&[("name", "RSASSA-PKCS1-v1_5")])?),
        JwsAlg::Es256 => (object(&[("name", "ECDSA"), ("namedCurve", "P-256")])?, object(&[("name", "ECDSA"), ("hash", "SHA-256")])?),
    };
    let usages = Array::of1(&JsValue::from_str("verify"));
    let key = call(&subtle, "importKey", &Array::of5(&JsValue::from_str("jwk"), &key_data, &import_alg, &JsValue::FALSE, &usages)).await?;
    let ok = call(&subtle, "verify", &Array::of4(&verify_alg, &key, &Uint8Array::from(signature), &Uint8Array::from(signed))).await?;
    Ok(ok.as_bool() == Some(true))
}
