//! Checks of inputs and targets against the model, and batch gathering.

use grit_nn::ResolvedMetric;
use grit_nn::losses::TargetKind;
use grit_tensor::{Samples, Tensor, parallel};
use ndarray::IxDyn;

use super::Sequential;
use crate::{Result, TrainError};

/// Checks that `x` is not empty and its samples have the model's input shape.
pub(crate) fn check_inputs(model: &Sequential, x: &dyn Samples, what: &'static str) -> Result<()> {
    if x.num_samples() == 0 {
        return Err(TrainError::EmptyData(what));
    }
    if x.sample_shape() != model.input_shape() {
        return Err(TrainError::ShapeMismatch {
            what,
            actual: x.sample_shape().to_vec(),
            expected: model.input_shape().to_vec(),
        });
    }
    Ok(())
}

/// Checks that inputs and targets have the same number of samples.
pub(crate) fn check_counts(x: &dyn Samples, y: &dyn Samples, what: &'static str) -> Result<()> {
    if x.num_samples() != y.num_samples() {
        return Err(TrainError::SampleCountMismatch {
            what,
            inputs: x.num_samples(),
            targets: y.num_samples(),
        });
    }
    Ok(())
}

/// Checks that `y` fits the compiled loss and the model's output: integer labels in range for
/// a sparse loss, the output's shape otherwise. Then checks that every metric can read `y`.
pub(crate) fn check_targets(model: &Sequential, y: &dyn Samples, what: &'static str) -> Result<()> {
    let loss = model.loss().ok_or(TrainError::NotCompiled("fit"))?;
    let output_shape = model.output_shape().unwrap_or(&[]).to_vec();
    let classes: usize = output_shape.iter().product();
    match loss.target_kind() {
        TargetKind::ClassIndex => {
            if y.sample_size() != 1 {
                return Err(TrainError::ShapeMismatch {
                    what,
                    actual: y.sample_shape().to_vec(),
                    expected: vec![],
                });
            }
            for index in 0..y.num_samples() {
                let mut label = 0.0;
                y.for_each_value(index, &mut |v| label = v);
                if !(label >= 0.0 && label.fract() == 0.0 && (label as usize) < classes) {
                    return Err(TrainError::InvalidLabel {
                        what,
                        index,
                        label,
                        classes,
                    });
                }
            }
        }
        TargetKind::SameShape => {
            let scalar_for_single_output = output_shape == [1] && y.sample_shape().is_empty();
            if y.sample_shape() != output_shape.as_slice() && !scalar_for_single_output {
                return Err(TrainError::ShapeMismatch {
                    what,
                    actual: y.sample_shape().to_vec(),
                    expected: output_shape,
                });
            }
        }
    }
    check_metrics(model, y)
}

/// Checks that every compiled metric can compare the model's output with targets like `y`:
/// one integer label per sample for sparse categorical accuracy, the output's width for the
/// other metrics.
fn check_metrics(model: &Sequential, y: &dyn Samples) -> Result<()> {
    let output_width: usize = model.output_shape().unwrap_or(&[]).iter().product();
    let target_width = y.sample_size();
    for (name, metric) in model.resolved_metrics(target_width) {
        let expected = match metric {
            ResolvedMetric::SparseCategoricalAccuracy if target_width != 1 => format!(
                "one integer label per sample, but the targets have {target_width} values per \
                 sample. One-hot targets need Metric::CategoricalAccuracy or Metric::Accuracy"
            ),
            ResolvedMetric::SparseCategoricalAccuracy => continue,
            _ if target_width != output_width => format!(
                "targets of {output_width} values per sample (the model's output width), but the \
                 targets have {target_width}. Integer labels need \
                 Metric::SparseCategoricalAccuracy or Metric::Accuracy"
            ),
            _ => continue,
        };
        return Err(TrainError::InvalidArgument {
            name: "metrics",
            value: name.to_string(),
            expected,
        });
    }
    Ok(())
}

/// Memory for the batches of inputs of a loop: reserved on the calling thread, cleared and
/// filled on the pool's threads.
///
/// Memory reserved on the calling thread comes back to that thread's allocator arena when
/// the model drops the batch, so the next batch reuses it, instead of each pool thread
/// keeping a batch-sized block of its own. Clearing it on the calling thread as well would
/// leave the pool idle while one thread writes the whole batch (20 µs a step for the MNIST
/// MLP's batch of 400 KB on a 2-core VM).
///
/// A loop calls [`BatchMemory::reserve_next`] as soon as a step has freed its batch.
/// Reserved later, after the small allocations of the callbacks' logs, the memory would
/// often no longer fit in the place the batch freed, and would take a second batch-sized
/// place.
pub(crate) struct BatchMemory {
    /// Memory reserved for the next batch, empty while a batch uses it.
    values: Vec<f32>,
    /// The number of values reserved each time: a whole batch, so that an epoch's short
    /// last batch leaves the place for the next whole one.
    reserve_len: usize,
}

