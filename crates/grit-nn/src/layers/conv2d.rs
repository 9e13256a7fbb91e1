use grit_tensor::activation;
use grit_tensor::ops::gemm_on_this_thread;
use grit_tensor::parallel::{self, block_len};
use grit_tensor::rayon::prelude::*;
use grit_tensor::{Activation, Initializer, ParamMut, Rng, Tensor};
use multiversion::multiversion;
use ndarray::{ArrayView2, ArrayViewMut2, IxDyn};
use serde::{Deserialize, Serialize};
use serde_json::json;

use std::cell::RefCell;

use super::buffer::{copy_into_buffer, reshape_buffer};
use super::flatten::standard_layout;
use super::fused_pool::FusedPool;
use super::label;
use super::pooling::Pooling2DConfig;
use super::spatial::{AxisWindows, Padding, Span};
use super::winograd::{self, TilePlan, TileSize};
use crate::layer::check_tensor_size;
use crate::{Layer, NnError, Result};

thread_local! {
    /// Each thread's patch matrix (im2col) for the block of images it works on, one row
    /// per output position and one column per kernel entry (kernel row, kernel column,
    /// input channel), which matches the kernel's row-major layout. Stored column-major.
    static PATCHES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Each thread's gradient with respect to `PATCHES`, stored row-major.
    static PATCH_GRADS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Each thread's buffers for the Winograd path.
    static TILES: RefCell<TileBuffers> = RefCell::new(TileBuffers::default());
    /// Each thread's convolution output (forward pass) or its gradient (backward pass) for
    /// its block of images, when the layer pools its own output.
    static BLOCK_OUTPUT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// One thread's buffers of transformed tiles for a block of images, in the layouts that
/// the `winograd` module documents.
#[derive(Debug, Default)]
struct TileBuffers {
    /// The transformed input tiles (`Bᵀ d B`).
    input: Vec<f32>,
    /// The products with the transformed kernel in the forward pass, and the transformed
    /// output gradient (`A dy Aᵀ`) in the backward pass.
    output: Vec<f32>,
    /// The transformed input gradient.
    input_grad: Vec<f32>,
}

/// Convolutions with fewer input channels than this use im2col even where Winograd's
/// minimal filtering applies, because the forward pass's products per tile position would sum over only
/// that many channels.
///
/// NOTE: 8 is an estimate. Only the convnet's two convolutions were measured, with 1 input
/// channel (im2col) and 32. With 32, F(4×4, 3×3) took the forward pass from 4.3 to 2.5 ms
/// and the backward pass from 7.3 to 4.6 ms per batch of 128 on two threads.
const WINOGRAD_MIN_CHANNELS: usize = 8;

/// The largest magnitude of an input, weight or output gradient that the Winograd path
/// takes: 2³², about 4.3 · 10⁹. A product of two such values is at most 2⁶⁴. The
/// transforms of F(4×4, 3×3) scale it by at most 100 (input), 1 (kernel) and 361 (output),
/// so the sums over channels and tiles stay far below f32's largest value, about 3.4 · 10³⁸.
/// Larger values come only from training that diverges.
const WINOGRAD_MAX_MAGNITUDE: f32 = 4_294_967_296.0;

/// Returns whether every value is finite and at most [`WINOGRAD_MAX_MAGNITUDE`] in magnitude.
fn winograd_safe(values: &[f32]) -> bool {
    // Each chunk is tested without stopping early, which compiles to vector comparisons.
    // `Iterator::all` stops at the first failure, so it tested one value at a time.
    values.par_chunks(block_len(values.len())).all(|part| {
        part.chunks(1024).all(|chunk| {
            chunk
                .iter()
                .fold(true, |safe, v| safe & (v.abs() <= WINOGRAD_MAX_MAGNITUDE))
        })
    })
}

/// The size of the transformed tiles one block of images aims at on the Winograd path.
const WINOGRAD_BLOCK_BYTES: usize = 2 * 1024 * 1024;

/// The size of the patch matrix one block of images aims at: small enough that it is
/// still in a core's L2 cache when the GEMM reads it back.
const BLOCK_BYTES: usize = 512 * 1024;

/// The bias gradient adds this many rows in f32 before carrying the sum into f64.
const BIAS_ROWS_PER_F64_CARRY: usize = 64;

/// A batch is cut into at least this many blocks when it has that many images, so that the
/// threads get even shares.
const MIN_BLOCKS: usize = 8;

/// A 2-D convolution over channels-last images:
/// `output = activation(correlate(input, kernel) + bias)`.
///
/// As in Keras, the "convolution" is a cross-correlation: the kernel is not flipped.
///
/// # Shapes
/// - input: `(batch, height, width, channels)`
/// - kernel: `(kernel_height, kernel_width, channels, filters)`, Keras's layout; bias:
///   `(filters,)`
/// - output: `(batch, out_height, out_width, filters)`, where each output size follows
///   [`Padding`]: `floor((n - k) / s) + 1` for valid padding and `ceil(n / s)` for same
///
/// Defaults as Keras: strides `(1, 1)`, valid padding, linear activation, a bias,
/// Glorot-uniform kernel (fans `kh · kw · channels` and `kh · kw · filters`), zero bias.
///
/// The forward pass copies every input patch into one column of a matrix (im2col) and
/// multiplies that matrix by the kernel (GEMM). The backward pass uses two GEMMs (kernel
/// gradient and patch gradient) and adds the patch gradients back onto the image (col2im).
/// Both passes work on blocks of a few images, each block on one thread from copy to
/// product while its patches are still in the core's cache. The blocks depend only on
/// the batch and layer sizes, never on the number of threads, and the blocks' kernel
/// gradients are added in block order, so results are the same on any number of threads.
/// A training pass keeps its input rather than the patch matrix, which is kernel height ×
/// kernel width times larger, and the backward pass copies each block's patches again.
///
/// A 3 × 3 kernel with stride 1 over at least 8 input channels takes Winograd's minimal
/// filtering F(4×4, 3×3) instead, in the forward pass and both gradients. It needs 36
/// multiply-adds for every 4 × 4 outputs where im2col needs 144. Where partial tiles at the
/// edges would make it compute more products than F(2×2, 3×3), the layer takes that one. Its results are the same on
/// any number of threads, but they round differently from im2col's. A pass whose input,
/// weights or output gradient holds an infinity, a NaN or a magnitude over 2³² takes the
/// im2col path, so such values spread exactly as in a direct convolution.
///
/// In a model, a Conv2D with ReLU or no activation computes the [`MaxPooling2D`] that
/// follows it when the pooling windows do not overlap (see [`Layer::fuse_next`]). It pools each block of images while the block's
/// output is in cache and keeps the winners' positions, from which the backward pass
/// rebuilds each block's gradient. The results are bit-identical to the two layers'.
///
/// [`MaxPooling2D`]: super::MaxPooling2D
///
/// NOTE: Winograd's error grows with the largest value in each tile of inputs, not with
/// each output's own terms. For inputs in [-1, 1], outputs and gradients stayed within about
/// 6e-6 of each tensor's largest value (up to 2e-4 of `max(1, |value|)` for kernel
/// gradients summed over 33 images), against about 5e-7 for im2col. With one input 1000
/// times larger than its neighbours, the outputs next to it were off by 1e-4 of their
/// value, where im2col stays at 5e-7.
///
/// ```
/// use grit_nn::{Conv2D, Layer, Padding};
/// use grit_tensor::{Activation, Rng};
///
/// let mut layer = Conv2D::new(8, (3, 3))
///     .strides((2, 2))
///     .padding(Padding::Same)
///     .activation(Activation::Relu);
/// assert_eq!(layer.build(&[28, 28, 1], &mut Rng::new(0)).unwrap(), vec![14, 14, 8]);
/// assert_eq!(layer.weights()[0].1.shape(), &[3, 3, 1, 8]);
/// ```
#[derive(Debug, Clone)]
pub struct Conv2D {
    config: Conv2DConfig,
    kernel: Tensor,
    bias: Tensor,
    kernel_grad: Tensor,
    bias_grad: Tensor,
    geometry: Geometry,
    /// The input of the last training pass. The backward pass copies each block's patches
    /// from it again instead of keeping the patch matrix, which is kernel height × kernel
    /// width times larger.
    input: Tensor,
    /// The kernel gradient of each block of images, added up in block order.
    kernel_grad_blocks: Vec<f32>,
    /// The bias gradient of each block of images, summed in f64.
    bias_grad_blocks: Vec<f64>,
    /// The batch size of the last forward pass when it was a training pass, and `None`
    /// after an inference pass.
    training_batch: Option<usize>,
    /// The pre-activation output of the last training pass (kept for non-linear activations
    /// other than ReLU).
    logits: Tensor,
    /// The output of the last training pass (kept for non-linear activations other than
    /// ReLU).
    output: Tensor,
    /// For ReLU, whether each output of the last training pass was positive: all that the
    /// backward pass needs, in a quarter of the output's memory.
    relu_mask: Vec<bool>,
    /// The gradient with respect to `logits`.
    grad_logits: Tensor,
    /// Whether the backward pass computes the input gradient (off for a model's first
    /// trainable layer, where it would cost one GEMM and a col2im for nothing).
    input_gradient_needed: bool,
    /// The tile placement when the layer uses Winograd's minimal filtering: a 3 × 3 kernel, stride
    /// 1 and at least [`WINOGRAD_MIN_CHANNELS`] input channels.
    winograd: Option<TilePlan>,
    /// The Winograd-transformed kernel (`[ξ][channel][filter]`) of the last forward pass,
    /// which the backward pass uses for the input gradient. The im2col path reads the kernel
    /// at backward time instead, which differs only if the weights change in between.
    transformed_kernel: Vec<f32>,
    /// The Winograd-transformed kernel gradient, summed over the blocks.
    transformed_kernel_grad: Vec<f32>,
    /// `transformed_kernel` with each position's matrix transposed, for the input gradient.
    transposed_kernel: Vec<f32>,
    /// Whether the last forward pass took the Winograd path.
    winograd_pass: bool,
    /// The max pooling of the next layer, when the layer computes it (see
    /// [`Layer::fuse_next`]).
    pool: Option<FusedPool>,
    /// For each pooled output of the last training pass, the position of its window's
    /// winner, as `FusedPool::pool` writes it.
    winners: Vec<u8>,
}

/// The settings of a [`Conv2D`] layer, as saved in a model config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv2DConfig {
    /// The layer's name; the model assigns one when empty.
    #[serde(default)]
    pub name: String,
    /// Number of output channels.
    pub filters: usize,
    /// Kernel `(height, width)`.
    pub kernel_size: (usize, usize),
    /// Step between windows, `(rows, columns)`.
    pub strides: (usize, usize),
    /// Padding of the input.
    pub padding: Padding,
    /// Activation applied to the convolution plus bias.
    pub activation: Activation,
    /// Whether the layer adds a bias.
    pub use_bias: bool,
    /// The initializer of the kernel.
    pub kernel_initializer: Initializer,
    /// The initializer of the bias.
    pub bias_initializer: Initializer,
}

