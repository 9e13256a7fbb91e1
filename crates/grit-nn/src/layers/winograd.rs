//! Winograd's minimal filtering F(m×m, 3×3) for 3×3 convolutions with stride 1, with
//! output tiles of m = 2 or m = 4.
//!
//! Each m × m block of outputs (a tile) comes from an α × α block of inputs, α = m + 2. With
//! the transforms of Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks"
//! (CVPR 2016), one output tile is
//!
//! ```text
//! y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A
//! ```
//!
//! for a 3×3 kernel slice `g` and an input tile `d`. Summed over input channels, the
//! element-wise products become α² matrix products, one per position ξ of the transformed
//! tile: `M[ξ] = V[ξ] · U[ξ]`, with `V` the transformed input tiles (rows: tiles, columns:
//! channels) and `U` the transformed kernel (channels × filters). That is 16 multiply-adds
//! for every 4 outputs of one channel pair with m = 2, and 36 for every 16 with m = 4, where
//! im2col needs 9 per output.
//!
//! The backward pass differentiates the same identity. With `Z = A dy Aᵀ` the transformed
//! output gradient of a tile,
//!
//! - the input gradient of a tile is `B (Σ_f Z ⊙ U) Bᵀ`, a product `Z[ξ] · U[ξ]ᵀ` per ξ,
//!   added back onto the overlapping input tiles;
//! - the kernel gradient is `Gᵀ (Σ_tiles Z ⊙ V) G`, a product `V[ξ]ᵀ · Z[ξ]` per ξ.
//!
//! Every product goes through ndarray's GEMM. The transforms add and scale values, so the
//! results round differently from im2col's: in this module's and `Conv2D`'s tests (a few
//! images, inputs in [-1, 1]) they stay within 1e-5 of `max(1, |value|)` with m = 2, and
//! within 1e-4 with m = 4, whose transforms have coefficients up to 8. The error grows with
//! the largest value in a tile, not with each output's own terms.
//!
//! Buffers of tiles contain α² matrices, one per ξ, each row-major with one row per tile
//! (`[ξ][tile][channel or filter]`). matrixmultiply (0.3.11) reads rows that lie far apart
//! slowly: with the tiles stored one after another (`[tile][ξ][channel]`), the products of
//! one block took up to 1.5 times as long.

use grit_tensor::ops::gemm_on_this_thread;
use multiversion::multiversion;
use ndarray::{ArrayView2, ArrayViewMut2};

