//! Sources of samples that batches are gathered from.
//!
//! `fit`, `evaluate` and `predict` read their inputs and targets through [`Samples`], so a
//! dataset can stay in the type it has on disk (MNIST's images are bytes) and only each batch
//! is converted to f32 as it is drawn.

use multiversion::multiversion;
use ndarray::{ArrayBase, ArrayD, Axis, Data, Dimension};
use rayon::prelude::*;

use crate::parallel;

/// A collection of samples that share one shape, indexed along the first axis.
///
/// Samples are `Sync` because batches are gathered on several threads at once.
pub trait Samples: Sync {
    /// Returns the number of samples.
    fn num_samples(&self) -> usize;

    /// Returns the shape of one sample (the array's shape without its first axis).
    fn sample_shape(&self) -> &[usize];

    /// Returns the number of values in one sample.
    fn sample_size(&self) -> usize {
        self.sample_shape().iter().product()
    }

    /// Writes the samples at `indices`, in that order and as f32, into `out`.
    ///
    /// # Panics
    /// Panics when an index is out of range or `out.len()` is not
    /// `indices.len() · sample_size()`.
    fn gather(&self, indices: &[usize], out: &mut [f32]);

    /// Reads the samples at `indices` so that a [`Samples::gather`] soon after finds them in
    /// the CPU's caches. The training loop calls it for the next batch while a step leaves
    /// a thread idle. It must skip indices out of range rather than panic, because it only
    /// warms the cache. The default does nothing.
    fn prefetch(&self, indices: &[usize]) {
        let _ = indices;
    }

    /// Calls `visit` with every value of sample `index`, as f32, in row-major order.
    fn for_each_value(&self, index: usize, visit: &mut dyn FnMut(f32)) {
        let mut buffer = vec![0.0; self.sample_size()];
        self.gather(&[index], &mut buffer);
        buffer.into_iter().for_each(visit);
    }
}

/// An element type that converts to f32 without loss for the values datasets use.
pub trait Element: Copy {
    /// Converts the value to f32.
    fn to_f32(self) -> f32;
}

impl Element for f32 {
    fn to_f32(self) -> f32 {
        self
    }
}

impl Element for u8 {
    fn to_f32(self) -> f32 {
        self as f32
    }
}

impl Element for i32 {
    fn to_f32(self) -> f32 {
        self as f32
    }
}

impl Element for u16 {
    fn to_f32(self) -> f32 {
        self as f32
    }
}

impl<A, S, D> Samples for ArrayBase<S, D>
where
    A: Element + Sync,
    S: Data<Elem = A> + Sync,
    D: Dimension,
{
    fn num_samples(&self) -> usize {
        if self.ndim() == 0 {
            0
        } else {
            self.len_of(Axis(0))
        }
    }

    fn sample_shape(&self) -> &[usize] {
        if self.ndim() == 0 {
            &[]
        } else {
            &self.shape()[1..]
        }
    }

    fn gather(&self, indices: &[usize], out: &mut [f32]) {
        gather_scaled(self, indices, out, 1.0);
    }

    fn prefetch(&self, indices: &[usize]) {
        if let Some(values) = self.as_slice() {
            touch_samples(values, self.sample_size(), indices);
        }
    }
}

/// Reads one value in every 64 bytes of the samples at `indices`, `size` values each, and
/// the last value of each, skipping indices out of range. Returns how many values it read.
fn touch_samples<A: Copy>(values: &[A], size: usize, indices: &[usize]) -> usize {
    const CACHE_LINE_BYTES: usize = 64;
    let step = (CACHE_LINE_BYTES / std::mem::size_of::<A>().max(1)).max(1);
    let mut read = 0;
    for &index in indices {
        let Some(sample) = index
            .checked_mul(size)
            .and_then(|start| values.get(start..start.checked_add(size)?))
        else {
            continue;
        };
        for value in sample.iter().step_by(step).chain(sample.last()) {
            std::hint::black_box(*value);
            read += 1;
        }
    }
    read
}