/// The window placement fixed by [`Layer::build`].
#[derive(Debug, Clone, Default)]
struct Geometry {
    rows: AxisWindows,
    cols: AxisWindows,
    channels: usize,
    kernel: (usize, usize),
    strides: (usize, usize),
}

impl Geometry {
    fn image_len(&self) -> usize {
        self.rows.input * self.cols.input * self.channels
    }

    /// Returns the number of values in one patch (one im2col row).
    fn patch_len(&self) -> usize {
        self.kernel.0 * self.kernel.1 * self.channels
    }

    fn positions_per_image(&self) -> usize {
        self.rows.output() * self.cols.output()
    }

    fn input_shape(&self, batch: usize) -> [usize; 4] {
        [batch, self.rows.input, self.cols.input, self.channels]
    }
}

impl Conv2D {
    /// Creates a convolution with `filters` output channels, a `(height, width)` kernel and
    /// Keras's defaults.
    pub fn new(filters: usize, kernel_size: (usize, usize)) -> Self {
        Conv2D::from_config(Conv2DConfig {
            name: String::new(),
            filters,
            kernel_size,
            strides: (1, 1),
            padding: Padding::Valid,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
        })
    }

    /// Creates the layer from its settings; weights are created by [`Layer::build`].
    pub fn from_config(config: Conv2DConfig) -> Self {
        Conv2D {
            config,
            kernel: Tensor::zeros(IxDyn(&[0, 0, 0, 0])),
            bias: Tensor::zeros(IxDyn(&[0])),
            kernel_grad: Tensor::zeros(IxDyn(&[0, 0, 0, 0])),
            bias_grad: Tensor::zeros(IxDyn(&[0])),
            geometry: Geometry::default(),
            input: Tensor::zeros(IxDyn(&[0])),
            kernel_grad_blocks: Vec::new(),
            bias_grad_blocks: Vec::new(),
            training_batch: None,
            logits: Tensor::zeros(IxDyn(&[0])),
            output: Tensor::zeros(IxDyn(&[0])),
            relu_mask: Vec::new(),
            grad_logits: Tensor::zeros(IxDyn(&[0])),
            input_gradient_needed: true,
            winograd: None,
            transformed_kernel: Vec::new(),
            transformed_kernel_grad: Vec::new(),
            transposed_kernel: Vec::new(),
            winograd_pass: false,
            pool: None,
            winners: Vec::new(),
        }
    }

    /// Sets the step between windows, `(rows, columns)`.
    pub fn strides(mut self, strides: (usize, usize)) -> Self {
        self.config.strides = strides;
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: Padding) -> Self {
        self.config.padding = padding;
        self
    }

