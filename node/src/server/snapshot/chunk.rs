//! One chunk of a snapshot file on the wire: zstd-compressed when the sender
//! asks for it and that makes it smaller, with the raw length and CRC-32 of
//! the uncompressed bytes.

use shoal_proto::{ChunkCompression, SnapshotChunk};

use crate::error::{Error, Result};

/// zstd level: fast; SST blocks are often compressed already.
const ZSTD_LEVEL: i32 = 1;

/// Builds the chunk of file `file` at `offset` carrying `raw`; with `compress`,
/// zstd-compressed if that makes it smaller.
pub fn encode(file: u32, offset: u64, raw: &[u8], compress: bool) -> Result<SnapshotChunk> {
    let raw_len = u32::try_from(raw.len()).map_err(|_| Error::Internal(format!("chunk of {} bytes is too big", raw.len())))?;
    let checksum = crc32fast::hash(raw);
    let compressed = if compress { Some(zstd::bulk::compress(raw, ZSTD_LEVEL)?) } else { None };
    let (compression, data) = match compressed {
        Some(c) if c.len() < raw.len() => (ChunkCompression::ChunkZstd, c),
        _ => (ChunkCompression::ChunkNone, raw.to_vec()),
    };
    Ok(SnapshotChunk { header: None, file_index: file, offset, compression: compression as i32, data, raw_len, checksum })
}

/// The verified raw bytes of `chunk`; at most `max_raw` of them.
pub fn decode(chunk: &SnapshotChunk, max_raw: usize) -> Result<Vec<u8>> {
    let bad = |s: String| Err(Error::InvalidArgument(s));
    let raw_len = chunk.raw_len as usize;
    if raw_len == 0 || raw_len > max_raw {
        return bad(format!("chunk raw length {raw_len} is not in 1..={max_raw}"));
    }
    let raw = match ChunkCompression::try_from(chunk.compression) {
        Ok(ChunkCompression::ChunkNone) => chunk.data.clone(),
        Ok(ChunkCompression::ChunkZstd) => match zstd::bulk::decompress(&chunk.data, raw_len) {
            Ok(raw) => raw,
            Err(e) => return bad(format!("chunk at file {} offset {} does not decompress: {e}", chunk.file_index, chunk.offset)),
        },
        Err(_) => return bad(format!("unknown chunk compression {}", chunk.compression)),
    };
    if raw.len() != raw_len {
        return bad(format!("chunk at file {} offset {} has {} bytes, announced {raw_len}", chunk.file_index, chunk.offset, raw.len()));
    }
    let crc = crc32fast::hash(&raw);
    if crc != chunk.checksum {
        return bad(format!(
            "chunk at file {} offset {}: checksum {crc:08x}, announced {:08x}",
            chunk.file_index, chunk.offset, chunk.checksum
        ));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_catches_damage() {
        let compressible = vec![7u8; 100_000];
        let c = encode(2, 4096, &compressible, true).unwrap();
        assert_eq!(c.compression, ChunkCompression::ChunkZstd as i32);
        assert!(c.data.len() < 1000);
        assert_eq!(decode(&c, 1 << 20).unwrap(), compressible);
        let plain = encode(2, 4096, &compressible, false).unwrap();
        assert_eq!(plain.compression, ChunkCompression::ChunkNone as i32);
        assert_eq!((plain.checksum, plain.raw_len), (c.checksum, c.raw_len));
        assert_eq!(decode(&plain, 1 << 20).unwrap(), compressible);

        let noise: Vec<u8> = (0..10_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let n = encode(0, 0, &noise, true).unwrap();
        assert_eq!(decode(&n, 1 << 20).unwrap(), noise);

        let mut flipped = c.clone();
        flipped.checksum ^= 1;
        assert!(matches!(decode(&flipped, 1 << 20), Err(Error::InvalidArgument(m)) if m.contains("checksum")));
        let mut garbage = c.clone();
        garbage.data = vec![1, 2, 3];
        assert!(decode(&garbage, 1 << 20).is_err());
        assert!(decode(&c, 1000).is_err(), "raw length over the limit");
        let mut lying = c.clone();
        lying.raw_len -= 1;
        assert!(decode(&lying, 1 << 20).is_err());
        let mut unknown = c;
        unknown.compression = 9;
        assert!(decode(&unknown, 1 << 20).is_err());
    }
}
