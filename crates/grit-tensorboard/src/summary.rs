//! Builders for the summary values that TF2's `tf.summary` writes and TensorBoard's plugins read.
//!
//! All three kinds use the tensor form: a [`TensorProto`] in the value plus
//! [`SummaryMetadata`] naming the plugin. The metadata is attached to every point, not only the
//! first one of a tag, so every point is self-describing at a cost of about 15 bytes.

use crate::proto::summary::{Value, value};
use crate::proto::tensor_shape_proto::Dim;
use crate::proto::{
    DataClass, DataType, PluginData, SummaryMetadata, TensorProto, TensorShapeProto,
};

/// Number of histogram buckets TF2's `tf.summary.histogram` uses when none is given.
pub const DEFAULT_BUCKET_COUNT: usize = 30;

/// Plugin name of scalar values.
pub const SCALARS_PLUGIN: &str = "scalars";
/// Plugin name of histogram values.
pub const HISTOGRAMS_PLUGIN: &str = "histograms";
/// Plugin name of text values.
pub const TEXT_PLUGIN: &str = "text";

/// Builds a scalar value: a rank-0 `DT_FLOAT` tensor with plugin `"scalars"`.
///
/// The value is stored in `float_val`, which protobuf writes even when it is 0.0. `DT_FLOAT`
/// rather than `DT_DOUBLE` matters because `tensorboard-data-server` 0.7.2, the default loader
/// of TensorBoard 2.21.0, drops `DT_DOUBLE` scalars.
pub fn scalar_value(tag: &str, value: f32) -> Value {
    let tensor = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(TensorShapeProto::default()),
        float_val: vec![value],
        ..TensorProto::default()
    };
    tensor_value(tag, tensor, SCALARS_PLUGIN, DataClass::Scalar)
}

/// Builds a histogram value from bucket rows: a `[k, 3]` `DT_DOUBLE` tensor with plugin
/// `"histograms"`.
///
/// Each row is `[left_edge, right_edge, count]`. [`histogram_buckets`] computes the rows the
/// way TF2 does.
pub fn histogram_value(tag: &str, buckets: &[[f64; 3]]) -> Value {
    let tensor = TensorProto {
        dtype: DataType::DtDouble as i32,
        tensor_shape: Some(TensorShapeProto {
            dim: vec![dim(buckets.len()), dim(3)],
            unknown_rank: false,
        }),
        double_val: buckets.iter().flatten().copied().collect(),
        ..TensorProto::default()
    };
    tensor_value(tag, tensor, HISTOGRAMS_PLUGIN, DataClass::Tensor)
}

/// Builds a text value: a rank-0 `DT_STRING` tensor with plugin `"text"`.
///
/// TensorBoard renders the text as Markdown.
pub fn text_value(tag: &str, text: &str) -> Value {
    let tensor = TensorProto {
        dtype: DataType::DtString as i32,
        tensor_shape: Some(TensorShapeProto::default()),
        string_val: vec![text.as_bytes().to_vec()],
        ..TensorProto::default()
    };
    tensor_value(tag, tensor, TEXT_PLUGIN, DataClass::Tensor)
}

fn tensor_value(tag: &str, tensor: TensorProto, plugin_name: &str, data_class: DataClass) -> Value {
    let metadata = SummaryMetadata {
        plugin_data: Some(PluginData {
            plugin_name: plugin_name.to_owned(),
            // Version 0 of the plugin's content message has only default fields, so it
            // serializes to nothing.
            content: Vec::new(),
        }),
        data_class: data_class as i32,
        ..SummaryMetadata::default()
    };
    Value {
        tag: tag.to_owned(),
        metadata: Some(metadata),
        value: Some(value::Value::Tensor(tensor)),
    }
}

fn dim(size: usize) -> Dim {
    Dim {
        size: size as i64,
        name: String::new(),
    }
}

/// Histogram buckets of a set of values, with the count of values left out.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramBuckets {
    /// Rows of `[left_edge, right_edge, count]`, in increasing order of the edges.
    pub rows: Vec<[f64; 3]>,
    /// Number of NaN or infinite inputs, which are not counted in any bucket.
    pub non_finite: usize,
}

