//! The byte level of a checkpoint: safetensors encoding with a SHA-256 checksum in the
//! metadata, decoding with every check, and the atomic write.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::Path;

use grit_tensor::Tensor;
use ndarray::IxDyn;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};

use super::{FORMAT_NAME, FORMAT_VERSION, keys};
use crate::{Result, TrainError};

/// Encodes `tensors` (f32, little-endian) and `metadata` as a safetensors file, adding the
/// format name, the format version, the library version and the checksum to the metadata.
pub(super) fn encode(
    path: &Path,
    mut metadata: BTreeMap<String, String>,
    tensors: &[(String, &Tensor)],
) -> Result<Vec<u8>> {
    metadata.insert(keys::FORMAT.into(), FORMAT_NAME.into());
    metadata.insert(keys::FORMAT_VERSION.into(), FORMAT_VERSION.to_string());
    metadata.insert(
        keys::GRIT_VERSION.into(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    metadata.remove(keys::SHA256);

    let mut bytes: BTreeMap<&str, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, tensor) in tensors {
        let data: Vec<u8> = tensor
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        if bytes
            .insert(name.as_str(), (tensor.shape().to_vec(), data))
            .is_some()
        {
            return Err(invalid(path, format!("two tensors are named `{name}`")));
        }
    }
    let checksum = checksum(
        &metadata,
        bytes
            .iter()
            .map(|(name, (shape, data))| (*name, Dtype::F32, shape.as_slice(), data.as_slice())),
    );
    metadata.insert(keys::SHA256.into(), checksum);

    let mut views = Vec::with_capacity(bytes.len());
    for (name, (shape, data)) in &bytes {
        let view = TensorView::new(Dtype::F32, shape.clone(), data)
            .map_err(|error| invalid(path, format!("cannot encode `{name}`: {error}")))?;
        views.push((*name, view));
    }
    let metadata: HashMap<String, String> = metadata.into_iter().collect();
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|error| invalid(path, format!("cannot encode the file: {error}")))?;
    sort_header(path, bytes)
}

/// Rewrites the JSON header of an encoded file with its keys, and the metadata's keys, in
/// sorted order, so that saving the same model twice gives the same bytes. safetensors writes
/// the metadata from a `HashMap`, whose order changes from one map to the next. Only the order
/// of the entries changes, so the header keeps its length and the data its offsets.
fn sort_header(path: &Path, mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    let malformed = |detail: String| invalid(path, format!("cannot sort the header: {detail}"));
    let length_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| malformed("the file is shorter than 8 bytes".into()))?;
    let length = usize::try_from(u64::from_le_bytes(length_bytes))
        .ok()
        .filter(|&length| length <= bytes.len() - 8)
        .ok_or_else(|| malformed("the header length exceeds the file".into()))?;
    let header = &bytes[8..8 + length];
    let mut entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|error| malformed(error.to_string()))?;
    if let Some(metadata) = entries.get_mut("__metadata__") {
        let sorted: BTreeMap<String, String> = serde_json::from_value(metadata.take())
            .map_err(|error| malformed(error.to_string()))?;
        *metadata = serde_json::json!(sorted);
    }
    let mut sorted = serde_json::to_vec(&entries).map_err(|error| malformed(error.to_string()))?;
    if sorted.len() > length {
        return Err(malformed(format!(
            "it grew from {length} to {} bytes",
            sorted.len()
        )));
    }
    // safetensors pads the header with spaces to its length.
    sorted.resize(length, b' ');
    bytes[8..8 + length].copy_from_slice(&sorted);
    Ok(bytes)
}

/// The verified content of a checkpoint file.
pub(super) struct Decoded {
    pub(super) metadata: BTreeMap<String, String>,
    pub(super) tensors: BTreeMap<String, Tensor>,
}