/// The kernel transform `G` of F(2×2, 3×3), with interpolation points 0, 1, -1 and ∞.
#[rustfmt::skip]
const F2_G: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// The kernel transform `G` of F(4×4, 3×3), with interpolation points 0, 1, -1, 2, -2 and
/// ∞.
#[rustfmt::skip]
const F4_G: [[f32; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Returns the transpose of `matrix`.
const fn transpose<const R: usize, const C: usize>(matrix: [[f32; C]; R]) -> [[f32; R]; C] {
    let mut out = [[0.0; R]; C];
    let mut i = 0;
    while i < R {
        let mut j = 0;
        while j < C {
            out[j][i] = matrix[i][j];
            j += 1;
        }
        i += 1;
    }
    out
}

/// The transforms of one variant, applied to one line of a tile, 16 lanes at a time.
/// Written out term by term, so that the compiler multiplies by constants, leaves out the
/// zeros and keeps the line in registers. Each output is summed left to right with every
/// product rounded, as plain code rounds it on any CPU.
trait Variant<const M: usize, const K: usize> {
    /// `Bᵀ`: an input tile line of K values to K.
    fn bt(d: &[Lanes; K]) -> [Lanes; K];
    /// `B`: a line of the input gradient's transformed tile back to K input values.
    fn b(v: &[Lanes; K]) -> [Lanes; K];
    /// `Aᵀ`: a line of K products to M outputs.
    fn at(m: &[Lanes; K]) -> [Lanes; M];
    /// `A`: a line of M output gradients to K.
    fn a(g: &[Lanes; M]) -> [Lanes; K];
}

/// Returns the lanes `f(0)`, …, `f(15)`.
#[inline(always)]
fn lanes(f: impl Fn(usize) -> f32) -> Lanes {
    std::array::from_fn(f)
}

/// F(2×2, 3×3).
struct F2;

impl Variant<2, 4> for F2 {
    #[inline(always)]
    fn bt(d: &[Lanes; 4]) -> [Lanes; 4] {
        let [d0, d1, d2, d3] = *d;
        [
            lanes(|l| d0[l] - d2[l]),
            lanes(|l| d1[l] + d2[l]),
            lanes(|l| d2[l] - d1[l]),
            lanes(|l| d1[l] - d3[l]),
        ]
    }

    #[inline(always)]
    fn b(v: &[Lanes; 4]) -> [Lanes; 4] {
        let [v0, v1, v2, v3] = *v;
        [
            v0,
            lanes(|l| v1[l] - v2[l] + v3[l]),
            lanes(|l| v1[l] + v2[l] - v0[l]),
            lanes(|l| -v3[l]),
        ]
    }

    #[inline(always)]
    fn at(m: &[Lanes; 4]) -> [Lanes; 2] {
        let [m0, m1, m2, m3] = *m;
        [
            lanes(|l| m0[l] + m1[l] + m2[l]),
            lanes(|l| m1[l] - m2[l] - m3[l]),
        ]
    }

    #[inline(always)]
    fn a(g: &[Lanes; 2]) -> [Lanes; 4] {
        let [g0, g1] = *g;
        [
            g0,
            lanes(|l| g0[l] + g1[l]),
            lanes(|l| g0[l] - g1[l]),
            lanes(|l| -g1[l]),
        ]
    }
}

/// F(4×4, 3×3).
struct F4;

impl Variant<4, 6> for F4 {
    #[inline(always)]
    fn bt(d: &[Lanes; 6]) -> [Lanes; 6] {
        let [d0, d1, d2, d3, d4, d5] = *d;
        [
            lanes(|l| 4.0 * d0[l] - 5.0 * d2[l] + d4[l]),
            lanes(|l| -4.0 * d1[l] - 4.0 * d2[l] + d3[l] + d4[l]),
            lanes(|l| 4.0 * d1[l] - 4.0 * d2[l] - d3[l] + d4[l]),
            lanes(|l| -2.0 * d1[l] - d2[l] + 2.0 * d3[l] + d4[l]),
            lanes(|l| 2.0 * d1[l] - d2[l] - 2.0 * d3[l] + d4[l]),
            lanes(|l| 4.0 * d1[l] - 5.0 * d3[l] + d5[l]),
        ]
    }

    #[inline(always)]
    fn b(v: &[Lanes; 6]) -> [Lanes; 6] {
        let [v0, v1, v2, v3, v4, v5] = *v;
        [
            lanes(|l| 4.0 * v0[l]),
            lanes(|l| -4.0 * v1[l] + 4.0 * v2[l] - 2.0 * v3[l] + 2.0 * v4[l] + 4.0 * v5[l]),
            lanes(|l| -5.0 * v0[l] - 4.0 * v1[l] - 4.0 * v2[l] - v3[l] - v4[l]),
            lanes(|l| v1[l] - v2[l] + 2.0 * v3[l] - 2.0 * v4[l] - 5.0 * v5[l]),
            lanes(|l| v0[l] + v1[l] + v2[l] + v3[l] + v4[l]),
            v5,
        ]
    }

    #[inline(always)]
    fn at(m: &[Lanes; 6]) -> [Lanes; 4] {
        let [m0, m1, m2, m3, m4, m5] = *m;
        [
            lanes(|l| m0[l] + m1[l] + m2[l] + m3[l] + m4[l]),
            lanes(|l| m1[l] - m2[l] + 2.0 * m3[l] - 2.0 * m4[l]),
            lanes(|l| m1[l] + m2[l] + 4.0 * m3[l] + 4.0 * m4[l]),
            lanes(|l| m1[l] - m2[l] + 8.0 * m3[l] - 8.0 * m4[l] + m5[l]),
        ]
    }

    #[inline(always)]
    fn a(g: &[Lanes; 4]) -> [Lanes; 6] {
        let [g0, g1, g2, g3] = *g;
        [
            g0,
            lanes(|l| g0[l] + g1[l] + g2[l] + g3[l]),
            lanes(|l| g0[l] - g1[l] + g2[l] - g3[l]),
            lanes(|l| g0[l] + 2.0 * g1[l] + 4.0 * g2[l] + 8.0 * g3[l]),
            lanes(|l| g0[l] - 2.0 * g1[l] + 4.0 * g2[l] - 8.0 * g3[l]),
            g3,
        ]
    }
}

/// The output tile size of a Winograd convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TileSize {
    /// F(2×2, 3×3): 16 products for every 2 × 2 outputs.
    Two,
    /// F(4×4, 3×3): 36 products for every 4 × 4 outputs, 2.25 times fewer multiply-adds
    /// than F(2×2, 3×3). Its transforms have coefficients up to 8, which round more.
    Four,
}

impl TileSize {
    /// Returns the side of an output tile, m.
    fn output(self) -> usize {
        match self {
            TileSize::Two => 2,
            TileSize::Four => 4,
        }
    }

    /// Returns the side of an input tile, α = m + 2.
    fn input(self) -> usize {
        self.output() + 2
    }
}

/// The placement of output tiles over one image, fixed when the layer is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TilePlan {
    pub tile_size: TileSize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub filters: usize,
    pub out_height: usize,
    pub out_width: usize,
    /// The rows and columns of padding before the first input row and column.
    pub pad_top: usize,
    pub pad_left: usize,
}