/// Sorts `values` into `bucket_count` equal-width buckets, following TF2's
/// `tf.summary.histogram` (TensorBoard 2.21.0 `plugins/histogram/summary_v2.py`).
///
/// The rules, with values widened to f64 first:
/// - The buckets span `[min, max]` of the finite values. Bucket `i` has left edge
///   `min + i * width` with `width = (max - min) / bucket_count`, and the last right edge is
///   exactly `max`.
/// - A value goes to bucket `floor((x - min) / width)`, clamped to the last bucket, so `max`
///   lands in the last bucket.
/// - If all finite values are equal, every row is `[x, x, 0]` except the last, which is
///   `[x, x, n]`.
/// - With no finite values, the result is `bucket_count` rows of zeros.
/// - With `bucket_count == 0`, the result has no rows.
///
/// NaN and infinite values are skipped and counted in [`HistogramBuckets::non_finite`].
/// TF2 has no such rule because it lets them poison `min` and `max`.
pub fn histogram_buckets(values: &[f32], bucket_count: usize) -> HistogramBuckets {
    let finite: Vec<f64> = values
        .iter()
        .filter(|value| value.is_finite())
        .map(|&value| f64::from(value))
        .collect();
    let non_finite = values.len() - finite.len();

    let rows = if bucket_count == 0 {
        Vec::new()
    } else if finite.is_empty() {
        vec![[0.0; 3]; bucket_count]
    } else {
        bucket_finite_values(&finite, bucket_count)
    };
    HistogramBuckets { rows, non_finite }
}

