//! TFRecord framing, the container format of event files.
//!
//! Each record is laid out as:
//!
//! | bytes | content |
//! |---|---|
//! | 8 | payload length `n`, u64 little-endian |
//! | 4 | masked CRC-32C of those 8 bytes, u32 little-endian |
//! | n | payload (one serialized [`Event`](crate::proto::Event)) |
//! | 4 | masked CRC-32C of the payload, u32 little-endian |
//!
//! The file has no header or footer.

use std::fs;
use std::path::Path;

use crate::TensorBoardError;

/// Constant added to the rotated CRC by [`masked_crc32c`] (the LevelDB mask).
const MASK_DELTA: u32 = 0xa282_ead8;

/// Bytes that framing adds around each payload: length, length CRC and payload CRC.
pub const RECORD_OVERHEAD: usize = 8 + 4 + 4;

/// Computes the CRC-32C (Castagnoli) of `data`, the checksum TFRecord uses.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Computes the masked CRC-32C of `data`: the CRC rotated right by 15 bits plus `0xa282ead8`.
///
/// TFRecord stores masked CRCs so that a CRC computed over data that itself contains CRCs
/// does not degenerate.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(MASK_DELTA)
}

/// Frames `payload` as one record and returns the bytes to append to an event file.
pub fn encode_record(payload: &[u8]) -> Vec<u8> {
    let length = (payload.len() as u64).to_le_bytes();
    let mut record = Vec::with_capacity(payload.len() + RECORD_OVERHEAD);
    record.extend_from_slice(&length);
    record.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    record.extend_from_slice(payload);
    record.extend_from_slice(&masked_crc32c(payload).to_le_bytes());
    record
}

/// Splits `bytes` into record payloads, checking both CRCs of every record.
///
/// Unlike TensorBoard, which treats a truncated last record as still being written, this
/// function rejects any trailing bytes that do not form a whole record. `path` is only used
/// in error messages.
pub fn decode_records(bytes: &[u8], path: &Path) -> Result<Vec<Vec<u8>>, TensorBoardError> {
    let corrupt = |offset: usize, reason: String| TensorBoardError::CorruptRecord {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };

    let mut payloads = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < 12 {
            return Err(corrupt(
                offset,
                format!("truncated header of {} bytes", rest.len()),
            ));
        }

        let (length_bytes, after_length) = rest.split_at(8);
        let stored_length_crc = read_u32_le(&after_length[..4]);
        let expected_length_crc = masked_crc32c(length_bytes);
        if stored_length_crc != expected_length_crc {
            return Err(corrupt(
                offset,
                format!(
                    "length CRC mismatch: stored {stored_length_crc:#010x}, \
                     computed {expected_length_crc:#010x}"
                ),
            ));
        }

        let length = u64::from_le_bytes(length_bytes.try_into().expect("split_at(8)"));
        let available = (rest.len() - 12) as u64;
        if available < length.saturating_add(4) {
            return Err(corrupt(
                offset,
                format!("truncated record: length {length} but only {available} bytes follow"),
            ));
        }

        // `length` fits in usize because it is at most `available`, which came from a usize.
        let length = length as usize;
        let payload = &rest[12..12 + length];
        let stored_data_crc = read_u32_le(&rest[12 + length..16 + length]);
        let expected_data_crc = masked_crc32c(payload);
        if stored_data_crc != expected_data_crc {
            return Err(corrupt(
                offset,
                format!(
                    "data CRC mismatch: stored {stored_data_crc:#010x}, \
                     computed {expected_data_crc:#010x}"
                ),
            ));
        }

        payloads.push(payload.to_vec());
        offset += length + RECORD_OVERHEAD;
    }
    Ok(payloads)
}

/// Reads the event file at `path` and returns its record payloads, checking every CRC.
///
/// See [`decode_records`] for how truncated or corrupt records are reported.
pub fn read_records(path: impl AsRef<Path>) -> Result<Vec<Vec<u8>>, TensorBoardError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|source| TensorBoardError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode_records(&bytes, path)
}

fn read_u32_le(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes.try_into().expect("caller passes exactly 4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn crc32c_of_32_zero_bytes() {
        // RFC 3720, appendix B.4.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    }

    #[test]
    fn masked_crc32c_of_empty_input() {
        // The CRC of no bytes is 0, so the masked value is the mask constant itself.
        assert_eq!(crc32c(b""), 0);
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
    }

    #[test]
    fn masked_crc32c_tensorboard_vector() {
        // tensorboard 2.21.0's Python `masked_crc32c` returns the same value.
        let mut data = vec![0x1a, 0x11];
        data.extend_from_slice(b"CRC test, one two");
        assert_eq!(masked_crc32c(&data), 0x5794_d08a);
    }

    #[test]
    fn masked_crc32c_rotates_then_adds() {
        // Computed by hand from the check value 0xe3069283:
        // rotate right by 15 gives 0x2507c60d, plus 0xa282ead8 gives 0xc78ab0e5.
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn decode_rejects_flipped_payload_byte() {
        let mut record = encode_record(b"payload");
        record[12] ^= 0x01;
        let error = decode_records(&record, Path::new("x")).unwrap_err();
        assert!(error.to_string().contains("data CRC mismatch"), "{error}");
    }

    #[test]
    fn decode_rejects_flipped_length_byte() {
        let mut record = encode_record(b"payload");
        record[0] ^= 0x01;
        let error = decode_records(&record, Path::new("x")).unwrap_err();
        assert!(error.to_string().contains("length CRC mismatch"), "{error}");
    }

    #[test]
    fn decode_rejects_truncated_record() {
        let mut bytes = encode_record(b"first");
        let second = encode_record(b"second");
        bytes.extend_from_slice(&second[..second.len() - 1]);
        let error = decode_records(&bytes, Path::new("x")).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("truncated record"), "{message}");
        assert!(message.contains("offset 21"), "{message}");
    }

    #[test]
    fn decode_returns_payloads_in_order() {
        let mut bytes = encode_record(b"");
        bytes.extend_from_slice(&encode_record(b"abc"));
        let payloads = decode_records(&bytes, Path::new("x")).unwrap();
        assert_eq!(payloads, vec![b"".to_vec(), b"abc".to_vec()]);
    }
}
