//! One HTTP request → one store operation (or a watch stream).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::discovery;
use super::error::ApiError;
use super::meta::meta_str;
use super::patch::{PatchKind, apply_patch, parse_json_or_yaml};
use super::paths::{ResourcePath, Route, query, route};
use super::selector::Selectors;
use super::store::{Part, Store};
use super::subresource::{scale_of, set_scale};
use super::watch::{WatchRequest, error_body, watch_body};

pub type Body = BoxBody<Bytes, Infallible>;

/// Whether to log every request to stderr (`SHOAL_KUBE_STANDIN_LOG` set).
fn logging() -> bool {
    std::env::var_os("SHOAL_KUBE_STANDIN_LOG").is_some()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).expect("a JSON value serialises");
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("a valid response")
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

/// The request, read whole.
struct Req {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    content_type: String,
    body: Bytes,
}

impl Req {
    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
    }
}

/// The service function.
pub async fn handle(store: Arc<Store>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(error_response(&ApiError::bad_request(format!("reading the body: {e}")))),
    };
    let r = Req { method, path: uri.path().to_string(), query: query(uri.query()), content_type, body };
    let resp = dispatch(&store, &r).unwrap_or_else(|e| error_response(&e));
    if logging() {
        eprintln!("kube stand-in: {} {uri} [{}] -> {}", r.method, r.content_type, resp.status().as_u16());
    }
    Ok(resp)
}

fn dispatch(store: &Arc<Store>, r: &Req) -> Result<Response<Body>, ApiError> {
    let rp = match route(&r.path)? {
        Route::Version => return Ok(json_response(200, &discovery::version())),
        Route::CoreVersions => return Ok(json_response(200, &discovery::core_versions())),
        Route::Groups => return Ok(json_response(200, &discovery::groups())),
        Route::GroupVersion(g, v) => {
            let list = discovery::resource_list(&g, &v).ok_or_else(|| ApiError::path_not_found(&r.path))?;
            return Ok(json_response(200, &list));
        }
        Route::Health => {
            return Ok(Response::builder().status(200).body(Full::new(Bytes::from_static(b"ok")).boxed()).expect("a valid response"));
        }
        Route::Resource(rp) => rp,
    };
    match (&rp.name, rp.subresource.as_deref()) {
        (None, _) => collection(store, r, &rp),
        (Some(name), None) => object(store, r, &rp, name),
        (Some(name), Some("status")) if rp.res.status => status(store, r, &rp, name),
        (Some(name), Some("scale")) if rp.res.scale => scale(store, r, &rp, name),
        (Some(_), Some(_)) => Err(ApiError::path_not_found(&r.path)),
    }
}

fn ns(rp: &ResourcePath) -> &str {
    rp.namespace.as_deref().unwrap_or("")
}

fn selectors(r: &Req) -> Result<Selectors, ApiError> {
    Selectors::parse(r.q("labelSelector"), r.q("fieldSelector"))
}

fn list_json(rp: &ResourcePath, items: Vec<Value>, rv: u64) -> Value {
    json!({
        "apiVersion": rp.res.api_version(),
        "kind": format!("{}List", rp.res.kind),
        "metadata": { "resourceVersion": rv.to_string() },
        "items": items,
    })
}

fn collection(store: &Arc<Store>, r: &Req, rp: &ResourcePath) -> Result<Response<Body>, ApiError> {
    match r.method {
        Method::GET if matches!(r.q("watch"), Some("true" | "1")) => Ok(watch(store, r, rp)?),
        Method::GET => {
            let (items, rv) = store.list_selected(rp.res, rp.namespace.as_deref(), &selectors(r)?);
            Ok(json_response(200, &list_json(rp, items, rv)))
        }
        Method::POST if rp.res.namespaced && rp.namespace.is_none() => {
            Err(ApiError::method_not_allowed("create needs a namespace in the path"))
        }
        Method::POST => Ok(json_response(201, &store.create(rp.res, ns(rp), r.json_body()?)?)),
        Method::DELETE => {
            let (items, _) = store.list_selected(rp.res, rp.namespace.as_deref(), &selectors(r)?);
            let mut deleted = Vec::new();
            for obj in items {
                let (ons, name) = (meta_str(&obj, "namespace").unwrap_or(""), meta_str(&obj, "name").unwrap_or(""));
                if let Ok(d) = store.delete(rp.res, ons, name, &Value::Null) {
                    deleted.push(d);
                }
            }
            Ok(json_response(200, &list_json(rp, deleted, store.resource_version())))
        }
        _ => Err(ApiError::method_not_allowed(format!("{} is not allowed on a collection", r.method))),
    }
}

