//! The in-memory object store: objects as `serde_json::Value` keyed by
//! (resource type, namespace, name), one global resourceVersion counter, and
//! the whole change log (so a watch can start at any resourceVersion and never
//! gets 410 Gone in a test).
//!
//! The HTTP handlers and the kubelet both go through these methods; every
//! write bumps the counter, appends to the log and wakes [`Store::subscribe`]rs.
//! A write that changes nothing is not a write: no new resourceVersion, no
//! event (a controller re-applying the same object must not wake itself).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::watch;

use super::error::ApiError;
use super::meta::{has_finalizers, meta_str, metadata_mut, new_uid, now_rfc3339, owner_uids, random_suffix};
use super::patch::merge;
use super::resources::ResourceType;
use super::selector::Selectors;

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything except the server-set metadata (and
    /// `.status` where the type protects it).
    Main,
    /// The `status` subresource: only `.status`.
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One change: the object after it (for a deletion, as it was, with the
/// deletion's resourceVersion) and before it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub res: &'static ResourceType,
    pub namespace: String,
    pub kind: EventKind,
    pub object: Value,
    pub prev: Option<Value>,
}

/// (resource id, namespace — `""` when cluster-scoped —, name)
type Key = (String, String, String);

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<Key, (&'static ResourceType, Value)>,
    log: Vec<Event>,
}

/// The shared store; see the module docs.
pub struct Store {
    inner: Mutex<Inner>,
    changes: watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

fn key(res: &ResourceType, ns: &str, name: &str) -> Key {
    (res.id(), if res.namespaced { ns.to_string() } else { String::new() }, name.to_string())
}

impl Store {
    pub fn new() -> Store {
        Store { inner: Mutex::new(Inner::default()), changes: watch::channel(0).0 }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("store lock poisoned")
    }

    /// Runs a write under the lock and wakes subscribers if it wrote.
    fn write<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.lock();
        let before = inner.rv;
        let out = f(&mut inner);
        if inner.rv != before {
            self.changes.send_replace(inner.rv);
        }
        out
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Changes to the resourceVersion: woken after every write.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn get(&self, res: &ResourceType, ns: &str, name: &str) -> Option<Value> {
        self.lock().objects.get(&key(res, ns, name)).map(|(_, v)| v.clone())
    }

    /// Every object of `res` (in `ns`, or all namespaces when `None`).
    pub fn list(&self, res: &ResourceType, ns: Option<&str>) -> Vec<Value> {
        self.list_selected(res, ns, &Selectors::default()).0
    }

    /// The objects of `res` in `ns` (or all) that `sel` selects, and the
    /// resourceVersion they are current at.
    pub fn list_selected(&self, res: &ResourceType, ns: Option<&str>, sel: &Selectors) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let id = res.id();
        let items = inner
            .objects
            .iter()
            .filter(|((rid, ons, _), (_, obj))| *rid == id && ns.is_none_or(|n| !res.namespaced || n == ons) && sel.matches(obj))
            .map(|(_, (_, obj))| obj.clone())
            .collect();
        (items, inner.rv)
    }

    /// The changes after `rv`, and the resourceVersion they go up to.
    pub fn events_since(&self, rv: u64) -> (Vec<Event>, u64) {
        let inner = self.lock();
        let start = inner.log.partition_point(|e| e.rv <= rv);
        (inner.log[start..].to_vec(), inner.rv)
    }

    /// Creates `obj` in `ns`; `AlreadyExists` when the name is taken.
    pub fn create(&self, res: &'static ResourceType, ns: &str, obj: Value) -> Result<Value, ApiError> {
        self.write(|inner| inner.create(res, ns, obj))
    }

    /// Read-modify-write of one object: `f` edits a copy of it; then only
    /// `part` of the edit is kept, a stale `metadata.resourceVersion` in the
    /// result is a `Conflict`, and the generation goes up if `.spec` changed.
    pub fn update(
        &self,
        res: &'static ResourceType,
        ns: &str,
        name: &str,
        part: Part,
        f: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        self.write(|inner| inner.update(res, ns, name, part, f))
    }

    /// Replaces `part` of the object with `obj`'s (PUT semantics: a
    /// `metadata.resourceVersion` in `obj` must be the current one).
    pub fn replace(&self, res: &'static ResourceType, ns: &str, name: &str, part: Part, obj: Value) -> Result<Value, ApiError> {
        self.update(res, ns, name, part, |cur| {
            *cur = obj;
            Ok(())
        })
    }

    /// Server-side apply as a deep merge: creates the object if absent (main
    /// resource only); returns it and whether it was created.
    pub fn apply(&self, res: &'static ResourceType, ns: &str, name: &str, part: Part, applied: &Value) -> Result<(Value, bool), ApiError> {
        self.write(|inner| {
            if part == Part::Main && !inner.objects.contains_key(&key(res, ns, name)) {
                let mut obj = applied.clone();
                metadata_mut(&mut obj).insert("name".into(), json!(name));
                return inner.create(res, ns, obj).map(|o| (o, true));
            }
            inner
                .update(res, ns, name, part, |cur| {
                    merge(cur, applied);
                    Ok(())
                })
                .map(|o| (o, false))
        })
    }

    /// Creates the object, or replaces it whole (both parts) whatever its
    /// resourceVersion: for in-process writers such as the kubelet.
    pub fn put(&self, res: &'static ResourceType, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
        let name = meta_str(&obj, "name").ok_or_else(|| ApiError::bad_request("put: metadata.name is required"))?.to_string();
        metadata_mut(&mut obj).remove("resourceVersion");
        self.write(|inner| {
            if !inner.objects.contains_key(&key(res, ns, &name)) {
                return inner.create(res, ns, obj);
            }
            let status = obj.get("status").cloned();
            inner.update(res, ns, &name, Part::Main, |cur| {
                *cur = obj;
                Ok(())
            })?;
            inner.update(res, ns, &name, Part::Status, |cur| {
                set_status(cur, status);
                Ok(())
            })
        })
    }

    /// Deletes the object: with finalizers it only gets a deletionTimestamp;
    /// otherwise it goes, and so do the objects it owns (garbage collection).
    /// `options` is a DeleteOptions (its `preconditions` are checked).
    pub fn delete(&self, res: &'static ResourceType, ns: &str, name: &str, options: &Value) -> Result<Value, ApiError> {
        self.write(|inner| inner.delete(res, &key(res, ns, name), options))
    }
}

fn set_status(obj: &mut Value, status: Option<Value>) {
    if let Some(map) = obj.as_object_mut() {
        match status {
            Some(s) => {
                map.insert("status".into(), s);
            }
            None => {
                map.remove("status");
            }
        }
    }
}

impl Inner {
    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, res: &'static ResourceType, namespace: &str, kind: EventKind, object: &Value, prev: Option<Value>) {
        let rv = self.rv;
        self.log.push(Event { rv, res, namespace: namespace.to_string(), kind, object: object.clone(), prev });
    }

    fn create(&mut self, res: &'static ResourceType, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the object is not a JSON map"));
        }
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        if res.protect_status {
            set_status(&mut obj, None);
        }
        let body_ns = meta_str(&obj, "namespace").map(str::to_string);
        let meta = metadata_mut(&mut obj);
        let name = match (meta.get("name").and_then(Value::as_str), meta.get("generateName").and_then(Value::as_str)) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(prefix)) => loop {
                let candidate = format!("{prefix}{}", random_suffix(5));
                if !self.objects.contains_key(&key(res, ns, &candidate)) {
                    break candidate;
                }
            },
            _ => return Err(ApiError::invalid(res, "", "metadata.name: Required value: name or generateName is required")),
        };
        if res.namespaced {
            if body_ns.as_deref().is_some_and(|b| !b.is_empty() && b != ns) {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
            if ns.is_empty() {
                return Err(ApiError::bad_request(format!("{} is namespaced: a namespace is required", res.qualified())));
            }
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        let k = key(res, ns, &name);
        if self.objects.contains_key(&k) {
            return Err(ApiError::already_exists(res, &name));
        }
        meta.insert("name".into(), json!(name));
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        for server_set in ["deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"] {
            meta.remove(server_set);
        }
        let rv = self.bump();
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        self.record(res, &k.1, EventKind::Added, &obj, None);
        self.objects.insert(k, (res, obj.clone()));
        Ok(obj)
    }

    fn update(
        &mut self,
        res: &'static ResourceType,
        ns: &str,
        name: &str,
        part: Part,
        f: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let k = key(res, ns, name);
        let old = self.objects.get(&k).map(|(_, v)| v.clone()).ok_or_else(|| ApiError::not_found(res, name))?;
        let mut edited = old.clone();
        f(&mut edited)?;
        if !edited.is_object() {
            return Err(ApiError::bad_request("the object is not a JSON map"));
        }
        let old_rv = meta_str(&old, "resourceVersion").unwrap_or_default().to_string();
        if let Some(given) = meta_str(&edited, "resourceVersion").filter(|s| !s.is_empty())
            && given != old_rv
        {
            return Err(ApiError::conflict(
                res,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let mut new = match part {
            Part::Status => {
                let mut new = old.clone();
                set_status(&mut new, edited.get("status").cloned());
                new
            }
            Part::Main => {
                if res.protect_status {
                    set_status(&mut edited, old.get("status").cloned());
                }
                edited["apiVersion"] = json!(res.api_version());
                edited["kind"] = json!(res.kind);
                let old_meta = old.get("metadata").cloned().unwrap_or_default();
                let meta = metadata_mut(&mut edited);
                for server_set in
                    ["name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds"]
                {
                    match old_meta.get(server_set) {
                        Some(v) => meta.insert(server_set.into(), v.clone()),
                        None => meta.remove(server_set),
                    };
                }
                meta.remove("managedFields");
                edited
            }
        };
        metadata_mut(&mut new).insert("resourceVersion".into(), json!(old_rv));
        if new == old {
            return Ok(old);
        }
        if part == Part::Main && new.get("spec") != old.get("spec") {
            let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            metadata_mut(&mut new).insert("generation".into(), json!(generation + 1));
        }
        let rv = self.bump();
        metadata_mut(&mut new).insert("resourceVersion".into(), json!(rv.to_string()));
        if new.pointer("/metadata/deletionTimestamp").is_some() && !has_finalizers(&new) {
            return Ok(self.remove(&k, new));
        }
        self.record(res, &k.1, EventKind::Modified, &new, Some(old));
        self.objects.insert(k, (res, new.clone()));
        Ok(new)
    }

    fn delete(&mut self, res: &'static ResourceType, k: &Key, options: &Value) -> Result<Value, ApiError> {
        let name = &k.2;
        let old = self.objects.get(k).map(|(_, v)| v.clone()).ok_or_else(|| ApiError::not_found(res, name))?;
        if let Some(pre) = options.get("preconditions") {
            for (field, what) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
                if let Some(want) = pre.get(field).and_then(Value::as_str)
                    && Some(want) != meta_str(&old, field)
                {
                    return Err(ApiError::conflict(res, name, &format!("Precondition failed: {what} in precondition: {want}")));
                }
            }
        }
        if !has_finalizers(&old) {
            self.bump();
            let mut gone = old;
            metadata_mut(&mut gone).insert("resourceVersion".into(), json!(self.rv.to_string()));
            return Ok(self.remove(k, gone));
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(old);
        }
        let mut new = old.clone();
        let rv = self.bump();
        let meta = metadata_mut(&mut new);
        meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        self.record(res, &k.1, EventKind::Modified, &new, Some(old));
        self.objects.insert(k.clone(), (res, new.clone()));
        Ok(new)
    }

    /// Removes the object at `k` (whose final state, with the deletion's
    /// resourceVersion already bumped, is `last`), then deletes every object
    /// none of whose owners exists any more.
    fn remove(&mut self, k: &Key, last: Value) -> Value {
        let Some((res, prev)) = self.objects.remove(k) else { return last };
        self.record(res, &k.1, EventKind::Deleted, &last, Some(prev));
        let Some(uid) = meta_str(&last, "uid").map(str::to_string) else { return last };
        let orphans: Vec<(Key, &'static ResourceType)> = self
            .objects
            .iter()
            .filter(|(_, (_, obj))| {
                let owners = owner_uids(obj);
                owners.contains(&uid) && owners.iter().all(|u| !self.uid_exists(u))
            })
            .map(|(k, (r, _))| (k.clone(), *r))
            .collect();
        for (dep, dep_res) in orphans {
            if let Err(e) = self.delete(dep_res, &dep, &Value::Null) {
                eprintln!("kube stand-in: garbage collection of {dep:?} failed: {e}");
            }
        }
        last
    }

    fn uid_exists(&self, uid: &str) -> bool {
        self.objects.values().any(|(_, o)| meta_str(o, "uid") == Some(uid))
    }
}