/// Decodes a checkpoint, checking in order: the safetensors structure (which catches a
/// truncated file), the format name, the format version, the checksum and every dtype.
pub(super) fn decode(path: &Path, bytes: &[u8]) -> Result<Decoded> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|error| {
        invalid(
            path,
            format!("not a readable safetensors file, it may be truncated or corrupt ({error})"),
        )
    })?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .as_ref()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();

    match metadata.get(keys::FORMAT) {
        Some(format) if format == FORMAT_NAME => {}
        Some(format) => {
            return Err(invalid(
                path,
                format!("the format is `{format}`, expected `{FORMAT_NAME}`"),
            ));
        }
        None => {
            return Err(invalid(
                path,
                format!(
                    "the metadata has no `{}` key, so this safetensors file was not written \
                     by grit",
                    keys::FORMAT
                ),
            ));
        }
    }
    let version = metadata
        .get(keys::FORMAT_VERSION)
        .map(String::as_str)
        .unwrap_or("(missing)");
    if version != FORMAT_VERSION.to_string() {
        return Err(invalid(
            path,
            format!(
                "format version `{version}` is not supported: this build of grit ({}) reads \
                 version {FORMAT_VERSION}. The file comes from another grit version or is corrupt",
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }

    let file = SafeTensors::deserialize(bytes).map_err(|error| {
        invalid(
            path,
            format!("not a readable safetensors file, it may be truncated or corrupt ({error})"),
        )
    })?;
    let mut views: Vec<(String, TensorView<'_>)> = file.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));

    let stored = metadata.get(keys::SHA256).ok_or_else(|| {
        invalid(
            path,
            format!("the metadata has no `{}` checksum", keys::SHA256),
        )
    })?;
    let computed = checksum(
        &metadata,
        views
            .iter()
            .map(|(name, view)| (name.as_str(), view.dtype(), view.shape(), view.data())),
    );
    if *stored != computed {
        return Err(invalid(
            path,
            format!(
                "the checksum does not match, so the file is corrupt (stored sha256 {stored}, \
                 computed {computed})"
            ),
        ));
    }

    let mut tensors = BTreeMap::new();
    for (name, view) in views {
        if view.dtype() != Dtype::F32 {
            return Err(invalid(
                path,
                format!(
                    "tensor `{name}` has dtype {:?}, but grit checkpoints hold F32 only",
                    view.dtype()
                ),
            ));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|word| f32::from_le_bytes([word[0], word[1], word[2], word[3]]))
            .collect();
        let tensor = Tensor::from_shape_vec(IxDyn(view.shape()), values).map_err(|error| {
            invalid(
                path,
                format!("tensor `{name}` does not fit its shape: {error}"),
            )
        })?;
        tensors.insert(name, tensor);
    }
    Ok(Decoded { metadata, tensors })
}

/// Computes the hex SHA-256 over the metadata (sorted by key, without the checksum itself)
/// and the tensors (sorted by name): `key\0value\0` for each entry, then
/// `name\0dtype\0shape\0data` for each tensor, with the shape as comma-separated decimals
/// and the data as stored.
pub(super) fn checksum<'a>(
    metadata: &BTreeMap<String, String>,
    tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>,
) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in metadata {
        if key == keys::SHA256 {
            continue;
        }
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    for (name, dtype, shape, data) in tensors {
        let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(format!("{dtype:?}").as_bytes());
        hasher.update([0]);
        hasher.update(shape.join(",").as_bytes());
        hasher.update([0]);
        hasher.update(data);
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Writes `bytes` to `path` so that `path` contains either its previous content or all of
/// `bytes`, never a part. The bytes go to a temporary file in the same folder, which is synced
/// and renamed over `path`. Then the folder is synced so that the rename survives a crash.
///
/// Creates the parent folders. A process killed during the write can leave a
/// `.<file name>.*.tmp` file beside `path`.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| invalid(path, "the path does not name a file".into()))?;
    if path.is_dir() {
        return Err(invalid(
            path,
            "the path is a folder, but a checkpoint needs a file path such as \
             `best.safetensors`"
                .into(),
        ));
    }
    fs::create_dir_all(folder).map_err(|source| TrainError::Io {
        action: "failed to create the folder",
        path: folder.to_path_buf(),
        source,
    })?;
    let io_error = |action: &'static str| {
        move |source: std::io::Error| TrainError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };

    let prefix = format!(".{}.", file_name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // Temporary files are private (0600) by default; the checkpoint gets the permissions of
    // a file created with `File::create`, 0666 less the process's umask.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut temporary = builder
        .tempfile_in(folder)
        .map_err(io_error("failed to create a temporary file for"))?;
    temporary
        .write_all(bytes)
        .map_err(io_error("failed to write"))?;
    temporary
        .as_file()
        .sync_all()
        .map_err(io_error("failed to sync"))?;
    temporary
        .persist(path)
        .map_err(|error| io_error("failed to rename the temporary file to")(error.error))?;
    // Syncing the folder makes the rename durable on Unix. The data itself is already synced,
    // so a failure here is only logged. Windows cannot open a folder as a file.
    #[cfg(unix)]
    if let Err(error) = fs::File::open(folder).and_then(|folder| folder.sync_all()) {
        log::warn!(
            "wrote {} but failed to sync its folder: {error}",
            path.display()
        );
    }
    Ok(())
}

fn invalid(path: &Path, message: String) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message,
    }
}