    /// Sets the activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.config.activation = activation;
        self
    }

    /// Turns the bias on or off.
    pub fn use_bias(mut self, use_bias: bool) -> Self {
        self.config.use_bias = use_bias;
        self
    }

    /// Sets the kernel initializer.
    pub fn kernel_initializer(mut self, initializer: Initializer) -> Self {
        self.config.kernel_initializer = initializer;
        self
    }

    /// Sets the bias initializer.
    pub fn bias_initializer(mut self, initializer: Initializer) -> Self {
        self.config.bias_initializer = initializer;
        self
    }

    /// Sets the layer's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Returns the settings.
    pub fn settings(&self) -> &Conv2DConfig {
        &self.config
    }

    fn validate_settings(&self) -> Result<()> {
        let invalid = |name: &'static str, value: String| NnError::InvalidParameter {
            layer: label(&self.config.name, "Conv2D").to_string(),
            name,
            value,
            expected: "at least 1",
        };
        let config = &self.config;
        if config.filters == 0 {
            return Err(invalid("filters", "0".into()));
        }
        if config.kernel_size.0 == 0 || config.kernel_size.1 == 0 {
            return Err(invalid("kernel_size", format!("{:?}", config.kernel_size)));
        }
        if config.strides.0 == 0 || config.strides.1 == 0 {
            return Err(invalid("strides", format!("{:?}", config.strides)));
        }
        Ok(())
    }

    /// Returns how many images one block contains for a batch of `batch` images, on the
    /// Winograd path when `plan` is set and on the im2col path otherwise.
    fn images_per_block(&self, batch: usize, plan: Option<&TilePlan>) -> usize {
        let (bytes_per_image, block_bytes) = match plan {
            // The backward pass keeps the input tiles, the gradient tiles and the input
            // gradient tiles at once.
            Some(plan) => (
                plan.tiles_per_image()
                    * plan.positions()
                    * (2 * plan.channels + plan.filters)
                    * size_of::<f32>(),
                WINOGRAD_BLOCK_BYTES,
            ),
            None => (
                self.geometry.positions_per_image() * self.geometry.patch_len() * size_of::<f32>(),
                BLOCK_BYTES,
            ),
        };
        (block_bytes / bytes_per_image.max(1)).clamp(1, batch.div_ceil(MIN_BLOCKS).max(1))
    }

    /// Returns the number of values in one block's kernel gradient: the kernel's, or the
    /// transformed kernel's on the Winograd path.
    fn kernel_grad_block_len(&self, plan: Option<&TilePlan>) -> usize {
        match plan {
            Some(plan) => plan.positions() * plan.channels * plan.filters,
            None => self.geometry.patch_len() * self.config.filters,
        }
    }

    /// Applies the activations other than ReLU to `output` in place, keeping the logits
    /// and outputs that their backward pass needs.
    fn finish_activation(&mut self, output: &mut Tensor, training: bool) {
        match self.config.activation {
            Activation::Linear => {}
            // ReLU was applied block by block, and its mask kept there.
            Activation::Relu => {}
            activation => {
                if training {
                    copy_into_buffer(&mut self.logits, output);
                }
                activation.apply_in_place(output);
                if training {
                    copy_into_buffer(&mut self.output, output);
                }
            }
        }
    }

    /// Computes the parameter gradients and the input gradient from `grad`. `grad` is the
    /// gradient with respect to the pre-activation output, or with respect to the output
    /// when `relu` is set, in which case the ReLU mask of the forward pass is applied first.
    fn backward_logits(&mut self, grad: &Tensor, relu: bool) -> Tensor {
        let name = label(&self.config.name, "Conv2D");
        let batch = self.training_batch.unwrap_or_else(|| {
            panic!("conv2d `{name}` backward: the last forward pass was not a training pass")
        });
        let filters = self.config.filters;
        let expected = match &self.pool {
            Some(pool) => pool.output_shape(batch),
            None => [
                batch,
                self.geometry.rows.output(),
                self.geometry.cols.output(),
                filters,
            ],
        };
        assert_eq!(
            grad.shape(),
            expected,
            "conv2d `{name}` backward: gradient shape differs from the output's"
        );
        let grad = grad.as_standard_layout();
        let grad = grad.as_slice().expect("a standard-layout gradient");
        if batch == 0 {
            self.kernel_grad.fill(0.0);
            self.bias_grad.fill(0.0);
            return Tensor::zeros(IxDyn(&self.geometry.input_shape(0)));
        }
        // The backward pass takes the forward pass's path unless the gradient could overflow
        // Winograd's transforms.
        let plan = self
            .winograd
            .as_ref()
            .filter(|_| self.winograd_pass && winograd_safe(grad));
        let geometry = &self.geometry;
        let positions = geometry.positions_per_image();
        let patch_len = geometry.patch_len();
        let kernel_len = self.kernel_grad_block_len(plan);
        let per_block = self.images_per_block(batch, plan);
        let blocks = batch.div_ceil(per_block);
        let block_rows = per_block * positions;
        let use_bias = self.config.use_bias;
        let input_gradient = self.input_gradient_needed;
        let pool = self.pool.as_ref();
        // A pooling layer's winners already stop the gradients that ReLU stops.
        let relu = relu && pool.is_none();
        let grad_block_len = match pool {
            Some(pool) => per_block * pool.output_len(),
            None => block_rows * filters,
        };

        self.kernel_grad_blocks.resize(blocks * kernel_len, 0.0);
        self.bias_grad_blocks.resize(blocks * filters, 0.0);
        if relu {
            reshape_buffer(&mut self.grad_logits, &expected);
        }
        let mut grad_input = if input_gradient {
            parallel::zeros(&geometry.input_shape(batch))
        } else {
            Tensor::zeros(IxDyn(&[0]))
        };

        // One entry per block: its slices of every buffer, so the blocks can go to threads.
        let masks: &[bool] = if relu { &self.relu_mask } else { &[] };
        let winners: &[u8] = if pool.is_some() { &self.winners } else { &[] };
        let mut masked = self
            .grad_logits
            .as_slice_mut()
            .expect("a contiguous buffer")
            .chunks_mut(grad_block_len);
        let mut grad_images = grad_input
            .as_slice_mut()
            .expect("a new array is contiguous")
            .chunks_mut(per_block * geometry.image_len());
        let mut work = Vec::with_capacity(blocks);
        let image_block = per_block * geometry.image_len();
        for ((((index, images), grad), kernel_grad), bias_grad) in self
            .input
            .as_slice()
            .expect("the kept input is contiguous")
            .chunks(image_block)
            .take(blocks)
            .enumerate()
            .zip(grad.chunks(grad_block_len))
            .zip(self.kernel_grad_blocks.chunks_mut(kernel_len))
            .zip(self.bias_grad_blocks.chunks_mut(filters))
        {
            let start = index * grad_block_len;
            let grad_images = if input_gradient {
                grad_images.next()
            } else {
                None
            };
            work.push(BlockGrad {
                images,
                grad,
                mask: masks.get(start..start + grad.len()).unwrap_or(&[]),
                winners: winners.get(start..start + grad.len()).unwrap_or(&[]),
                masked: if relu { masked.next() } else { None },
                kernel_grad,
                bias_grad,
                grad_images,
            });
        }
        let kernel = self
            .kernel
            .view()
            .into_shape_with_order((patch_len, filters))
            .expect("the kernel is contiguous");
        if let Some(plan) = plan.filter(|_| input_gradient) {
            self.transposed_kernel
                .resize(self.transformed_kernel.len(), 0.0);
            winograd::transpose_kernel(&self.transformed_kernel, &mut self.transposed_kernel, plan);
        }
        let transposed_kernel = &self.transposed_kernel[..];
        // Computes one block's kernel, bias and input gradients from `grad`, the gradient
        // with respect to the block's convolution outputs before the activation.
        let backward_block = |block: BlockParts<'_>, grad: &[f32]| {
            let rows = grad.len() / filters;
            let grad = ArrayView2::from_shape((rows, filters), grad)
                .expect("a block contains whole output rows");
            let mut grad_images = block.grad_images;
            if let Some(plan) = plan {
                TILES.with_borrow_mut(|tiles| {
                    let TileBuffers {
                        input,
                        output,
                        input_grad,
                    } = tiles;
                    let tile_count = block.images.len() / geometry.image_len()
                        * plan.tiles_per_image()
                        * plan.positions();
                    input.resize(tile_count * plan.channels, 0.0);
                    winograd::transform_input(block.images, input, plan);
                    output.resize(tile_count * filters, 0.0);
                    let values = grad.as_slice().expect("a block is contiguous");
                    winograd::transform_output_grad(values, output, plan);
                    winograd::multiply_kernel_grad(input, output, block.kernel_grad, plan);
                    if let Some(grad_images) = grad_images.take() {
                        input_grad.resize(tile_count * plan.channels, 0.0);
                        winograd::multiply_input_grad(output, transposed_kernel, input_grad, plan);
                        winograd::add_input_grad(input_grad, grad_images, plan);
                    }
                });
            } else {
                let mut kernel_grad =
                    ArrayViewMut2::from_shape((patch_len, filters), block.kernel_grad)
                        .expect("one kernel gradient per block");
                PATCHES.with_borrow_mut(|patches| {
                    patches.resize(rows * patch_len, 0.0);
                    im2col(block.images, patches, geometry);
                    let patches = ArrayView2::from_shape((patch_len, rows), &patches[..])
                        .expect("a block contains one patch per output position");
                    gemm_on_this_thread(1.0, &patches, &grad, 0.0, &mut kernel_grad);
                });
            }
            if use_bias {
                // Rows are added in f32, which vectorises, and carried into f64 every
                // `BIAS_ROWS_PER_F64_CARRY` rows, so long sums keep their precision.
                block.bias_grad.fill(0.0);
                let mut partial = vec![0.0f32; filters];
                let values = grad.as_slice().expect("a block is contiguous");
                for rows in values.chunks(filters * BIAS_ROWS_PER_F64_CARRY) {
                    partial.fill(0.0);
                    add_rows(&mut partial, rows);
                    for (sum, &p) in block.bias_grad.iter_mut().zip(&partial) {
                        *sum += p as f64;
                    }
                }
            }
            if let Some(grad_images) = grad_images {
                PATCH_GRADS.with_borrow_mut(|patch_grads| {
                    patch_grads.resize(rows * patch_len, 0.0);
                    let mut view =
                        ArrayViewMut2::from_shape((rows, patch_len), &mut patch_grads[..])
                            .expect("a block contains one patch gradient per output position");
                    gemm_on_this_thread(1.0, &grad, &kernel.t(), 0.0, &mut view);
                    col2im(patch_grads, grad_images, geometry);
                });
            }
        };
        work.into_par_iter().for_each(|block| {
            let BlockGrad {
                images,
                grad,
                mask,
                winners,
                masked,
                kernel_grad,
                bias_grad,
                grad_images,
            } = block;
            let parts = BlockParts {
                images,
                kernel_grad,
                bias_grad,
                grad_images,
            };
            if let Some(pool) = pool {
                BLOCK_OUTPUT.with_borrow_mut(|values| {
                    values.resize(
                        images.len() / geometry.image_len() * positions * filters,
                        0.0,
                    );
                    pool.unpool(grad, winners, values);
                    backward_block(parts, values);
                });
            } else if let Some(masked) = masked {
                for ((m, &g), &keep) in masked.iter_mut().zip(grad).zip(mask) {
                    *m = if keep { g } else { 0.0 };
                }
                backward_block(parts, masked);
            } else {
                backward_block(parts, grad);
            }
        });

        // Add the blocks' gradients in block order, whatever thread computed them.
        let partials = &self.kernel_grad_blocks;
        let kernel_grad = if plan.is_some() {
            self.transformed_kernel_grad.resize(kernel_len, 0.0);
            &mut self.transformed_kernel_grad[..]
        } else {
            self.kernel_grad
                .as_slice_mut()
                .expect("a contiguous kernel")
        };
        let part = block_len(kernel_len);
        kernel_grad
            .par_chunks_mut(part)
            .enumerate()
            .for_each(|(index, out)| {
                let range = index * part..index * part + out.len();
                out.copy_from_slice(&partials[range.clone()]);
                for block in partials.chunks_exact(kernel_len).skip(1) {
                    add_rows(out, &block[range.clone()]);
                }
            });
        if let Some(plan) = plan {
            winograd::kernel_grad_from_transformed(
                &self.transformed_kernel_grad,
                self.kernel_grad
                    .as_slice_mut()
                    .expect("a contiguous kernel"),
                plan,
            );
        }
        if use_bias {
            let bias_grad = self.bias_grad.as_slice_mut().expect("a contiguous bias");
            for (filter, b) in bias_grad.iter_mut().enumerate() {
                let sum: f64 = self
                    .bias_grad_blocks
                    .chunks_exact(filters)
                    .map(|block| block[filter])
                    .sum();
                *b = sum as f32;
            }
        }
        if input_gradient {
            grad_input
        } else {
            Tensor::zeros(IxDyn(&[0]))
        }
    }
}

