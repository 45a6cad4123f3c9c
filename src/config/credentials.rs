//! Credentials provider specifications (`AWSCredentialsProvider` values).

/// A parsed credentials provider chain (being written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsSpec {
    /// The raw property value.
    pub raw: String,
}
