//! The [`Layer`] trait and the registry that rebuilds layers from their configs.

use std::fmt::Debug;

use grit_tensor::{Activation, ParamMut, Rng, Tensor};

use crate::layers::{
    ActivationLayer, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
    GlobalAveragePooling2D, MaxPooling2D, Reshape,
};
use crate::{NnError, Result};

/// A layer of a sequential model.
///
/// The life of a layer: [`Layer::build`] once with the per-sample input shape (weights are
/// created there), then for each batch [`Layer::forward`] and, in training,
/// [`Layer::backward`] with the gradient of the loss with respect to the output. Tensors
/// always carry the batch as their first axis.
pub trait Layer: Debug + Send {
    /// Returns Keras's class name (`"Dense"`, `"Flatten"`, ...).
    fn class_name(&self) -> &'static str;

    /// Returns the layer's name, unique within its model (`"dense"`, `"dense_1"`, ...).
    fn name(&self) -> &str;

    /// Sets the layer's name; the model calls this for layers that have none.
    fn set_name(&mut self, name: String);

    /// Creates the weights for a per-sample `input_shape` and returns the per-sample output
    /// shape.
    ///
    /// # Errors
    /// [`NnError::IncompatibleShape`] when the layer cannot take that shape, and
    /// [`NnError::InvalidParameter`] for an invalid setting.
    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<Vec<usize>>;

    /// Computes the output for a batch, keeping what [`Layer::backward`] needs when
    /// `training` is set. `rng` supplies randomness to layers that use it (dropout).
    ///
    /// # Panics
    /// Panics when the input's per-sample shape differs from the one given to
    /// [`Layer::build`].
    fn forward(&mut self, input: &Tensor, training: bool, rng: &mut Rng) -> Tensor;

    /// Computes [`Layer::forward`] for an input the caller gives away, as the model does for
    /// every layer. A layer that keeps its input for the backward pass (Dense, Conv2D) keeps
    /// this one instead of a copy, and a reshaping layer (Flatten, Reshape) returns it with a
    /// new shape instead of copying it. The result is the same as `forward`'s.
    fn forward_owned(&mut self, input: Tensor, training: bool, rng: &mut Rng) -> Tensor {
        self.forward(&input, training, rng)
    }

    /// Stores the parameter gradients for the last training forward pass and returns the
    /// gradient with respect to its input.
    ///
    /// # Panics
    /// Panics when called without a training forward pass before it, or when the gradient's
    /// shape differs from the last output's.
    fn backward(&mut self, grad_output: &Tensor) -> Tensor;

    /// Tells the layer whether [`Layer::backward`] must compute the input gradient. The
    /// model turns it off for the first layer with trainable weights, whose input gradient
    /// nothing uses; such a layer may then return an empty tensor from the backward pass.
    fn set_input_gradient_needed(&mut self, needed: bool) {
        let _ = needed;
    }

    /// Offers this layer the work of `next`, the layer after it, and returns whether it
    /// takes it. A layer that takes it returns `next`'s output from its forward pass and
    /// takes the gradient with respect to `next`'s output in its backward pass, with results
    /// bit-identical to the two layers', so the model skips `next` in both passes. The model
    /// offers each layer its successor after building, and [`Layer::build`] undoes it.
    ///
    /// [`Conv2D`] with ReLU or no activation takes a following [`MaxPooling2D`] whose windows
    /// do not overlap: it pools each block of images while the block's output is still in
    /// cache.
    fn fuse_next(&mut self, next: &dyn Layer) -> bool {
        let _ = next;
        false
    }

    /// Returns every weight with its name, trainable or not, in a fixed order.
    fn weights(&self) -> Vec<(&'static str, &Tensor)> {
        Vec::new()
    }

    /// Returns every weight with its name for replacing values, in the order of
    /// [`Layer::weights`].
    fn weights_mut(&mut self) -> Vec<(&'static str, &mut Tensor)> {
        Vec::new()
    }

