use std::io;
use std::path::PathBuf;

/// Errors from writing or reading event files. Every variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum TensorBoardError {
    /// The log directory or one of its parents could not be created.
    #[error("failed to create log directory {path}: {source}")]
    CreateDir {
        /// Directory that was requested.
        path: PathBuf,
        /// Underlying I/O error.
        source: io::Error,
    },
    /// The event file could not be created.
    #[error("failed to create event file {path}: {source}")]
    CreateFile {
        /// Event file that was requested.
        path: PathBuf,
        /// Underlying I/O error.
        source: io::Error,
    },
    /// Writing, flushing or syncing the event file failed.
    #[error("failed to write event file {path}: {source}")]
    Write {
        /// Event file being written.
        path: PathBuf,
        /// Underlying I/O error.
        source: io::Error,
    },
    /// Reading an event file failed.
    #[error("failed to read event file {path}: {source}")]
    Read {
        /// Event file being read.
        path: PathBuf,
        /// Underlying I/O error.
        source: io::Error,
    },
    /// A record has a wrong CRC or is cut short.
    #[error("corrupt record in event file {path} at byte offset {offset}: {reason}")]
    CorruptRecord {
        /// Event file being read.
        path: PathBuf,
        /// Byte offset where the record starts.
        offset: u64,
        /// Description of the defect, such as a CRC mismatch or a truncated record.
        reason: String,
    },
    /// A record's payload is not a valid `Event` protobuf.
    #[error("invalid Event protobuf in event file {path}, record {index}: {source}")]
    DecodeEvent {
        /// Event file being read.
        path: PathBuf,
        /// Zero-based index of the record in the file.
        index: usize,
        /// Error reported by prost.
        source: prost::DecodeError,
    },
}
