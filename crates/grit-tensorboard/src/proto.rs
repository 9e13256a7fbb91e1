//! Protobuf messages of the TensorBoard event format, written by hand with `prost` derives.
//!
//! Only the fields this crate writes or its tests read are declared. The field numbers match
//! `tensorboard/compat/proto/{event,summary,tensor,tensor_shape,types}.proto` as shipped in
//! the `tensorboard` 2.21.0 Python package. Fields that are not declared here are skipped when
//! decoding, so files written by TensorFlow still decode.

/// One record of an event file: a timestamped, stepped payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Wall-clock time in seconds since the Unix epoch, with a fractional part.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// Global step the payload belongs to (the x axis in TensorBoard).
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// Payload of the event.
    #[prost(oneof = "event::What", tags = "3, 5")]
    pub what: Option<event::What>,
}

/// Nested types of [`Event`].
pub mod event {
    /// Payload of an [`Event`](super::Event) (the `what` oneof).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum What {
        /// Format version, `"brain.Event:2"` in the first record of every file.
        #[prost(string, tag = "3")]
        FileVersion(String),
        /// Summary values recorded at the event's step.
        #[prost(message, tag = "5")]
        Summary(super::Summary),
    }
}

/// A set of tagged values recorded together.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// Values in this summary. Several values may share one event.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<summary::Value>,
}

/// Nested types of [`Summary`].
pub mod summary {
    /// One tagged value of a [`Summary`](super::Summary).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        /// Name of the time series, e.g. `epoch_loss`.
        #[prost(string, tag = "1")]
        pub tag: String,
        /// Plugin and data class of the value.
        #[prost(message, optional, tag = "9")]
        pub metadata: Option<super::SummaryMetadata>,
        /// Data of the value (the `value` oneof).
        #[prost(oneof = "value::Value", tags = "2, 8")]
        pub value: Option<value::Value>,
    }

    /// Nested types of [`Value`].
    pub mod value {
        /// Data of a summary [`Value`](super::Value).
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// Legacy scalar form (TF1, PyTorch), read here but never written.
            #[prost(float, tag = "2")]
            SimpleValue(f32),
            /// Tensor form used by TF2 for scalars, histograms and text.
            #[prost(message, tag = "8")]
            Tensor(crate::proto::TensorProto),
        }
    }
}

/// Metadata that routes a summary value to a TensorBoard plugin.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    /// Plugin that owns the value.
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
    /// Name shown in place of the tag, if set.
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// Longer description of the series.
    #[prost(string, tag = "3")]
    pub summary_description: String,
    /// Kind of data, as a [`DataClass`] value.
    #[prost(enumeration = "DataClass", tag = "4")]
    pub data_class: i32,
}

/// Plugin name and plugin-specific content of a [`SummaryMetadata`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    /// Plugin name: `"scalars"`, `"histograms"` or `"text"` for the values this crate writes.
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    /// Serialized plugin-specific message. Empty for version 0 of all three plugins.
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// Kind of data stored in a summary value (`SummaryMetadata.data_class`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataClass {
    /// Not set. TensorBoard then derives the class from the plugin name.
    Unknown = 0,
    /// A rank-0 numeric tensor per step.
    Scalar = 1,
    /// A tensor of any shape per step.
    Tensor = 2,
    /// A sequence of binary blobs per step.
    BlobSequence = 3,
}

/// A serialized tensor.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Element type, as a [`DataType`] value.
    #[prost(enumeration = "DataType", tag = "1")]
    pub dtype: i32,
    /// Shape of the tensor. An empty or absent shape means rank 0.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    /// Elements as raw little-endian bytes, the alternative to the typed `*_val` fields.
    #[prost(bytes = "vec", tag = "4")]
    pub tensor_content: Vec<u8>,
    /// Elements of a `DT_FLOAT` tensor, row-major.
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    /// Elements of a `DT_DOUBLE` tensor, row-major.
    #[prost(double, repeated, tag = "6")]
    pub double_val: Vec<f64>,
    /// Elements of a `DT_STRING` tensor as byte strings, row-major.
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

/// Element type of a [`TensorProto`] (a subset of TensorFlow's `DataType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Not set.
    DtInvalid = 0,
    /// 32-bit IEEE float.
    DtFloat = 1,
    /// 64-bit IEEE float.
    DtDouble = 2,
    /// Byte string.
    DtString = 7,
}

/// Shape of a [`TensorProto`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// Dimensions from outermost to innermost. Empty for a scalar.
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<tensor_shape_proto::Dim>,
    /// Whether the rank is unknown, in which case `dim` is ignored.
    #[prost(bool, tag = "3")]
    pub unknown_rank: bool,
}

/// Nested types of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// One dimension of a [`TensorShapeProto`](super::TensorShapeProto).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dim {
        /// Size of the dimension, or -1 if unknown.
        #[prost(int64, tag = "1")]
        pub size: i64,
        /// Optional name of the dimension.
        #[prost(string, tag = "2")]
        pub name: String,
    }
}
