//! The order in which an epoch visits the training samples.

use std::ops::Range;

use grit_tensor::Rng;

/// The training samples' indices in the order of one epoch.
///
/// The indices are stored in the smallest of `u16`, `u32` and `usize` that fits the range's
/// last index. For MNIST's 60000 samples that is `u16`, which takes a quarter of the memory
/// of `usize` (0.34 MiB less). Orders of any index type shuffle to the same permutation,
/// because the shuffle only swaps positions.
#[derive(Debug)]
pub(crate) enum EpochOrder {
    /// Indices of a range whose last index fits in `u16`.
    U16(Vec<u16>),
    /// Indices of a range whose last index fits in `u32` but not in `u16`.
    U32(Vec<u32>),
    /// Indices of a range whose last index does not fit in `u32`.
    Usize(Vec<usize>),
}

impl EpochOrder {
    /// Returns the indices of `samples` in increasing order.
    pub(crate) fn new(samples: Range<usize>) -> Self {
        let last = samples.end.saturating_sub(1);
        if u16::try_from(last).is_ok() {
            EpochOrder::U16(samples.map(u16::from_index).collect())
        } else if u32::try_from(last).is_ok() {
            EpochOrder::U32(samples.map(u32::from_index).collect())
        } else {
            EpochOrder::Usize(samples.collect())
        }
    }

    /// Puts the indices of `samples` (the range given to [`EpochOrder::new`]) back in
    /// increasing order, then shuffles them with `rng` when one is given.
    pub(crate) fn reset(&mut self, samples: Range<usize>, rng: Option<&mut Rng>) {
        match self {
            EpochOrder::U16(order) => refill(order, samples, rng),
            EpochOrder::U32(order) => refill(order, samples, rng),
            EpochOrder::Usize(order) => refill(order, samples, rng),
        }
    }

    /// Returns the number of batches of `batch_size` samples in an epoch, the last one
    /// possibly smaller.
    pub(crate) fn batch_count(&self, batch_size: usize) -> usize {
        let len = match self {
            EpochOrder::U16(order) => order.len(),
            EpochOrder::U32(order) => order.len(),
            EpochOrder::Usize(order) => order.len(),
        };
        len.div_ceil(batch_size)
    }

    /// Replaces the contents of `indices` with the indices of batch `step`, which is empty
    /// past the last batch.
    pub(crate) fn batch_into(&self, step: usize, batch_size: usize, indices: &mut Vec<usize>) {
        match self {
            EpochOrder::U16(order) => copy_batch(order, step, batch_size, indices),
            EpochOrder::U32(order) => copy_batch(order, step, batch_size, indices),
            EpochOrder::Usize(order) => copy_batch(order, step, batch_size, indices),
        }
    }
}

/// The index type of an [`EpochOrder`]: `u16`, `u32` or `usize`.
trait SampleIndex: Copy {
    /// Converts `index`, which [`EpochOrder::new`] checked to fit.
    fn from_index(index: usize) -> Self;
    /// Returns the index as `usize`.
    fn to_index(self) -> usize;
}

impl SampleIndex for u16 {
    fn from_index(index: usize) -> Self {
        index as u16
    }

    fn to_index(self) -> usize {
        self as usize
    }
}

impl SampleIndex for u32 {
    fn from_index(index: usize) -> Self {
        index as u32
    }

    fn to_index(self) -> usize {
        self as usize
    }
}

impl SampleIndex for usize {
    fn from_index(index: usize) -> Self {
        index
    }

    fn to_index(self) -> usize {
        self
    }
}

/// Writes the indices of `samples` into `order` in increasing order, then shuffles them
/// with `rng` when one is given.
fn refill<T: SampleIndex>(order: &mut [T], samples: Range<usize>, rng: Option<&mut Rng>) {
    for (slot, index) in order.iter_mut().zip(samples) {
        *slot = T::from_index(index);
    }
    if let Some(rng) = rng {
        rng.shuffle(order);
    }
}

/// Replaces the contents of `indices` with batch `step` of `order`, or with nothing past
/// the last batch.
fn copy_batch<T: SampleIndex>(
    order: &[T],
    step: usize,
    batch_size: usize,
    indices: &mut Vec<usize>,
) {
    indices.clear();
    if let Some(batch) = order.chunks(batch_size).nth(step) {
        indices.extend(batch.iter().map(|&index| index.to_index()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns every batch of `order` for batches of `batch_size`.
    fn batches(order: &EpochOrder, batch_size: usize) -> Vec<Vec<usize>> {
        let mut indices = Vec::new();
        (0..order.batch_count(batch_size))
            .map(|step| {
                order.batch_into(step, batch_size, &mut indices);
                indices.clone()
            })
            .collect()
    }

    #[test]
    fn index_types_shuffle_alike() {
        let samples = 3..1003;
        let mut as_u16 = EpochOrder::new(samples.clone());
        assert!(matches!(as_u16, EpochOrder::U16(_)));
        let mut as_u32 = EpochOrder::U32(samples.clone().map(|i| i as u32).collect());
        let mut as_usize = EpochOrder::Usize(samples.clone().collect());
        let (mut first, mut second, mut third) = (Rng::new(7), Rng::new(7), Rng::new(7));
        for _ in 0..3 {
            as_u16.reset(samples.clone(), Some(&mut first));
            as_u32.reset(samples.clone(), Some(&mut second));
            as_usize.reset(samples.clone(), Some(&mut third));
            assert_eq!(batches(&as_u16, 128), batches(&as_usize, 128));
            assert_eq!(batches(&as_u32, 128), batches(&as_usize, 128));
        }
        let mut sorted: Vec<usize> = batches(&as_u16, 128).concat();
        sorted.sort_unstable();
        assert_eq!(sorted, samples.collect::<Vec<_>>());
    }

    #[test]
    fn unshuffled_batches_in_order() {
        let mut order = EpochOrder::new(0..10);
        order.reset(0..10, None);
        assert_eq!(order.batch_count(4), 3);
        assert_eq!(
            batches(&order, 4),
            vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
        );
        let mut past_end = vec![1, 2];
        order.batch_into(3, 4, &mut past_end);
        assert!(past_end.is_empty());
    }

    // The ranges past `u32::MAX` need a 64-bit `usize`.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn each_range_gets_the_smallest_type() {
        let u16_end = u16::MAX as usize + 1;
        let u32_end = u32::MAX as usize + 1;
        let cases = [
            (u16_end - 1, "u16"),
            (u16_end, "u16"),
            (u16_end + 1, "u32"),
            (u32_end, "u32"),
            (u32_end + 1, "usize"),
        ];
        for (end, expected) in cases {
            let order = EpochOrder::new(end - 2..end);
            let kind = match order {
                EpochOrder::U16(_) => "u16",
                EpochOrder::U32(_) => "u32",
                EpochOrder::Usize(_) => "usize",
            };
            assert_eq!(kind, expected, "range ending at {end}");
            assert_eq!(batches(&order, 8), vec![vec![end - 2, end - 1]]);
        }
    }

    #[test]
    fn empty_range_has_no_batches() {
        let order = EpochOrder::new(0..0);
        assert_eq!(order.batch_count(4), 0);
    }
}