/// Adds every row of `rows` (rows of `sums.len()` values) to `sums`.
///
/// Each sum takes its row's values in order, so the result has the bits of a plain loop.
/// Compiled for AVX-512 and AVX2 as well, because the x86-64 baseline target has only SSE2.
/// The backward pass sums each block's bias gradient and the blocks' kernel gradients this
/// way. With SSE2 code these two sums took about 3% of the MNIST convnet's training step in
/// a `perf` profile on a 2-core Xeon.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2"))]
fn add_rows(sums: &mut [f32], rows: &[f32]) {
    if sums.is_empty() {
        return;
    }
    debug_assert_eq!(rows.len() % sums.len(), 0, "add_rows takes whole rows");
    for row in rows.chunks_exact(sums.len()) {
        for (sum, &value) in sums.iter_mut().zip(row) {
            *sum += value;
        }
    }
}

/// Splits `values` into `blocks` slices of `len` values (the last one shorter), or returns
/// `blocks` empty slices when `values` is empty.
fn block_slices<T>(values: &mut [T], len: usize, blocks: usize) -> Vec<&mut [T]> {
    if values.is_empty() {
        (0..blocks).map(|_| Default::default()).collect()
    } else {
        values.chunks_mut(len).collect()
    }
}

/// One block of images in the backward pass: its slices of the layer's buffers.
struct BlockGrad<'a> {
    /// The block's images, as the forward pass saw them.
    images: &'a [f32],
    /// The gradient with respect to the block's outputs (or logits), pooled outputs when
    /// the layer pools.
    grad: &'a [f32],
    /// The block's ReLU mask, whether each output was positive. It is empty without ReLU
    /// and when the layer pools.
    mask: &'a [bool],
    /// The block's pooling winners, when the layer pools.
    winners: &'a [u8],
    /// The buffer for the ReLU-masked gradient, when there is a ReLU and no pooling.
    masked: Option<&'a mut [f32]>,
    kernel_grad: &'a mut [f32],
    bias_grad: &'a mut [f64],
    /// The block's part of the input gradient, when the input gradient is needed.
    grad_images: Option<&'a mut [f32]>,
}

/// The parts of a [`BlockGrad`] that receive its gradients.
struct BlockParts<'a> {
    images: &'a [f32],
    kernel_grad: &'a mut [f32],
    bias_grad: &'a mut [f64],
    grad_images: Option<&'a mut [f32]>,
}

/// Copies every input patch into one column of `columns`, writing zeros for padding. The
/// patch matrix is stored column-major: one row of `columns` per kernel entry (kernel row,
/// kernel column, input channel) and one column per output position.
///
/// Column-major is the layout whose columns matrixmultiply packs with whole-column copies.
/// It packs a row-major patch matrix one value at a time, which cost as much as the product
/// itself for single-channel images.
fn im2col(input: &[f32], columns: &mut [f32], geometry: &Geometry) {
    let channels = geometry.channels;
    let width = geometry.cols.input;
    let out_width = geometry.cols.output();
    let positions = geometry.positions_per_image();
    let row_len = columns.len() / geometry.patch_len();
    for (entry, row) in columns.chunks_exact_mut(row_len).enumerate() {
        let kernel_row = entry / (geometry.kernel.1 * channels);
        let kernel_col = entry / channels % geometry.kernel.1;
        let channel = entry % channels;
        // The output columns whose window has `kernel_col` inside the input form one range,
        // because windows move right with the output column.
        let inside = |span: &Span| span.input_index(kernel_col).is_some();
        let first = geometry.cols.spans.iter().position(inside);
        let count = geometry
            .cols
            .spans
            .iter()
            .filter(|span| inside(span))
            .count();
        let step = geometry.strides.1;
        for (image, out) in input
            .chunks_exact(geometry.image_len())
            .zip(row.chunks_exact_mut(positions))
        {
            for (row_span, out) in geometry
                .rows
                .spans
                .iter()
                .zip(out.chunks_exact_mut(out_width))
            {
                let (Some(input_row), Some(first)) = (row_span.input_index(kernel_row), first)
                else {
                    out.fill(0.0);
                    continue;
                };
                let source_col = geometry.cols.spans[first]
                    .input_index(kernel_col)
                    .expect("the first inside window");
                let start = (input_row * width + source_col) * channels + channel;
                out[..first].fill(0.0);
                let inside = &mut out[first..first + count];
                if step == 1 && channels == 1 {
                    inside.copy_from_slice(&image[start..start + count]);
                } else {
                    for (value, &source) in inside
                        .iter_mut()
                        .zip(image[start..].iter().step_by(step * channels))
                    {
                        *value = source;
                    }
                }
                out[first + count..].fill(0.0);
            }
        }
    }
}

/// Adds every row of `grad_columns` back onto the input positions its patch came from; the
/// reverse of [`im2col`]. `grad_input` must start at zero.
fn col2im(grad_columns: &[f32], grad_input: &mut [f32], geometry: &Geometry) {
    let channels = geometry.channels;
    let width = geometry.cols.input;
    let segment_len = geometry.kernel.1 * channels;
    let mut patches = grad_columns.chunks_exact(geometry.patch_len());
    for image in grad_input.chunks_exact_mut(geometry.image_len()) {
        for row_span in &geometry.rows.spans {
            for col_span in &geometry.cols.spans {
                let patch = patches
                    .next()
                    .expect("the columns contain one patch per output position");
                let inside_start = col_span.window_start * channels;
                let inside_end = inside_start + col_span.len * channels;
                for (kernel_row, segment) in patch.chunks_exact(segment_len).enumerate() {
                    let Some(input_row) = row_span.input_index(kernel_row) else {
                        continue;
                    };
                    let target_start = (input_row * width + col_span.input_start) * channels;
                    let target =
                        &mut image[target_start..target_start + (inside_end - inside_start)];
                    for (t, &g) in target.iter_mut().zip(&segment[inside_start..inside_end]) {
                        *t += g;
                    }
                }
            }
        }
    }
}

impl Layer for Conv2D {
    fn class_name(&self) -> &'static str {
        "Conv2D"
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn set_name(&mut self, name: String) {
        self.config.name = name;
    }

    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<Vec<usize>> {
        self.validate_settings()?;
        let incompatible = |reason: String| NnError::IncompatibleShape {
            layer: label(&self.config.name, "Conv2D").to_string(),
            input_shape: input_shape.to_vec(),
            reason,
        };
        let &[height, width, channels] = input_shape else {
            return Err(incompatible(
                "Conv2D takes (height, width, channels) per sample, channels last; \
                 add a Reshape layer for flat or single-channel images"
                    .into(),
            ));
        };
        if height == 0 || width == 0 || channels == 0 {
            return Err(incompatible("the input has an empty axis".into()));
        }

        let Conv2DConfig {
            filters,
            kernel_size,
            strides,
            padding,
            ..
        } = self.config;
        let kernel_shape = [kernel_size.0, kernel_size.1, channels, filters];
        let layer = label(&self.config.name, "Conv2D");
        check_tensor_size(layer, input_shape, "kernel", &kernel_shape)?;
        let rows = AxisWindows::new(height, kernel_size.0, strides.0, padding);
        let cols = AxisWindows::new(width, kernel_size.1, strides.1, padding);
        let (Some(rows), Some(cols)) = (rows, cols) else {
            return Err(incompatible(format!(
                "the kernel {kernel_size:?} is larger than the input's (height, width) \
                 ({height}, {width}) with valid padding; use a smaller kernel or \
                 Padding::Same"
            )));
        };
        let output_shape = vec![rows.output(), cols.output(), filters];
        let winograd_applies =
            kernel_size == (3, 3) && strides == (1, 1) && channels >= WINOGRAD_MIN_CHANNELS;
        self.winograd = winograd_applies.then(|| {
            let plan = |tile_size| TilePlan {
                tile_size,
                height,
                width,
                channels,
                filters,
                out_height: rows.output(),
                out_width: cols.output(),
                pad_top: rows.pad_before,
                pad_left: cols.pad_before,
            };
            // The larger tiles need fewer products unless the partial tiles at the edges
            // waste most of them. On a tie, the smaller tiles win because they round less.
            let (two, four) = (plan(TileSize::Two), plan(TileSize::Four));
            let products = |plan: &TilePlan| plan.positions() * plan.tiles_per_image();
            if products(&four) < products(&two) {
                four
            } else {
                two
            }
        });
        self.geometry = Geometry {
            rows,
            cols,
            channels,
            kernel: kernel_size,
            strides,
        };
        self.pool = None;
        self.winners.clear();

        self.kernel = self.config.kernel_initializer.init(&kernel_shape, rng);
        self.kernel_grad = Tensor::zeros(IxDyn(&kernel_shape));
        if self.config.use_bias {
            self.bias = self.config.bias_initializer.init(&[filters], rng);
            self.bias_grad = Tensor::zeros(IxDyn(&[filters]));
        }
        self.training_batch = None;
        Ok(output_shape)
    }

