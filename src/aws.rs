//! Building AWS SDK clients from the configuration.
