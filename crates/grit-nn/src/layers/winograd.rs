//! Winograd's minimal filtering F(2×2, 3×3) for 3×3 convolutions with stride 1.
//!
//! Each 2×2 block of outputs (a tile) comes from a 4×4 block of inputs. With the transforms
//! of Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016), one
//! output tile is
//!
//! ```text
//! y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A
//! ```
//!
//! for a 3×3 kernel slice `g` and a 4×4 input tile `d`. Summed over input channels, the
//! element-wise products become 16 matrix products, one per position ξ of the 4×4 transformed
//! tile: `M[ξ] = V[ξ] · U[ξ]`, with `V` the transformed input tiles (rows: tiles, columns:
//! channels) and `U` the transformed kernel (channels × filters). That is 16 multiply-adds for
//! every 4 outputs of one channel pair, where im2col needs 36.
//!
//! The backward pass differentiates the same identity. With `Z = A dy Aᵀ` the transformed
//! output gradient of a tile,
//!
//! - the input gradient of a tile is `B (Σ_f Z ⊙ U) Bᵀ`, a product `Z[ξ] · U[ξ]ᵀ` per ξ,
//!   added back onto the overlapping 4×4 input tiles;
//! - the kernel gradient is `Gᵀ (Σ_tiles Z ⊙ V) G`, a product `V[ξ]ᵀ · Z[ξ]` per ξ.
//!
//! Every product goes through ndarray's GEMM. The transforms use only additions and halving,
//! so they round no worse than the sums of im2col, but the results differ from it in the last
//! bits.
//!
//! Buffers of tiles hold 16 matrices, one per ξ, each row-major with one row per tile
//! (`[ξ][tile][channel]`), except the output gradient's, which is column-major
//! (`[ξ][filter][tile]`). matrixmultiply (0.3.11) packs a left operand with whole-column
//! copies only when its columns are contiguous, and otherwise one value at a time; with
//! transposed layouts the products of one block of the convnet took up to twice as long
//! (measured with `bench/` on the convnet's second convolution).

use grit_tensor::ops::gemm_on_this_thread;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};

/// The number of positions in a transformed tile (4 × 4).
pub(crate) const POSITIONS: usize = 16;

/// The placement of output tiles over one image, fixed when the layer is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TilePlan {
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
    pub fn tile_rows(&self) -> usize {
        self.out_height.div_ceil(2)
    }

    pub fn tile_cols(&self) -> usize {
        self.out_width.div_ceil(2)
    }

    pub fn tiles_per_image(&self) -> usize {
        self.tile_rows() * self.tile_cols()
    }

    fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Returns the input index of position `offset` (0 to 3) of the tile that starts at
    /// output position `tile_start`, or `None` in the padding.
    fn input_index(tile_start: usize, offset: usize, pad: usize, len: usize) -> Option<usize> {
        let padded = tile_start + offset;
        let index = padded.checked_sub(pad)?;
        (index < len).then_some(index)
    }
}

/// Per-thread scratch for one tile.
#[derive(Debug, Default)]
pub(crate) struct TileScratch {
    tile: Vec<f32>,
    half: Vec<f32>,
}

/// The number of tiles the output gradient's transform runs across at once: 16 floats, one
/// cache line, per ξ and filter in the column-major result.
const GROUP: usize = 16;

impl TileScratch {
    fn prepare(&mut self, vector_len: usize) {
        self.tile.resize(POSITIONS * vector_len, 0.0);
        self.half.resize(POSITIONS * vector_len, 0.0);
    }
}

fn add_to(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a + b;
    }
}

fn sub_to(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a - b;
    }
}

fn vector(buffer: &[f32], index: usize, len: usize) -> &[f32] {
    &buffer[index * len..(index + 1) * len]
}

fn vector_mut(buffer: &mut [f32], index: usize, len: usize) -> &mut [f32] {
    &mut buffer[index * len..(index + 1) * len]
}

