//! How shoalctl reads keys and values from the command line and prints them.

use std::io::Write;

use anyhow::{Context, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub struct Printer {
    pub format: Format,
    pub hex: bool,
}

impl Printer {
    /// Turns a command-line key or value into bytes (hex-decoded with `--hex`).
    pub fn input(&self, what: &str, s: &str) -> Result<Vec<u8>> {
        if self.hex { hex::decode(s).with_context(|| format!("{what} {s:?} is not valid hex")) } else { Ok(s.as_bytes().to_vec()) }
    }

    /// Bytes as shown in JSON: hex with `--hex`, else UTF-8 (invalid bytes replaced).
    pub fn text(&self, bytes: &[u8]) -> String {
        if self.hex { hex::encode(bytes) } else { String::from_utf8_lossy(bytes).into_owned() }
    }

    /// Writes raw bytes (or hex) to stdout.
    pub fn raw(&self, out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
        if self.hex { out.write_all(hex::encode(bytes).as_bytes()) } else { out.write_all(bytes) }
    }

    pub fn json(&self, value: &serde_json::Value) -> Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, value)?;
        out.write_all(b"\n")?;
        Ok(())
    }
}