impl TilePlan {
    /// Returns the number of positions ξ in a transformed tile: α².
    pub fn positions(&self) -> usize {
        self.tile_size.input() * self.tile_size.input()
    }

    fn tile_rows(&self) -> usize {
        self.out_height.div_ceil(self.tile_size.output())
    }

    fn tile_cols(&self) -> usize {
        self.out_width.div_ceil(self.tile_size.output())
    }

    pub fn tiles_per_image(&self) -> usize {
        self.tile_rows() * self.tile_cols()
    }

    fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Returns the input index of position `offset` of the tile that starts at output
    /// position `tile_start`, or `None` in the padding.
    fn input_index(tile_start: usize, offset: usize, pad: usize, len: usize) -> Option<usize> {
        let padded = tile_start + offset;
        let index = padded.checked_sub(pad)?;
        (index < len).then_some(index)
    }

    /// Returns, for every tile of a block, its image, tile row and tile column.
    fn tiles(&self, images: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        (0..images).flat_map(move |image| {
            (0..self.tile_rows())
                .flat_map(move |row| (0..self.tile_cols()).map(move |col| (image, row, col)))
        })
    }
}

/// The number of values the transforms work on at once: one AVX-512 register of f32.
const LANES: usize = 16;

type Lanes = [f32; LANES];

/// Returns `count` lanes of `source` from `start`, padded with zeros.
///
/// A copy of a length known only at run time compiles to a call to `memcpy`, which costs
/// more than the 64 bytes it moves, so a full set of lanes is copied as a fixed-size array.
#[inline(always)]
fn load(source: &[f32], start: usize, count: usize) -> Lanes {
    if count == LANES {
        let lanes: &Lanes = source[start..start + LANES]
            .try_into()
            .expect("a slice of LANES values");
        return *lanes;
    }
    let mut lanes = [0.0; LANES];
    lanes[..count].copy_from_slice(&source[start..start + count]);
    lanes
}

/// Writes the first `count` of `values` into `target` from `start`, like [`load`].
#[inline(always)]
fn store<T: Copy>(target: &mut [T], start: usize, values: &[T; LANES], count: usize) {
    if count == LANES {
        let lanes: &mut [T; LANES] = (&mut target[start..start + LANES])
            .try_into()
            .expect("a slice of LANES values");
        *lanes = *values;
    } else {
        target[start..start + count].copy_from_slice(&values[..count]);
    }
}

/// Applies `transform` along every row of `half` and writes the results into `tiles`, a
/// buffer of one matrix per ξ (`matrix_len` values each, ξ = K·i + j). Within each matrix
/// the lanes go to `offset..offset + count`, the tile's row and lanes.
#[inline(always)]
fn store_transformed_rows<const N: usize, const K: usize>(
    half: &[[Lanes; N]; K],
    transform: impl Fn(&[Lanes; N]) -> [Lanes; K],
    tiles: &mut [f32],
    matrix_len: usize,
    offset: usize,
    count: usize,
) {
    for (i, line) in half.iter().enumerate() {
        for (j, value) in transform(line).iter().enumerate() {
            store(tiles, (i * K + j) * matrix_len + offset, value, count);
        }
    }
}

