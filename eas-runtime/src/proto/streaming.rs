//! `streaming`: the queue service's messages (asynchronous inference).
//!
//! ```text
//! message DataFrameProto { uint64 index = 1; map<string, string> tags = 2; bytes data = 3; string message = 4; }
//! message DataFrameListProto { repeated DataFrameProto index = 1; }
//! message AttributesProto { map<string, string> attributes = 1; }
//! ```
//!
//! Maps are `BTreeMap`s so that encoding is deterministic.

use std::collections::BTreeMap;

use bytes::Bytes;

/// One queue item: its index, tags, payload and an optional message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DataFrameProto {
    /// The item's index in its queue (positive, increasing).
    #[prost(uint64, tag = "1")]
    pub index: u64,
    /// The item's tags (for example `requestId`).
    #[prost(btree_map = "string, string", tag = "2")]
    pub tags: BTreeMap<String, String>,
    /// The payload.
    #[prost(bytes = "bytes", tag = "3")]
    pub data: Bytes,
    /// A message about the item, for example an error.
    #[prost(string, tag = "4")]
    pub message: String,
}

/// The answer to a queue `get`: a list of items (the field is named `index` on the wire).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DataFrameListProto {
    /// The items.
    #[prost(message, repeated, tag = "1")]
    pub index: Vec<DataFrameProto>,
}

/// A queue's attributes as strings (`stream.length`, `stream.lastEntry`, ...).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributesProto {
    /// The attributes by name.
    #[prost(btree_map = "string, string", tag = "1")]
    pub attributes: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn data_frame_list_should_round_trip_with_tags() {
        let frame = DataFrameProto {
            index: 42,
            tags: BTreeMap::from([("requestId".to_owned(), "r1".to_owned())]),
            data: Bytes::from_static(b"payload"),
            message: String::new(),
        };
        let list = DataFrameListProto {
            index: vec![frame.clone(), frame],
        };
        let back = DataFrameListProto::decode(list.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(back, list);
        assert_eq!(back.index[0].tags["requestId"], "r1");
    }

    #[test]
    fn data_frame_should_encode_fields_with_the_reference_tags() {
        let frame = DataFrameProto {
            index: 1,
            tags: BTreeMap::from([("a".to_owned(), "b".to_owned())]),
            data: Bytes::from_static(b"d"),
            message: "m".to_owned(),
        };
        // index(1)=1, tags(2) entry { key(1)="a", value(2)="b" }, data(3)="d", message(4)="m"
        let expected = [
            0x08, 0x01, 0x12, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', 0x1a, 0x01, b'd', 0x22,
            0x01, b'm',
        ];
        assert_eq!(frame.encode_to_vec(), expected);
        let attrs = AttributesProto {
            attributes: BTreeMap::from([("stream.length".to_owned(), "0".to_owned())]),
        };
        assert_eq!(
            AttributesProto::decode(attrs.encode_to_vec().as_slice()).expect("decodes"),
            attrs
        );
    }
}
