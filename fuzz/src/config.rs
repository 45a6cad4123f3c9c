//! `crate::config` (the `.properties` parser only).

#[path = "../../src/config/properties.rs"]
pub mod properties;