impl BatchMemory {
    /// Reserves memory for batches of up to `batch` samples of `samples`, without writing it.
    pub(crate) fn new(samples: &dyn Samples, batch: usize) -> Self {
        let reserve_len = batch * samples.sample_size();
        BatchMemory {
            values: Vec::with_capacity(reserve_len),
            reserve_len,
        }
    }

    /// Returns the samples at `indices` as a batch in the reserved memory, or in new memory
    /// when none is reserved or the batch is larger.
    pub(crate) fn gather(&mut self, samples: &dyn Samples, indices: &[usize]) -> Tensor {
        let shape = batch_shape(samples, indices.len());
        let mut batch = parallel::zeros_in(std::mem::take(&mut self.values), &shape);
        samples.gather(
            indices,
            batch.as_slice_mut().expect("a new tensor is contiguous"),
        );
        batch
    }

    /// Reserves memory for the next batch, unless some is reserved already.
    pub(crate) fn reserve_next(&mut self) {
        if self.values.capacity() < self.reserve_len {
            self.values = Vec::with_capacity(self.reserve_len);
        }
    }

    /// Frees the reserved memory, for a pause in the loop such as a validation pass.
    pub(crate) fn release(&mut self) {
        self.values = Vec::new();
    }
}

/// Returns the shape of a batch of `batch` samples.
fn batch_shape(samples: &dyn Samples, batch: usize) -> Vec<usize> {
    let mut shape = Vec::with_capacity(samples.sample_shape().len() + 1);
    shape.push(batch);
    shape.extend_from_slice(samples.sample_shape());
    shape
}

/// Makes `buffer` a standard-layout tensor for a batch of `batch` samples, reusing its
/// memory when it already has that shape.
fn prepare_batch(samples: &dyn Samples, batch: usize, buffer: &mut Tensor) {
    let shape = batch_shape(samples, batch);
    if buffer.shape() != shape.as_slice() || !buffer.is_standard_layout() {
        *buffer = Tensor::zeros(IxDyn(&shape));
    }
}

/// Gathers the samples at `indices` into `buffer`, reusing its memory when the batch size is
/// unchanged.
fn gather_into(samples: &dyn Samples, indices: &[usize], buffer: &mut Tensor) {
    prepare_batch(samples, indices.len(), buffer);
    samples.gather(
        indices,
        buffer.as_slice_mut().expect("a new tensor is contiguous"),
    );
}

/// Gathers targets, reshaped to the model's output shape when the loss compares shapes, so
/// targets of shape `(n,)` serve a model with one output.
pub(crate) fn gather_targets(
    model: &Sequential,
    y: &dyn Samples,
    indices: &[usize],
    buffer: &mut Tensor,
) {
    gather_into(y, indices, buffer);
    if model.loss().map(|l| l.target_kind()) == Some(TargetKind::SameShape) {
        let mut shape = vec![indices.len()];
        shape.extend_from_slice(model.output_shape().unwrap_or(&[]));
        if buffer.shape() != shape.as_slice() {
            let values = std::mem::replace(buffer, Tensor::zeros(IxDyn(&[0])));
            *buffer = values
                .into_shape_with_order(IxDyn(&shape))
                .expect("sizes were checked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    /// Returns four samples of 2 × 3 values: sample `i` contains `10 i`, `10 i + 1`, ...
    fn samples() -> Array3<f32> {
        Array3::from_shape_fn((4, 2, 3), |(i, r, c)| (10 * i + 3 * r + c) as f32)
    }

    #[test]
    fn short_batch_uses_reserved_memory() {
        let x = samples();
        let mut memory = BatchMemory::new(&x, 3);
        let place = memory.values.as_ptr();
        // A batch smaller than the memory (an epoch's last batch) uses it too.
        let batch = memory.gather(&x, &[2, 0]);
        assert_eq!(memory.values.capacity(), 0);
        assert_eq!(batch.shape(), &[2, 2, 3]);
        assert_eq!(batch.as_ptr(), place);
        let values: Vec<f32> = batch.iter().copied().collect();
        assert_eq!(
            values,
            [
                20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0
            ]
        );
    }

    #[test]
    fn larger_batch_gets_new_memory() {
        let x = samples();
        let mut memory = BatchMemory::new(&x, 1);
        let batch = memory.gather(&x, &[3, 2, 1, 0]);
        assert_eq!(batch.shape(), &[4, 2, 3]);
        assert_eq!(batch[[0, 1, 2]], 35.0);
        assert_eq!(batch[[3, 0, 0]], 0.0);
    }

    #[test]
    fn reserve_next_keeps_a_whole_batch() {
        let x = samples();
        let mut memory = BatchMemory::new(&x, 3);
        drop(memory.gather(&x, &[1]));
        memory.reserve_next();
        assert_eq!(memory.values.capacity(), 18);
        let place = memory.values.as_ptr();
        memory.reserve_next();
        assert_eq!(
            memory.values.as_ptr(),
            place,
            "reserved memory was replaced"
        );
        memory.release();
        assert_eq!(memory.values.capacity(), 0);
    }
}
