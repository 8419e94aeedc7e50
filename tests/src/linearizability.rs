//! A linearizability checker for histories of single-key registers.
//!
//! A history is what clients saw: each operation with the time it was called,
//! the time its answer came back, and the answer. It is linearizable if each
//! operation can be given one instant between its call and its return such
//! that, in that order, every read returns the value of the latest write
//! before it (Herlihy and Wing). Keys are independent registers, so each key's
//! history is checked on its own ([`check`]), which keeps the search small.
//!
//! The search is Wing and Gong's, with Lowe's memoization (as in Porcupine and
//! Knossos): walk the call and return events in time order; at a call, try to
//! linearize that operation now (if the model accepts it and the pair
//! (linearized set, state) is new), removing it from the list and starting
//! over from the first event; at a return whose operation is not linearized
//! yet, undo the last choice. The history is linearizable when the list is
//! empty, and not when a return is reached with nothing left to undo.
//!
//! Operations whose outcome the client does not know (a timeout, an
//! `OutcomeUnknown` answer) are kept with no return: a write may take effect
//! at any instant after its call, or never (it is then linearized last, where
//! nothing observes it); a read with an unknown answer says nothing and is
//! left out. Operations that definitely failed are left out by the caller.

use std::collections::{BTreeMap, HashSet};

/// What a client did to one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Wrote this value (unique per write, so that reads identify their write).
    Write(Vec<u8>),
    /// Read and found this value (`None`: not found).
    Read(Option<Vec<u8>>),
}

/// One operation as the client saw it; times in any monotonic unit.
#[derive(Clone, Debug)]
pub struct Operation {
    pub key: Vec<u8>,
    pub op: Op,
    pub call: u64,
    /// `None`: the outcome is unknown (the operation may have taken effect).
    pub ret: Option<u64>,
}

/// Why a key's history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: Vec<u8>,
    /// The most operations that could be linearized before the search failed.
    pub linearized: usize,
    pub operations: usize,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key {:?}: not linearizable ({} of {} operations could be ordered)",
            String::from_utf8_lossy(&self.key),
            self.linearized,
            self.operations
        )
    }
}

/// Checks every key's history; returns the keys that are not linearizable.
/// Every key starts absent.
pub fn check(history: &[Operation]) -> Vec<Violation> {
    let mut by_key: BTreeMap<&[u8], Vec<&Operation>> = BTreeMap::new();
    for o in history {
        // A read whose answer never came tells nothing.
        if matches!(o.op, Op::Read(_)) && o.ret.is_none() {
            continue;
        }
        by_key.entry(&o.key).or_default().push(o);
    }
    by_key.into_iter().filter_map(|(key, ops)| check_register(key, &ops).err()).collect()
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call: the index of its return event.
    matching: usize,
    prev: usize,
    next: usize,
}

/// Event list head and tail sentinel.
const HEAD: usize = 0;

