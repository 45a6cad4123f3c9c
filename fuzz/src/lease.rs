//! `crate::lease` (the SDK-free lease-item decoder only).

#[path = "../../src/lease/item.rs"]
pub mod item;