fn watch(store: &Arc<Store>, r: &Req, rp: &ResourcePath) -> Result<Response<Body>, ApiError> {
    let stream =
        |body: Body| Response::builder().status(200).header("content-type", "application/json").body(body).expect("a valid response");
    let from = match r.q("resourceVersion").unwrap_or("") {
        "" | "0" => None,
        rv => match rv.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => {
                let gone = ApiError::gone(format!("too old resource version: {rv}"));
                let mut status = gone.to_status();
                status["code"] = json!(410);
                return Ok(stream(Full::new(error_body(status)).boxed()));
            }
        },
    };
    let req = WatchRequest {
        res: rp.res,
        namespace: rp.namespace.clone(),
        selectors: selectors(r)?,
        from,
        timeout: r.q("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs),
        bookmarks: matches!(r.q("allowWatchBookmarks"), Some("true" | "1")),
    };
    Ok(stream(watch_body(store.clone(), req).boxed()))
}

fn object(store: &Arc<Store>, r: &Req, rp: &ResourcePath, name: &str) -> Result<Response<Body>, ApiError> {
    let res = rp.res;
    match r.method {
        Method::GET => store.get(res, ns(rp), name).map(|o| json_response(200, &o)).ok_or_else(|| ApiError::not_found(res, name)),
        Method::PUT => {
            let obj = r.json_body()?;
            if let Some(body_name) = meta_str(&obj, "name").filter(|n| *n != name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            Ok(json_response(200, &store.replace(res, ns(rp), name, Part::Main, obj)?))
        }
        Method::PATCH => patch(store, r, rp, name, Part::Main),
        Method::DELETE => {
            let options = if r.body.is_empty() { Value::Null } else { r.json_body()? };
            Ok(json_response(200, &store.delete(res, ns(rp), name, &options)?))
        }
        _ => Err(ApiError::method_not_allowed(format!("{} is not allowed on an object", r.method))),
    }
}

fn patch(store: &Arc<Store>, r: &Req, rp: &ResourcePath, name: &str, part: Part) -> Result<Response<Body>, ApiError> {
    let kind = PatchKind::from_content_type(&r.content_type)?;
    if kind == PatchKind::Apply {
        let applied = parse_json_or_yaml(&r.body)?;
        if !applied.is_object() {
            return Err(ApiError::bad_request("an applied configuration must be a map"));
        }
        let (obj, created) = store.apply(rp.res, ns(rp), name, part, &applied)?;
        return Ok(json_response(if created { 201 } else { 200 }, &obj));
    }
    let obj = store.update(rp.res, ns(rp), name, part, |cur| apply_patch(rp.res, name, kind, cur, &r.body))?;
    Ok(json_response(200, &obj))
}

fn status(store: &Arc<Store>, r: &Req, rp: &ResourcePath, name: &str) -> Result<Response<Body>, ApiError> {
    match r.method {
        Method::GET => object(store, r, rp, name),
        Method::PUT => Ok(json_response(200, &store.replace(rp.res, ns(rp), name, Part::Status, r.json_body()?)?)),
        Method::PATCH => patch(store, r, rp, name, Part::Status),
        _ => Err(ApiError::method_not_allowed(format!("{} is not allowed on status", r.method))),
    }
}

fn scale(store: &Arc<Store>, r: &Req, rp: &ResourcePath, name: &str) -> Result<Response<Body>, ApiError> {
    let res = rp.res;
    let obj = match r.method {
        Method::GET => store.get(res, ns(rp), name).ok_or_else(|| ApiError::not_found(res, name))?,
        Method::PUT => {
            let scale = r.json_body()?;
            store.update(res, ns(rp), name, Part::Main, |cur| set_scale(res, cur, &scale))?
        }
        Method::PATCH => {
            let kind = PatchKind::from_content_type(&r.content_type)?;
            store.update(res, ns(rp), name, Part::Main, |cur| {
                let mut scale = scale_of(res, cur);
                apply_patch(res, name, kind, &mut scale, &r.body)?;
                set_scale(res, cur, &scale)
            })?
        }
        _ => return Err(ApiError::method_not_allowed(format!("{} is not allowed on scale", r.method))),
    };
    Ok(json_response(200, &scale_of(res, &obj)))
}
