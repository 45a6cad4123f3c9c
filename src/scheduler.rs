//! The scheduler: owns leases and runs one shard consumer per held lease.
