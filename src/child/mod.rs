//! Spawning and supervising one record-processor child process per shard.
