//! Where datasets live on disk.

use std::path::{Path, PathBuf};

/// The environment variable that moves every dataset folder to another root.
pub const DATASETS_ENV: &str = "GRIT_DATASETS";

/// Returns the folder of `dataset` (such as `"mnist"` or `"fashion-mnist"`): under the root
/// in `$GRIT_DATASETS` when that variable is set, and under `default_root` otherwise.
///
/// ```
/// let dir = grit_data::dataset_dir("datasets", "mnist");
/// assert!(dir.ends_with("mnist"));
/// ```
pub fn dataset_dir(default_root: impl AsRef<Path>, dataset: &str) -> PathBuf {
    let root = std::env::var_os(DATASETS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| default_root.as_ref().to_path_buf());
    root.join(dataset)
}
