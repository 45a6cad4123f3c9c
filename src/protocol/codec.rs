//! TODO(issue 3): codec.
