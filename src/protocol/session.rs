//! TODO(issue 3): session.