/// Applies `Bᵀ` along one axis of a 4 × 4 grid of vectors: `(d0 - d2, d1 + d2, d2 - d1,
/// d1 - d3)`. `source_index(i, j)` and `target_index(i, j)` place element `j` of line `i` of
/// the grid in `source` and `target` (counted in vectors of `len`), so the same function runs
/// along rows or columns.
fn input_transform_1d(
    source: &[f32],
    target: &mut [f32],
    len: usize,
    source_index: impl Fn(usize, usize) -> usize,
    target_index: impl Fn(usize, usize) -> usize,
) {
    for line in 0..4 {
        let d = |j: usize| vector(source, source_index(line, j), len);
        sub_to(vector_mut(target, target_index(line, 0), len), d(0), d(2));
        add_to(vector_mut(target, target_index(line, 1), len), d(1), d(2));
        sub_to(vector_mut(target, target_index(line, 2), len), d(2), d(1));
        sub_to(vector_mut(target, target_index(line, 3), len), d(1), d(3));
    }
}

/// Writes `Bᵀ d B` of every input tile of `images` into `tiles` (`[ξ][tile][channel]`).
pub(crate) fn transform_input(
    images: &[f32],
    tiles: &mut [f32],
    plan: &TilePlan,
    scratch: &mut TileScratch,
) {
    let channels = plan.channels;
    scratch.prepare(channels);
    let zeros = vec![0.0; channels];
    let tile_count = tiles.len() / (POSITIONS * channels);
    let mut tile = 0;
    for image in images.chunks_exact(plan.image_len()) {
        for tile_row in 0..plan.tile_rows() {
            let input_rows = [0, 1, 2, 3]
                .map(|y| TilePlan::input_index(2 * tile_row, y, plan.pad_top, plan.height));
            for tile_col in 0..plan.tile_cols() {
                // Along the tile's columns (y), reading the image in place: column x of
                // the tile becomes `half[4·i + x]`.
                for x in 0..4 {
                    let input_col =
                        TilePlan::input_index(2 * tile_col, x, plan.pad_left, plan.width);
                    let d = input_rows.map(|input_row| match (input_row, input_col) {
                        (Some(row), Some(col)) => {
                            let start = (row * plan.width + col) * channels;
                            &image[start..start + channels]
                        }
                        _ => &zeros[..],
                    });
                    let half = &mut scratch.half;
                    sub_to(vector_mut(half, x, channels), d[0], d[2]);
                    add_to(vector_mut(half, 4 + x, channels), d[1], d[2]);
                    sub_to(vector_mut(half, 8 + x, channels), d[2], d[1]);
                    sub_to(vector_mut(half, 12 + x, channels), d[1], d[3]);
                }
                // Along its rows (x), into row `tile` of each ξ's matrix.
                input_transform_1d(
                    &scratch.half,
                    tiles,
                    channels,
                    |y, x| y * 4 + x,
                    |y, x| (y * 4 + x) * tile_count + tile,
                );
                tile += 1;
            }
        }
    }
}

/// Applies `Aᵀ` along one axis: four lines of four vectors become two lines,
/// `(m0 + m1 + m2, m1 - m2 - m3)`, with the indices of [`input_transform_1d`].
fn output_transform_1d(
    source: &[f32],
    target: &mut [f32],
    len: usize,
    source_index: impl Fn(usize, usize) -> usize,
    target_index: impl Fn(usize, usize) -> usize,
) {
    for line in 0..4 {
        let m = |j: usize| vector(source, source_index(line, j), len);
        let first = vector_mut(target, target_index(line, 0), len);
        for (((o, &a), &b), &c) in first.iter_mut().zip(m(0)).zip(m(1)).zip(m(2)) {
            *o = a + b + c;
        }
        let second = vector_mut(target, target_index(line, 1), len);
        for (((o, &b), &c), &d) in second.iter_mut().zip(m(1)).zip(m(2)).zip(m(3)) {
            *o = b - c - d;
        }
    }
}

