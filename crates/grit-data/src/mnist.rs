//! MNIST and Fashion-MNIST: 28×28 grey-scale images in 10 classes, 60000 for training and
//! 10000 for testing, stored as four IDX files.

use std::path::{Path, PathBuf};

use grit_tensor::ScaledU8;
use ndarray::{Array1, Ix1};

use crate::DataError;
use crate::fetch::Dataset;
use crate::idx::read_idx_u8;

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

const IMAGE_SIDE: usize = 28;
const NUM_CLASSES: usize = 10;

/// Scale that maps a pixel byte in 0..=255 to [0, 1].
const PIXEL_SCALE: f32 = 1.0 / 255.0;

/// The MNIST handwritten digits, with labels 0 to 9.
///
/// Images have shape `[n, 28, 28]` and stay bytes in memory, reading as `byte / 255` when a
/// batch is gathered. The official files contain 60000 training and 10000 test images.
#[derive(Debug, Clone, PartialEq)]
pub struct Mnist {
    /// Training images, shape `[60000, 28, 28]` for the official files.
    pub train_images: ScaledU8,
    /// Training labels, one digit per image.
    pub train_labels: Array1<u8>,
    /// Test images, shape `[10000, 28, 28]` for the official files.
    pub test_images: ScaledU8,
    /// Test labels, one digit per image.
    pub test_labels: Array1<u8>,
}

impl Mnist {
    /// Loads the dataset from `dir`, which contains `train-images-idx3-ubyte`,
    /// `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`,
    /// each raw or gzip-compressed with a `.gz` suffix.
    ///
    /// [`ensure_mnist`](crate::fetch::ensure_mnist) fetches the files.
    ///
    /// # Errors
    /// Returns [`DataError::MissingFile`] with the fetch command when a file is missing, the
    /// errors of [`read_idx_u8`] for a malformed file, and [`DataError::InvalidShape`],
    /// [`DataError::CountMismatch`] or [`DataError::LabelOutOfRange`] when the files do not
    /// form a dataset of 28×28 images with labels below 10.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        let splits = Splits::load(dir.as_ref(), Dataset::Mnist)?;
        Ok(Mnist {
            train_images: splits.train_images,
            train_labels: splits.train_labels,
            test_images: splits.test_images,
            test_labels: splits.test_labels,
        })
    }
}

/// Zalando's Fashion-MNIST: photos of clothing in 10 classes, in MNIST's format.
///
/// Images have shape `[n, 28, 28]` and stay bytes in memory, reading as `byte / 255` when a
/// batch is gathered. The official files contain 60000 training and 10000 test images.
#[derive(Debug, Clone, PartialEq)]
pub struct FashionMnist {
    /// Training images, shape `[60000, 28, 28]` for the official files.
    pub train_images: ScaledU8,
    /// Training labels, one class index per image (see [`FashionMnist::class_names`]).
    pub train_labels: Array1<u8>,
    /// Test images, shape `[10000, 28, 28]` for the official files.
    pub test_images: ScaledU8,
    /// Test labels, one class index per image.
    pub test_labels: Array1<u8>,
}

impl FashionMnist {
    /// Loads the dataset from `dir`, which contains the four files with MNIST's names, each raw
    /// or gzip-compressed with a `.gz` suffix.
    ///
    /// [`ensure_fashion_mnist`](crate::fetch::ensure_fashion_mnist) fetches the files.
    ///
    /// # Errors
    /// Returns the same errors as [`Mnist::load`].
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        let splits = Splits::load(dir.as_ref(), Dataset::FashionMnist)?;
        Ok(FashionMnist {
            train_images: splits.train_images,
            train_labels: splits.train_labels,
            test_images: splits.test_images,
            test_labels: splits.test_labels,
        })
    }

    /// Returns the class names, indexed by label.
    pub fn class_names() -> [&'static str; NUM_CLASSES] {
        [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ]
    }
}

struct Splits {
    train_images: ScaledU8,
    train_labels: Array1<u8>,
    test_images: ScaledU8,
    test_labels: Array1<u8>,
}

impl Splits {
    fn load(dir: &Path, dataset: Dataset) -> Result<Self, DataError> {
        let (train_images, train_labels) = load_split(dir, dataset, TRAIN_IMAGES, TRAIN_LABELS)?;
        let (test_images, test_labels) = load_split(dir, dataset, TEST_IMAGES, TEST_LABELS)?;
        Ok(Splits {
            train_images,
            train_labels,
            test_images,
            test_labels,
        })
    }
}

/// Loads one split's images and labels and checks that they agree.
fn load_split(
    dir: &Path,
    dataset: Dataset,
    images_name: &str,
    labels_name: &str,
) -> Result<(ScaledU8, Array1<u8>), DataError> {
    let images_path = find_file(dir, images_name, dataset)?;
    let labels_path = find_file(dir, labels_name, dataset)?;

    let images = read_idx_u8(&images_path)?;
    if images.ndim() != 3 || images.shape()[1..] != [IMAGE_SIDE, IMAGE_SIDE] {
        return Err(DataError::InvalidShape {
            path: images_path,
            found: images.shape().to_vec(),
            expected: "[n, 28, 28]",
        });
    }

    let labels = read_idx_u8(&labels_path)?;
    let found_shape = labels.shape().to_vec();
    let labels = labels
        .into_dimensionality::<Ix1>()
        .map_err(|_| DataError::InvalidShape {
            path: labels_path.clone(),
            found: found_shape,
            expected: "[n]",
        })?;

    let image_count = images.shape()[0];
    if labels.len() != image_count {
        return Err(DataError::CountMismatch {
            images_path,
            image_count,
            labels_path,
            label_count: labels.len(),
        });
    }
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &label)| usize::from(label) >= NUM_CLASSES)
    {
        return Err(DataError::LabelOutOfRange {
            path: labels_path,
            index,
            label,
            num_classes: NUM_CLASSES,
        });
    }

    Ok((ScaledU8::new(images, PIXEL_SCALE), labels))
}

