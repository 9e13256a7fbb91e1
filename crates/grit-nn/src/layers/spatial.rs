//! Window placement along the spatial axes, shared by the convolution and pooling layers.

use serde::{Deserialize, Serialize};

/// The padding of a windowed 2-D layer (convolution, pooling), with Keras's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// No padding: every window lies inside the input, so an axis of size `n` with window
    /// `k` and stride `s` gives `floor((n - k) / s) + 1` outputs.
    #[default]
    Valid,
    /// Padding that gives `ceil(n / s)` outputs per axis. The total padding is
    /// `max((ceil(n / s) - 1) · s + k - n, 0)`; the smaller half goes before the first
    /// element (top, left) and the rest after it, as in Keras and TensorFlow.
    Same,
}

impl Padding {
    /// Returns Keras's name for the padding (`"valid"` or `"same"`).
    pub fn name(self) -> &'static str {
        match self {
            Padding::Valid => "valid",
            Padding::Same => "same",
        }
    }
}

/// The part of one window that lies inside the input, along one axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// The first input index inside the window.
    pub input_start: usize,
    /// The position of that index within the window (non-zero only for windows that start
    /// in the padding).
    pub window_start: usize,
    /// The number of input indices inside the window.
    pub len: usize,
}

impl Span {
    /// Returns the input indices inside the window.
    pub fn input_range(&self) -> std::ops::Range<usize> {
        self.input_start..self.input_start + self.len
    }

    /// Returns the input index at position `window_index` of the window, or `None` when
    /// that position lies in the padding.
    pub fn input_index(&self, window_index: usize) -> Option<usize> {
        let offset = window_index.checked_sub(self.window_start)?;
        (offset < self.len).then_some(self.input_start + offset)
    }
}

/// The placement of all windows along one spatial axis.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct AxisWindows {
    /// The input size along the axis.
    pub input: usize,
    /// The padding before the first input element.
    pub pad_before: usize,
    /// One span per output position.
    pub spans: Vec<Span>,
}

impl AxisWindows {
    /// Places windows of size `window` every `stride` elements over an axis of size `input`.
    /// Returns `None` when no window fits, which happens only for valid padding with a
    /// window larger than the input. `window`, `stride` and `input` must be at least 1.
    pub fn new(input: usize, window: usize, stride: usize, padding: Padding) -> Option<Self> {
        debug_assert!(input > 0 && window > 0 && stride > 0);
        let (output, pad_before) = match padding {
            Padding::Valid => {
                if window > input {
                    return None;
                }
                ((input - window) / stride + 1, 0)
            }
            Padding::Same => {
                let output = input.div_ceil(stride);
                // A pooling window near usize::MAX would overflow here. Saturating keeps every
                // window covering the whole input, which is what such a window does.
                let total = ((output - 1) * stride)
                    .saturating_add(window)
                    .saturating_sub(input);
                (output, total / 2)
            }
        };
        let spans = (0..output)
            .map(|position| {
                // The window covers the padded indices [start, start + window), where the
                // padded index p is the input index p - pad_before.
                let start = position * stride;
                let first = start.max(pad_before);
                let end = start.saturating_add(window).min(pad_before + input);
                Span {
                    input_start: first - pad_before,
                    window_start: first - start,
                    len: end - first,
                }
            })
            .collect();
        Some(AxisWindows {
            input,
            pad_before,
            spans,
        })
    }

    /// Returns the number of output positions.
    pub fn output(&self) -> usize {
        self.spans.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_padding_keeps_windows_inside() {
        let axis = AxisWindows::new(7, 3, 2, Padding::Valid).unwrap();
        assert_eq!(axis.output(), 3);
        assert_eq!(axis.pad_before, 0);
        let starts: Vec<usize> = axis.spans.iter().map(|s| s.input_start).collect();
        assert_eq!(starts, vec![0, 2, 4]);
        assert!(axis.spans.iter().all(|s| s.len == 3 && s.window_start == 0));
        assert_eq!(AxisWindows::new(2, 3, 1, Padding::Valid), None);
    }

    #[test]
    fn same_padding_window_near_usize_max() {
        // Such a window covers the whole input from every position, and placing it must not
        // overflow.
        let axis = AxisWindows::new(4, usize::MAX, 1, Padding::Same).unwrap();
        assert_eq!(axis.output(), 4);
        for span in &axis.spans {
            assert_eq!(span.input_range(), 0..4);
        }
    }

    #[test]
    fn same_padding_splits_like_keras() {
        // 5 inputs, window 4, stride 1: total padding 3, one before and two after.
        let axis = AxisWindows::new(5, 4, 1, Padding::Same).unwrap();
        assert_eq!(axis.output(), 5);
        assert_eq!(axis.pad_before, 1);
        assert_eq!(
            axis.spans[0],
            Span {
                input_start: 0,
                window_start: 1,
                len: 3
            }
        );
        assert_eq!(
            axis.spans[4],
            Span {
                input_start: 3,
                window_start: 0,
                len: 2
            }
        );

        // 6 inputs, window 3, stride 2: total padding 1, all of it after.
        let axis = AxisWindows::new(6, 3, 2, Padding::Same).unwrap();
        assert_eq!(axis.output(), 3);
        assert_eq!(axis.pad_before, 0);
        assert_eq!(axis.spans[2].len, 2);

        // A window larger than the input still gives one output per stride.
        let axis = AxisWindows::new(2, 5, 1, Padding::Same).unwrap();
        assert_eq!(axis.output(), 2);
        assert_eq!(axis.pad_before, 2);
        assert!(axis.spans.iter().all(|s| s.len == 2));
    }

    #[test]
    fn every_same_window_touches_the_input() {
        for input in 1..12 {
            for window in 1..6 {
                for stride in 1..5 {
                    let axis = AxisWindows::new(input, window, stride, Padding::Same).unwrap();
                    assert_eq!(axis.output(), input.div_ceil(stride));
                    for span in &axis.spans {
                        assert!(span.len >= 1, "{input} {window} {stride}: {span:?}");
                        assert!(span.window_start + span.len <= window);
                        assert!(span.input_start + span.len <= input);
                    }
                }
            }
        }
    }
}
