//! WATCH: a stream of newline-delimited JSON `WatchEvent`s.
//!
//! A watch from resourceVersion `""`/`"0"` first sends an ADDED event for each
//! existing object, then the changes; from resourceVersion X it sends the
//! changes after X out of the store's full log. An object that moves into the
//! selector comes as ADDED and one that moves out as DELETED, like the real
//! apiserver. `timeoutSeconds` ends the stream; `allowWatchBookmarks` adds a
//! BOOKMARK every second.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::channel::{Channel, Sender};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::resources::ResourceType;
use super::selector::Selectors;
use super::store::{Event, EventKind, Store};

const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// What to watch and how.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub res: &'static ResourceType,
    pub namespace: Option<String>,
    pub selectors: Selectors,
    /// `None`: list what exists as ADDED, then watch from there.
    pub from: Option<u64>,
    pub timeout: Option<Duration>,
    pub bookmarks: bool,
}

/// Starts the stream's producer task; returns the response body.
pub fn watch_body(store: Arc<Store>, req: WatchRequest) -> Channel<Bytes, Infallible> {
    let (tx, body) = Channel::new(64);
    tokio::spawn(produce(store, req, tx));
    body
}

/// Whether `obj` is in the watch's namespace and selectors.
fn selected(req: &WatchRequest, obj: &Value) -> bool {
    req.selectors.matches(obj)
}

/// The event to send for `e`, if any (selector transitions included).
fn translate(req: &WatchRequest, e: &Event) -> Option<(&'static str, Value)> {
    if e.res.id() != req.res.id() || req.namespace.as_ref().is_some_and(|ns| *ns != e.namespace) {
        return None;
    }
    let now = selected(req, &e.object);
    let before = e.prev.as_ref().is_some_and(|p| selected(req, p));
    match e.kind {
        EventKind::Added => now.then(|| ("ADDED", e.object.clone())),
        EventKind::Deleted => before.then(|| ("DELETED", e.object.clone())),
        EventKind::Modified => match (before, now) {
            (true, true) => Some(("MODIFIED", e.object.clone())),
            (false, true) => Some(("ADDED", e.object.clone())),
            (true, false) => Some(("DELETED", e.object.clone())),
            (false, false) => None,
        },
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({ "type": kind, "object": object })).expect("a JSON value serialises");
    v.push(b'\n');
    Bytes::from(v)
}

async fn produce(store: Arc<Store>, req: WatchRequest, mut tx: Sender<Bytes, Infallible>) {
    let mut changes = store.subscribe();
    changes.borrow_and_update();
    let deadline = req.timeout.map(|t| Instant::now() + t);
    let mut pos = match req.from {
        Some(rv) => rv,
        None => {
            let (items, rv) = store.list_selected(req.res, req.namespace.as_deref(), &req.selectors);
            for obj in &items {
                if tx.send_data(line("ADDED", obj)).await.is_err() {
                    return;
                }
            }
            rv
        }
    };
    let mut next_bookmark = Instant::now() + BOOKMARK_EVERY;
    loop {
        changes.borrow_and_update();
        let (events, upto) = store.events_since(pos);
        for e in &events {
            if let Some((kind, obj)) = translate(&req, e)
                && tx.send_data(line(kind, &obj)).await.is_err()
            {
                return;
            }
        }
        pos = pos.max(upto);
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep_until(next_bookmark) => {
                next_bookmark = Instant::now() + BOOKMARK_EVERY;
                if req.bookmarks {
                    let bookmark = json!({
                        "apiVersion": req.res.api_version(),
                        "kind": req.res.kind,
                        "metadata": { "resourceVersion": pos.to_string() },
                    });
                    if tx.send_data(line("BOOKMARK", &bookmark)).await.is_err() {
                        return;
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or(far)) => return,
        }
    }
}

/// A watch that cannot start: one ERROR event (410 Gone makes clients relist).
pub fn error_body(status: Value) -> Bytes {
    line("ERROR", &status)
}