/// Buckets a non-empty slice of finite values into `bucket_count > 0` buckets.
fn bucket_finite_values(values: &[f64], bucket_count: usize) -> Vec<[f64; 3]> {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let range = max - min;

    if range == 0.0 {
        let mut rows = vec![[max, max, 0.0]; bucket_count];
        rows[bucket_count - 1][2] = values.len() as f64;
        return rows;
    }

    let width = range / bucket_count as f64;
    let mut counts = vec![0.0; bucket_count];
    for &value in values {
        // The quotient lies in [0, bucket_count] up to rounding. The clamp moves the max,
        // whose quotient is bucket_count, into the last bucket.
        let index = ((value - min) / width).floor() as usize;
        counts[index.min(bucket_count - 1)] += 1.0;
    }

    (0..bucket_count)
        .map(|i| {
            let left = min + i as f64 * width;
            let right = if i + 1 == bucket_count {
                max
            } else {
                min + (i + 1) as f64 * width
            };
            [left, right, counts[i]]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Summary;
    use prost::Message;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    fn summary_hex(value: Value) -> String {
        hex(&Summary { value: vec![value] }.encode_to_vec())
    }

    #[test]
    fn scalar_summary_golden_bytes() {
        // Summary{value{tag "loss", tensor{dtype DT_FLOAT, tensor_shape {}, float_val [0.5]},
        // metadata{plugin_data{plugin_name "scalars"}, data_class SCALAR}}}, as Python protobuf
        // serializes it:
        //   0a 21             Summary.value, 33 bytes
        //   0a 04 "loss"      Value.tag
        //   42 0a             Value.tensor, 10 bytes
        //     08 01           dtype = DT_FLOAT
        //     12 00           tensor_shape = {} (rank 0)
        //     2a 04 0000003f  float_val, packed, [0.5]
        //   4a 0d             Value.metadata, 13 bytes
        //     0a 09 0a 07 "scalars"  plugin_data.plugin_name
        //     20 01           data_class = SCALAR
        let expected = "0a210a046c6f7373420a080112002a040000003f4a0d0a090a077363616c617273\
                        2001";
        assert_eq!(summary_hex(scalar_value("loss", 0.5)), expected);
    }

    #[test]
    fn scalar_zero_is_encoded() {
        // A packed float_val of [0.0] still takes its 6 bytes: 2a 04 00000000.
        let bytes = Summary {
            value: vec![scalar_value("acc", 0.0)],
        }
        .encode_to_vec();
        assert!(hex(&bytes).contains("2a0400000000"), "{}", hex(&bytes));
    }

    #[test]
    fn text_summary_golden_bytes() {
        // Tensor: dtype DT_STRING (08 07), tensor_shape {} (12 00), string_val "hi" (42 02 6869);
        // metadata: plugin_name "text", data_class TENSOR (20 02).
        let expected = "0a1d0a056e6f746573420808071200420268694a0a0a060a04746578742002";
        assert_eq!(summary_hex(text_value("notes", "hi")), expected);
    }

    #[test]
    fn histogram_summary_golden_bytes() {
        // Tensor: dtype DT_DOUBLE (08 02), shape [1, 3] (12 08 1202 0801 1202 0803),
        // double_val packed, 24 bytes (32 18): 0.0, 1.0, 2.0;
        // metadata: plugin_name "histograms", data_class TENSOR.
        let expected = "0a3d0a0177422608021208120208011202080332180000000000000000000000000000\
                        f03f00000000000000404a100a0c0a0a686973746f6772616d732002";
        assert_eq!(
            summary_hex(histogram_value("w", &[[0.0, 1.0, 2.0]])),
            expected
        );
    }

    #[test]
    fn buckets_spread_over_range() {
        let buckets = histogram_buckets(&[0.0, 1.0, 1.5, 3.0], 3);
        assert_eq!(buckets.non_finite, 0);
        assert_eq!(
            buckets.rows,
            vec![[0.0, 1.0, 1.0], [1.0, 2.0, 2.0], [2.0, 3.0, 1.0]]
        );
    }

    #[test]
    fn buckets_put_max_in_last_bucket() {
        let buckets = histogram_buckets(&[-1.0, 1.0], 2);
        assert_eq!(buckets.rows, vec![[-1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]);
    }

    #[test]
    fn buckets_last_edge_is_exact_max() {
        // 0.1 * 3 is not exactly 0.3 in floating point, so the edge must be set, not computed.
        let values = [0.0, 0.3_f32];
        let buckets = histogram_buckets(&values, 3);
        assert_eq!(buckets.rows[2][1], f64::from(0.3_f32));
        assert_eq!(buckets.rows.len(), 3);
    }

    #[test]
    fn buckets_default_count_totals() {
        let values: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let buckets = histogram_buckets(&values, DEFAULT_BUCKET_COUNT);
        assert_eq!(buckets.rows.len(), 30);
        assert_eq!(buckets.rows[0][0], 0.0);
        assert_eq!(buckets.rows[29][1], 99.0);
        let total: f64 = buckets.rows.iter().map(|row| row[2]).sum();
        assert_eq!(total, 100.0);
        for pair in buckets.rows.windows(2) {
            assert_eq!(pair[0][1], pair[1][0], "edges must be contiguous");
        }
    }

    #[test]
    fn buckets_all_equal_values() {
        let buckets = histogram_buckets(&[2.5, 2.5, 2.5], 4);
        assert_eq!(
            buckets.rows,
            vec![
                [2.5, 2.5, 0.0],
                [2.5, 2.5, 0.0],
                [2.5, 2.5, 0.0],
                [2.5, 2.5, 3.0]
            ]
        );
    }

    #[test]
    fn buckets_empty_input() {
        let buckets = histogram_buckets(&[], 2);
        assert_eq!(buckets.rows, vec![[0.0; 3], [0.0; 3]]);
        assert_eq!(buckets.non_finite, 0);
    }

    #[test]
    fn buckets_zero_count() {
        let buckets = histogram_buckets(&[1.0, 2.0], 0);
        assert!(buckets.rows.is_empty());
    }

    #[test]
    fn buckets_skip_non_finite() {
        let values = [f32::NAN, 1.0, f32::INFINITY, 3.0, f32::NEG_INFINITY];
        let buckets = histogram_buckets(&values, 2);
        assert_eq!(buckets.non_finite, 3);
        assert_eq!(buckets.rows, vec![[1.0, 2.0, 1.0], [2.0, 3.0, 1.0]]);
    }

    #[test]
    fn buckets_only_non_finite() {
        let buckets = histogram_buckets(&[f32::NAN, f32::INFINITY], 2);
        assert_eq!(buckets.non_finite, 2);
        assert_eq!(buckets.rows, vec![[0.0; 3], [0.0; 3]]);
    }
}
