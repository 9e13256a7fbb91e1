//! The [`Sequential`] model: building, compiling, weights and summary. Training is in
//! `fit.rs`, inference in `evaluate.rs`, input checks in `data.rs`.

use std::collections::BTreeMap;
use std::fmt::Write;

use grit_nn::{Layer, Loss, MAX_TENSOR_VALUES, Metric, NnError, ResolvedMetric};
use grit_optim::Optimizer;
use grit_tensor::{Rng, Tensor};
use serde_json::json;

use crate::callbacks::Weights;
use crate::{Result, TrainError};

mod data;
mod evaluate;
mod fit;
mod heap;
mod order;
mod saving;

pub use fit::FitOptions;

/// The seed a model uses unless [`Sequential::seed`] sets another.
pub const DEFAULT_SEED: u64 = 0;

/// A stack of layers, each feeding the next, built in code.
///
/// Layers are added with [`Sequential::add`]; weights are created by [`Sequential::build`]
/// (which [`Sequential::compile`] calls), from the model's seeded generator, so the same seed
/// gives the same initial weights. Layer names follow Keras (`dense`, `dense_1`, ...),
/// counted per model.
///
/// ```
/// use grit_train::prelude::*;
///
/// let mut model = Sequential::new([28, 28])
///     .add(Flatten::new())
///     .add(Dense::new(128).activation(Activation::Relu))
///     .add(Dense::new(10).activation(Activation::Softmax));
/// model.compile(Adam::new(1e-3), Loss::SPARSE_CATEGORICAL_CROSSENTROPY, [Metric::Accuracy])?;
/// assert_eq!(model.count_params(), 784 * 128 + 128 + 128 * 10 + 10);
/// # Ok::<(), grit_train::TrainError>(())
/// ```
#[derive(Debug)]
pub struct Sequential {
    input_shape: Vec<usize>,
    layers: Vec<Box<dyn Layer>>,
    output_shapes: Vec<Vec<usize>>,
    built: bool,
    seed: u64,
    rng: Rng,
    compiled: Option<Compiled>,
    /// Epochs completed by `fit`, counted from epoch 0: the index of the epoch to run next.
    completed_epochs: usize,
    /// Index of the first layer with trainable weights: backpropagation stops there.
    first_trainable: usize,
    /// Whether each layer's work is done by the layer before it (see [`Layer::fuse_next`]),
    /// in which case both passes skip it.
    fused: Vec<bool>,
    /// The number of training steps after which `fit` has released free heap memory (see
    /// `heap::RELEASE_STEPS`).
    heap_releases: usize,
}

/// The optimizer, loss and metrics that `compile` set.
pub(crate) struct Compiled {
    pub(crate) optimizer: Box<dyn Optimizer>,
    pub(crate) loss: Loss,
    pub(crate) metrics: Vec<Metric>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("optimizer", &self.optimizer.config())
            .field("loss", &self.loss)
            .field("metrics", &self.metrics)
            .finish()
    }
}

impl Sequential {
    /// Creates an empty model for samples of `input_shape` (without the batch axis).
    pub fn new(input_shape: impl AsRef<[usize]>) -> Self {
        Sequential {
            input_shape: input_shape.as_ref().to_vec(),
            layers: Vec::new(),
            output_shapes: Vec::new(),
            built: false,
            seed: DEFAULT_SEED,
            rng: Rng::new(DEFAULT_SEED),
            compiled: None,
            completed_epochs: 0,
            first_trainable: 0,
            fused: Vec::new(),
            heap_releases: 0,
        }
    }