/// Writes `Bᵀ d B` of every input tile of `images` into `tiles` (`[ξ][tile][channel]`).
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2"))]
pub(crate) fn transform_input(images: &[f32], tiles: &mut [f32], plan: &TilePlan) {
    match plan.tile_size {
        TileSize::Two => transform_input_simd::<F2, 2, 4>(images, tiles, plan),
        TileSize::Four => transform_input_simd::<F4, 4, 6>(images, tiles, plan),
    }
}

#[inline(always)]
fn transform_input_simd<V: Variant<M, K>, const M: usize, const K: usize>(
    images: &[f32],
    tiles: &mut [f32],
    plan: &TilePlan,
) {
    let channels = plan.channels;
    let image_len = plan.image_len();
    let tile_count = tiles.len() / (K * K * channels);
    let mut half = [[[0.0; LANES]; K]; K];
    for (tile, (image, tile_row, tile_col)) in plan.tiles(images.len() / image_len).enumerate() {
        let image = &images[image * image_len..(image + 1) * image_len];
        let rows: [Option<usize>; K] = std::array::from_fn(|y| {
            TilePlan::input_index(M * tile_row, y, plan.pad_top, plan.height)
        });
        let cols: [Option<usize>; K] = std::array::from_fn(|x| {
            TilePlan::input_index(M * tile_col, x, plan.pad_left, plan.width)
        });
        for first in (0..channels).step_by(LANES) {
            let count = LANES.min(channels - first);
            // Down every column of the tile, reading the image in place.
            for (x, col) in cols.iter().enumerate() {
                let line = std::array::from_fn(|y| match (rows[y], col) {
                    (Some(row), Some(col)) => {
                        load(image, (row * plan.width + col) * channels + first, count)
                    }
                    _ => [0.0; LANES],
                });
                for (i, value) in V::bt(&line).into_iter().enumerate() {
                    half[i][x] = value;
                }
            }
            // Along every row, into row `tile` of each ξ's matrix.
            let matrix_len = tile_count * channels;
            let offset = tile * channels + first;
            store_transformed_rows(&half, V::bt, tiles, matrix_len, offset, count);
        }
    }
}

/// Writes `Aᵀ M A` of every tile in `products` (`[ξ][tile][filter]`) into the output images,
/// adding `bias` and, with `relu`, applying ReLU and filling `mask` (empty when not kept)
/// with whether each output is positive. Outputs past the image edge are dropped.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2"))]
pub(crate) fn transform_output(
    products: &[f32],
    output: &mut [f32],
    mask: &mut [bool],
    bias: Option<&[f32]>,
    relu: bool,
    plan: &TilePlan,
) {
    match plan.tile_size {
        TileSize::Two => {
            transform_output_simd::<F2, 2, 4>(products, output, mask, bias, relu, plan)
        }
        TileSize::Four => {
            transform_output_simd::<F4, 4, 6>(products, output, mask, bias, relu, plan)
        }
    }
}

#[inline(always)]
fn transform_output_simd<V: Variant<M, K>, const M: usize, const K: usize>(
    products: &[f32],
    output: &mut [f32],
    mask: &mut [bool],
    bias: Option<&[f32]>,
    relu: bool,
    plan: &TilePlan,
) {
    let filters = plan.filters;
    let image_len = plan.out_height * plan.out_width * filters;
    let tile_count = products.len() / (K * K * filters);
    let mut half = [[[0.0; LANES]; K]; M];
    for (tile, (image, tile_row, tile_col)) in plan.tiles(output.len() / image_len).enumerate() {
        for first in (0..filters).step_by(LANES) {
            let count = LANES.min(filters - first);
            let bias = bias.map_or([0.0; LANES], |bias| load(bias, first, count));
            // Down every column of the products, keeping the M output rows.
            #[expect(
                clippy::needless_range_loop,
                reason = "the index picks a column of `half`"
            )]
            for x in 0..K {
                let line = std::array::from_fn(|y| {
                    load(
                        products,
                        ((y * K + x) * tile_count + tile) * filters + first,
                        count,
                    )
                });
                for (i, value) in V::at(&line).into_iter().enumerate() {
                    half[i][x] = value;
                }
            }
            let sums: [[Lanes; M]; M] = std::array::from_fn(|i| V::at(&half[i]));
            for (i, sums_row) in sums.iter().enumerate() {
                let row = M * tile_row + i;
                if row >= plan.out_height {
                    break;
                }
                for (j, sums) in sums_row.iter().enumerate() {
                    let col = M * tile_col + j;
                    if col >= plan.out_width {
                        break;
                    }
                    let start = image * image_len + (row * plan.out_width + col) * filters + first;
                    finish_output(output, mask, start, sums, &bias, relu, count);
                }
            }
        }
    }
}

