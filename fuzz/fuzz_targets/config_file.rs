//! The node's configuration file (`--config`, TOML) read and checked as the
//! node reads it at start: any text must give a configuration or an error
//! naming the problem, never a panic.

#![no_main]

use std::io::Write;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use shoal_node::config::{NodeArgs, NodeConfig};

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write");
    let path = file.path().to_str().expect("a UTF-8 path");
    let args = NodeArgs::try_parse_from(["shoal-node", "--name", "n1", "--config", path]).expect("fixed arguments parse");
    if let Ok(cfg) = NodeConfig::from_args(args) {
        assert_eq!(cfg.name, "n1", "the command line wins over the file");
        let _ = (cfg.first_start(), cfg.initial_members(), cfg.raft_tick(), cfg.request_timeout());
    }
});