    fn forward(&mut self, input: &Tensor, training: bool, rng: &mut Rng) -> Tensor {
        // A training pass keeps its input, so a borrowed one is copied.
        self.forward_owned(input.clone(), training, rng)
    }

    fn forward_owned(&mut self, input: Tensor, training: bool, _rng: &mut Rng) -> Tensor {
        let batch = input.shape().first().copied().unwrap_or(0);
        assert_eq!(
            input.shape(),
            self.geometry.input_shape(batch),
            "conv2d `{}`: input shape differs from the built (batch, height, width, channels)",
            label(&self.config.name, "Conv2D")
        );

        let input = standard_layout(input);
        let values = input.as_slice().expect("a standard-layout input");
        // `weights_mut` lets a caller put a kernel of any memory layout in place.
        if !self.kernel.is_standard_layout() {
            self.kernel = self.kernel.as_standard_layout().into_owned();
        }
        if !self.bias.is_standard_layout() {
            self.bias = self.bias.as_standard_layout().into_owned();
        }
        // Winograd's transforms add and scale values before the products, so a huge,
        // infinite or NaN input or weight would come out as NaN or infinity in more places
        // than in a direct convolution. im2col computes such passes instead.
        let kernel_values = self.kernel.as_slice().expect("a contiguous kernel");
        let winograd_pass =
            self.winograd.is_some() && winograd_safe(kernel_values) && winograd_safe(values);
        self.winograd_pass = winograd_pass;
        let plan = self.winograd.as_ref().filter(|_| winograd_pass);
        let per_block = self.images_per_block(batch, plan);
        let geometry = &self.geometry;
        let positions = geometry.positions_per_image();
        let patch_len = geometry.patch_len();
        let filters = self.config.filters;
        let relu = self.config.activation == Activation::Relu;
        let pool = self.pool.as_ref();
        let (mut output, out_len) = match pool {
            Some(pool) => (
                parallel::zeros(&pool.output_shape(batch)),
                pool.output_len(),
            ),
            None => {
                let shape = [
                    batch,
                    geometry.rows.output(),
                    geometry.cols.output(),
                    filters,
                ];
                (parallel::zeros(&shape), positions * filters)
            }
        };
        // The mask is kept for a training pass with ReLU unless the layer pools, which keeps
        // the winners instead. Without them the blocks get empty slices.
        let mask_len = if relu && training && pool.is_none() {
            output.len()
        } else {
            0
        };
        self.relu_mask.resize(mask_len, false);
        let winners_len = if training && pool.is_some() {
            output.len()
        } else {
            0
        };
        self.winners.resize(winners_len, 0);
        let blocks = batch.div_ceil(per_block);
        let masks = block_slices(&mut self.relu_mask, per_block * out_len, blocks);
        let winners = block_slices(&mut self.winners, per_block * out_len, blocks);
        let kernel = self
            .kernel
            .view()
            .into_shape_with_order((patch_len, filters))
            .expect("the kernel is contiguous");
        let bias = self
            .config
            .use_bias
            .then(|| self.bias.as_slice().expect("a contiguous bias"));
        if let Some(plan) = plan {
            self.transformed_kernel
                .resize(plan.positions() * plan.channels * filters, 0.0);
            winograd::transform_kernel(
                self.kernel.as_slice().expect("a contiguous kernel"),
                &mut self.transformed_kernel,
                plan,
            );
        }
        let transformed_kernel = &self.transformed_kernel[..];
        // Computes the convolution of one block of images into `out`, on one thread while the
        // block is in that core's cache. With `finish` set it adds the bias and applies ReLU
        // (with its mask). Winograd's output transform always does.
        let convolve = |images: &[f32], out: &mut [f32], mask: &mut [bool], finish: bool| {
            if let Some(plan) = plan {
                TILES.with_borrow_mut(|tiles| {
                    let TileBuffers { input, output, .. } = tiles;
                    let tile_count = images.len() / geometry.image_len()
                        * plan.tiles_per_image()
                        * plan.positions();
                    input.resize(tile_count * plan.channels, 0.0);
                    winograd::transform_input(images, input, plan);
                    output.resize(tile_count * filters, 0.0);
                    winograd::multiply_forward(input, transformed_kernel, output, plan);
                    winograd::transform_output(output, out, mask, bias, relu, plan);
                });
                return;
            }
            let rows = out.len() / filters;
            let mut z = ArrayViewMut2::from_shape((rows, filters), &mut *out)
                .expect("a block contains whole output rows");
            PATCHES.with_borrow_mut(|patches| {
                patches.resize(rows * patch_len, 0.0);
                im2col(images, patches, geometry);
                let patches = ArrayView2::from_shape((patch_len, rows), &patches[..])
                    .expect("a block contains one patch per output position");
                gemm_on_this_thread(1.0, &patches.t(), &kernel, 0.0, &mut z);
            });
            if !finish {
                return;
            }
            if let Some(bias) = bias {
                for row in out.chunks_exact_mut(filters) {
                    for (value, &b) in row.iter_mut().zip(bias) {
                        *value += b;
                    }
                }
            }
            if relu {
                for value in out.iter_mut() {
                    *value = activation::relu(*value);
                }
                for (keep, &value) in mask.iter_mut().zip(out.iter()) {
                    *keep = value > 0.0;
                }
            }
        };
        // One item per block of images: its input, its output, and its parts of the ReLU
        // mask and of the pooling winners.
        values
            .par_chunks(per_block * geometry.image_len())
            .zip(
                output
                    .as_slice_mut()
                    .expect("a new array is contiguous")
                    .par_chunks_mut(per_block * out_len),
            )
            .zip(masks)
            .zip(winners)
            .for_each(|(((images, out), mask), winners)| match pool {
                // The im2col path leaves the bias and ReLU to the pooling, which applies
                // them to each value as it reads it.
                Some(pool) => BLOCK_OUTPUT.with_borrow_mut(|values| {
                    values.resize(
                        images.len() / geometry.image_len() * positions * filters,
                        0.0,
                    );
                    convolve(images, values, &mut [], plan.is_some());
                    let bias = match (plan, bias) {
                        (None, Some(bias)) => bias,
                        _ => &[],
                    };
                    pool.pool(values, out, winners, bias, relu);
                }),
                None => convolve(images, out, mask, true),
            });
        self.training_batch = training.then_some(batch);
        self.input = if training {
            input
        } else {
            Tensor::zeros(IxDyn(&[0]))
        };
        self.finish_activation(&mut output, training);
        output
    }

    fn backward(&mut self, grad_output: &Tensor) -> Tensor {
        let activation = self.config.activation;
        match activation {
            Activation::Linear => return self.backward_logits(grad_output, false),
            Activation::Relu => return self.backward_logits(grad_output, true),
            _ => {}
        }
        assert_eq!(
            grad_output.shape(),
            self.output.shape(),
            "conv2d `{}` backward: gradient shape differs from the output's",
            label(&self.config.name, "Conv2D")
        );
        let mut grad_logits = std::mem::take(&mut self.grad_logits);
        copy_into_buffer(&mut grad_logits, grad_output);
        activation.backward_in_place(&self.logits, &self.output, &mut grad_logits);
        let grad_input = self.backward_logits(&grad_logits, false);
        self.grad_logits = grad_logits;
        grad_input
    }

    fn set_input_gradient_needed(&mut self, needed: bool) {
        self.input_gradient_needed = needed;
    }

    fn fuse_next(&mut self, next: &dyn Layer) -> bool {
        let activation_fuses = matches!(
            self.config.activation,
            Activation::Relu | Activation::Linear
        );
        if !activation_fuses || next.class_name() != "MaxPooling2D" || self.kernel.is_empty() {
            return false;
        }
        let Ok(config) = Pooling2DConfig::deserialize(&next.config()["config"]) else {
            return false;
        };
        let output_shape = [
            self.geometry.rows.output(),
            self.geometry.cols.output(),
            self.config.filters,
        ];
        match FusedPool::new(&config, &output_shape) {
            Ok(Some(pool)) => {
                self.pool = Some(pool);
                self.training_batch = None;
                true
            }
            _ => false,
        }
    }

    fn weights(&self) -> Vec<(&'static str, &Tensor)> {
        let mut weights = vec![("kernel", &self.kernel)];
        if self.config.use_bias {
            weights.push(("bias", &self.bias));
        }
        weights
    }