/// Writes `sums` plus `bias`, through ReLU when `relu` is set, into `output` from `start`,
/// and whether each value is positive into `mask` unless it is empty.
#[inline(never)]
fn finish_output(
    output: &mut [f32],
    mask: &mut [bool],
    start: usize,
    sums: &Lanes,
    bias: &Lanes,
    relu: bool,
    count: usize,
) {
    let mut values = lanes(|l| sums[l] + bias[l]);
    if relu {
        values = values.map(grit_tensor::activation::relu);
    }
    store(output, start, &values, count);
    if !mask.is_empty() {
        store(mask, start, &values.map(|value| value > 0.0), count);
    }
}

/// Writes `A dy Aᵀ` for every m × m tile of `grad` (output gradients of whole images,
/// zero past the image edge) into `tiles` (`[ξ][tile][filter]`).
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2"))]
pub(crate) fn transform_output_grad(grad: &[f32], tiles: &mut [f32], plan: &TilePlan) {
    match plan.tile_size {
        TileSize::Two => transform_output_grad_simd::<F2, 2, 4>(grad, tiles, plan),
        TileSize::Four => transform_output_grad_simd::<F4, 4, 6>(grad, tiles, plan),
    }
}

#[inline(always)]
fn transform_output_grad_simd<V: Variant<M, K>, const M: usize, const K: usize>(
    grad: &[f32],
    tiles: &mut [f32],
    plan: &TilePlan,
) {
    let filters = plan.filters;
    let image_len = plan.out_height * plan.out_width * filters;
    let tile_count = tiles.len() / (K * K * filters);
    let mut half = [[[0.0; LANES]; M]; K];
    for (tile, (image, tile_row, tile_col)) in plan.tiles(grad.len() / image_len).enumerate() {
        for first in (0..filters).step_by(LANES) {
            let count = LANES.min(filters - first);
            // Down every column of the gradient tile, zero past the image edge.
            #[expect(
                clippy::needless_range_loop,
                reason = "the index picks a column of `half`"
            )]
            for x in 0..M {
                let col = M * tile_col + x;
                let line = std::array::from_fn(|y| {
                    let row = M * tile_row + y;
                    if row < plan.out_height && col < plan.out_width {
                        let start =
                            image * image_len + (row * plan.out_width + col) * filters + first;
                        load(grad, start, count)
                    } else {
                        [0.0; LANES]
                    }
                });
                for (i, value) in V::a(&line).into_iter().enumerate() {
                    half[i][x] = value;
                }
            }
            let matrix_len = tile_count * filters;
            let offset = tile * filters + first;
            store_transformed_rows(&half, V::a, tiles, matrix_len, offset, count);
        }
    }
}

/// Writes `B dV Bᵀ` of every tile in `tiles` (`[ξ][tile][channel]`) back onto the α × α
/// input positions the tile came from, adding where tiles overlap. Positions in the padding
/// are dropped. `grad_images` must start at zero.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2"))]
pub(crate) fn add_input_grad(tiles: &[f32], grad_images: &mut [f32], plan: &TilePlan) {
    match plan.tile_size {
        TileSize::Two => add_input_grad_simd::<F2, 2, 4>(tiles, grad_images, plan),
        TileSize::Four => add_input_grad_simd::<F4, 4, 6>(tiles, grad_images, plan),
    }
}

