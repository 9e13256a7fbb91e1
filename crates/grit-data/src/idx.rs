//! A reader for the IDX format that MNIST and Fashion-MNIST are distributed in.
//!
//! An IDX file starts with a 4-byte magic number: two zero bytes, a dtype byte ([`IdxType`])
//! and a rank byte. Rank big-endian u32 dimensions follow, then the elements in row-major order,
//! each big-endian. Files may be gzip-compressed, which [`read_idx`] and [`parse_idx`] detect by
//! gzip's magic bytes (0x1f 0x8b) and not by the file name.
//!
//! The reader never allocates more than the input can justify. For raw input it compares the
//! size the header declares with the input's length before allocating. For gzip input it
//! decompresses at most the declared size plus one byte into a growing buffer, so a header that
//! declares gigabytes in a tiny file fails with [`DataError::Truncated`] instead.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use ndarray::{ArrayD, IxDyn};

use crate::DataError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const MAGIC_LEN: u64 = 4;

/// The element type of an IDX array, given by the third byte of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdxType {
    /// Unsigned byte, code 0x08.
    U8,
    /// Signed byte, code 0x09.
    I8,
    /// Big-endian 16-bit signed integer, code 0x0B.
    I16,
    /// Big-endian 32-bit signed integer, code 0x0C.
    I32,
    /// Big-endian IEEE 754 single-precision float, code 0x0D.
    F32,
    /// Big-endian IEEE 754 double-precision float, code 0x0E.
    F64,
}

impl IdxType {
    /// Returns the type with dtype byte `code`, or `None` for a byte that is no IDX type.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0x08 => Some(IdxType::U8),
            0x09 => Some(IdxType::I8),
            0x0B => Some(IdxType::I16),
            0x0C => Some(IdxType::I32),
            0x0D => Some(IdxType::F32),
            0x0E => Some(IdxType::F64),
            _ => None,
        }
    }

    /// Returns the dtype byte of this type.
    pub fn code(self) -> u8 {
        match self {
            IdxType::U8 => 0x08,
            IdxType::I8 => 0x09,
            IdxType::I16 => 0x0B,
            IdxType::I32 => 0x0C,
            IdxType::F32 => 0x0D,
            IdxType::F64 => 0x0E,
        }
    }

    /// Returns the size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            IdxType::U8 | IdxType::I8 => 1,
            IdxType::I16 => 2,
            IdxType::I32 | IdxType::F32 => 4,
            IdxType::F64 => 8,
        }
    }
}

impl fmt::Display for IdxType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            IdxType::U8 => "u8",
            IdxType::I8 => "i8",
            IdxType::I16 => "i16",
            IdxType::I32 => "i32",
            IdxType::F32 => "f32",
            IdxType::F64 => "f64",
        };
        f.write_str(name)
    }
}

/// An array read from an IDX file, in the element type the file declares.
#[derive(Debug, Clone, PartialEq)]
pub enum IdxArray {
    /// Elements of dtype 0x08.
    U8(ArrayD<u8>),
    /// Elements of dtype 0x09.
    I8(ArrayD<i8>),
    /// Elements of dtype 0x0B.
    I16(ArrayD<i16>),
    /// Elements of dtype 0x0C.
    I32(ArrayD<i32>),
    /// Elements of dtype 0x0D.
    F32(ArrayD<f32>),
    /// Elements of dtype 0x0E.
    F64(ArrayD<f64>),
}

impl IdxArray {
    /// Returns the element type.
    pub fn dtype(&self) -> IdxType {
        match self {
            IdxArray::U8(_) => IdxType::U8,
            IdxArray::I8(_) => IdxType::I8,
            IdxArray::I16(_) => IdxType::I16,
            IdxArray::I32(_) => IdxType::I32,
            IdxArray::F32(_) => IdxType::F32,
            IdxArray::F64(_) => IdxType::F64,
        }
    }

    /// Returns the shape, which is the dimensions from the header.
    pub fn shape(&self) -> &[usize] {
        match self {
            IdxArray::U8(a) => a.shape(),
            IdxArray::I8(a) => a.shape(),
            IdxArray::I16(a) => a.shape(),
            IdxArray::I32(a) => a.shape(),
            IdxArray::F32(a) => a.shape(),
            IdxArray::F64(a) => a.shape(),
        }
    }
}

