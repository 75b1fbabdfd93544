//! The Sparkplug B payload in protobuf, written from the field numbers and
//! types of the published `sparkplug_b.proto` (Eclipse Sparkplug 3.0,
//! `org.eclipse.tahu.protobuf.Payload`). Only what an edge node sends and
//! the commands it reads are modelled; a decoder skips the other fields
//! (metadata, property sets, data sets, templates), as protobuf allows.

/// `Payload`: timestamp (ms since the epoch, UTC), metrics, sequence number.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
    #[prost(string, optional, tag = "4")]
    pub uuid: Option<String>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub body: Option<Vec<u8>>,
}

/// `Payload.Metric`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    #[prost(oneof = "Value", tags = "10, 11, 12, 13, 14, 15, 16")]
    pub value: Option<Value>,
}

/// The `value` oneof of a metric (scalar kinds only).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    /// Int8/16/32 (two's complement) and UInt8/16/32.
    #[prost(uint32, tag = "10")]
    Int(u32),
    /// Int64 (two's complement), UInt64 and DateTime.
    #[prost(uint64, tag = "11")]
    Long(u64),
    #[prost(float, tag = "12")]
    Float(f32),
    #[prost(double, tag = "13")]
    Double(f64),
    #[prost(bool, tag = "14")]
    Boolean(bool),
    /// String, Text and UUID.
    #[prost(string, tag = "15")]
    String(String),
    #[prost(bytes = "vec", tag = "16")]
    Bytes(Vec<u8>),
}

/// Sparkplug `DataType` codes used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum DataType {
    Int32 = 3,
    Int64 = 4,
    UInt64 = 8,
    Float = 9,
    Double = 10,
    Boolean = 11,
    String = 12,
    DateTime = 13,
}

/// A typed metric value, before it is put on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed {
    Int32(i32),
    Int64(i64),
    UInt64(u64),
    Float(f32),
    Double(f64),
    Boolean(bool),
    String(String),
    /// Milliseconds since the epoch, UTC.
    DateTime(u64),
    /// No value yet; the datatype still has to be declared.
    Null(DataType),
}

impl Typed {
    pub fn datatype(&self) -> DataType {
        match self {
            Typed::Int32(_) => DataType::Int32,
            Typed::Int64(_) => DataType::Int64,
            Typed::UInt64(_) => DataType::UInt64,
            Typed::Float(_) => DataType::Float,
            Typed::Double(_) => DataType::Double,
            Typed::Boolean(_) => DataType::Boolean,
            Typed::String(_) => DataType::String,
            Typed::DateTime(_) => DataType::DateTime,
            Typed::Null(t) => *t,
        }
    }

    fn wire(&self) -> Option<Value> {
        Some(match self {
            Typed::Int32(v) => Value::Int(*v as u32),
            Typed::Int64(v) => Value::Long(*v as u64),
            Typed::UInt64(v) | Typed::DateTime(v) => Value::Long(*v),
            Typed::Float(v) => Value::Float(*v),
            Typed::Double(v) => Value::Double(*v),
            Typed::Boolean(v) => Value::Boolean(*v),
            Typed::String(v) => Value::String(v.clone()),
            Typed::Null(_) => return None,
        })
    }
}

impl Metric {
    /// A named metric with its datatype always declared (births need it;
    /// data messages carry it too so a late subscriber can decode them).
    pub fn new(name: &str, value: &Typed, timestamp: u64) -> Self {
        let wire = value.wire();
        Metric {
            name: Some(name.to_string()),
            alias: None,
            timestamp: Some(timestamp),
            datatype: Some(value.datatype() as u32),
            is_historical: None,
            is_transient: None,
            is_null: wire.is_none().then_some(true),
            value: wire,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn signed_values_travel_as_twos_complement() {
        let m = Metric::new("x", &Typed::Int32(-2), 1);
        assert_eq!(m.value, Some(Value::Int(0xFFFF_FFFE)));
        let m = Metric::new("bdSeq", &Typed::Int64(-1), 1);
        assert_eq!(m.value, Some(Value::Long(u64::MAX)));
    }

    #[test]
    fn a_null_metric_keeps_its_datatype() {
        let m = Metric::new("Verdict/ID", &Typed::Null(DataType::String), 5);
        assert_eq!(m.is_null, Some(true));
        assert_eq!(m.value, None);
        assert_eq!(m.datatype, Some(12));
    }

    #[test]
    fn round_trips_and_skips_fields_it_does_not_model() {
        let p = Payload {
            timestamp: Some(1_700_000_000_000),
            metrics: vec![Metric::new("a", &Typed::Boolean(true), 3)],
            seq: Some(255),
            uuid: None,
            body: None,
        };
        let mut bytes = p.encode_to_vec();
        // An unknown field 6 (extension range), varint 7: must be skipped.
        bytes.extend_from_slice(&[0x30, 0x07]);
        assert_eq!(Payload::decode(bytes.as_slice()).unwrap(), p);
    }
}