    fn weights_mut(&mut self) -> Vec<(&'static str, &mut Tensor)> {
        let mut weights = vec![("kernel", &mut self.kernel)];
        if self.config.use_bias {
            weights.push(("bias", &mut self.bias));
        }
        weights
    }

    fn trainable_params(&mut self) -> Vec<ParamMut<'_>> {
        // Room for the bias too: growing a vector on a pool thread during a training step
        // can take space from the calling thread's heap.
        let mut params = Vec::with_capacity(2);
        params.push(ParamMut {
            value: &mut self.kernel,
            grad: &self.kernel_grad,
        });
        if self.config.use_bias {
            params.push(ParamMut {
                value: &mut self.bias,
                grad: &self.bias_grad,
            });
        }
        params
    }

    fn config(&self) -> serde_json::Value {
        json!({ "class_name": "Conv2D", "config": self.config })
    }

    fn output_activation(&self) -> Option<Activation> {
        match self.config.activation {
            Activation::Softmax | Activation::Sigmoid => Some(self.config.activation),
            _ => None,
        }
    }

    fn logits(&self) -> Option<&Tensor> {
        self.output_activation().map(|_| &self.logits)
    }

    fn backward_from_logits(&mut self, grad_logits: &Tensor) -> Tensor {
        self.backward_logits(grad_logits, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_layer;
    use crate::layer_from_config;

    /// The vectorised row sums round as a plain loop does.
    #[test]
    fn add_rows_matches_plain_sums() {
        let width = 37;
        let rows: Vec<f32> = (0..5 * width)
            .map(|i| ((i * 7919) % 1013) as f32 * 0.013 - 6.5)
            .collect();
        let mut sums: Vec<f32> = (0..width).map(|i| i as f32 * 0.1).collect();
        let mut expected = sums.clone();
        for row in 0..5 {
            for (column, sum) in expected.iter_mut().enumerate() {
                *sum += rows[row * width + column];
            }
        }
        add_rows(&mut sums, &rows);
        assert_eq!(sums, expected);
        add_rows(&mut [], &rows);
    }

    /// Computes a channels-last convolution with nested loops in f64, placing the padding
    /// with Keras's formula, independently of `AxisWindows`.
    fn direct_convolution(
        input: &Tensor,
        kernel: &Tensor,
        bias: &[f32],
        strides: (usize, usize),
        padding: Padding,
    ) -> Tensor {
        let &[batch, height, width, channels] = input.shape() else {
            panic!("4-D input expected");
        };
        let &[kh, kw, _, filters] = kernel.shape() else {
            panic!("4-D kernel expected");
        };
        let out_and_pad = |n: usize, k: usize, s: usize| match padding {
            Padding::Valid => ((n - k) / s + 1, 0usize),
            Padding::Same => {
                let out = n.div_ceil(s);
                let total = ((out - 1) * s + k).saturating_sub(n);
                (out, total / 2)
            }
        };
        let (out_h, pad_top) = out_and_pad(height, kh, strides.0);
        let (out_w, pad_left) = out_and_pad(width, kw, strides.1);
        let mut output = Tensor::zeros(IxDyn(&[batch, out_h, out_w, filters]));
        for b in 0..batch {
            for oh in 0..out_h {
                for ow in 0..out_w {
                    for f in 0..filters {
                        let mut sum = bias[f] as f64;
                        for i in 0..kh {
                            for j in 0..kw {
                                let ih = (oh * strides.0 + i) as isize - pad_top as isize;
                                let iw = (ow * strides.1 + j) as isize - pad_left as isize;
                                if ih < 0 || iw < 0 || ih >= height as isize || iw >= width as isize
                                {
                                    continue;
                                }
                                for c in 0..channels {
                                    sum += input[[b, ih as usize, iw as usize, c]] as f64
                                        * kernel[[i, j, c, f]] as f64;
                                }
                            }
                        }
                        output[[b, oh, ow, f]] = sum as f32;
                    }
                }
            }
        }
        output
    }

    fn random_tensor(shape: &[usize], rng: &mut Rng) -> Tensor {
        Tensor::from_shape_fn(IxDyn(shape), |_| rng.uniform(-1.0, 1.0))
    }

    #[test]
    fn forward_matches_direct_convolution() {
        let cases = [
            // (height, width, channels), kernel, strides
            ((5, 7, 1), (3, 3), (1, 1)),
            ((5, 7, 3), (2, 3), (2, 2)),
            ((5, 7, 3), (3, 3), (2, 1)),
            ((6, 4, 2), (4, 2), (3, 2)),
            ((5, 5, 3), (1, 1), (2, 2)),
            ((4, 4, 1), (4, 4), (1, 1)),
        ];
        let mut rng = Rng::new(3);
        for ((height, width, channels), kernel_size, strides) in cases {
            for padding in [Padding::Valid, Padding::Same] {
                let mut layer = Conv2D::new(2, kernel_size)
                    .strides(strides)
                    .padding(padding)
                    .bias_initializer(Initializer::Constant { value: 0.25 });
                layer.build(&[height, width, channels], &mut rng).unwrap();
                let input = random_tensor(&[2, height, width, channels], &mut rng);
                let output = layer.forward(&input, false, &mut rng);
                let expected = direct_convolution(
                    &input,
                    &layer.kernel,
                    layer.bias.as_slice().unwrap(),
                    strides,
                    padding,
                );
                assert_eq!(
                    output.shape(),
                    expected.shape(),
                    "{kernel_size:?} {strides:?} {padding:?}"
                );
                for (index, (a, e)) in output.iter().zip(expected.iter()).enumerate() {
                    assert!(
                        (a - e).abs() <= 1e-5,
                        "input {:?}, kernel {kernel_size:?}, strides {strides:?}, {padding:?}: \
                         value {index} is {a}, expected {e}",
                        (height, width, channels)
                    );
                }
            }
        }
    }

    /// Winograd's minimal filtering takes over 3 × 3 kernels with stride 1 and at least
    /// `WINOGRAD_MIN_CHANNELS` input channels, with 2 × 2 or 4 × 4 output tiles. Odd and even
    /// output sizes, a single tile and both paddings exercise the partial tiles at the bottom
    /// and right edges. Tolerance: 1e-5 of `max(1, |value|)` for 2 × 2 tiles, whose
    /// transforms only add and halve; 1e-4 for 4 × 4 tiles, whose coefficients go up to 8.
    #[test]
    fn winograd_forward_matches_direct_convolution() {
        let mut rng = Rng::new(21);
        let shapes = [(5, 7, 8), (6, 6, 9), (3, 3, 8), (4, 9, 12), (13, 13, 32)];
        for (height, width, channels) in shapes {
            for padding in [Padding::Valid, Padding::Same] {
                for activation in [Activation::Linear, Activation::Relu] {
                    for (tile_size, tolerance) in [(TileSize::Two, 1e-5), (TileSize::Four, 1e-4)] {
                        let mut layer = Conv2D::new(5, (3, 3))
                            .padding(padding)
                            .activation(activation)
                            .bias_initializer(Initializer::Constant { value: 0.25 });
                        layer.build(&[height, width, channels], &mut rng).unwrap();
                        let plan = layer.winograd.as_mut().expect("Winograd applies");
                        plan.tile_size = tile_size;
                        let input = random_tensor(&[3, height, width, channels], &mut rng);
                        let output = layer.forward(&input, true, &mut rng);
                        let mut expected = direct_convolution(
                            &input,
                            &layer.kernel,
                            layer.bias.as_slice().unwrap(),
                            (1, 1),
                            padding,
                        );
                        if activation == Activation::Relu {
                            expected.mapv_inplace(|v| v.max(0.0));
                        }
                        assert_eq!(output.shape(), expected.shape());
                        for (index, (a, e)) in output.iter().zip(expected.iter()).enumerate() {
                            assert!(
                                (a - e).abs() <= tolerance * e.abs().max(1.0),
                                "input {:?}, {tile_size:?}, {padding:?}, {activation:?}: value \
                                 {index} is {a}, expected {e}",
                                (height, width, channels)
                            );
                        }
                    }
                }
            }
        }
    }

    /// The Winograd backward pass against the im2col one on the same layer and batch: input,
    /// kernel and bias gradients within the tolerances of the forward test.
    #[test]
    fn winograd_backward_matches_im2col() {
        let mut rng = Rng::new(22);
        for (height, width, channels) in [(5, 7, 8), (6, 6, 9), (3, 3, 8), (11, 10, 16)] {
            for padding in [Padding::Valid, Padding::Same] {
                for (tile_size, tolerance) in [(TileSize::Two, 1e-5), (TileSize::Four, 1e-4)] {
                    let mut winograd = Conv2D::new(6, (3, 3))
                        .padding(padding)
                        .activation(Activation::Relu);
                    winograd
                        .build(&[height, width, channels], &mut rng)
                        .unwrap();
                    let mut im2col = winograd.clone();
                    im2col.winograd = None;
                    let plan = winograd.winograd.as_mut().expect("Winograd applies");
                    plan.tile_size = tile_size;

                    let input = random_tensor(&[4, height, width, channels], &mut rng);
                    let output = winograd.forward(&input, true, &mut rng);
                    im2col.forward(&input, true, &mut rng);
                    let grad_output = random_tensor(output.shape(), &mut rng);
                    let pairs = [
                        (
                            "input",
                            winograd.backward(&grad_output),
                            im2col.backward(&grad_output),
                        ),
                        (
                            "kernel",
                            winograd.kernel_grad.clone(),
                            im2col.kernel_grad.clone(),
                        ),
                        ("bias", winograd.bias_grad.clone(), im2col.bias_grad.clone()),
                    ];
                    for (what, actual, expected) in pairs {
                        assert_eq!(actual.shape(), expected.shape(), "{what}");
                        for (index, (a, e)) in actual.iter().zip(expected.iter()).enumerate() {
                            assert!(
                                (a - e).abs() <= tolerance * e.abs().max(1.0),
                                "input {:?}, {tile_size:?}, {padding:?}: {what} gradient \
                                 {index} is {a}, im2col gives {e}",
                                (height, width, channels)
                            );
                        }
                    }
                }
            }
        }
    }

    /// Infinite, NaN and huge values would spread through Winograd's transforms to outputs
    /// and gradients that a direct convolution keeps finite, so such passes take the im2col
    /// path, whose results they must match bit for bit.
    #[test]
    fn winograd_falls_back_for_extreme_values() {
        let mut rng = Rng::new(23);
        let mut winograd = Conv2D::new(3, (3, 3)).padding(Padding::Same);
        winograd.build(&[5, 5, 8], &mut rng).unwrap();
        assert!(winograd.winograd.is_some(), "Winograd applies");
        let mut im2col = winograd.clone();
        im2col.winograd = None;
        for extreme in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e38, 1e10] {
            let mut input = random_tensor(&[2, 5, 5, 8], &mut rng);
            input[[0, 0, 0, 0]] = extreme;
            let output = winograd.forward(&input, true, &mut rng);
            let expected = im2col.forward(&input, true, &mut rng);
            assert!(
                same_bits(&output, &expected),
                "{extreme} in the input: outputs differ"
            );
            let grad_output = random_tensor(output.shape(), &mut rng);
            let case = format!("{extreme} in the input");
            assert_same_backward(&mut winograd, &mut im2col, &grad_output, &case);
        }

        // Values that are finite but whose products the transforms would overflow.
        let mut input = Tensor::zeros(IxDyn(&[1, 5, 5, 8]));
        input[[0, 2, 2, 0]] = 1e19;
        for layer in [&mut winograd, &mut im2col] {
            layer.kernel.fill(0.0);
            layer.kernel[[1, 1, 0, 0]] = 1e19;
        }
        let output = winograd.forward(&input, true, &mut rng);
        assert!(
            same_bits(&output, &im2col.forward(&input, true, &mut rng)),
            "input and kernel of 1e19: outputs differ"
        );
        let mut grad_output = Tensor::zeros(IxDyn(output.shape()));
        grad_output[[0, 2, 2, 0]] = 1e19;
        assert_same_backward(&mut winograd, &mut im2col, &grad_output, "gradient of 1e19");
        assert!(
            winograd.kernel_grad.iter().all(|g| g.is_finite()),
            "the kernel gradient of 1e19 values is finite"
        );

        let input = random_tensor(&[2, 5, 5, 8], &mut rng);
        let output = winograd.forward(&input, true, &mut rng);
        im2col.forward(&input, true, &mut rng);
        let mut grad_output = random_tensor(output.shape(), &mut rng);
        grad_output[[1, 4, 4, 2]] = f32::INFINITY;
        let case = "infinite output gradient";
        assert_same_backward(&mut winograd, &mut im2col, &grad_output, case);
    }

    /// Returns whether `a` and `b` have the same shape and the same bits in every value,
    /// NaN included.
    fn same_bits(a: &Tensor, b: &Tensor) -> bool {
        a.shape() == b.shape() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    /// Runs the backward pass of both layers on `grad_output` and asserts that the input and
    /// kernel gradients have the same bits.
    fn assert_same_backward(
        winograd: &mut Conv2D,
        im2col: &mut Conv2D,
        grad_output: &Tensor,
        case: &str,
    ) {
        let grad_input = winograd.backward(grad_output);
        assert!(
            same_bits(&grad_input, &im2col.backward(grad_output)),
            "{case}: input gradients differ"
        );
        assert!(
            same_bits(&winograd.kernel_grad, &im2col.kernel_grad),
            "{case}: kernel gradients differ"
        );
    }

    /// `weights_mut` can put a kernel of another memory layout in place. The layer must
    /// compute with it as with the same values in standard layout.
    #[test]
    fn column_major_kernel_gives_same_output() {
        let mut rng = Rng::new(25);
        for channels in [1, 8] {
            let mut layer = Conv2D::new(4, (3, 3));
            layer.build(&[5, 5, channels], &mut rng).unwrap();
            let input = random_tensor(&[2, 5, 5, channels], &mut rng);
            let expected = layer.forward(&input, false, &mut rng);
            let shape = layer.kernel.shape().to_vec();
            let mut column_major = Tensor::zeros(ndarray::ShapeBuilder::f(IxDyn(&shape)));
            column_major.assign(&layer.kernel);
            *layer.weights_mut()[0].1 = column_major;
            assert_eq!(
                layer.forward(&input, false, &mut rng),
                expected,
                "{channels} channels"
            );
        }
    }

    #[test]
    fn empty_batch_backward_returns_empty_gradient() {
        let mut rng = Rng::new(24);
        for channels in [1, 8] {
            let mut layer = Conv2D::new(4, (3, 3)).activation(Activation::Relu);
            layer.build(&[5, 5, channels], &mut rng).unwrap();
            let output = layer.forward(&Tensor::zeros(IxDyn(&[0, 5, 5, channels])), true, &mut rng);
            assert_eq!(output.shape(), &[0, 3, 3, 4]);
            let grad_input = layer.backward(&Tensor::zeros(IxDyn(&[0, 3, 3, 4])));
            assert_eq!(grad_input.shape(), &[0, 5, 5, channels]);
            assert!(
                layer.kernel_grad.iter().all(|&g| g == 0.0),
                "{channels} channels"
            );
        }
    }

    /// Finite differences on the Winograd path, with the tolerance of
    /// `gradients_match_finite_differences`.
    #[test]
    fn winograd_gradients_match_finite_differences() {
        for (input_shape, padding, activation) in [
            ([5, 6, 8], Padding::Valid, Activation::Linear),
            ([4, 5, 8], Padding::Same, Activation::Tanh),
        ] {
            let layer = Conv2D::new(3, (3, 3))
                .padding(padding)
                .activation(activation)
                .bias_initializer(Initializer::Constant { value: 0.1 });
            check_layer(Box::new(layer), &input_shape, 2, 1e-2);
        }
    }

    /// Tolerance 1e-2 of `max(1, |gradient|)`: the objective sums about a hundred f32
    /// products, so rounding in the f32 forward pass moves the central difference (step
    /// 1e-3) by up to about 1e-3.
    #[test]
    fn gradients_match_finite_differences() {
        let cases = [
            // (input shape, kernel, strides, padding, use_bias, activation)
            (
                [5, 7, 1],
                (3, 3),
                (1, 1),
                Padding::Valid,
                true,
                Activation::Linear,
            ),
            (
                [5, 7, 1],
                (2, 3),
                (1, 1),
                Padding::Same,
                false,
                Activation::Tanh,
            ),
            (
                [5, 7, 3],
                (3, 3),
                (2, 2),
                Padding::Valid,
                false,
                Activation::Linear,
            ),
            (
                [5, 7, 3],
                (2, 3),
                (2, 2),
                Padding::Same,
                true,
                Activation::Sigmoid,
            ),
            (
                [5, 7, 3],
                (3, 3),
                (1, 2),
                Padding::Same,
                true,
                Activation::Softmax,
            ),
            (
                [3, 4, 2],
                (5, 5),
                (1, 1),
                Padding::Same,
                true,
                Activation::Gelu,
            ),
        ];
        for (input_shape, kernel_size, strides, padding, use_bias, activation) in cases {
            let layer = Conv2D::new(3, kernel_size)
                .strides(strides)
                .padding(padding)
                .use_bias(use_bias)
                .activation(activation)
                .bias_initializer(Initializer::Constant { value: 0.1 });
            check_layer(Box::new(layer), &input_shape, 2, 1e-2);
        }
    }

    #[test]
    fn fused_backward_matches_softmax_backward() {
        let mut layer = Conv2D::new(3, (2, 2)).activation(Activation::Softmax);
        let mut rng = Rng::new(8);
        layer.build(&[4, 3, 2], &mut rng).unwrap();
        let input = random_tensor(&[2, 4, 3, 2], &mut rng);
        let output = layer.forward(&input, true, &mut rng);
        let grad_output = random_tensor(output.shape(), &mut rng);
        let through_softmax = layer.backward(&grad_output);
        let kernel_grad = layer.kernel_grad.clone();
        assert_eq!(layer.output_activation(), Some(Activation::Softmax));
        let logits = layer.logits().unwrap().clone();
        let grad_logits = Activation::Softmax.backward(&logits, &output, &grad_output);
        let fused = layer.backward_from_logits(&grad_logits);
        assert_eq!(fused, through_softmax);
        assert_eq!(layer.kernel_grad, kernel_grad);
    }

    /// The layer applies ReLU with its own loops; they must match `Activation::Relu` applied
    /// to the output of the same convolution without activation.
    #[test]
    fn relu_matches_separate_activation() {
        let mut rng = Rng::new(12);
        let mut relu = Conv2D::new(4, (3, 2))
            .padding(Padding::Same)
            .activation(Activation::Relu);
        relu.build(&[5, 6, 2], &mut rng).unwrap();
        let mut linear = Conv2D::new(4, (3, 2)).padding(Padding::Same);
        linear.build(&[5, 6, 2], &mut rng).unwrap();
        linear.kernel.assign(&relu.kernel);
        let input = random_tensor(&[3, 5, 6, 2], &mut rng);
        let logits = linear.forward(&input, true, &mut rng);
        let output = relu.forward(&input, true, &mut rng);
        let expected = Activation::Relu.apply(&logits);
        assert_eq!(output, expected);
        assert!(output.iter().any(|&v| v == 0.0), "some outputs are clipped");
        assert!(output.iter().any(|&v| v > 0.0), "some outputs are positive");

        let grad_output = random_tensor(output.shape(), &mut rng);
        let grad_input = relu.backward(&grad_output);
        let grad_logits = Activation::Relu.backward(&logits, &expected, &grad_output);
        assert_eq!(grad_input, linear.backward(&grad_logits));
        assert_eq!(relu.kernel_grad, linear.kernel_grad);
        assert_eq!(relu.bias_grad, linear.bias_grad);
    }

    #[test]
    fn relu_output_keeps_nan() {
        let mut layer = Conv2D::new(2, (2, 2)).activation(Activation::Relu);
        let mut rng = Rng::new(0);
        layer.build(&[3, 3, 1], &mut rng).unwrap();
        let mut input = Tensor::zeros(IxDyn(&[1, 3, 3, 1]));
        input[[0, 0, 0, 0]] = f32::NAN;
        let output = layer.forward(&input, true, &mut rng);
        assert!(output[[0, 0, 0, 0]].is_nan());
        assert!(output[[0, 0, 0, 1]].is_nan());
        assert_eq!(
            output[[0, 1, 1, 0]],
            0.0,
            "windows without the NaN stay finite"
        );
    }

    #[test]
    fn training_pass_keeps_input_without_copy() {
        let mut layer = Conv2D::new(4, (3, 3));
        let mut rng = Rng::new(0);
        layer.build(&[8, 8, 2], &mut rng).unwrap();
        let input = random_tensor(&[5, 8, 8, 2], &mut rng);
        let pointer = input.as_ptr();
        layer.forward_owned(input, true, &mut rng);
        assert_eq!(layer.input.as_ptr(), pointer);
        layer.forward(&random_tensor(&[2, 8, 8, 2], &mut rng), false, &mut rng);
        assert_eq!(layer.input.len(), 0, "an inference pass keeps no input");
    }

    #[test]
    fn skipped_input_gradient_keeps_parameter_gradients() {
        let mut layer = Conv2D::new(3, (3, 3)).padding(Padding::Same);
        let mut rng = Rng::new(4);
        layer.build(&[6, 5, 2], &mut rng).unwrap();
        let input = random_tensor(&[2, 6, 5, 2], &mut rng);
        let output = layer.forward(&input, true, &mut rng);
        let grad_output = random_tensor(output.shape(), &mut rng);
        let full = layer.backward(&grad_output);
        let kernel_grad = layer.kernel_grad.clone();
        let bias_grad = layer.bias_grad.clone();
        layer.set_input_gradient_needed(false);
        let skipped = layer.backward(&grad_output);
        assert_eq!(full.shape(), &[2, 6, 5, 2]);
        assert_eq!(skipped.len(), 0);
        assert_eq!(layer.kernel_grad, kernel_grad);
        assert_eq!(layer.bias_grad, bias_grad);
    }

    #[test]
    #[should_panic(expected = "not a training pass")]
    fn backward_after_inference_panics() {
        let mut layer = Conv2D::new(2, (2, 2)).name("conv");
        let mut rng = Rng::new(0);
        layer.build(&[3, 3, 1], &mut rng).unwrap();
        let input = random_tensor(&[1, 3, 3, 1], &mut rng);
        let output = layer.forward(&input, true, &mut rng);
        layer.forward(&input, false, &mut rng);
        layer.backward(&output);
    }

    #[test]
    fn kernel_larger_than_input_is_rejected() {
        let error = Conv2D::new(4, (5, 5))
            .name("conv2d_1")
            .build(&[3, 6, 1], &mut Rng::new(0))
            .unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, NnError::IncompatibleShape { .. }),
            "{message}"
        );
        assert!(message.contains("conv2d_1"), "{message}");
        assert!(message.contains("[3, 6, 1]"), "{message}");
        assert!(message.contains("(5, 5)"), "{message}");
        // Same padding pads the input up to the kernel, as Keras does.
        let shape = Conv2D::new(4, (5, 5))
            .padding(Padding::Same)
            .build(&[3, 6, 1], &mut Rng::new(0))
            .unwrap();
        assert_eq!(shape, vec![3, 6, 4]);
    }

    #[test]
    fn wrong_rank_is_rejected() {
        let error = Conv2D::new(4, (3, 3))
            .name("conv")
            .build(&[28, 28], &mut Rng::new(0))
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`conv`"), "{message}");
        assert!(message.contains("[28, 28]"), "{message}");
        assert!(message.contains("(height, width, channels)"), "{message}");
        let error = Conv2D::new(4, (3, 3))
            .build(&[2, 28, 28, 1], &mut Rng::new(0))
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`Conv2D`"), "{message}");
        assert!(message.contains("[2, 28, 28, 1]"), "{message}");
    }

    #[test]
    fn zero_settings_are_rejected() {
        let mut rng = Rng::new(0);
        let cases = [
            (Conv2D::new(0, (3, 3)), "filters"),
            (Conv2D::new(2, (0, 3)), "kernel_size"),
            (Conv2D::new(2, (3, 3)).strides((1, 0)), "strides"),
        ];
        for (mut layer, parameter) in cases {
            let error = layer.build(&[8, 8, 1], &mut rng).unwrap_err();
            assert!(
                matches!(error, NnError::InvalidParameter { name, .. } if name == parameter),
                "{error}"
            );
        }
    }

    #[test]
    fn output_shapes_follow_keras() {
        let mut rng = Rng::new(0);
        let cases = [
            ([28, 28, 1], (3, 3), (1, 1), Padding::Valid, vec![26, 26, 8]),
            ([28, 28, 1], (3, 3), (2, 2), Padding::Same, vec![14, 14, 8]),
            ([5, 7, 3], (2, 3), (2, 2), Padding::Valid, vec![2, 3, 8]),
            ([5, 7, 3], (2, 3), (2, 2), Padding::Same, vec![3, 4, 8]),
        ];
        for (input_shape, kernel_size, strides, padding, expected) in cases {
            let mut layer = Conv2D::new(8, kernel_size)
                .strides(strides)
                .padding(padding);
            assert_eq!(layer.build(&input_shape, &mut rng).unwrap(), expected);
        }
    }

    #[test]
    fn config_round_trip() {
        let layer = Conv2D::new(6, (2, 3))
            .strides((2, 1))
            .padding(Padding::Same)
            .activation(Activation::LEAKY_RELU)
            .use_bias(false)
            .kernel_initializer(Initializer::HeNormal)
            .name("features");
        let config = layer.config();
        assert_eq!(config["class_name"], "Conv2D");
        assert_eq!(config["config"]["padding"], "same");
        assert_eq!(config["config"]["kernel_size"], json!([2, 3]));
        let rebuilt = layer_from_config(&config).unwrap();
        assert_eq!(rebuilt.class_name(), "Conv2D");
        assert_eq!(rebuilt.config(), config);
    }
}