/// Reads an IDX file, raw or gzip-compressed.
///
/// # Errors
/// Returns [`DataError::Io`] when the file cannot be opened or read, [`DataError::Gzip`] for
/// corrupt gzip data, and the IDX variants of [`DataError`] for a malformed header or a data
/// length that differs from the one the header declares.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray, DataError> {
    let path = path.as_ref();
    let io_error = |action, source| DataError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };

    let mut file = File::open(path).map_err(|e| io_error("open", e))?;
    let file_len = file.metadata().map_err(|e| io_error("read", e))?.len();
    let mut prefix = [0u8; 2];
    let prefix_len = read_up_to(&mut file, &mut prefix).map_err(|e| io_error("read", e))?;
    file.rewind().map_err(|e| io_error("read", e))?;

    if prefix[..prefix_len] == GZIP_MAGIC {
        decode(MultiGzDecoder::new(file), path, Input::Gzip)
    } else {
        decode(file, path, Input::Raw { len: file_len })
    }
}

/// Reads an IDX file of dtype u8, raw or gzip-compressed.
///
/// # Errors
/// Returns the errors of [`read_idx`], and [`DataError::WrongDtype`] when the file declares
/// another dtype.
pub fn read_idx_u8(path: impl AsRef<Path>) -> Result<ArrayD<u8>, DataError> {
    let path = path.as_ref();
    match read_idx(path)? {
        IdxArray::U8(array) => Ok(array),
        other => Err(DataError::WrongDtype {
            path: path.to_path_buf(),
            found: other.dtype(),
            expected: IdxType::U8,
        }),
    }
}

/// Parses IDX bytes held in memory, raw or gzip-compressed.
///
/// `source` names the input in error messages, as the path does for [`read_idx`].
///
/// # Errors
/// Returns the errors of [`read_idx`] except [`DataError::Io`].
pub fn parse_idx(bytes: &[u8], source: impl AsRef<Path>) -> Result<IdxArray, DataError> {
    let source = source.as_ref();
    if bytes.starts_with(&GZIP_MAGIC) {
        decode(MultiGzDecoder::new(bytes), source, Input::Gzip)
    } else {
        let len = bytes.len() as u64;
        decode(bytes, source, Input::Raw { len })
    }
}

/// How the reader gets its bytes, which decides how the data length is checked.
#[derive(Clone, Copy)]
enum Input {
    /// Uncompressed input of a known total length.
    Raw { len: u64 },
    /// A gzip stream, whose decompressed length is known only after reading it.
    Gzip,
}

/// The parsed header of an IDX input.
struct Header {
    dtype: IdxType,
    dims: Vec<u32>,
    shape: Vec<usize>,
    /// Length of the magic number and dimensions in bytes.
    header_len: u64,
    /// Length of the data in bytes.
    data_len: usize,
}

fn decode<R: Read>(mut reader: R, path: &Path, input: Input) -> Result<IdxArray, DataError> {
    let gzip = matches!(input, Input::Gzip);
    let header = read_header(&mut reader, path, gzip)?;
    let expected_len = header.header_len + header.data_len as u64;
    let truncated = |offset| DataError::Truncated {
        path: path.to_path_buf(),
        part: "data",
        offset,
        expected_len,
        gzip,
    };
    let trailing = || DataError::TrailingBytes {
        path: path.to_path_buf(),
        offset: expected_len,
        gzip,
    };

    let data = match input {
        Input::Raw { len } => {
            // The length check comes before the allocation, so the claimed size is never
            // trusted beyond what the input contains.
            if len < expected_len {
                return Err(truncated(len));
            }
            if len > expected_len {
                return Err(trailing());
            }
            let mut data = vec![0u8; header.data_len];
            let read = read_up_to(&mut reader, &mut data)
                .map_err(|e| read_error(e, path, header.header_len, gzip))?;
            if read < header.data_len {
                // The file shrank after its length was taken.
                return Err(truncated(header.header_len + read as u64));
            }
            data
        }
        Input::Gzip => {
            // The buffer grows with the decompressed bytes, and reading one byte past the
            // declared length is enough to detect trailing data.
            let mut data = Vec::new();
            let limit = header.data_len as u64 + 1;
            let result = reader.by_ref().take(limit).read_to_end(&mut data);
            if let Err(e) = result {
                let offset = header.header_len + data.len() as u64;
                return Err(read_error(e, path, offset, gzip));
            }
            if data.len() < header.data_len {
                return Err(truncated(header.header_len + data.len() as u64));
            }
            if data.len() > header.data_len {
                return Err(trailing());
            }
            data
        }
    };
    to_array(header, data, path)
}