    /// Returns the trainable parameters paired with their last gradients.
    fn trainable_params(&mut self) -> Vec<ParamMut<'_>> {
        Vec::new()
    }

    /// Returns the number of trainable values.
    fn trainable_count(&self) -> usize {
        self.weights().iter().map(|(_, w)| w.len()).sum()
    }

    /// Returns the layer's settings as Keras-style JSON: `{"class_name": ..., "config": ...}`.
    fn config(&self) -> serde_json::Value;

    /// Returns the activation this layer applies last, when it is one that a cross-entropy
    /// loss can fuse with (softmax or sigmoid).
    fn output_activation(&self) -> Option<Activation> {
        None
    }

    /// Returns the input of the final activation from the last forward pass (the logits),
    /// when [`Layer::output_activation`] is set.
    fn logits(&self) -> Option<&Tensor> {
        None
    }

    /// Like [`Layer::backward`], but starting from the gradient with respect to the input of
    /// the final activation, which a fused cross-entropy loss computes directly.
    ///
    /// # Panics
    /// Panics on layers without a fusable output activation.
    fn backward_from_logits(&mut self, grad_logits: &Tensor) -> Tensor {
        let _ = grad_logits;
        panic!("layer `{}` has no fusable output activation", self.name())
    }
}

/// The largest number of values in one weight or one sample's activation that building
/// accepts: 2^31, which is 8 GiB of f32. A config asking for more, such as a `Dense` layer of
/// 10^12 units, is rejected with an error instead of an attempt to allocate.
// NOTE: this limit rejects absurd configs. It does not check the memory available.
pub const MAX_TENSOR_VALUES: usize = 1 << 31;

/// Checks that a tensor of `shape` has at most [`MAX_TENSOR_VALUES`] values, and returns
/// [`NnError::IncompatibleShape`] naming `what` and the shape otherwise.
pub(crate) fn check_tensor_size(
    layer: &str,
    input_shape: &[usize],
    what: &str,
    shape: &[usize],
) -> Result<()> {
    let values = shape
        .iter()
        .try_fold(1usize, |product, &axis| product.checked_mul(axis));
    if values.is_some_and(|values| values <= MAX_TENSOR_VALUES) {
        return Ok(());
    }
    Err(NnError::IncompatibleShape {
        layer: layer.to_string(),
        input_shape: input_shape.to_vec(),
        reason: format!(
            "its {what} of shape {shape:?} would have more than {MAX_TENSOR_VALUES} values, \
             the limit for one tensor"
        ),
    })
}

/// Rebuilds an unbuilt layer from the JSON that [`Layer::config`] returned.
///
/// # Errors
/// [`NnError::InvalidConfig`] for an unknown class name or malformed settings.
pub fn layer_from_config(value: &serde_json::Value) -> Result<Box<dyn Layer>> {
    let class_name = value
        .get("class_name")
        .and_then(|v| v.as_str())
        .ok_or_else(|| NnError::InvalidConfig(format!("missing `class_name` in {value}")))?;
    let config = value
        .get("config")
        .cloned()
        .ok_or_else(|| NnError::InvalidConfig(format!("missing `config` for `{class_name}`")))?;
    match class_name {
        "Dense" => rebuild(class_name, config, Dense::from_config),
        "Flatten" => rebuild(class_name, config, Flatten::from_config),
        "Conv2D" => rebuild(class_name, config, Conv2D::from_config),
        "MaxPooling2D" => rebuild(class_name, config, MaxPooling2D::from_config),
        "AveragePooling2D" => rebuild(class_name, config, AveragePooling2D::from_config),
        "GlobalAveragePooling2D" => {
            rebuild(class_name, config, GlobalAveragePooling2D::from_config)
        }
        "Dropout" => rebuild(class_name, config, Dropout::from_config),
        "BatchNormalization" => rebuild(class_name, config, BatchNormalization::from_config),
        "Reshape" => rebuild(class_name, config, Reshape::from_config),
        "Activation" => rebuild(class_name, config, ActivationLayer::from_config),
        other => Err(NnError::InvalidConfig(format!(
            "unknown layer class `{other}`"
        ))),
    }
}

/// Deserializes the `config` part of a layer's JSON into the layer's settings type and
/// creates the layer from them with `from_config`.
fn rebuild<Settings, L>(
    class_name: &str,
    config: serde_json::Value,
    from_config: fn(Settings) -> L,
) -> Result<Box<dyn Layer>>
where
    Settings: serde::de::DeserializeOwned,
    L: Layer + 'static,
{
    let settings = serde_json::from_value(config)
        .map_err(|error| NnError::InvalidConfig(format!("`{class_name}`: {error}")))?;
    Ok(Box::new(from_config(settings)))
}