    /// Appends a layer.
    // Keras's `Sequential.add`, not an arithmetic `std::ops::Add`.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Layer + 'static) -> Self {
        self.push(Box::new(layer));
        self
    }

    /// Appends a boxed layer.
    pub fn push(&mut self, layer: Box<dyn Layer>) {
        self.layers.push(layer);
        self.built = false;
    }

    /// Sets the seed of the generator behind weight initialisation, shuffling and dropout.
    /// Building again restarts from this seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self.rng = Rng::new(seed);
        self.built = false;
        self
    }

    /// Returns the seed.
    pub fn seed_value(&self) -> u64 {
        self.seed
    }

    /// Names unnamed layers, infers every layer's output shape and creates the weights. Does
    /// nothing when the model is already built.
    ///
    /// # Errors
    /// [`TrainError::Layer`] naming the first layer that cannot take its input shape, with
    /// the shape, also when its output would have more than [`MAX_TENSOR_VALUES`] values per
    /// sample; [`TrainError::InvalidArgument`] for a model without layers or an input shape
    /// with a zero axis or more than [`MAX_TENSOR_VALUES`] values.
    pub fn build(&mut self) -> Result<()> {
        if self.built {
            return Ok(());
        }
        if self.layers.is_empty() {
            return Err(TrainError::InvalidArgument {
                name: "layers",
                value: "none".into(),
                expected: "at least one layer; add layers with `Sequential::add`".into(),
            });
        }
        if self.input_shape.is_empty() || self.input_shape.contains(&0) {
            return Err(TrainError::InvalidArgument {
                name: "input_shape",
                value: format!("{:?}", self.input_shape),
                expected: "at least one axis, each of size 1 or more".into(),
            });
        }
        if !within_tensor_limit(&self.input_shape) {
            return Err(TrainError::InvalidArgument {
                name: "input_shape",
                value: format!("{:?}", self.input_shape),
                expected: format!("at most {MAX_TENSOR_VALUES} values per sample"),
            });
        }
        self.assign_names();
        self.rng = Rng::new(self.seed);
        self.output_shapes.clear();
        let mut shape = self.input_shape.clone();
        for layer in &mut self.layers {
            shape = layer.build(&shape, &mut self.rng)?;
            if shape.contains(&0) {
                return Err(NnError::IncompatibleShape {
                    layer: layer.name().to_string(),
                    input_shape: self
                        .output_shapes
                        .last()
                        .cloned()
                        .unwrap_or(self.input_shape.clone()),
                    reason: format!("its output shape {shape:?} would be empty"),
                }
                .into());
            }
            // The next layer's build multiplies these axes, so they must not overflow.
            if !within_tensor_limit(&shape) {
                return Err(NnError::IncompatibleShape {
                    layer: layer.name().to_string(),
                    input_shape: self
                        .output_shapes
                        .last()
                        .cloned()
                        .unwrap_or(self.input_shape.clone()),
                    reason: format!(
                        "its output shape {shape:?} would have more than {MAX_TENSOR_VALUES} \
                         values per sample, the limit for one tensor"
                    ),
                }
                .into());
            }
            self.output_shapes.push(shape.clone());
        }
        self.first_trainable = self
            .layers
            .iter()
            .position(|l| l.trainable_count() > 0)
            .unwrap_or(0);
        for (index, layer) in self.layers.iter_mut().enumerate() {
            layer.set_input_gradient_needed(index > self.first_trainable);
        }
        self.fuse_layers();
        self.built = true;
        Ok(())
    }

    /// Offers each layer the layer after it (see [`Layer::fuse_next`]). The last layer is
    /// never taken, because the training step reads the last layer's logits for the loss.
    fn fuse_layers(&mut self) {
        let count = self.layers.len();
        self.fused = vec![false; count];
        let mut index = 0;
        while index + 2 < count {
            let (head, tail) = self.layers.split_at_mut(index + 1);
            if head[index].fuse_next(tail[0].as_ref()) {
                self.fused[index + 1] = true;
                index += 2;
            } else {
                index += 1;
            }
        }
    }

    fn assign_names(&mut self) {
        let mut used: BTreeMap<String, usize> = BTreeMap::new();
        for layer in &self.layers {
            if !layer.name().is_empty() {
                used.insert(layer.name().to_string(), 0);
            }
        }
        let mut counters: BTreeMap<&'static str, usize> = BTreeMap::new();
        for layer in &mut self.layers {
            if !layer.name().is_empty() {
                continue;
            }
            let base = snake_case(layer.class_name());
            loop {
                let count = counters.entry(layer.class_name()).or_insert(0);
                let name = if *count == 0 {
                    base.clone()
                } else {
                    format!("{base}_{count}")
                };
                *count += 1;
                if !used.contains_key(&name) {
                    used.insert(name.clone(), 0);
                    layer.set_name(name);
                    break;
                }
            }
        }
    }

    /// Builds the model and fixes its optimizer, loss and metrics.
    ///
    /// # Errors
    /// Any error of [`Sequential::build`], an invalid optimizer setting
    /// ([`TrainError::Optimizer`]), and [`TrainError::InvalidArgument`] for a metric listed
    /// twice.
    pub fn compile(
        &mut self,
        optimizer: impl Optimizer + 'static,
        loss: Loss,
        metrics: impl IntoIterator<Item = Metric>,
    ) -> Result<()> {
        optimizer.validate()?;
        let metrics: Vec<Metric> = metrics.into_iter().collect();
        for (i, metric) in metrics.iter().enumerate() {
            if metrics[..i].iter().any(|m| m.name() == metric.name()) {
                return Err(TrainError::InvalidArgument {
                    name: "metrics",
                    value: metric.name().to_string(),
                    expected: "each metric once".into(),
                });
            }
        }
        self.build()?;
        self.compiled = Some(Compiled {
            optimizer: Box::new(optimizer),
            loss,
            metrics,
        });
        Ok(())
    }

    /// Returns the per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Returns the per-sample output shape of the built model.
    pub fn output_shape(&self) -> Option<&[usize]> {
        self.output_shapes.last().map(|s| s.as_slice())
    }

    /// Returns the layers.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// Returns the compiled loss.
    pub fn loss(&self) -> Option<Loss> {
        self.compiled.as_ref().map(|c| c.loss)
    }

    /// Returns the compiled metrics.
    pub fn metrics(&self) -> &[Metric] {
        self.compiled
            .as_ref()
            .map(|c| c.metrics.as_slice())
            .unwrap_or(&[])
    }

    /// Returns the optimizer, once compiled.
    pub fn optimizer(&self) -> Option<&dyn Optimizer> {
        self.optimizer_ref()
    }

    pub(crate) fn optimizer_ref(&self) -> Option<&dyn Optimizer> {
        self.compiled.as_ref().map(|c| c.optimizer.as_ref())
    }

    /// Returns the optimizer for changes between `fit` calls, once compiled.
    pub fn optimizer_mut(&mut self) -> Option<&mut (dyn Optimizer + 'static)> {
        self.compiled.as_mut().map(|c| c.optimizer.as_mut())
    }

    /// Returns the model's random generator, whose state a full checkpoint saves.
    pub fn rng(&self) -> &Rng {
        &self.rng
    }

    /// Replaces the model's random generator (when restoring a checkpoint).
    pub fn set_rng(&mut self, rng: Rng) {
        self.rng = rng;
    }

    /// Returns the number of weight values (trainable or not) of the built model.
    pub fn count_params(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weights().iter().map(|(_, w)| w.len()).sum::<usize>())
            .sum()
    }

    /// Returns a copy of every weight by its name `<layer>/<weight>`, in layer order.
    pub fn get_weights(&self) -> Weights {
        let mut weights = Vec::new();
        for layer in &self.layers {
            for (name, value) in layer.weights() {
                weights.push((format!("{}/{name}", layer.name()), value.clone()));
            }
        }
        weights
    }

    /// Replaces every weight from a list in the order and with the names of
    /// [`Sequential::get_weights`].
    ///
    /// # Errors
    /// [`TrainError::InvalidArgument`] when the names differ (the first mismatch is named) and
    /// [`TrainError::ShapeMismatch`] when a shape differs. Nothing changes on error.
    pub fn set_weights(&mut self, weights: &Weights) -> Result<()> {
        let current = self.get_weights();
        if current.len() != weights.len() {
            return Err(TrainError::InvalidArgument {
                name: "weights",
                value: format!("{} tensors", weights.len()),
                expected: format!("{} tensors, one per model weight", current.len()),
            });
        }
        for ((name, value), (expected_name, expected)) in weights.iter().zip(&current) {
            if name != expected_name {
                return Err(TrainError::InvalidArgument {
                    name: "weights",
                    value: format!("`{name}`"),
                    expected: format!("`{expected_name}` at this position"),
                });
            }
            if value.shape() != expected.shape() {
                return Err(TrainError::ShapeMismatch {
                    what: "weights",
                    actual: value.shape().to_vec(),
                    expected: expected.shape().to_vec(),
                });
            }
        }
        let mut source = weights.iter();
        for layer in &mut self.layers {
            for (_, target) in layer.weights_mut() {
                let (_, value) = source.next().expect("counts checked above");
                target.assign(value);
            }
        }
        Ok(())
    }

    /// Returns the architecture as Keras-style JSON: input shape and each layer's config.
    pub fn config(&self) -> serde_json::Value {
        json!({
            "class_name": "Sequential",
            "config": {
                "input_shape": self.input_shape,
                "seed": self.seed,
                "layers": self.layers.iter().map(|l| l.config()).collect::<Vec<_>>(),
            }
        })
    }

    /// Returns a table of layers, output shapes and parameter counts, like Keras's summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let rule = "─".repeat(66);
        let _ = writeln!(out, "Model: \"sequential\"");
        let _ = writeln!(out, "{rule}");
        let _ = writeln!(
            out,
            "{:<30}{:<22}{:>14}",
            "Layer (type)", "Output Shape", "Param #"
        );
        let _ = writeln!(out, "{rule}");
        for (index, layer) in self.layers.iter().enumerate() {
            let shape = match self.output_shapes.get(index) {
                Some(shape) if self.built => {
                    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
                    format!("(None, {})", dims.join(", "))
                }
                _ => "? (not built)".into(),
            };
            let params: usize = layer.weights().iter().map(|(_, w)| w.len()).sum();
            let label = format!("{} ({})", layer.name(), layer.class_name());
            let _ = writeln!(out, "{label:<30}{shape:<22}{params:>14}");
        }
        let _ = writeln!(out, "{rule}");
        let _ = writeln!(out, " Total params: {}", self.count_params());
        out
    }

    pub(crate) fn compiled(&self) -> Option<&Compiled> {
        self.compiled.as_ref()
    }

    /// Resolves each metric for this model's output and targets of `target_width` values.
    pub(crate) fn resolved_metrics(
        &self,
        target_width: usize,
    ) -> Vec<(&'static str, ResolvedMetric)> {
        let output_width: usize = self.output_shape().map(|s| s.iter().product()).unwrap_or(0);
        self.metrics()
            .iter()
            .map(|m| (m.name(), m.resolve(output_width, target_width)))
            .collect()
    }

    /// Runs every layer forward on an input the model may keep or reshape in place (see
    /// [`Layer::forward_owned`]).
    pub(crate) fn forward(&mut self, input: Tensor, training: bool) -> Tensor {
        let mut x = input;
        for (layer, &fused) in self.layers.iter_mut().zip(&self.fused) {
            if !fused {
                x = layer.forward_owned(x, training, &mut self.rng);
            }
        }
        x
    }
}