fn read_header<R: Read>(reader: &mut R, path: &Path, gzip: bool) -> Result<Header, DataError> {
    let truncated = |part, offset: usize, expected_len: u64| DataError::Truncated {
        path: path.to_path_buf(),
        part,
        offset: offset as u64,
        expected_len,
        gzip,
    };

    let mut magic = [0u8; MAGIC_LEN as usize];
    let read = read_up_to(reader, &mut magic).map_err(|e| read_error(e, path, 0, gzip))?;
    if read >= 2 && magic[..2] != [0, 0] {
        return Err(DataError::InvalidMagic {
            path: path.to_path_buf(),
            found: [magic[0], magic[1]],
        });
    }
    if read >= 3 && IdxType::from_code(magic[2]).is_none() {
        return Err(DataError::UnknownDtype {
            path: path.to_path_buf(),
            found: magic[2],
        });
    }
    let dtype = match IdxType::from_code(magic[2]) {
        Some(dtype) if read == magic.len() => dtype,
        _ => return Err(truncated("magic number", read, MAGIC_LEN)),
    };
    let rank = usize::from(magic[3]);
    if rank == 0 {
        return Err(DataError::ZeroRank {
            path: path.to_path_buf(),
        });
    }

    let header_len = MAGIC_LEN + 4 * rank as u64;
    let mut dim_bytes = vec![0u8; 4 * rank];
    let read =
        read_up_to(reader, &mut dim_bytes).map_err(|e| read_error(e, path, MAGIC_LEN, gzip))?;
    if read < dim_bytes.len() {
        let offset = MAGIC_LEN as usize + read;
        return Err(truncated("dimensions", offset, header_len));
    }
    let dims: Vec<u32> = dim_bytes
        .chunks_exact(4)
        .map(|chunk| u32::from_be_bytes(std::array::from_fn(|i| chunk[i])))
        .collect();

    let overflow = || DataError::SizeOverflow {
        path: path.to_path_buf(),
        dims: dims.clone(),
    };
    let shape: Vec<usize> = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| overflow()))
        .collect::<Result<_, _>>()?;
    // ndarray requires the product of the nonzero axis lengths to fit in isize, even when
    // another axis is zero and the array is empty.
    let nonzero_product = shape
        .iter()
        .try_fold(1usize, |product, &d| product.checked_mul(d.max(1)))
        .filter(|&product| isize::try_from(product).is_ok())
        .ok_or_else(overflow)?;
    let num_elements = if shape.contains(&0) {
        0
    } else {
        nonzero_product
    };
    let data_len = num_elements
        .checked_mul(dtype.size())
        .filter(|&len| isize::try_from(len).is_ok())
        .ok_or_else(overflow)?;
    if header_len.checked_add(data_len as u64).is_none() {
        return Err(overflow());
    }

    Ok(Header {
        dtype,
        dims,
        shape,
        header_len,
        data_len,
    })
}

