//! The default placement policy.