/// Returns whether a tensor of `shape` has at most [`MAX_TENSOR_VALUES`] values.
fn within_tensor_limit(shape: &[usize]) -> bool {
    shape
        .iter()
        .try_fold(1usize, |product, &axis| product.checked_mul(axis))
        .is_some_and(|values| values <= MAX_TENSOR_VALUES)
}

/// `BatchNormalization` → `batch_normalization`, `Conv2D` → `conv2d`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let previous_lower = i > 0 && chars[i - 1].is_lowercase();
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if i > 0 && (previous_lower || (next_lower && chars[i - 1].is_uppercase())) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use grit_nn::{Dense, Flatten};
    use grit_optim::Sgd;

    #[test]
    fn snake_case_names() {
        assert_eq!(snake_case("Dense"), "dense");
        assert_eq!(snake_case("BatchNormalization"), "batch_normalization");
        assert_eq!(snake_case("Conv2D"), "conv2d");
        assert_eq!(snake_case("MaxPooling2D"), "max_pooling2d");
    }

    #[test]
    fn layers_are_named_like_keras() {
        let mut model = Sequential::new([2, 2])
            .add(Flatten::new())
            .add(Dense::new(3))
            .add(Dense::new(1));
        model.build().unwrap();
        let names: Vec<&str> = model.layers().iter().map(|l| l.name()).collect();
        assert_eq!(names, vec!["flatten", "dense", "dense_1"]);
        let weights: Vec<String> = model.get_weights().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            weights,
            vec![
                "dense/kernel",
                "dense/bias",
                "dense_1/kernel",
                "dense_1/bias"
            ]
        );
    }

    #[test]
    fn incompatible_stack_names_the_layer() {
        let mut model = Sequential::new([28, 28]).add(Dense::new(10));
        let error = model
            .compile(Sgd::default(), Loss::MeanSquaredError, [])
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("dense") && message.contains("[28, 28]"),
            "{message}"
        );
    }

    #[test]
    fn oversized_input_shape_rejected() {
        // The axes multiply past usize::MAX, which Flatten's build would overflow on.
        let mut model = Sequential::new([1 << 32, 1 << 32])
            .add(Flatten::new())
            .add(Dense::new(1));
        let error = model.build().unwrap_err();
        assert!(
            matches!(
                error,
                TrainError::InvalidArgument {
                    name: "input_shape",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(!model.built);
    }

    #[test]
    fn same_seed_same_initial_weights() {
        let build = |seed| {
            let mut model = Sequential::new([4]).seed(seed).add(Dense::new(3));
            model.build().unwrap();
            model.get_weights()
        };
        assert_eq!(build(5), build(5));
        assert_ne!(build(5), build(6));
    }

    #[test]
    fn convolution_takes_following_pooling() {
        use grit_nn::{Conv2D, MaxPooling2D};
        use grit_tensor::Activation;
        use ndarray::IxDyn;
        let mut model = Sequential::new([16, 16, 1])
            .add(Conv2D::new(4, (3, 3)).activation(Activation::Relu))
            .add(MaxPooling2D::new())
            .add(Conv2D::new(4, (3, 3)).activation(Activation::Sigmoid))
            .add(MaxPooling2D::new())
            .add(Conv2D::new(4, (1, 1)))
            .add(MaxPooling2D::new());
        model.build().unwrap();
        // A sigmoid keeps its pooling separate, and the last layer is never taken.
        assert_eq!(model.fused, [false, true, false, false, false, false]);
        let output = model
            .predict(&Tensor::zeros(IxDyn(&[2, 16, 16, 1])), 2)
            .unwrap();
        assert_eq!(output.shape(), &[2, 1, 1, 4]);
    }

    #[test]
    fn summary_lists_shapes_and_counts() {
        let mut model = Sequential::new([784])
            .add(Dense::new(128))
            .add(Dense::new(10));
        model.build().unwrap();
        let summary = model.summary();
        assert!(summary.contains("dense (Dense)"), "{summary}");
        assert!(summary.contains("(None, 128)"), "{summary}");
        assert!(summary.contains("100480"), "{summary}");
        assert!(summary.contains("Total params: 101770"), "{summary}");
    }
}