/// Returns the path of `name` in `dir`, or of `name.gz` when only the compressed form exists.
fn find_file(dir: &Path, name: &str, dataset: Dataset) -> Result<PathBuf, DataError> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Ok(raw);
    }
    let compressed = dir.join(format!("{name}.gz"));
    if compressed.is_file() {
        return Ok(compressed);
    }
    Err(DataError::MissingFile {
        path: raw,
        fetch_hint: dataset.fetch_hint(dir),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use grit_tensor::Samples;

    use super::*;

    fn idx_u8(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        bytes
    }

    fn images(count: u8) -> Vec<u8> {
        let pixels: Vec<u8> = (0..usize::from(count) * 784)
            .map(|i| (i % 256) as u8)
            .collect();
        idx_u8(&[u32::from(count), 28, 28], &pixels)
    }

    /// Writes a small dataset with 3 training and 2 test samples, the training files gzipped.
    fn write_small_dataset(dir: &Path) {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(&images(3)).unwrap();
        std::fs::write(
            dir.join("train-images-idx3-ubyte.gz"),
            encoder.finish().unwrap(),
        )
        .unwrap();
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(&idx_u8(&[3], &[5, 0, 9])).unwrap();
        std::fs::write(
            dir.join("train-labels-idx1-ubyte.gz"),
            encoder.finish().unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join(TEST_IMAGES), images(2)).unwrap();
        std::fs::write(dir.join(TEST_LABELS), idx_u8(&[2], &[7, 2])).unwrap();
    }

    #[test]
    fn load_small_dataset() {
        let dir = tempfile::tempdir().unwrap();
        write_small_dataset(dir.path());
        let data = Mnist::load(dir.path()).unwrap();
        assert_eq!(data.train_images.data().shape(), &[3, 28, 28]);
        assert_eq!(data.test_images.data().shape(), &[2, 28, 28]);
        assert_eq!(data.train_labels.to_vec(), vec![5, 0, 9]);
        assert_eq!(data.test_labels.to_vec(), vec![7, 2]);
        assert_eq!(data.train_images.scale(), 1.0 / 255.0);
        // Pixel 255 of the first image is byte 255, which reads as 1.0.
        let mut sample = vec![0.0; 784];
        data.train_images.gather(&[0], &mut sample);
        assert_eq!(sample[255], 1.0);
        assert_eq!(sample[1], 1.0 / 255.0);
    }

    #[test]
    fn missing_file_names_fetch_command() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mnist");
        let error = Mnist::load(&dir).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, DataError::MissingFile { .. }), "{error:?}");
        assert!(message.contains("train-images-idx3-ubyte"), "{message}");
        assert!(message.contains("--bin fetch-datasets"), "{message}");
        assert!(
            message.contains(&format!("--dir {} mnist", root.path().display())),
            "{message}"
        );
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        write_small_dataset(dir.path());
        std::fs::write(dir.path().join(TEST_LABELS), idx_u8(&[3], &[7, 2, 1])).unwrap();
        let error = FashionMnist::load(dir.path()).unwrap_err();
        match &error {
            DataError::CountMismatch {
                image_count,
                label_count,
                labels_path,
                ..
            } => {
                assert_eq!(*image_count, 2);
                assert_eq!(*label_count, 3);
                assert!(labels_path.ends_with(TEST_LABELS));
            }
            other => panic!("expected CountMismatch, got {other:?}"),
        }
    }

    #[test]
    fn label_out_of_range_rejected() {
        let dir = tempfile::tempdir().unwrap();
        write_small_dataset(dir.path());
        std::fs::write(dir.path().join(TEST_LABELS), idx_u8(&[2], &[7, 10])).unwrap();
        let error = Mnist::load(dir.path()).unwrap_err();
        assert!(
            matches!(
                error,
                DataError::LabelOutOfRange {
                    index: 1,
                    label: 10,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn wrong_image_size_rejected() {
        let dir = tempfile::tempdir().unwrap();
        write_small_dataset(dir.path());
        std::fs::write(dir.path().join(TEST_IMAGES), idx_u8(&[2, 2, 2], &[0; 8])).unwrap();
        let error = Mnist::load(dir.path()).unwrap_err();
        match &error {
            DataError::InvalidShape { path, found, .. } => {
                assert!(path.ends_with(TEST_IMAGES));
                assert_eq!(found, &vec![2, 2, 2]);
            }
            other => panic!("expected InvalidShape, got {other:?}"),
        }
    }

    #[test]
    fn fashion_class_names() {
        let names = FashionMnist::class_names();
        assert_eq!(names[0], "T-shirt/top");
        assert_eq!(names[9], "Ankle boot");
    }
}
