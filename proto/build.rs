//! Compiles `proto/shoal.proto` with the vendored `protoc`.
//!
//! `PROTOC` is set only for this build script: raft-proto's own build brings its
//! own protoc 3.x and fails if a modern one is set globally.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("PROTOC", protoc);
    }
    println!("cargo:rerun-if-changed=proto/shoal.proto");
    // Maps as BTreeMap: ordered (stable output, comparable records).
    tonic_prost_build::configure().btree_map(".").compile_protos(&["proto/shoal.proto"], &["proto"])?;
    Ok(())
}