fn check_register(key: &[u8], ops: &[&Operation]) -> Result<(), Violation> {
    let n = ops.len();
    // Events in time order; at equal times calls come first, which treats the
    // two operations as concurrent (the weaker claim).
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        order.push((o.call, false, i));
        order.push((o.ret.unwrap_or(u64::MAX), true, i));
    }
    order.sort();
    // events[0] is the head sentinel; event k of `order` is events[k + 1].
    let mut events = vec![Event { op: usize::MAX, is_call: false, matching: 0, prev: 0, next: 1 }];
    let mut call_of = vec![0; n];
    for (k, (_, is_return, op)) in order.iter().enumerate() {
        let idx = k + 1;
        events.push(Event { op: *op, is_call: !is_return, matching: 0, prev: idx - 1, next: idx + 1 });
        if *is_return {
            let call = call_of[*op];
            events[call].matching = idx;
        } else {
            call_of[*op] = idx;
        }
    }
    let end = events.len(); // "next" of the last event
    let lift = |events: &mut Vec<Event>, call: usize| {
        let ret = events[call].matching;
        for e in [call, ret] {
            let (p, nx) = (events[e].prev, events[e].next);
            events[p].next = nx;
            if nx != end {
                events[nx].prev = p;
            }
        }
    };
    let unlift = |events: &mut Vec<Event>, call: usize| {
        let ret = events[call].matching;
        for e in [ret, call] {
            let (p, nx) = (events[e].prev, events[e].next);
            events[p].next = e;
            if nx != end {
                events[nx].prev = e;
            }
        }
    };

    let words = n.div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    let mut state: Option<Vec<u8>> = None;
    let mut cache: HashSet<(Vec<u64>, Option<Vec<u8>>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<Vec<u8>>)> = Vec::new();
    let mut best = 0;
    let mut entry = events[HEAD].next;
    loop {
        if events[HEAD].next == end {
            return Ok(());
        }
        if entry == end {
            // Only reachable if a call has no return event, which cannot be.
            return Err(Violation { key: key.to_vec(), linearized: best, operations: n });
        }
        let e = events[entry];
        if e.is_call {
            let op = &ops[e.op].op;
            let next_state = match op {
                Op::Write(v) => Some(Some(v.clone())),
                Op::Read(seen) if *seen == state => Some(state.clone()),
                Op::Read(_) => None,
            };
            if let Some(next_state) = next_state {
                let mut with = linearized.clone();
                with[e.op / 64] |= 1 << (e.op % 64);
                if cache.insert((with.clone(), next_state.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next_state)));
                    linearized = with;
                    best = best.max(stack.len());
                    lift(&mut events, entry);
                    entry = events[HEAD].next;
                    continue;
                }
            }
            entry = e.next;
        } else {
            // A return whose operation is not linearized yet: undo the last choice.
            let Some((call, old_state)) = stack.pop() else {
                return Err(Violation { key: key.to_vec(), linearized: best, operations: n });
            };
            state = old_state;
            let op = events[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut events, call);
            entry = events[call].next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &str, call: u64, ret: u64) -> Operation {
        Operation { key: b"k".to_vec(), op: Op::Write(v.as_bytes().to_vec()), call, ret: Some(ret) }
    }

    /// A write whose outcome is unknown.
    fn wu(v: &str, call: u64) -> Operation {
        Operation { key: b"k".to_vec(), op: Op::Write(v.as_bytes().to_vec()), call, ret: None }
    }

    fn r(v: Option<&str>, call: u64, ret: u64) -> Operation {
        Operation { key: b"k".to_vec(), op: Op::Read(v.map(|v| v.as_bytes().to_vec())), call, ret: Some(ret) }
    }

    fn ok(h: &[Operation]) -> bool {
        check(h).is_empty()
    }

    #[test]
    fn sequential_histories() {
        assert!(ok(&[r(None, 0, 1), w("a", 2, 3), r(Some("a"), 4, 5), w("b", 6, 7), r(Some("b"), 8, 9)]));
        assert!(!ok(&[w("a", 0, 1), w("b", 2, 3), r(Some("a"), 4, 5)]), "a stale read after a newer write completed");
        assert!(!ok(&[w("a", 0, 1), r(None, 2, 3)]), "a lost acknowledged write");
        assert!(!ok(&[r(Some("x"), 0, 1)]), "a value never written");
        assert!(!ok(&[r(Some("a"), 0, 1), w("a", 2, 3)]), "a read of a write not yet called");
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // The read overlaps both writes: either value, or none, is fine.
        for seen in [None, Some("a"), Some("b")] {
            assert!(ok(&[w("a", 0, 10), w("b", 1, 9), r(seen, 2, 8)]), "{seen:?}");
        }
        // Two reads after both writes completed must agree on the last one.
        assert!(ok(&[w("a", 0, 10), w("b", 1, 9), r(Some("a"), 11, 12), r(Some("a"), 13, 14)]));
        assert!(!ok(&[w("a", 0, 10), w("b", 1, 9), r(Some("a"), 11, 12), r(Some("b"), 13, 14)]), "the order flipped");
        // Reads that overlap each other but see a then b then a again.
        assert!(!ok(&[w("a", 0, 1), w("b", 2, 20), r(Some("b"), 3, 4), r(Some("a"), 5, 6)]), "new then old");
    }

    #[test]
    fn a_write_with_an_unknown_outcome_may_or_may_not_have_happened() {
        assert!(ok(&[w("a", 0, 1), wu("b", 2), r(Some("a"), 3, 4)]), "never applied");
        assert!(ok(&[w("a", 0, 1), wu("b", 2), r(Some("b"), 3, 4)]), "applied");
        assert!(ok(&[w("a", 0, 1), wu("b", 2), r(Some("b"), 3, 4), r(Some("b"), 5, 6)]));
        assert!(!ok(&[w("a", 0, 1), wu("b", 2), r(Some("b"), 3, 4), r(Some("a"), 5, 6)]), "applied, then undone");
        assert!(!ok(&[wu("b", 2), r(Some("b"), 0, 1)]), "seen before it was called");
        // A read whose answer never came says nothing.
        let lost_read = Operation { key: b"k".to_vec(), op: Op::Read(Some(b"zz".to_vec())), call: 0, ret: None };
        assert!(ok(&[w("a", 0, 1), lost_read]));
    }

    #[test]
    fn keys_are_checked_apart_and_named_in_violations() {
        let mut h = vec![w("a", 0, 1), r(Some("a"), 2, 3)];
        h.push(Operation { key: b"other".to_vec(), op: Op::Write(b"x".to_vec()), call: 0, ret: Some(1) });
        h.push(Operation { key: b"other".to_vec(), op: Op::Read(None), call: 2, ret: Some(3) });
        let v = check(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].key, b"other");
        assert_eq!(v[0].operations, 2);
    }

    #[test]
    fn a_long_concurrent_history_is_checked() {
        // 6 clients write concurrently in each of 100 rounds; a read after each
        // round sees its last writer. Linearizable; the memo keeps the search
        // to (linearized set, value) pairs instead of every interleaving.
        let mut h = Vec::new();
        for round in 0..100u64 {
            let t = round * 100;
            for c in 0..6u64 {
                h.push(w(&format!("{round}-{c}"), t + c, t + 20 + c));
            }
            h.push(r(Some(&format!("{round}-5")), t + 60, t + 61));
        }
        assert!(ok(&h));
        h.push(r(Some("0-3"), 100 * 100, 100 * 100 + 1));
        assert!(!ok(&h), "an old round's value read at the end");
    }
}