/// Converts the big-endian data bytes to an array of the header's dtype and shape.
fn to_array(header: Header, data: Vec<u8>, path: &Path) -> Result<IdxArray, DataError> {
    let Header {
        dtype, dims, shape, ..
    } = header;
    let shape = IxDyn(&shape);
    // The header checks make this fail only if ndarray's limits differ from them.
    let shaped = |error: ndarray::ShapeError| {
        log::debug!("ndarray rejected IDX shape {dims:?}: {error}");
        DataError::SizeOverflow {
            path: path.to_path_buf(),
            dims: dims.clone(),
        }
    };
    let array = match dtype {
        IdxType::U8 => IdxArray::U8(ArrayD::from_shape_vec(shape, data).map_err(shaped)?),
        IdxType::I8 => {
            let values = data.into_iter().map(|b| b as i8).collect();
            IdxArray::I8(ArrayD::from_shape_vec(shape, values).map_err(shaped)?)
        }
        IdxType::I16 => {
            let values = decode_be(&data, i16::from_be_bytes);
            IdxArray::I16(ArrayD::from_shape_vec(shape, values).map_err(shaped)?)
        }
        IdxType::I32 => {
            let values = decode_be(&data, i32::from_be_bytes);
            IdxArray::I32(ArrayD::from_shape_vec(shape, values).map_err(shaped)?)
        }
        IdxType::F32 => {
            let values = decode_be(&data, f32::from_be_bytes);
            IdxArray::F32(ArrayD::from_shape_vec(shape, values).map_err(shaped)?)
        }
        IdxType::F64 => {
            let values = decode_be(&data, f64::from_be_bytes);
            IdxArray::F64(ArrayD::from_shape_vec(shape, values).map_err(shaped)?)
        }
    };
    Ok(array)
}

fn decode_be<T, const N: usize>(bytes: &[u8], from_be_bytes: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|chunk| from_be_bytes(std::array::from_fn(|i| chunk[i])))
        .collect()
}