/// Writes `Aᵀ M A` of every tile in `products` (`[ξ][tile][filter]`) into the output images,
/// adding `bias` and, with `relu`, applying ReLU and filling `mask` (empty when not kept)
/// with whether each output is positive. Outputs past the image edge are dropped.
pub(crate) fn transform_output(
    products: &[f32],
    output: &mut [f32],
    mask: &mut [bool],
    bias: Option<&[f32]>,
    relu: bool,
    plan: &TilePlan,
    scratch: &mut TileScratch,
) {
    let filters = plan.filters;
    scratch.prepare(filters);
    let image_len = plan.out_height * plan.out_width * filters;
    let tile_count = products.len() / (POSITIONS * filters);
    let mut tile = 0;
    for (image_index, image) in output.chunks_exact_mut(image_len).enumerate() {
        for tile_row in 0..plan.tile_rows() {
            for tile_col in 0..plan.tile_cols() {
                // Along y: lines are columns x, giving rows 0 and 1 of `half`. Along x: lines
                // are those two rows, giving outputs (y, 0) and (y, 1) at 4·y and 4·y + 1.
                output_transform_1d(
                    products,
                    &mut scratch.half,
                    filters,
                    |x, y| (y * 4 + x) * tile_count + tile,
                    |x, y| y * 4 + x,
                );
                tile += 1;
                for y in 0..2 {
                    let source = &scratch.half[y * 4 * filters..(y + 1) * 4 * filters];
                    output_transform_1d_line(source, &mut scratch.tile, filters, y);
                }
                for y in 0..2 {
                    let row = 2 * tile_row + y;
                    if row >= plan.out_height {
                        break;
                    }
                    for x in 0..2 {
                        let col = 2 * tile_col + x;
                        if col >= plan.out_width {
                            break;
                        }
                        let start = (row * plan.out_width + col) * filters;
                        let out = &mut image[start..start + filters];
                        finish_output(out, vector(&scratch.tile, y * 4 + x, filters), bias, relu);
                        if !mask.is_empty() {
                            let start = image_index * image_len + start;
                            for (keep, &value) in mask[start..start + filters].iter_mut().zip(&*out)
                            {
                                *keep = value > 0.0;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Applies `Aᵀ` to one line of four vectors (`source`), writing the two results at
/// positions `4·line` and `4·line + 1` of `target`.
fn output_transform_1d_line(source: &[f32], target: &mut [f32], len: usize, line: usize) {
    let m = |j: usize| vector(source, j, len);
    let first = vector_mut(target, line * 4, len);
    for (((o, &a), &b), &c) in first.iter_mut().zip(m(0)).zip(m(1)).zip(m(2)) {
        *o = a + b + c;
    }
    let second = vector_mut(target, line * 4 + 1, len);
    for (((o, &b), &c), &d) in second.iter_mut().zip(m(1)).zip(m(2)).zip(m(3)) {
        *o = b - c - d;
    }
}

/// Writes `sums` plus `bias` into `out`, through ReLU when `relu` is set. One loop for the
/// three steps, because a plain copy compiles to a call to `memcpy`, which costs more than
/// the copy for 64 values.
fn finish_output(out: &mut [f32], sums: &[f32], bias: Option<&[f32]>, relu: bool) {
    match (bias, relu) {
        (Some(bias), true) => {
            for ((o, &sum), &b) in out.iter_mut().zip(sums).zip(bias) {
                *o = grit_tensor::activation::relu(sum + b);
            }
        }
        (Some(bias), false) => {
            for ((o, &sum), &b) in out.iter_mut().zip(sums).zip(bias) {
                *o = sum + b;
            }
        }
        (None, true) => {
            for (o, &sum) in out.iter_mut().zip(sums) {
                *o = grit_tensor::activation::relu(sum);
            }
        }
        (None, false) => out.copy_from_slice(sums),
    }
}

/// Writes `A dy Aᵀ` for every 2 × 2 tile of `grad` (output gradients of whole images,
/// zero past the image edge) into `tiles`, column-major: `[ξ][filter][tile]`.
///
/// The input gradient's products read these tiles as their left operand, whose packing in
/// matrixmultiply copies whole columns only when they are contiguous; row-major tiles made
/// those products about twice as slow. So the transform runs across [`GROUP`] tiles at once,
/// one filter at a time, and stores 16 contiguous values per ξ.
pub(crate) fn transform_output_grad(grad: &[f32], tiles: &mut [f32], plan: &TilePlan) {
    const PADDING: usize = usize::MAX;
    let filters = plan.filters;
    let tile_count = tiles.len() / (POSITIONS * filters);
    let image_len = plan.out_height * plan.out_width * filters;
    // For each tile of the group, where its gradients g(y, x) start in `grad`, at index
    // 2·y + x, or `PADDING` past the image edge.
    let mut starts = [[PADDING; 4]; GROUP];
    for first in (0..tile_count).step_by(GROUP) {
        let count = GROUP.min(tile_count - first);
        for (offset, tile_starts) in starts[..count].iter_mut().enumerate() {
            let tile = first + offset;
            let image = tile / plan.tiles_per_image();
            let within = tile % plan.tiles_per_image();
            let (tile_row, tile_col) = (within / plan.tile_cols(), within % plan.tile_cols());
            for (index, start) in tile_starts.iter_mut().enumerate() {
                let (row, col) = (2 * tile_row + index / 2, 2 * tile_col + index % 2);
                *start = if row < plan.out_height && col < plan.out_width {
                    image * image_len + (row * plan.out_width + col) * filters
                } else {
                    PADDING
                };
            }
        }
        for filter in 0..filters {
            let mut g = [[0.0f32; GROUP]; 4];
            for (lane, tile_starts) in starts[..count].iter().enumerate() {
                for (values, &start) in g.iter_mut().zip(tile_starts) {
                    if start != PADDING {
                        values[lane] = grad[start + filter];
                    }
                }
            }
            // Along y: column x of (g(0, x), g(1, x)) becomes h[i][x] for i in 0..4.
            let columns = [
                grad_transform_lanes(&g[0], &g[2]),
                grad_transform_lanes(&g[1], &g[3]),
            ];
            // Along x: row i of (h[i][0], h[i][1]) becomes ξ = 4·i + j.
            for (i, (first_column, second_column)) in columns[0].iter().zip(&columns[1]).enumerate()
            {
                let row = grad_transform_lanes(first_column, second_column);
                for (j, values) in row.iter().enumerate() {
                    let column = (4 * i + j) * filters + filter;
                    tiles[column * tile_count + first..][..count].copy_from_slice(&values[..count]);
                }
            }
        }
    }
}

/// Applies `A` to two lanes of values: `(g0, g0 + g1, g0 - g1, -g1)`.
fn grad_transform_lanes(g0: &[f32; GROUP], g1: &[f32; GROUP]) -> [[f32; GROUP]; 4] {
    let mut out = [[0.0; GROUP]; 4];
    for lane in 0..GROUP {
        out[0][lane] = g0[lane];
        out[1][lane] = g0[lane] + g1[lane];
        out[2][lane] = g0[lane] - g1[lane];
        out[3][lane] = -g1[lane];
    }
    out
}

/// Applies `B` along one axis of a 4 × 4 grid of vectors: `(v0, v1 - v2 + v3, v1 + v2 - v0,
/// -v3)`, with the indices of [`input_transform_1d`].
fn input_grad_transform_1d(
    source: &[f32],
    target: &mut [f32],
    len: usize,
    source_index: impl Fn(usize, usize) -> usize,
    target_index: impl Fn(usize, usize) -> usize,
) {
    for line in 0..4 {
        let v = |j: usize| vector(source, source_index(line, j), len);
        vector_mut(target, target_index(line, 0), len).copy_from_slice(v(0));
        let second = vector_mut(target, target_index(line, 1), len);
        for (((o, &b), &c), &d) in second.iter_mut().zip(v(1)).zip(v(2)).zip(v(3)) {
            *o = b - c + d;
        }
        let third = vector_mut(target, target_index(line, 2), len);
        for (((o, &a), &b), &c) in third.iter_mut().zip(v(0)).zip(v(1)).zip(v(2)) {
            *o = b + c - a;
        }
        for (o, &d) in vector_mut(target, target_index(line, 3), len)
            .iter_mut()
            .zip(v(3))
        {
            *o = -d;
        }
    }
}

/// Writes `B dV Bᵀ` of every tile in `tiles` (`[ξ][tile][channel]`) back onto the 4 × 4
/// input positions the tile came from, adding where tiles overlap. Positions in the padding
/// are dropped. `grad_images` must start at zero.
pub(crate) fn add_input_grad(
    tiles: &[f32],
    grad_images: &mut [f32],
    plan: &TilePlan,
    scratch: &mut TileScratch,
) {
    let channels = plan.channels;
    scratch.prepare(channels);
    let tile_count = tiles.len() / (POSITIONS * channels);
    let mut tile = 0;
    for image in grad_images.chunks_exact_mut(plan.image_len()) {
        for tile_row in 0..plan.tile_rows() {
            for tile_col in 0..plan.tile_cols() {
                input_grad_transform_1d(
                    tiles,
                    &mut scratch.half,
                    channels,
                    |x, y| (y * 4 + x) * tile_count + tile,
                    |x, y| y * 4 + x,
                );
                input_grad_transform_1d(
                    &scratch.half,
                    &mut scratch.tile,
                    channels,
                    |y, x| y * 4 + x,
                    |y, x| y * 4 + x,
                );
                tile += 1;
                for y in 0..4 {
                    let Some(row) =
                        TilePlan::input_index(2 * tile_row, y, plan.pad_top, plan.height)
                    else {
                        continue;
                    };
                    for x in 0..4 {
                        let Some(col) =
                            TilePlan::input_index(2 * tile_col, x, plan.pad_left, plan.width)
                        else {
                            continue;
                        };
                        let start = (row * plan.width + col) * channels;
                        let target = &mut image[start..start + channels];
                        for (t, &g) in
                            target
                                .iter_mut()
                                .zip(vector(&scratch.tile, y * 4 + x, channels))
                        {
                            *t += g;
                        }
                    }
                }
            }
        }
    }
}

/// Writes `G g Gᵀ` of a `(3, 3, channels, filters)` kernel into `transformed`
/// (`[ξ][channel][filter]`).
pub(crate) fn transform_kernel(kernel: &[f32], transformed: &mut [f32], plan: &TilePlan) {
    let len = plan.channels * plan.filters;
    // `G` along the kernel's rows: column x of three vectors becomes four at `half[4·x + i]`.
    let mut half = vec![0.0; 12 * len];
    for x in 0..3 {
        let g = |y: usize| vector(kernel, y * 3 + x, len);
        kernel_transform_1d(
            g(0),
            g(1),
            g(2),
            &mut half[4 * x * len..4 * (x + 1) * len],
            len,
        );
    }
    // `G` along the columns: for row i, the three vectors half[4·x + i] become ξ = 4·i + j.
    for i in 0..4 {
        let h = |x: usize| vector(&half, 4 * x + i, len);
        kernel_transform_1d(
            h(0),
            h(1),
            h(2),
            &mut transformed[4 * i * len..4 * (i + 1) * len],
            len,
        );
    }
}

/// Applies `G` to three vectors: `(g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2)`.
fn kernel_transform_1d(g0: &[f32], g1: &[f32], g2: &[f32], target: &mut [f32], len: usize) {
    vector_mut(target, 0, len).copy_from_slice(g0);
    let second = vector_mut(target, 1, len);
    for (((o, &a), &b), &c) in second.iter_mut().zip(g0).zip(g1).zip(g2) {
        *o = 0.5 * (a + b + c);
    }
    let third = vector_mut(target, 2, len);
    for (((o, &a), &b), &c) in third.iter_mut().zip(g0).zip(g1).zip(g2) {
        *o = 0.5 * (a - b + c);
    }
    vector_mut(target, 3, len).copy_from_slice(g2);
}

/// Writes `Gᵀ H G` of the transformed kernel gradient `transformed` (`[ξ][channel][filter]`)
/// into `kernel_grad`, laid out as the `(3, 3, channels, filters)` kernel.
pub(crate) fn kernel_grad_from_transformed(
    transformed: &[f32],
    kernel_grad: &mut [f32],
    plan: &TilePlan,
) {
    let len = plan.channels * plan.filters;
    // `Gᵀ` along ξ's rows: column j of four vectors becomes three at `half[3·j + y]`.
    let mut half = vec![0.0; 12 * len];
    for j in 0..4 {
        let h = |i: usize| vector(transformed, 4 * i + j, len);
        kernel_grad_transform_1d(
            [h(0), h(1), h(2), h(3)],
            &mut half[3 * j * len..3 * (j + 1) * len],
            len,
        );
    }
    // `Gᵀ` along the columns: for kernel row y, half[3·j + y] becomes (y, x) for x in 0..3.
    for y in 0..3 {
        let h = |j: usize| vector(&half, 3 * j + y, len);
        kernel_grad_transform_1d(
            [h(0), h(1), h(2), h(3)],
            &mut kernel_grad[3 * y * len..3 * (y + 1) * len],
            len,
        );
    }
}

/// Applies `Gᵀ` to four vectors: `(h0 + (h1 + h2) / 2, (h1 - h2) / 2, (h1 + h2) / 2 + h3)`.
fn kernel_grad_transform_1d(h: [&[f32]; 4], target: &mut [f32], len: usize) {
    let first = vector_mut(target, 0, len);
    for (((o, &a), &b), &c) in first.iter_mut().zip(h[0]).zip(h[1]).zip(h[2]) {
        *o = a + 0.5 * (b + c);
    }
    let second = vector_mut(target, 1, len);
    for ((o, &b), &c) in second.iter_mut().zip(h[1]).zip(h[2]) {
        *o = 0.5 * (b - c);
    }
    let third = vector_mut(target, 2, len);
    for (((o, &b), &c), &d) in third.iter_mut().zip(h[1]).zip(h[2]).zip(h[3]) {
        *o = 0.5 * (b + c) + d;
    }
}

/// Returns the matrix of position `xi` in a tile buffer (`[ξ][tile][len]`), `(tiles, len)`.
fn position_view(tiles: &[f32], xi: usize, len: usize) -> ArrayView2<'_, f32> {
    let size = tiles.len() / POSITIONS;
    ArrayView2::from_shape((size / len, len), &tiles[xi * size..(xi + 1) * size])
        .expect("a tile buffer holds 16 whole matrices")
}

fn position_view_mut(tiles: &mut [f32], xi: usize, len: usize) -> ArrayViewMut2<'_, f32> {
    let size = tiles.len() / POSITIONS;
    ArrayViewMut2::from_shape((size / len, len), &mut tiles[xi * size..(xi + 1) * size])
        .expect("a tile buffer holds 16 whole matrices")
}

/// Returns position `xi` of a column-major tile buffer (`[ξ][len][tile]`) as a
/// `(tiles, len)` matrix.
fn column_major_view(tiles: &[f32], xi: usize, len: usize) -> ArrayView2<'_, f32> {
    let rows = tiles.len() / (POSITIONS * len);
    ArrayView2::from_shape(
        (rows, len).strides((1, rows)),
        &tiles[xi * len * rows..(xi + 1) * len * rows],
    )
    .expect("a tile buffer holds whole columns")
}

/// Returns the transformed kernel's matrix at position `xi`, `(channels, filters)`.
fn kernel_view<'a>(transformed: &'a [f32], xi: usize, plan: &TilePlan) -> ArrayView2<'a, f32> {
    let len = plan.channels * plan.filters;
    ArrayView2::from_shape(
        (plan.channels, plan.filters),
        &transformed[xi * len..(xi + 1) * len],
    )
    .expect("the transformed kernel holds 16 matrices")
}

/// Multiplies the transformed input tiles by the transformed kernel: for every ξ,
/// `products[ξ] = tiles[ξ] · kernel[ξ]`.
pub(crate) fn multiply_forward(
    tiles: &[f32],
    kernel: &[f32],
    products: &mut [f32],
    plan: &TilePlan,
) {
    for xi in 0..POSITIONS {
        let a = position_view(tiles, xi, plan.channels);
        let b = kernel_view(kernel, xi, plan);
        let mut c = position_view_mut(products, xi, plan.filters);
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
    for xi in 0..POSITIONS {
        let a = position_view(tiles, xi, plan.channels);
        let b = column_major_view(grad_tiles, xi, plan.filters);
        let mut c = ArrayViewMut2::from_shape(
            (plan.channels, plan.filters),
            &mut kernel_grad[xi * len..(xi + 1) * len],
        )
        .expect("one kernel gradient per block");
        gemm_on_this_thread(1.0, &a.t(), &b, 0.0, &mut c);
    }
}

/// Computes the transformed input gradient of one block: for every ξ,
/// `input_grad_tiles[ξ] = grad_tiles[ξ] · kernel[ξ]ᵀ`.
pub(crate) fn multiply_input_grad(
    grad_tiles: &[f32],
    kernel: &[f32],
    input_grad_tiles: &mut [f32],
    plan: &TilePlan,
) {
    for xi in 0..POSITIONS {
        let a = column_major_view(grad_tiles, xi, plan.filters);
        let b = kernel_view(kernel, xi, plan);
        let mut c = position_view_mut(input_grad_tiles, xi, plan.channels);
        gemm_on_this_thread(1.0, &a, &b.t(), 0.0, &mut c);
    }
}
