//! TODO(issue 3): messages.