#[inline(always)]
fn add_input_grad_simd<V: Variant<M, K>, const M: usize, const K: usize>(
    tiles: &[f32],
    grad_images: &mut [f32],
    plan: &TilePlan,
) {
    let channels = plan.channels;
    let image_len = plan.image_len();
    let tile_count = tiles.len() / (K * K * channels);
    let mut half = [[[0.0; LANES]; K]; K];
    let tile_list = plan.tiles(grad_images.len() / image_len);
    for (tile, (image, tile_row, tile_col)) in tile_list.enumerate() {
        let image_start = image * image_len;
        for first in (0..channels).step_by(LANES) {
            let count = LANES.min(channels - first);
            // Down every column of the transformed tile.
            #[expect(
                clippy::needless_range_loop,
                reason = "the index picks a column of `half`"
            )]
            for j in 0..K {
                let line = std::array::from_fn(|i| {
                    load(
                        tiles,
                        ((i * K + j) * tile_count + tile) * channels + first,
                        count,
                    )
                });
                for (y, value) in V::b(&line).into_iter().enumerate() {
                    half[y][j] = value;
                }
            }
            // The input indices are computed here on purpose. Arrays of them built per tile, as
            // `transform_input_simd` builds, and zipped with the lines below made this pass
            // about 0.7 ms a step slower for the convnet's second convolution.
            for (y, line) in half.iter().enumerate() {
                let Some(row) = TilePlan::input_index(M * tile_row, y, plan.pad_top, plan.height)
                else {
                    continue;
                };
                for (x, value) in V::b(line).into_iter().enumerate() {
                    let Some(col) =
                        TilePlan::input_index(M * tile_col, x, plan.pad_left, plan.width)
                    else {
                        continue;
                    };
                    let start = image_start + (row * plan.width + col) * channels + first;
                    let current = load(grad_images, start, count);
                    let sum = lanes(|l| current[l] + value[l]);
                    store(grad_images, start, &sum, count);
                }
            }
        }
    }
}

/// Writes `G g Gᵀ` of a `(3, 3, channels, filters)` kernel into `transformed`
/// (`[ξ][channel][filter]`).
pub(crate) fn transform_kernel(kernel: &[f32], transformed: &mut [f32], plan: &TilePlan) {
    match plan.tile_size {
        TileSize::Two => transform_grid(kernel, transformed, &F2_G),
        TileSize::Four => transform_grid(kernel, transformed, &F4_G),
    }
}

/// Writes `Gᵀ H G` of the transformed kernel gradient `transformed` (`[ξ][channel][filter]`)
/// into `kernel_grad`, laid out as the `(3, 3, channels, filters)` kernel.
pub(crate) fn kernel_grad_from_transformed(
    transformed: &[f32],
    kernel_grad: &mut [f32],
    plan: &TilePlan,
) {
    const F2_GT: [[f32; 4]; 3] = transpose(F2_G);
    const F4_GT: [[f32; 6]; 3] = transpose(F4_G);
    match plan.tile_size {
        TileSize::Two => transform_grid(transformed, kernel_grad, &F2_GT),
        TileSize::Four => transform_grid(transformed, kernel_grad, &F4_GT),
    }
}

/// Writes `P X Pᵀ` for the K × K grid of vectors `X` stored one after the other in `source`,
/// with `P` the R × K `matrix`, as R × R vectors one after the other into `target`. Only
/// the kernel and its gradient go through it, and they are small enough for plain loops.
fn transform_grid<const K: usize, const R: usize>(
    source: &[f32],
    target: &mut [f32],
    matrix: &[[f32; K]; R],
) {
    let len = source.len() / (K * K);
    let mut half = vec![0.0; R * K * len];
    // Down the columns: half[i][x] = Σ_y P[i][y] · X[y][x].
    for (i, coefficients) in matrix.iter().enumerate() {
        for x in 0..K {
            let out = &mut half[(i * K + x) * len..(i * K + x + 1) * len];
            for (y, &c) in coefficients.iter().enumerate() {
                let values = &source[(y * K + x) * len..(y * K + x + 1) * len];
                for (o, &v) in out.iter_mut().zip(values) {
                    *o += c * v;
                }
            }
        }
    }
    // Along the rows: out[i][j] = Σ_x P[j][x] · half[i][x].
    target.fill(0.0);
    for i in 0..R {
        for (j, coefficients) in matrix.iter().enumerate() {
            let out = &mut target[(i * R + j) * len..(i * R + j + 1) * len];
            for (x, &c) in coefficients.iter().enumerate() {
                let values = &half[(i * K + x) * len..(i * K + x + 1) * len];
                for (o, &v) in out.iter_mut().zip(values) {
                    *o += c * v;
                }
            }
        }
    }
}

/// Returns the matrix of position `xi` in a tile buffer (`[ξ][tile][len]`), `(tiles, len)`.
fn position_view(tiles: &[f32], xi: usize, len: usize, positions: usize) -> ArrayView2<'_, f32> {
    let size = tiles.len() / positions;
    ArrayView2::from_shape((size / len, len), &tiles[xi * size..(xi + 1) * size])
        .expect("a tile buffer contains one whole matrix per position")
}

