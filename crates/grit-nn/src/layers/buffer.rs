//! Reuse of the per-batch buffers that layers keep between passes.

use grit_tensor::Tensor;
use grit_tensor::parallel::block_len;
use grit_tensor::rayon::prelude::*;
use ndarray::IxDyn;

/// Gives `buffer` the shape `shape`, keeping its allocation when the capacity suffices.
///
/// The contents are unspecified afterwards, so callers overwrite every element. A training
/// run changes shape only when the batch size changes (usually the last batch of an epoch),
/// and the next full batch then fits in the capacity kept from before.
pub(crate) fn reshape_buffer(buffer: &mut Tensor, shape: &[usize]) {
    if buffer.shape() == shape {
        return;
    }
    let (mut data, _) = std::mem::take(buffer).into_raw_vec_and_offset();
    data.resize(shape.iter().product(), 0.0);
    *buffer = Tensor::from_shape_vec(IxDyn(shape), data)
        .expect("a vector resized to the element count fits the shape");
}

/// Copies `source` into `buffer`, reusing the buffer's allocation.
pub(crate) fn copy_into_buffer(buffer: &mut Tensor, source: &Tensor) {
    reshape_buffer(buffer, source.shape());
    match (buffer.as_slice_mut(), source.as_slice()) {
        (Some(target), Some(source)) => {
            let part = block_len(target.len());
            target
                .par_chunks_mut(part)
                .zip(source.par_chunks(part))
                .for_each(|(target, source)| target.copy_from_slice(source));
        }
        _ => buffer.assign(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_keeps_capacity() {
        let mut buffer = Tensor::zeros(IxDyn(&[4, 3]));
        let pointer = buffer.as_ptr();
        reshape_buffer(&mut buffer, &[2, 3]);
        assert_eq!(buffer.shape(), &[2, 3]);
        reshape_buffer(&mut buffer, &[4, 3]);
        assert_eq!(buffer.shape(), &[4, 3]);
        assert_eq!(buffer.as_ptr(), pointer);
    }

    #[test]
    fn copy_matches_source() {
        let mut buffer = Tensor::zeros(IxDyn(&[1]));
        let source = Tensor::from_shape_fn(IxDyn(&[2, 2]), |i| (i[0] * 2 + i[1]) as f32);
        copy_into_buffer(&mut buffer, &source);
        assert_eq!(buffer, source);
    }
}
