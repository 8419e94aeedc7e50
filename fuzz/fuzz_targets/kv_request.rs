//! Client requests as the Kv service takes them apart: the first byte picks
//! the request type, the rest is its protobuf encoding. A request that decodes
//! goes through the same checks the service makes (column family, key and
//! value sizes, the batch's mutations and size, the scan limit); whatever the
//! checks accept must be within the limits they enforce.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use shoal_node::server::validate;
use shoal_proto::{BatchWriteRequest, DeleteRequest, GetRequest, Mutation, PutRequest, ScanRequest, mutation};

fn put(cf: String, key: Vec<u8>, value: Vec<u8>) -> Mutation {
    Mutation { op: mutation::Op::Put as i32, cf, key, value }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    let f = &*common::FIXTURE;
    let (engine, limits) = (&*f.engine, &f.limits);
    let muts = match which % 5 {
        0 => match PutRequest::decode(bytes) {
            Ok(r) => vec![put(r.cf, r.key, r.value)],
            Err(_) => return,
        },
        1 => match DeleteRequest::decode(bytes) {
            Ok(r) => vec![Mutation { op: mutation::Op::Delete as i32, cf: r.cf, key: r.key, value: Vec::new() }],
            Err(_) => return,
        },
        2 => match BatchWriteRequest::decode(bytes) {
            Ok(r) => r.mutations,
            Err(_) => return,
        },
        3 => {
            if let Ok(r) = GetRequest::decode(bytes)
                && validate::cf(engine, &r.cf).is_ok()
                && validate::key(limits, &r.key).is_ok()
            {
                assert!(!r.key.is_empty() && r.key.len() <= limits.max_key_size);
            }
            return;
        }
        _ => {
            if let Ok(r) = ScanRequest::decode(bytes) {
                let _ = validate::cf(engine, &r.cf);
                let n = validate::scan_limit(limits, r.limit);
                assert!(n >= 1 && n <= limits.max_scan_limit.max(limits.default_scan_limit));
            }
            return;
        }
    };
    if let Ok(accepted) = validate::mutations(engine, limits, muts) {
        assert!(!accepted.is_empty() && accepted.len() <= limits.max_batch_mutations);
        let mut total = 0;
        for m in &accepted {
            assert!(engine.is_user_cf(&m.cf), "accepted unknown column family {:?}", m.cf);
            assert!(!m.key.is_empty() && m.key.len() <= limits.max_key_size);
            assert!(m.value.len() <= limits.max_value_size);
            total += m.key.len() + m.value.len();
        }
        assert!(total <= limits.max_batch_size);
    }
});
