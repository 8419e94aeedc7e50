//! Request paths and query strings.

use std::collections::HashMap;

use super::error::ApiError;
use super::resources::{self, ResourceType};

/// A parsed resource path.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePath {
    pub res: &'static ResourceType,
    /// `None`: all namespaces (or a cluster-scoped type).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// What a path names.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Version,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/api/v1`, `/apis/{group}/{version}`
    GroupVersion(String, String),
    Health,
    Resource(ResourcePath),
}

/// Parses `path` (no query) into a route; unknown paths are a 404.
pub fn route(path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["healthz" | "readyz" | "livez", ..] => return Ok(Route::Health),
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["api", v] => return Ok(Route::GroupVersion(String::new(), v.to_string())),
        ["apis", g, v] => return Ok(Route::GroupVersion(g.to_string(), v.to_string())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found(path)),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, more @ ..] if !more.is_empty() => (Some(ns.to_string()), more),
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(ApiError::path_not_found(path)),
    };
    let res = resources::find(group, version, plural).ok_or_else(|| ApiError::path_not_found(path))?;
    if namespace.is_some() && !res.namespaced {
        return Err(ApiError::path_not_found(path));
    }
    if res.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::path_not_found(path));
    }
    Ok(Route::Resource(ResourcePath { res, namespace, name, subresource }))
}

/// Decodes a query string (`a=b&c=d`, `+` and `%XX` escapes; empty pairs skipped).
pub fn query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route() {
        let r = |p| match route(p) {
            Ok(Route::Resource(rp)) => Some((rp.res.plural, rp.namespace, rp.name, rp.subresource)),
            _ => None,
        };
        assert_eq!(r("/api/v1/namespaces/ns/pods"), Some(("pods", Some("ns".into()), None, None)));
        assert_eq!(r("/api/v1/pods"), Some(("pods", None, None, None)));
        assert_eq!(r("/api/v1/namespaces/ns"), Some(("namespaces", None, Some("ns".into()), None)));
        assert_eq!(
            r("/apis/shoal.dev/v1alpha1/namespaces/d/kvclusters/x/scale"),
            Some(("kvclusters", Some("d".into()), Some("x".into()), Some("scale".into())))
        );
        assert_eq!(r("/apis/apps/v1/statefulsets"), Some(("statefulsets", None, None, None)));
        assert_eq!(r("/api/v1/pods/x"), None, "a namespaced object needs its namespace");
        assert_eq!(r("/apis/nope/v1/things"), None);
        assert_eq!(route("/version").ok(), Some(Route::Version));
    }

    #[test]
    fn queries_decode() {
        let q = query(Some("&watch=true&labelSelector=app%3Dweb%2Ctier+x&x"));
        assert_eq!(q.get("watch").map(String::as_str), Some("true"));
        assert_eq!(q.get("labelSelector").map(String::as_str), Some("app=web,tier x"));
        assert_eq!(q.get("x").map(String::as_str), Some(""));
        assert_eq!(decode("100%"), "100%");
    }
}