fn position_view_mut(
    tiles: &mut [f32],
    xi: usize,
    len: usize,
    positions: usize,
) -> ArrayViewMut2<'_, f32> {
    let size = tiles.len() / positions;
    ArrayViewMut2::from_shape((size / len, len), &mut tiles[xi * size..(xi + 1) * size])
        .expect("a tile buffer contains one whole matrix per position")
}

/// Returns the transformed kernel's matrix at position `xi`, `(channels, filters)`.
fn kernel_view<'a>(transformed: &'a [f32], xi: usize, plan: &TilePlan) -> ArrayView2<'a, f32> {
    let len = plan.channels * plan.filters;
    ArrayView2::from_shape(
        (plan.channels, plan.filters),
        &transformed[xi * len..(xi + 1) * len],
    )
    .expect("the transformed kernel contains one matrix per position")
}

/// Multiplies the transformed input tiles by the transformed kernel: for every ξ,
/// `products[ξ] = tiles[ξ] · kernel[ξ]`.
pub(crate) fn multiply_forward(
    tiles: &[f32],
    kernel: &[f32],
    products: &mut [f32],
    plan: &TilePlan,
) {
    let positions = plan.positions();
    for xi in 0..positions {
        let a = position_view(tiles, xi, plan.channels, positions);
        let b = kernel_view(kernel, xi, plan);
        let mut c = position_view_mut(products, xi, plan.filters, positions);
        gemm_on_this_thread(1.0, &a, &b, 0.0, &mut c);
    }
}

/// Computes the transformed kernel gradient of one block: for every ξ,
/// `kernel_grad[ξ] = tiles[ξ]ᵀ · grad_tiles[ξ]`.
pub(crate) fn multiply_kernel_grad(
    tiles: &[f32],
    grad_tiles: &[f32],
    kernel_grad: &mut [f32],
    plan: &TilePlan,
) {
    let len = plan.channels * plan.filters;
    let positions = plan.positions();
    for xi in 0..positions {
        let a = position_view(tiles, xi, plan.channels, positions);
        let b = position_view(grad_tiles, xi, plan.filters, positions);
        let mut c = ArrayViewMut2::from_shape(
            (plan.channels, plan.filters),
            &mut kernel_grad[xi * len..(xi + 1) * len],
        )
        .expect("one kernel gradient per block");
        gemm_on_this_thread(1.0, &a.t(), &b, 0.0, &mut c);
    }
}

/// Writes the transformed kernel's matrices transposed, `[ξ][filter][channel]`, into
/// `transposed`: the layout of the input-gradient products' right operand that matrixmultiply
/// packs with whole-row copies (it packs a transposed view one value at a time).
pub(crate) fn transpose_kernel(kernel: &[f32], transposed: &mut [f32], plan: &TilePlan) {
    let len = plan.channels * plan.filters;
    for xi in 0..plan.positions() {
        let mut target = ArrayViewMut2::from_shape(
            (plan.filters, plan.channels),
            &mut transposed[xi * len..(xi + 1) * len],
        )
        .expect("the transposed kernel contains one matrix per position");
        target.assign(&kernel_view(kernel, xi, plan).t());
    }
}

