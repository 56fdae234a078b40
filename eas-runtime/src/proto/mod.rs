//! Protobuf messages of the EAS wire protocols (being written).
