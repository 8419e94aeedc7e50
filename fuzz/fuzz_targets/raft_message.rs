//! Raft traffic as a store receives it: a `RaftMessageBatch` (the `Raft.Send`
//! stream's item) whose messages carry raft-rs `Message`s, decoded as the
//! store loop decodes them; and each message taken as the header of a
//! `Raft.Snapshot` stream, checked as the receiving end checks it (a
//! `MsgSnapshot` whose `SnapshotData` agrees with the Raft metadata).

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use shoal_node::server::snapshot::receive::check_header;
use shoal_proto::{RaftMessageBatch, SnapshotChunk};

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = RaftMessageBatch::decode(data) else { return };
    for msg in batch.messages {
        if let Ok(m) = Message::parse_from_bytes(&msg.message) {
            // What the store loop reads before it routes the message.
            let _ = (m.get_msg_type(), m.to, m.term, m.get_snapshot().get_metadata().index);
        }
        let to = msg.to_store_id;
        let chunk = SnapshotChunk { header: Some(msg), ..Default::default() };
        if let Ok((header, snapshot)) = check_header(&chunk, to) {
            let m = Message::parse_from_bytes(&header.message).expect("a checked header decodes");
            assert_eq!(m.get_msg_type(), MessageType::MsgSnapshot);
            let key = snapshot.key.expect("a checked header has a key");
            assert_eq!((key.index, key.term), (m.get_snapshot().get_metadata().index, m.get_snapshot().get_metadata().term));
        }
    }
});
