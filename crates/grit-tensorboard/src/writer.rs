use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use crate::TensorBoardError;
use crate::proto::{Event, Summary, event, summary::Value};
use crate::record::{encode_record, read_records};
use crate::summary::{
    DEFAULT_BUCKET_COUNT, histogram_buckets, histogram_value, scalar_value, text_value,
};

/// Value of `Event.file_version` in the first record. With version 2, TensorBoard's Python
/// loader (2.21.0) purges points only on a `SessionLog.START` event, not whenever a tag's step
/// goes backwards.
pub const FILE_VERSION: &str = "brain.Event:2";

/// Counter that makes file names unique within the process, even for writers created in the
/// same second.
static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writer of one TensorBoard event file.
///
/// Each writer creates a new file in its directory. TensorBoard treats a directory of event
/// files as one run and merges its files in file-name order, so a Keras-style layout uses one
/// writer for `log_dir/train` and one for `log_dir/validation`.
///
/// Every point gets the current wall-clock time as its `wall_time` and the caller's `step`.
/// Steps need not increase. Records go through a [`BufWriter`], so they reach the disk on
/// [`flush`](Self::flush), [`close`](Self::close), drop, or when the buffer fills.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
    /// Whether records were written since the last successful [`flush`](Self::flush).
    unsynced: bool,
}

impl EventWriter {
    /// Creates `dir` and its parents if needed, then creates a new event file in it and writes
    /// the file-version record.
    ///
    /// The file is named `events.out.tfevents.<unix seconds, 10 digits>.<hostname>.<pid>.<n>.v2`,
    /// where `n` counts the writers created by this process. The first record is flushed to
    /// the file before this returns, so TensorBoard lists the run at once.
    pub fn create(dir: impl AsRef<Path>) -> Result<EventWriter, TensorBoardError> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|source| TensorBoardError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;