fn gather_scaled<A, S, D>(array: &ArrayBase<S, D>, indices: &[usize], out: &mut [f32], scale: f32)
where
    A: Element + Sync,
    S: Data<Elem = A> + Sync,
    D: Dimension,
{
    let size: usize = array.shape()[1..].iter().product();
    assert_eq!(
        out.len(),
        indices.len() * size,
        "gather: output buffer has the wrong length"
    );
    if size == 0 {
        return;
    }
    // Whole samples per block, so each block reads its own indices.
    let samples_per_block = parallel::block_len(out.len()).div_ceil(size);
    out.par_chunks_mut(samples_per_block * size)
        .zip(indices.par_chunks(samples_per_block))
        .for_each(|(out, indices)| {
            if let Some(all) = array.as_slice() {
                for (chunk, &index) in out.chunks_exact_mut(size).zip(indices) {
                    let source = &all[index * size..(index + 1) * size];
                    for (o, &v) in chunk.iter_mut().zip(source) {
                        *o = v.to_f32() * scale;
                    }
                }
            } else {
                for (chunk, &index) in out.chunks_exact_mut(size).zip(indices) {
                    let sample = array.slice_axis(Axis(0), (index..index + 1).into());
                    for (o, &v) in chunk.iter_mut().zip(sample.iter()) {
                        *o = v.to_f32() * scale;
                    }
                }
            }
        });
}

/// Bytes that read as `byte · scale`: images kept as the u8 they are on disk and scaled to
/// f32 one batch at a time (MNIST's pixels with `scale = 1/255` read as values in [0, 1]).
#[derive(Debug, Clone, PartialEq)]
pub struct ScaledU8 {
    data: ArrayD<u8>,
    scale: f32,
}

impl ScaledU8 {
    /// Wraps `data` (samples along the first axis) so each value reads as `value · scale`.
    pub fn new(data: ArrayD<u8>, scale: f32) -> Self {
        ScaledU8 { data, scale }
    }

    /// Returns the raw bytes.
    pub fn data(&self) -> &ArrayD<u8> {
        &self.data
    }

    /// Returns the factor each byte is multiplied by.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Returns a copy holding only the first `n` samples (all of them when `n` is larger).
    pub fn take(&self, n: usize) -> Self {
        let n = n.min(self.num_samples());
        ScaledU8 {
            data: self.data.slice_axis(Axis(0), (0..n).into()).to_owned(),
            scale: self.scale,
        }
    }

    /// Converts every sample to f32 at once.
    pub fn to_f32(&self) -> ArrayD<f32> {
        self.data.mapv(|v| v as f32 * self.scale)
    }
}

impl Samples for ScaledU8 {
    fn num_samples(&self) -> usize {
        self.data.num_samples()
    }

    fn sample_shape(&self) -> &[usize] {
        self.data.sample_shape()
    }

    fn gather(&self, indices: &[usize], out: &mut [f32]) {
        let size = self.sample_size();
        let (Some(bytes), true) = (self.data.as_slice(), size > 0) else {
            gather_scaled(&self.data, indices, out, self.scale);
            return;
        };
        assert_eq!(
            out.len(),
            indices.len() * size,
            "gather: output buffer has the wrong length"
        );
        let samples_per_block = parallel::block_len(out.len()).div_ceil(size);
        out.par_chunks_mut(samples_per_block * size)
            .zip(indices.par_chunks(samples_per_block))
            .for_each(|(out, indices)| {
                for (sample, &index) in out.chunks_exact_mut(size).zip(indices) {
                    scale_bytes(sample, &bytes[index * size..(index + 1) * size], self.scale);
                }
            });
    }

    fn prefetch(&self, indices: &[usize]) {
        self.data.prefetch(indices);
    }
}