/// Computes the transformed input gradient of one block: for every ξ,
/// `input_grad_tiles[ξ] = grad_tiles[ξ] · kernel[ξ]ᵀ`, where `transposed_kernel` contains the
/// `kernel[ξ]ᵀ` that [`transpose_kernel`] writes.
pub(crate) fn multiply_input_grad(
    grad_tiles: &[f32],
    transposed_kernel: &[f32],
    input_grad_tiles: &mut [f32],
    plan: &TilePlan,
) {
    let positions = plan.positions();
    let len = plan.channels * plan.filters;
    for xi in 0..positions {
        let a = position_view(grad_tiles, xi, plan.filters, positions);
        let b = ArrayView2::from_shape(
            (plan.filters, plan.channels),
            &transposed_kernel[xi * len..(xi + 1) * len],
        )
        .expect("the transposed kernel contains one matrix per position");
        let mut c = position_view_mut(input_grad_tiles, xi, plan.channels, positions);
        gemm_on_this_thread(1.0, &a, &b, 0.0, &mut c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The transforms of Lavin and Gray's paper as matrices, against which the written-out
    // formulas of `F2` and `F4` are checked: `Bᵀ` and `Aᵀ` for each variant.
    #[rustfmt::skip]
const F2_BT: [[f32; 4]; 4] = [
    [1.0, 0.0, -1.0, 0.0],
    [0.0, 1.0, 1.0, 0.0],
    [0.0, -1.0, 1.0, 0.0],
    [0.0, 1.0, 0.0, -1.0],
];

    #[rustfmt::skip]
const F2_AT: [[f32; 4]; 2] = [
    [1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, -1.0],
];

    #[rustfmt::skip]
const F4_BT: [[f32; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

    #[rustfmt::skip]
const F4_AT: [[f32; 6]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

    /// Returns `matrix · line` in f64.
    fn multiply<const K: usize, const R: usize>(
        matrix: &[[f32; K]; R],
        line: &[Lanes; K],
    ) -> Vec<[f64; LANES]> {
        matrix
            .iter()
            .map(|row| {
                std::array::from_fn(|lane| {
                    row.iter()
                        .zip(line)
                        .map(|(&c, values)| c as f64 * values[lane] as f64)
                        .sum()
                })
            })
            .collect()
    }

    fn random_line<const K: usize>(seed: u32) -> [Lanes; K] {
        // Small integers, so that every formula is exact in f32 and must match exactly.
        std::array::from_fn(|i| {
            std::array::from_fn(|lane| ((seed as usize * 31 + i * 7 + lane * 13) % 19) as f32 - 9.0)
        })
    }

    fn assert_matches<const R: usize>(name: &str, actual: [Lanes; R], expected: Vec<[f64; LANES]>) {
        assert_eq!(expected.len(), R, "{name}: output count");
        for (row, (a, e)) in actual.iter().zip(&expected).enumerate() {
            for lane in 0..LANES {
                assert_eq!(a[lane] as f64, e[lane], "{name}: output {row}, lane {lane}");
            }
        }
    }

    #[test]
    fn formulas_match_matrices() {
        for seed in 0..5 {
            let line4 = random_line::<4>(seed);
            let line6 = random_line::<6>(seed);
            let line2 = random_line::<2>(seed);
            assert_matches("F2 Bᵀ", F2::bt(&line4), multiply(&F2_BT, &line4));
            assert_matches("F2 B", F2::b(&line4), multiply(&transpose(F2_BT), &line4));
            assert_matches("F2 Aᵀ", F2::at(&line4), multiply(&F2_AT, &line4));
            assert_matches("F2 A", F2::a(&line2), multiply(&transpose(F2_AT), &line2));
            assert_matches("F4 Bᵀ", F4::bt(&line6), multiply(&F4_BT, &line6));
            assert_matches("F4 B", F4::b(&line6), multiply(&transpose(F4_BT), &line6));
            assert_matches("F4 Aᵀ", F4::at(&line6), multiply(&F4_AT, &line6));
            assert_matches("F4 A", F4::a(&line4), multiply(&transpose(F4_AT), &line4));
        }
    }

    /// `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` is a 3-tap correlation along each axis. It is checked in 1-D
    /// on integers, where F(4, 3) must be exact up to the rounding of G's fractions.
    #[test]
    fn one_dimensional_identity_holds() {
        let d = [3.0f32, -1.0, 4.0, 1.0, -5.0, 9.0];
        let g = [2.0f32, -6.0, 5.0];
        let v: Vec<f64> = F4_BT
            .iter()
            .map(|row| row.iter().zip(&d).map(|(&c, &x)| c as f64 * x as f64).sum())
            .collect();
        let u: Vec<f64> = F4_G
            .iter()
            .map(|row| row.iter().zip(&g).map(|(&c, &x)| c as f64 * x as f64).sum())
            .collect();
        for (i, row) in F4_AT.iter().enumerate() {
            let y: f64 = row
                .iter()
                .enumerate()
                .map(|(j, &c)| c as f64 * u[j] * v[j])
                .sum();
            let expected: f64 = (0..3).map(|k| d[i + k] as f64 * g[k] as f64).sum();
            assert!(
                (y - expected).abs() < 1e-5,
                "output {i}: {y}, expected {expected}"
            );
        }
    }
}