        let path = dir.join(event_file_name(SystemTime::now()));
        // `create_new` rejects an existing file rather than overwriting another writer's data.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| TensorBoardError::CreateFile {
                path: path.clone(),
                source,
            })?;

        let mut writer = EventWriter {
            path,
            file: BufWriter::new(file),
            unsynced: false,
        };
        writer.write_event(&Event {
            wall_time: wall_time_now(),
            step: 0,
            what: Some(event::What::FileVersion(FILE_VERSION.to_owned())),
        })?;
        writer
            .file
            .flush()
            .map_err(|source| writer.write_error(source))?;
        Ok(writer)
    }

    /// Returns the path of the event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a scalar in the TF2 form that Keras uses: a rank-0 `DT_FLOAT` tensor with
    /// plugin `"scalars"`.
    pub fn write_scalar(
        &mut self,
        tag: &str,
        step: i64,
        value: f32,
    ) -> Result<(), TensorBoardError> {
        self.write_values(step, vec![scalar_value(tag, value)])
    }

    /// Writes a histogram of `values` with [`DEFAULT_BUCKET_COUNT`] buckets.
    ///
    /// Returns the number of NaN or infinite values, which are left out of the histogram.
    /// See [`histogram_buckets`] for how the buckets are computed.
    pub fn write_histogram(
        &mut self,
        tag: &str,
        step: i64,
        values: &[f32],
    ) -> Result<usize, TensorBoardError> {
        self.write_histogram_with_buckets(tag, step, values, DEFAULT_BUCKET_COUNT)
    }

    /// Writes a histogram of `values` with `bucket_count` buckets.
    ///
    /// Returns the number of NaN or infinite values, which are left out of the histogram.
    /// See [`histogram_buckets`] for how the buckets are computed.
    pub fn write_histogram_with_buckets(
        &mut self,
        tag: &str,
        step: i64,
        values: &[f32],
        bucket_count: usize,
    ) -> Result<usize, TensorBoardError> {
        let buckets = histogram_buckets(values, bucket_count);
        self.write_values(step, vec![histogram_value(tag, &buckets.rows)])?;
        Ok(buckets.non_finite)
    }

    /// Writes `text` for the text dashboard, which renders it as Markdown.
    pub fn write_text(&mut self, tag: &str, step: i64, text: &str) -> Result<(), TensorBoardError> {
        self.write_values(step, vec![text_value(tag, text)])
    }

    /// Writes several summary values as one event at `step`, stamped with the current time.
    ///
    /// Build the values with the functions in [`crate::summary`].
    pub fn write_values(&mut self, step: i64, values: Vec<Value>) -> Result<(), TensorBoardError> {
        self.write_event(&Event {
            wall_time: wall_time_now(),
            step,
            what: Some(event::What::Summary(Summary { value: values })),
        })
    }

    /// Appends `event` as one record to the buffer.
    pub fn write_event(&mut self, event: &Event) -> Result<(), TensorBoardError> {
        let record = encode_record(&event.encode_to_vec());
        // A buffer flush may leave half a record in the file. TensorBoard 2.21.0's Python
        // loader stops at such a record and reads it again on its next poll.
        self.unsynced = true;
        self.file
            .write_all(&record)
            .map_err(|source| self.write_error(source))
    }

    /// Writes the buffered records to the file and syncs the file's data to disk.
    pub fn flush(&mut self) -> Result<(), TensorBoardError> {
        self.file
            .flush()
            .map_err(|source| self.write_error(source))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(|source| self.write_error(source))?;
        self.unsynced = false;
        Ok(())
    }

    /// Flushes and syncs the file, then closes it, returning any error that drop would only
    /// log.
    pub fn close(mut self) -> Result<(), TensorBoardError> {
        self.flush()
    }

    fn write_error(&self, source: std::io::Error) -> TensorBoardError {
        TensorBoardError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

impl Drop for EventWriter {
    /// Flushes and syncs records written since the last flush, logging a warning on failure.
    fn drop(&mut self) {
        if !self.unsynced {
            return;
        }
        if let Err(error) = self.flush() {
            log::warn!("flush on drop failed, buffered records may be lost: {error}");
        }
    }
}

/// Reads the event file at `path`, checking every record's CRCs, and decodes its events.
pub fn read_events(path: impl AsRef<Path>) -> Result<Vec<Event>, TensorBoardError> {
    let path = path.as_ref();
    read_records(path)?
        .iter()
        .enumerate()
        .map(|(index, payload)| {
            Event::decode(payload.as_slice()).map_err(|source| TensorBoardError::DecodeEvent {
                path: path.to_path_buf(),
                index,
                source,
            })
        })
        .collect()
}

/// Builds the name of a new event file created at `now`.
fn event_file_name(now: SystemTime) -> String {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map(|duration| duration.as_secs())
        .unwrap_or(0);
    let counter = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "events.out.tfevents.{seconds:010}.{}.{}.{counter}.v2",
        hostname(),
        std::process::id()
    )
}

/// Returns the host name for file names, with path separators replaced and `localhost` as the
/// fallback for an empty name.
fn hostname() -> String {
    let name = gethostname::gethostname()
        .to_string_lossy()
        .replace(['/', '\\'], "_");
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

/// Returns the current time in seconds since the Unix epoch, or 0.0 for a clock set before it.
fn wall_time_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|duration| duration.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_has_keras_layout() {
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let name = event_file_name(now);
        let parts: Vec<&str> = name.split('.').collect();
        assert!(
            name.starts_with("events.out.tfevents.1700000000."),
            "{name}"
        );
        assert!(name.ends_with(".v2"), "{name}");
        let pid = std::process::id().to_string();
        assert_eq!(parts[parts.len() - 3], pid, "{name}");
        assert!(parts[parts.len() - 2].parse::<u64>().is_ok(), "{name}");
    }

    #[test]
    fn file_name_pads_seconds_to_ten_digits() {
        let now = UNIX_EPOCH + std::time::Duration::from_secs(42);
        let name = event_file_name(now);
        assert!(
            name.starts_with("events.out.tfevents.0000000042."),
            "{name}"
        );
    }

    #[test]
    fn file_names_differ_within_one_second() {
        let now = SystemTime::now();
        assert_ne!(event_file_name(now), event_file_name(now));
    }
}
