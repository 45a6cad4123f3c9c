//! The per-shard consumer.