/// Writes `byte · scale` for each of `bytes` into `out`.
///
/// Compiled for AVX-512 and AVX2 as well, and the CPU picks one at run time. The conversion
/// and the product round the same way in every width.
#[multiversion(targets("x86_64+avx512f+avx512bw", "x86_64+avx2"))]
fn scale_bytes(out: &mut [f32], bytes: &[u8], scale: f32) {
    for (o, &b) in out.iter_mut().zip(bytes) {
        *o = b as f32 * scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    #[test]
    fn touch_reads_each_cache_line() {
        // 784 bytes a sample: offsets 0, 64, ..., 768 and the last byte, 783.
        let bytes = vec![1u8; 3 * 784];
        assert_eq!(touch_samples(&bytes, 784, &[2, 0]), 2 * 14);
        // 40 f32 values a sample: offsets 0, 16 and 32 (every 64 bytes), then the last.
        let floats = vec![0.5f32; 2 * 40];
        assert_eq!(touch_samples(&floats, 40, &[1]), 4);
    }

    #[test]
    fn touch_skips_indices_out_of_range() {
        let bytes = vec![1u8; 2 * 784];
        assert_eq!(touch_samples(&bytes, 784, &[1, 2, usize::MAX]), 14);
        assert_eq!(touch_samples(&bytes, 0, &[0, 5]), 0);
    }

    #[test]
    fn gather_f32_rows_in_order() {
        let x = array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let mut out = vec![0.0; 4];
        x.gather(&[2, 0], &mut out);
        assert_eq!(out, vec![5.0, 6.0, 1.0, 2.0]);
        assert_eq!(x.num_samples(), 3);
        assert_eq!(x.sample_shape(), &[2]);
    }

    #[test]
    fn gather_non_contiguous_view() {
        let x = Array2::from_shape_fn((3, 3), |(i, j)| (i * 3 + j) as f32);
        let transposed = x.t();
        let mut out = vec![0.0; 3];
        transposed.gather(&[1], &mut out);
        assert_eq!(out, vec![1.0, 4.0, 7.0]);
    }

    #[test]
    fn scaled_bytes_read_as_unit_range() {
        let data = ArrayD::from_shape_vec(vec![2, 2], vec![0u8, 255, 51, 102]).unwrap();
        let images = ScaledU8::new(data, 1.0 / 255.0);
        let mut out = vec![0.0; 2];
        images.gather(&[0], &mut out);
        assert_eq!(out, vec![0.0, 1.0]);
        images.gather(&[1], &mut out);
        assert!((out[0] - 0.2).abs() < 1e-7 && (out[1] - 0.4).abs() < 1e-7);
    }

    #[test]
    fn label_vector_has_scalar_samples() {
        let labels = array![3u8, 1, 4];
        assert_eq!(labels.sample_shape(), &[] as &[usize]);
        assert_eq!(labels.sample_size(), 1);
        let mut out = vec![0.0; 2];
        labels.gather(&[2, 1], &mut out);
        assert_eq!(out, vec![4.0, 1.0]);
    }

    #[test]
    fn scaled_bytes_gather_in_parallel_blocks() {
        // 100 samples of 1000 bytes: 10^5 values, more than one parallel block.
        let bytes =
            ndarray::Array2::from_shape_fn((100, 1000), |(i, j)| ((i * 7 + j * 13) % 256) as u8);
        let scaled = ScaledU8::new(bytes.clone().into_dyn(), 0.5);
        let indices: Vec<usize> = (0..100).rev().collect();
        let mut out = vec![0.0; 100 * 1000];
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| scaled.gather(&indices, &mut out));
        for (row, &index) in indices.iter().enumerate() {
            for col in [0, 1, 499, 999] {
                assert_eq!(out[row * 1000 + col], bytes[[index, col]] as f32 * 0.5);
            }
        }
        let mut plain = vec![0.0; 100 * 1000];
        bytes.mapv(|b| b as f32 * 0.5).gather(&indices, &mut plain);
        assert_eq!(out, plain);
    }
}