/// Fills as much of `buf` as the reader has, and returns the number of bytes read.
fn read_up_to<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Maps a read failure to a gzip error for compressed input and an I/O error otherwise.
fn read_error(source: io::Error, path: &Path, offset: u64, gzip: bool) -> DataError {
    if gzip {
        DataError::Gzip {
            path: path.to_path_buf(),
            offset,
            source,
        }
    } else {
        DataError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use ndarray::array;

    use super::*;

    /// Builds an IDX header for `dtype` and `dims`.
    fn header(dtype: u8, dims: &[u32]) -> Vec<u8> {
        let mut bytes = vec![0, 0, dtype, dims.len() as u8];
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn u8_2x3() -> Vec<u8> {
        let mut bytes = header(0x08, &[2, 3]);
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 255]);
        bytes
    }

    #[test]
    fn u8_raw_and_gzip_match() {
        let expected = array![[1u8, 2, 3], [4, 5, 255]].into_dyn();
        let raw = parse_idx(&u8_2x3(), "raw").unwrap();
        let compressed = parse_idx(&gzip(&u8_2x3()), "gz").unwrap();
        assert_eq!(raw, IdxArray::U8(expected.clone()));
        assert_eq!(compressed, IdxArray::U8(expected));
        assert_eq!(raw.shape(), &[2, 3]);
        assert_eq!(raw.dtype(), IdxType::U8);
    }

    #[test]
    fn read_file_raw_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("a-idx2-ubyte");
        // The gzip file has no .gz suffix, so detection must use the magic bytes.
        let gz_path = dir.path().join("b-idx2-ubyte");
        std::fs::write(&raw_path, u8_2x3()).unwrap();
        std::fs::write(&gz_path, gzip(&u8_2x3())).unwrap();
        let expected = array![[1u8, 2, 3], [4, 5, 255]].into_dyn();
        assert_eq!(read_idx_u8(&raw_path).unwrap(), expected);
        assert_eq!(read_idx_u8(&gz_path).unwrap(), expected);
    }

    #[test]
    fn missing_file_is_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        let error = read_idx(&path).unwrap_err();
        assert!(
            matches!(error, DataError::Io { action: "open", .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("absent"), "{error}");
    }

    #[test]
    fn wrong_magic_rejected() {
        let mut bytes = u8_2x3();
        bytes[1] = 0x01;
        let error = parse_idx(&bytes, "magic").unwrap_err();
        assert!(
            matches!(
                error,
                DataError::InvalidMagic {
                    found: [0x00, 0x01],
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().starts_with("magic: "), "{error}");
    }

    #[test]
    fn unknown_dtype_rejected() {
        let mut bytes = u8_2x3();
        bytes[2] = 0x0A;
        let error = parse_idx(&bytes, "dtype").unwrap_err();
        assert!(
            matches!(error, DataError::UnknownDtype { found: 0x0A, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("0x0a"), "{error}");
    }

    #[test]
    fn rank_zero_rejected() {
        let error = parse_idx(&[0, 0, 0x08, 0], "rank").unwrap_err();
        assert!(matches!(error, DataError::ZeroRank { .. }), "{error:?}");
    }

    #[test]
    fn truncated_data_reports_offset() {
        let mut bytes = u8_2x3();
        bytes.truncate(bytes.len() - 2);
        // Header 4 + 2·4 = 12 bytes, data 6 bytes, of which 4 are present.
        for (input, gzip_input) in [(bytes.clone(), false), (gzip(&bytes), true)] {
            let error = parse_idx(&input, "short").unwrap_err();
            match error {
                DataError::Truncated {
                    part,
                    offset,
                    expected_len,
                    gzip,
                    ..
                } => {
                    assert_eq!(part, "data");
                    assert_eq!(offset, 16);
                    assert_eq!(expected_len, 18);
                    assert_eq!(gzip, gzip_input);
                }
                other => panic!("expected Truncated, got {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_header_reports_offset() {
        let bytes = u8_2x3();
        let error = parse_idx(&bytes[..3], "magic").unwrap_err();
        assert!(
            matches!(
                error,
                DataError::Truncated {
                    part: "magic number",
                    offset: 3,
                    expected_len: 4,
                    ..
                }
            ),
            "{error:?}"
        );
        let error = parse_idx(&bytes[..9], "dims").unwrap_err();
        assert!(
            matches!(
                error,
                DataError::Truncated {
                    part: "dimensions",
                    offset: 9,
                    expected_len: 12,
                    ..
                }
            ),
            "{error:?}"
        );
        let error = parse_idx(&[], "empty").unwrap_err();
        assert!(
            matches!(error, DataError::Truncated { offset: 0, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn trailing_bytes_rejected() {
        let mut bytes = u8_2x3();
        bytes.push(7);
        for (input, gzip_input) in [(bytes.clone(), false), (gzip(&bytes), true)] {
            let error = parse_idx(&input, "long").unwrap_err();
            assert!(
                matches!(error, DataError::TrailingBytes { offset: 18, gzip, .. } if gzip == gzip_input),
                "{error:?}"
            );
        }
    }

    #[test]
    fn huge_claim_in_tiny_input() {
        // 65536 · 65536 = 2^32 one-byte items, with 3 bytes of data present.
        let mut bytes = header(0x08, &[65536, 65536]);
        bytes.extend_from_slice(&[1, 2, 3]);
        let error = parse_idx(&bytes, "huge").unwrap_err();
        assert!(
            matches!(error, DataError::Truncated { offset: 15, expected_len, .. } if expected_len == 12 + (1 << 32)),
            "{error:?}"
        );
        // Gzip input decompresses only what is there instead of allocating 4 GiB up front.
        let error = parse_idx(&gzip(&bytes), "huge.gz").unwrap_err();
        assert!(
            matches!(
                error,
                DataError::Truncated {
                    offset: 15,
                    gzip: true,
                    ..
                }
            ),
            "{error:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge");
        std::fs::write(&path, &bytes).unwrap();
        let error = read_idx(&path).unwrap_err();
        assert!(
            matches!(error, DataError::Truncated { offset: 15, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn overflowing_dimensions_rejected() {
        let dims = [u32::MAX; 3];
        let error = parse_idx(&header(0x0E, &dims), "overflow").unwrap_err();
        assert!(
            matches!(&error, DataError::SizeOverflow { dims: found, .. } if found == &dims),
            "{error:?}"
        );
        // A zero axis makes the array empty, but ndarray still limits the other axes.
        let error =
            parse_idx(&header(0x08, &[0, u32::MAX, u32::MAX, u32::MAX]), "zero").unwrap_err();
        assert!(matches!(error, DataError::SizeOverflow { .. }), "{error:?}");
    }

    #[test]
    fn empty_axis_gives_empty_array() {
        let array = parse_idx(&header(0x0C, &[0, 5]), "empty").unwrap();
        assert_eq!(array.shape(), &[0, 5]);
        assert_eq!(array.dtype(), IdxType::I32);
    }

    #[test]
    fn big_endian_integers() {
        let mut bytes = header(0x0C, &[3]);
        for value in [1i32, -2, 0x0102_0304] {
            bytes.extend_from_slice(&value.to_be_bytes());
        }
        // Spell out one value byte by byte, so the test does not rely on to_be_bytes alone.
        assert_eq!(&bytes[16..20], &[0x01, 0x02, 0x03, 0x04]);
        let array = parse_idx(&bytes, "i32").unwrap();
        assert_eq!(array, IdxArray::I32(array![1, -2, 0x0102_0304].into_dyn()));

        let mut bytes = header(0x0B, &[2]);
        bytes.extend_from_slice(&[0xFF, 0xFE, 0x01, 0x00]);
        let array = parse_idx(&bytes, "i16").unwrap();
        assert_eq!(array, IdxArray::I16(array![-2i16, 256].into_dyn()));

        let mut bytes = header(0x09, &[2]);
        bytes.extend_from_slice(&[0xFF, 0x7F]);
        let array = parse_idx(&bytes, "i8").unwrap();
        assert_eq!(array, IdxArray::I8(array![-1i8, 127].into_dyn()));
    }

    #[test]
    fn big_endian_floats() {
        let mut bytes = header(0x0D, &[1, 2]);
        // 1.5f32 is 0x3FC00000 and -2.0f32 is 0xC0000000.
        bytes.extend_from_slice(&[0x3F, 0xC0, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x00]);
        let array = parse_idx(&bytes, "f32").unwrap();
        assert_eq!(array, IdxArray::F32(array![[1.5f32, -2.0]].into_dyn()));

        let mut bytes = header(0x0E, &[1]);
        // 0.1f64 is 0x3FB999999999999A.
        bytes.extend_from_slice(&[0x3F, 0xB9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9A]);
        let array = parse_idx(&bytes, "f64").unwrap();
        assert_eq!(array, IdxArray::F64(array![0.1f64].into_dyn()));
    }

    #[test]
    fn wrong_dtype_for_u8_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("floats");
        let mut bytes = header(0x0D, &[1]);
        bytes.extend_from_slice(&1.0f32.to_be_bytes());
        std::fs::write(&path, bytes).unwrap();
        let error = read_idx_u8(&path).unwrap_err();
        assert!(
            matches!(
                error,
                DataError::WrongDtype {
                    found: IdxType::F32,
                    expected: IdxType::U8,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn gzip_checksum_mismatch_rejected() {
        let mut bytes = gzip(&u8_2x3());
        // A gzip member ends with the CRC-32 of the data and then its length, 4 bytes each.
        let crc_start = bytes.len() - 8;
        bytes[crc_start] ^= 0xFF;
        let error = parse_idx(&bytes, "bad.gz").unwrap_err();
        assert!(matches!(error, DataError::Gzip { .. }), "{error:?}");
        assert!(
            error.to_string().starts_with("bad.gz: invalid gzip data"),
            "{error}"
        );
    }

    #[test]
    fn mutated_inputs_do_not_panic() {
        let mut inputs = vec![u8_2x3(), gzip(&u8_2x3())];
        let mut f64_input = header(0x0E, &[1, 1]);
        f64_input.extend_from_slice(&0.5f64.to_be_bytes());
        inputs.push(f64_input);
        for input in inputs {
            for len in 0..input.len() {
                let _ = parse_idx(&input[..len], "prefix");
            }
            for position in 0..input.len() {
                for value in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                    let mut mutated = input.clone();
                    mutated[position] = value;
                    let _ = parse_idx(&mutated, "mutated");
                }
            }
        }
    }

    #[test]
    fn dtype_codes_round_trip() {
        for code in 0..=255u8 {
            if let Some(dtype) = IdxType::from_code(code) {
                assert_eq!(dtype.code(), code);
            }
        }
        assert_eq!(IdxType::from_code(0x0D), Some(IdxType::F32));
        assert_eq!(IdxType::F64.size(), 8);
    }
}
