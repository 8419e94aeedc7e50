//! Label selectors (equality- and set-based) and field selectors.

use serde_json::Value;

use super::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` plus `fieldSelector`; the empty one matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selectors {
    labels: Vec<Requirement>,
    /// (dotted field path, must equal?, value)
    fields: Vec<(String, bool, String)>,
}

impl Selectors {
    /// Parses the two query values (either may be absent or empty).
    pub fn parse(label_selector: Option<&str>, field_selector: Option<&str>) -> Result<Selectors, ApiError> {
        let mut s = Selectors::default();
        for term in split_terms(label_selector.unwrap_or("")) {
            s.labels.push(parse_label_term(&term)?);
        }
        for term in field_selector.unwrap_or("").split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, eq, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid field selector term {term:?}")));
            };
            s.fields.push((path.trim().to_string(), eq, value.trim().to_string()));
        }
        Ok(s)
    }

    /// Whether `obj` satisfies every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|r| match r {
            Requirement::In(k, vs) => label(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => label(k).is_none_or(|v| !vs.iter().any(|x| x == v)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
        });
        labels_ok
            && self.fields.iter().all(|(path, eq, want)| {
                let pointer = format!("/{}", path.replace('.', "/"));
                let got = match obj.pointer(&pointer) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                (got == *want) == *eq
            })
    }
}

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
}

fn parse_label_term(term: &str) -> Result<Requirement, ApiError> {
    let bad = || ApiError::bad_request(format!("unable to parse requirement {term:?}"));
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotIn(k.trim().into(), vec![v.trim().into()]));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::In(k.trim().into(), vec![v.trim().into()]));
    }
    if let Some(k) = term.strip_prefix('!') {
        return Ok(Requirement::NotExists(k.trim().into()));
    }
    let set = |rest: &str| -> Result<Vec<String>, ApiError> {
        let inner = rest.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')')).ok_or_else(bad)?;
        Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
    };
    if let Some((k, rest)) = term.split_once(" notin ") {
        return Ok(Requirement::NotIn(k.trim().into(), set(rest)?));
    }
    if let Some((k, rest)) = term.split_once(" in ") {
        return Ok(Requirement::In(k.trim().into(), set(rest)?));
    }
    if term.contains(char::is_whitespace) || term.contains('(') {
        return Err(bad());
    }
    Ok(Requirement::Exists(term.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_and_field_selectors_match() {
        let obj = json!({"metadata": {"name": "a", "labels": {"app": "shoal", "tier": "db"}}, "status": {"phase": "Running"}});
        let m = |l: &str, f: &str| Selectors::parse(Some(l), Some(f)).expect("parse").matches(&obj);
        assert!(m("", ""));
        assert!(m("app=shoal", ""));
        assert!(m("app==shoal,tier", ""));
        assert!(!m("app=other", ""));
        assert!(m("app!=other", ""));
        assert!(!m("app!=shoal", ""));
        assert!(m("!missing", ""));
        assert!(!m("missing", ""));
        assert!(m("tier in (web, db)", ""));
        assert!(!m("tier notin (web,db)", ""));
        assert!(m("", "metadata.name=a"));
        assert!(!m("", "metadata.name!=a"));
        assert!(m("", "status.phase=Running"));
        assert!(Selectors::parse(Some("a b"), None).is_err());
    }
}
