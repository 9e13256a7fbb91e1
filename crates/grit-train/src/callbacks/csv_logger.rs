use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Callback, Context, Logs};
use crate::{Result, TrainError};

/// Writes one CSV row per epoch (Keras's `CSVLogger`).
///
/// The columns are fixed at the first epoch of each run: `epoch` (0-based), then the epoch
/// logs' keys in sorted order. When the run validates but the first epoch did not (a
/// validation frequency above 1), the `val_*` columns are added too. When appending to a
/// file that has a header, the rows follow that header's columns instead, and a log key that
/// the header lacks is an error. A value missing in an epoch is written as `NA`, NaN as
/// `nan`. Every row is flushed and synced to disk before training goes on, so a crash keeps
/// each finished epoch. A row that fails to write, for example on a full disk, is removed
/// again, so the file ends with the last whole row. Place it after callbacks that add keys
/// (such as `LearningRateScheduler`) to record them.
///
/// ```no_run
/// use grit_train::callbacks::CsvLogger;
///
/// let logger = CsvLogger::new("runs/mnist/training.csv").separator(';').append(true);
/// ```
pub struct CsvLogger {
    path: PathBuf,
    separator: char,
    append: bool,
    file: Option<File>,
    columns: Option<Vec<String>>,
    /// The columns after `epoch` of the header of the file appended to, if it has one.
    existing_columns: Option<Vec<String>>,
    has_validation: bool,
}

impl CsvLogger {
    /// Writes to `path`, replacing an existing file unless [`CsvLogger::append`] is set.
    pub fn new(path: impl AsRef<Path>) -> Self {
        CsvLogger {
            path: path.as_ref().to_path_buf(),
            separator: ',',
            append: false,
            file: None,
            columns: None,
            existing_columns: None,
            has_validation: false,
        }
    }

    /// Sets the column separator (default `,`).
    pub fn separator(mut self, separator: char) -> Self {
        self.separator = separator;
        self
    }

    /// Appends to an existing file. Its header is kept and not written again, and the new
    /// rows follow its columns.
    pub fn append(mut self, append: bool) -> Self {
        self.append = append;
        self
    }

    fn io_error(&self, action: &'static str, source: std::io::Error) -> TrainError {
        TrainError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }

    fn quote(&self, field: &str) -> String {
        if field.contains(self.separator) || field.contains('"') || field.contains('\n') {
            format!("\"{}\"", field.replace('"', "\"\""))
        } else {
            field.to_string()
        }
    }

    /// Returns the columns after `epoch` of the header of the file to append to, or `None`
    /// when the file is missing or empty.
    fn read_existing_columns(&self) -> Result<Option<Vec<String>>> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(self.io_error("failed to read", source)),
        };
        let line = match BufReader::new(file).lines().next() {
            None => return Ok(None),
            Some(line) => line.map_err(|source| self.io_error("failed to read", source))?,
        };
        if line.trim().is_empty() {
            return Ok(None);
        }
        let mut fields = split_fields(&line, self.separator);
        if fields.first().map(String::as_str) != Some("epoch") {
            return Err(TrainError::InvalidCallback {
                callback: "CSVLogger",
                message: format!(
                    "the header of {} does not start with an `epoch` column when split at \
                     {:?}: {line:?}; append to a file that CsvLogger wrote with the same \
                     separator, or set append(false)",
                    self.path.display(),
                    self.separator
                ),
            });
        }
        fields.remove(0);
        Ok(Some(fields))
    }

    fn write_line(&mut self, fields: &[String]) -> Result<()> {
        let line: Vec<String> = fields.iter().map(|f| self.quote(f)).collect();
        let separator = self.separator.to_string();
        let text = format!("{}\n", line.join(&separator));
        let file = self.file.as_mut().expect("opened at train begin");
        let length = file.metadata().map(|metadata| metadata.len());
        let result = file
            .write_all(text.as_bytes())
            .and_then(|_| file.flush())
            .and_then(|_| file.sync_data());
        if let Err(source) = result {
            // A full disk can take part of a row. Cutting the file back to its last whole row
            // keeps it a valid CSV for the caller who handles the error.
            if let Ok(length) = length {
                let _ = file
                    .set_len(length)
                    .and_then(|_| file.seek(SeekFrom::Start(length)));
            }
            return Err(self.io_error("failed to write", source));
        }
        Ok(())
    }
}

/// Splits a CSV line at `separator`, outside double quotes, and unquotes the fields.
fn split_fields(line: &str, separator: char) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            c if c == separator && !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "nan".into()
    } else if value.is_infinite() {
        if value > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        value.to_string()
    }
}

impl Callback for CsvLogger {
    fn name(&self) -> &str {
        "CSVLogger"
    }

    fn validate(&mut self, run: &super::RunInfo) -> Result<()> {
        self.has_validation = run.has_validation;
        if self.separator == '"' || self.separator == '\n' {
            return Err(TrainError::InvalidCallback {
                callback: "CSVLogger",
                message: format!(
                    "separator {:?} cannot separate CSV fields; use ',', ';' or '\\t'",
                    self.separator
                ),
            });
        }
        Ok(())
    }

    fn on_train_begin(&mut self, _ctx: &mut Context, _logs: &mut Logs) -> Result<()> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|source| self.io_error("failed to create the folder of", source))?;
        }
        self.existing_columns = if self.append {
            self.read_existing_columns()?
        } else {
            None
        };
        let file = if self.append {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
        } else {
            File::create(&self.path)
        };
        self.file = Some(file.map_err(|source| self.io_error("failed to open", source))?);
        self.columns = None;
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, _ctx: &mut Context, logs: &mut Logs) -> Result<()> {
        if self.columns.is_none() {
            let mut columns: Vec<String> = logs.keys().cloned().collect();
            if self.has_validation && !columns.iter().any(|k| k.starts_with("val_")) {
                let validation: Vec<String> = columns.iter().map(|k| format!("val_{k}")).collect();
                columns.extend(validation);
                columns.sort();
            }
            match self.existing_columns.take() {
                Some(existing) => {
                    let extra: Vec<&String> = columns
                        .iter()
                        .filter(|key| !existing.contains(key))
                        .collect();
                    if !extra.is_empty() {
                        return Err(TrainError::InvalidCallback {
                            callback: "CSVLogger",
                            message: format!(
                                "the logs have {extra:?}, which the header of {} lacks (its \
                                 columns after `epoch` are {existing:?}); append to a file \
                                 with those columns, or set append(false)",
                                self.path.display()
                            ),
                        });
                    }
                    self.columns = Some(existing);
                }
                None => {
                    let mut header = vec!["epoch".to_string()];
                    header.extend(columns.iter().cloned());
                    self.write_line(&header)?;
                    self.columns = Some(columns);
                }
            }
        }
        let columns = self.columns.clone().unwrap_or_default();
        let mut row = vec![epoch.to_string()];
        row.extend(columns.iter().map(|key| {
            logs.get(key)
                .map(|v| format_value(*v))
                .unwrap_or_else(|| "NA".into())
        }));
        self.write_line(&row)
    }

    fn on_train_end(&mut self, _ctx: &mut Context, _logs: &mut Logs) -> Result<()> {
        self.file = None;
        Ok(())
    }
}
