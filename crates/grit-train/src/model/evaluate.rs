//! Inference: `evaluate`, `predict`, and the test loop that validation shares.

use grit_tensor::parallel::in_pool;
use grit_tensor::{Samples, Tensor};
use ndarray::{ArrayViewMutD, Axis, IxDyn};

use super::Sequential;
use super::data::{BatchMemory, check_counts, check_inputs, check_targets, gather_targets};
use super::fit::{CallbackList, LoopState};
use crate::callbacks::{Logs, RunInfo};
use crate::{Result, TrainError};

impl Sequential {
    /// Computes the loss and metrics over `(x, y)` in inference mode, in batches of
    /// `batch_size`, as sample-weighted means.
    ///
    /// # Errors
    /// [`TrainError::NotCompiled`], [`TrainError::InvalidArgument`] for a batch size of 0, and
    /// the data errors of [`Sequential::fit`].
    pub fn evaluate<X, Y>(&mut self, x: &X, y: &Y, batch_size: usize) -> Result<Logs>
    where
        X: Samples,
        Y: Samples,
    {
        let (x, y): (&dyn Samples, &dyn Samples) = (x, y);
        if self.compiled().is_none() {
            return Err(TrainError::NotCompiled("evaluate"));
        }
        check_batch_size(batch_size)?;
        check_inputs(self, x, "inputs")?;
        check_counts(x, y, "evaluate")?;
        check_targets(self, y, "targets")?;
        let indices: Vec<usize> = (0..x.num_samples()).collect();
        let run = RunInfo {
            epochs: 0,
            initial_epoch: 0,
            steps_per_epoch: 0,
            verbose: 0,
            has_validation: false,
            epoch_keys: Vec::new(),
            batch_keys: Vec::new(),
            directions: Default::default(),
        };
        let mut state = LoopState::new();
        self.test_loop(
            x,
            y,
            &indices,
            batch_size,
            &mut CallbackList::empty(),
            &mut state,
            &run,
        )
    }

    /// Returns the model's outputs for `x` in inference mode, computed in batches of
    /// `batch_size`: shape `(samples, output...)`.
    ///
    /// # Errors
    /// [`TrainError::InvalidArgument`] for a batch size of 0, and the input errors of
    /// [`Sequential::fit`]. The model must be built (compiling builds it).
    pub fn predict<X: Samples>(&mut self, x: &X, batch_size: usize) -> Result<Tensor> {
        let x: &dyn Samples = x;
        self.build()?;
        check_batch_size(batch_size)?;
        check_inputs(self, x, "inputs")?;
        let n = x.num_samples();
        let mut shape = vec![n];
        shape.extend_from_slice(self.output_shape().unwrap_or(&[]));
        let mut memory = BatchMemory::new(x, INFERENCE_CHUNK.min(n));
        let mut outputs = Tensor::zeros(IxDyn(&shape));
        let indices: Vec<usize> = (0..n).collect();
        for (step, chunk) in indices.chunks(batch_size).enumerate() {
            let start = step * batch_size;
            let mut target = outputs.slice_axis_mut(Axis(0), (start..start + chunk.len()).into());
            self.infer_into(x, chunk, &mut target, &mut memory);
        }
        Ok(outputs)
    }

    /// Writes the inference-mode outputs for the samples at `indices` into `outputs`,
    /// gathering the inputs in `memory`.
    ///
    /// The samples go through the model [`INFERENCE_CHUNK`] at a time, whatever the batch
    /// size, so a large evaluation batch does not hold all its inputs as f32 at once. In
    /// inference mode each sample's output depends on that sample alone, computed by the same
    /// operations in the same order in any batch, so the outputs are the batch's own.
    fn infer_into(
        &mut self,
        x: &dyn Samples,
        indices: &[usize],
        outputs: &mut ArrayViewMutD<'_, f32>,
        memory: &mut BatchMemory,
    ) {
        for (part, chunk) in indices.chunks(INFERENCE_CHUNK).enumerate() {
            let start = part * INFERENCE_CHUNK;
            let mut target = outputs.slice_axis_mut(Axis(0), (start..start + chunk.len()).into());
            in_pool(|| {
                let batch = memory.gather(x, chunk);
                target.assign(&self.forward(batch, false));
            });
            memory.reserve_next();
        }
    }

    /// Runs the test hooks over the samples at `indices` and returns the logs without prefix.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn test_loop(
        &mut self,
        x: &dyn Samples,
        y: &dyn Samples,
        indices: &[usize],
        batch_size: usize,
        callbacks: &mut CallbackList<'_>,
        state: &mut LoopState,
        run: &RunInfo,
    ) -> Result<Logs> {
        let loss = self.loss().ok_or(TrainError::NotCompiled("evaluate"))?;
        let metrics = self.resolved_metrics(y.sample_size());
        let mut sums = vec![0.0f64; metrics.len()];
        let mut loss_sum = 0.0f64;
        let mut count = 0usize;
        let mut memory = BatchMemory::new(x, INFERENCE_CHUNK.min(indices.len()));
        let mut y_batch = Tensor::zeros(IxDyn(&[0]));
        callbacks.dispatch(self, state, run, &mut Logs::new(), |cb, ctx, logs| {
            cb.on_test_begin(ctx, logs)
        })?;
        let mut logs = Logs::new();
        for (step, chunk) in indices.chunks(batch_size).enumerate() {
            callbacks.dispatch(self, state, run, &mut Logs::new(), |cb, ctx, logs| {
                cb.on_test_batch_begin(step, ctx, logs)
            })?;
            let mut shape = vec![chunk.len()];
            shape.extend_from_slice(self.output_shape().unwrap_or(&[]));
            let mut output = Tensor::zeros(IxDyn(&shape));
            self.infer_into(x, chunk, &mut output.view_mut(), &mut memory);
            gather_targets(self, y, chunk, &mut y_batch);
            for ((_, metric), sum) in metrics.iter().zip(sums.iter_mut()) {
                *sum += metric.batch_sum(&output, &y_batch);
            }
            let batch_loss = loss.value(&output, &y_batch);
            loss_sum += batch_loss as f64 * chunk.len() as f64;
            count += chunk.len();
            logs = running_logs(loss_sum, &metrics, &sums, count);
            let mut batch_logs = logs.clone();
            callbacks.dispatch(self, state, run, &mut batch_logs, |cb, ctx, logs| {
                cb.on_test_batch_end(step, ctx, logs)
            })?;
        }
        let mut end_logs = logs.clone();
        callbacks.dispatch(self, state, run, &mut end_logs, |cb, ctx, logs| {
            cb.on_test_end(ctx, logs)
        })?;
        Ok(logs)
    }
}

/// The maximum number of samples that inference passes through the model at once (see
/// `infer_into`).
const INFERENCE_CHUNK: usize = 128;

/// Builds `{loss, metrics...}` as means over `count` samples.
pub(crate) fn running_logs(
    loss_sum: f64,
    metrics: &[(&'static str, grit_nn::ResolvedMetric)],
    sums: &[f64],
    count: usize,
) -> Logs {
    let count = count.max(1) as f64;
    let mut logs = Logs::new();
    logs.insert("loss".into(), loss_sum / count);
    for ((name, _), sum) in metrics.iter().zip(sums) {
        logs.insert((*name).into(), sum / count);
    }
    logs
}

pub(crate) fn check_batch_size(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(TrainError::InvalidArgument {
            name: "batch_size",
            value: "0".into(),
            expected: "at least 1".into(),
        });
    }
    Ok(())
}
