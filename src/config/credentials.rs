//! Credentials provider specifications: the value of `AWSCredentialsProvider` and its
//! `…DynamoDB` / `…CloudWatch` variants.
//!
//! Grammar (Java MultiLangDaemon, both SDK families): a comma-separated chain of provider
//! specs, each `Name[|arg|arg…]`. Empty elements are skipped and every element and argument is
//! trimmed. `Name` is a simple class name or one qualified with a known package
//! (`com.amazonaws.auth.`, `com.amazonaws.auth.profile.`,
//! `software.amazon.awssdk.auth.credentials.`, `software.amazon.awssdk.services.sts.auth.`,
//! `software.amazon.kinesis.multilang.auth.`). SDK v1 and SDK v2 names are both accepted and
//! map to the same [`ProviderSpec`].
//!
//! Unknown names are skipped with a warning, as Java skips classes it cannot load; a chain in
//! which nothing is left is an error. Unlike Java, a recognised provider with bad arguments
//! (for example an assume-role spec without a valid role ARN) is an error rather than being
//! skipped, because silently falling back to another provider hides the mistake.

use std::fmt;

/// A parsed credentials provider chain, tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsSpec {
    /// The providers, in chain order (never empty).
    pub providers: Vec<ProviderSpec>,
    /// The raw property value (trimmed).
    pub raw: String,
}

/// One credentials source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderSpec {
    /// `DefaultAWSCredentialsProviderChain` (v1) / `DefaultCredentialsProvider` (v2).
    DefaultChain,
    /// `EnvironmentVariableCredentialsProvider`.
    Environment,
    /// `SystemPropertiesCredentialsProvider` (v1) / `SystemPropertyCredentialsProvider` (v2):
    /// the JVM's `aws.accessKeyId` / `aws.secretAccessKey` / `aws.sessionToken`. There is no
    /// JVM here; the `aws` module reads the environment variables instead (documented).
    SystemProperties,
    /// `ProfileCredentialsProvider[|profile]` (v2) or
    /// `com.amazonaws.auth.profile.ProfileCredentialsProvider[|file|profile]` (v1).
    Profile {
        /// The profile name (`None`: `AWS_PROFILE` or `default`).
        name: Option<String>,
        /// A credentials file to read instead of the default ones (v1 two-argument form).
        file: Option<String>,
    },
    /// `InstanceProfileCredentialsProvider` (EC2 instance metadata).
    InstanceProfile,
    /// `ContainerCredentialsProvider` (ECS/EKS container credentials endpoint).
    Container,
    /// `WebIdentityTokenCredentialsProvider` (v1) / `WebIdentityTokenFileCredentialsProvider`
    /// (v2): `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`.
    WebIdentity,
    /// `AnonymousCredentialsProvider` (v2): unsigned requests. Must be the only provider.
    Anonymous,
    /// STS AssumeRole: `STSAssumeRoleSessionCredentialsProvider`,
    /// `KclSTSAssumeRoleSessionCredentialsProvider`, `KclStsAssumeRoleCredentialsProvider`,
    /// `StsAssumeRoleCredentialsProvider`; arguments `roleArn|sessionName[|key=value…]`.
    AssumeRole(AssumeRoleSpec),
}

/// The arguments of an assume-role provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRoleSpec {
    /// The role to assume (`arn:aws:iam::123456789012:role/name`).
    pub role_arn: String,
    /// The role session name.
    pub session_name: String,
    /// `externalId=…`.
    pub external_id: Option<String>,
    /// `endpoint=URL^signingRegion`: a custom STS endpoint.
    pub endpoint: Option<StsEndpoint>,
    /// `endpointRegion=…`: the region of the (regional) STS endpoint.
    pub endpoint_region: Option<String>,
}

/// A custom STS endpoint (`endpoint=URL^region`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsEndpoint {
    /// The endpoint URL.
    pub url: String,
    /// The region used to sign requests to it.
    pub signing_region: String,
}

/// Why a credentials spec is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Nothing usable in the chain (Java: "No credential providers specified").
    #[error("no usable credentials provider in `{raw}`; accepted names include {KNOWN_HINT}")]
    NoProviders {
        /// The raw value.
        raw: String,
    },
    /// A required argument of a provider is missing.
    #[error("`{provider}` needs {what} as a `|` argument, e.g. `{example}`")]
    MissingArgument {
        /// The provider name as written.
        provider: String,
        /// Which argument.
        what: &'static str,
        /// An example of a complete spec.
        example: &'static str,
    },
    /// An argument is present but malformed.
    #[error("`{provider}`: {what} `{value}` is invalid: expected {expected}")]
    InvalidArgument {
        /// The provider name as written.
        provider: String,
        /// Which argument.
        what: &'static str,
        /// The bad value.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// `AnonymousCredentialsProvider` combined with other providers.
    #[error("AnonymousCredentialsProvider cannot be combined with other providers in a chain")]
    AnonymousInChain,
}

const KNOWN_HINT: &str = "DefaultCredentialsProvider, DefaultAWSCredentialsProviderChain, \
    EnvironmentVariableCredentialsProvider, ProfileCredentialsProvider|<profile>, \
    InstanceProfileCredentialsProvider, ContainerCredentialsProvider, \
    WebIdentityTokenFileCredentialsProvider, AnonymousCredentialsProvider, \
    StsAssumeRoleCredentialsProvider|<roleArn>|<sessionName>";

const PACKAGES: &[&str] = &[
    "com.amazonaws.auth.profile.",
    "com.amazonaws.auth.",
    "software.amazon.awssdk.auth.credentials.",
    "software.amazon.awssdk.services.sts.auth.",
    "software.amazon.kinesis.multilang.auth.",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    DefaultChain,
    Environment,
    SystemProperties,
    Profile,
    InstanceProfile,
    Container,
    WebIdentity,
    Anonymous,
    AssumeRole,
}

/// Every accepted simple class name.
const NAMES: &[(&str, Kind)] = &[
    ("DefaultAWSCredentialsProviderChain", Kind::DefaultChain),
    ("DefaultCredentialsProvider", Kind::DefaultChain),
    ("EnvironmentVariableCredentialsProvider", Kind::Environment),
    ("SystemPropertiesCredentialsProvider", Kind::SystemProperties),
    ("SystemPropertyCredentialsProvider", Kind::SystemProperties),
    ("ProfileCredentialsProvider", Kind::Profile),
    ("InstanceProfileCredentialsProvider", Kind::InstanceProfile),
    ("ContainerCredentialsProvider", Kind::Container),
    ("WebIdentityTokenCredentialsProvider", Kind::WebIdentity),
    ("WebIdentityTokenFileCredentialsProvider", Kind::WebIdentity),
    ("AnonymousCredentialsProvider", Kind::Anonymous),
    ("STSAssumeRoleSessionCredentialsProvider", Kind::AssumeRole),
    ("KclSTSAssumeRoleSessionCredentialsProvider", Kind::AssumeRole),
    ("KclStsAssumeRoleCredentialsProvider", Kind::AssumeRole),
    ("StsAssumeRoleCredentialsProvider", Kind::AssumeRole),
];

fn resolve(name: &str) -> Option<Kind> {
    let simple = PACKAGES.iter().find_map(|p| name.strip_prefix(p)).unwrap_or(name);
    NAMES.iter().find(|(n, _)| *n == simple).map(|&(_, k)| k)
}

/// A near-miss suggestion for an unknown provider name (case-insensitive match).
fn suggest(name: &str) -> Option<&'static str> {
    let simple = name.rsplit('.').next().unwrap_or(name);
    NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(simple)).map(|&(n, _)| n)
}

impl CredentialsSpec {
    /// Parses a provider chain. Returns the spec and warnings (skipped unknown providers,
    /// ignored arguments, unknown nested keys).
    ///
    /// # Errors
    /// [`CredentialsError`] when nothing usable remains or a recognised provider has bad
    /// arguments.
    pub fn parse(raw: &str) -> Result<(Self, Vec<String>), CredentialsError> {
        let raw = raw.trim();
        let mut providers = Vec::new();
        let mut warnings = Vec::new();
        for element in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let mut parts = element.split('|').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let args: Vec<&str> = parts.collect();
            let Some(kind) = resolve(name) else {
                let hint = suggest(name)
                    .map(|s| format!(" (did you mean `{s}`? names are case-sensitive)"))
                    .unwrap_or_default();
                warnings.push(format!("unknown credentials provider `{name}` skipped{hint}"));
                continue;
            };
            providers.push(build(kind, name, &args, &mut warnings)?);
        }
        if providers.is_empty() {
            return Err(CredentialsError::NoProviders { raw: raw.to_owned() });
        }
        if providers.len() > 1 && providers.contains(&ProviderSpec::Anonymous) {
            return Err(CredentialsError::AnonymousInChain);
        }
        Ok((Self { providers, raw: raw.to_owned() }, warnings))
    }
}

fn build(kind: Kind, name: &str, args: &[&str], warnings: &mut Vec<String>) -> Result<ProviderSpec, CredentialsError> {
    let no_args = |spec: ProviderSpec, warnings: &mut Vec<String>| {
        if !args.is_empty() {
            warnings.push(format!("`{name}` takes no arguments; ignored `|{}`", args.join("|")));
        }
        spec
    };
    let owned = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok(match kind {
        Kind::DefaultChain => no_args(ProviderSpec::DefaultChain, warnings),
        Kind::Environment => no_args(ProviderSpec::Environment, warnings),
        Kind::SystemProperties => no_args(ProviderSpec::SystemProperties, warnings),
        Kind::InstanceProfile => no_args(ProviderSpec::InstanceProfile, warnings),
        Kind::Container => no_args(ProviderSpec::Container, warnings),
        Kind::WebIdentity => no_args(ProviderSpec::WebIdentity, warnings),
        Kind::Anonymous => no_args(ProviderSpec::Anonymous, warnings),
        Kind::Profile => match args {
            [] => ProviderSpec::Profile { name: None, file: None },
            [profile] => ProviderSpec::Profile { name: owned(profile), file: None },
            [file, profile] => ProviderSpec::Profile { name: owned(profile), file: owned(file) },
            _ => {
                return Err(CredentialsError::InvalidArgument {
                    provider: name.to_owned(),
                    what: "argument list",
                    value: args.join("|"),
                    expected: "`|profile` or `|credentialsFile|profile`",
                })
            }
        },
        Kind::AssumeRole => ProviderSpec::AssumeRole(assume_role(name, args, warnings)?),
    })
}

const ASSUME_ROLE_EXAMPLE: &str = "StsAssumeRoleCredentialsProvider|arn:aws:iam::123456789012:role/kcl|kcl-session";

fn assume_role(name: &str, args: &[&str], warnings: &mut Vec<String>) -> Result<AssumeRoleSpec, CredentialsError> {
    let missing =
        |what| CredentialsError::MissingArgument { provider: name.to_owned(), what, example: ASSUME_ROLE_EXAMPLE };
    let invalid = |what, value: &str, expected| CredentialsError::InvalidArgument {
        provider: name.to_owned(),
        what,
        value: value.to_owned(),
        expected,
    };
    let role_arn = args.first().copied().filter(|s| !s.is_empty()).ok_or_else(|| missing("the role ARN"))?;
    if !is_role_arn(role_arn) {
        return Err(invalid("role ARN", role_arn, "arn:<partition>:iam::<12-digit account>:role/<name>"));
    }
    let session_name = args.get(1).copied().filter(|s| !s.is_empty()).ok_or_else(|| missing("a role session name"))?;
    if !is_session_name(session_name) {
        return Err(invalid("session name", session_name, "2 to 64 characters from A-Z a-z 0-9 and + = , . @ - _"));
    }
    let mut spec = AssumeRoleSpec {
        role_arn: role_arn.to_owned(),
        session_name: session_name.to_owned(),
        external_id: None,
        endpoint: None,
        endpoint_region: None,
    };
    for token in &args[2..] {
        let mut kv = token.splitn(3, '=');
        let (Some(key), Some(value), None) = (kv.next(), kv.next(), kv.next()) else {
            let token = hide_external_ids(token);
            warnings.push(format!("`{name}`: malformed nested property `{token}` ignored (expected exactly one `=`)"));
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key.to_ascii_lowercase().as_str() {
            "externalid" => {
                if value.is_empty() {
                    return Err(invalid("externalId", value, "a non-empty external id"));
                }
                spec.external_id = Some(value.to_owned());
            }
            "endpointregion" => {
                if !super::values::is_region(value) {
                    return Err(invalid("endpointRegion", value, "a region name such as us-east-1"));
                }
                spec.endpoint_region = Some(value.to_owned());
            }
            "endpoint" => {
                let expected = "`URL^signingRegion`, e.g. `https://sts.us-east-1.amazonaws.com^us-east-1`";
                let mut parts = value.split('^');
                let (Some(url), Some(region), None) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(invalid("endpoint", value, expected));
                };
                if !super::values::is_http_url(url.trim()) || !super::values::is_region(region.trim()) {
                    return Err(invalid("endpoint", value, expected));
                }
                spec.endpoint =
                    Some(StsEndpoint { url: url.trim().to_owned(), signing_region: region.trim().to_owned() });
            }
            _ => warnings.push(format!(
                "`{name}`: unknown nested property `{key}` ignored (known: endpoint, endpointRegion, externalId)"
            )),
        }
    }
    Ok(spec)
}

/// `text` (a credentials provider value) with every assume-role `externalId=…` argument
/// replaced by `externalId=(hidden)`: the external id is a shared secret and is never shown.
#[must_use]
pub fn hide_external_ids(text: &str) -> String {
    text.split('|')
        .map(|part| match part.split_once('=') {
            Some((key, _)) if key.trim().eq_ignore_ascii_case("externalid") => format!("{key}=(hidden)"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("|")
}

fn is_role_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    matches!(
        parts.as_slice(),
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && resource.strip_prefix("role/").is_some_and(|r| !r.is_empty())
    )
}

fn is_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_".contains(&b))
}

impl fmt::Display for ProviderSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DefaultChain => f.write_str("default chain"),
            Self::Environment => f.write_str("environment variables"),
            Self::SystemProperties => f.write_str("system properties (read from environment variables)"),
            Self::Profile { name, file } => {
                write!(f, "profile `{}`", name.as_deref().unwrap_or("(default)"))?;
                if let Some(file) = file {
                    write!(f, " from `{file}`")?;
                }
                Ok(())
            }
            Self::InstanceProfile => f.write_str("EC2 instance profile"),
            Self::Container => f.write_str("container credentials"),
            Self::WebIdentity => f.write_str("web identity token"),
            Self::Anonymous => f.write_str("anonymous (unsigned)"),
            Self::AssumeRole(r) => {
                write!(f, "assume role `{}` as `{}`", r.role_arn, r.session_name)?;
                // The external id works like a shared secret between the role's owner and
                // its user (the confused-deputy guard): shown as set, never in clear.
                if r.external_id.is_some() {
                    f.write_str(", external id set (hidden)")?;
                }
                if let Some(ep) = &r.endpoint {
                    write!(f, ", STS endpoint {} (signing region {})", ep.url, ep.signing_region)?;
                }
                if let Some(region) = &r.endpoint_region {
                    write!(f, ", STS region {region}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> (Vec<ProviderSpec>, Vec<String>) {
        let (spec, warnings) = CredentialsSpec::parse(raw).unwrap();
        (spec.providers, warnings)
    }

    #[test]
    fn sdk_v1_and_v2_names_map_to_the_same_sources() {
        for (v1, v2, want) in [
            ("DefaultAWSCredentialsProviderChain", "DefaultCredentialsProvider", ProviderSpec::DefaultChain),
            (
                "SystemPropertiesCredentialsProvider",
                "SystemPropertyCredentialsProvider",
                ProviderSpec::SystemProperties,
            ),
            (
                "WebIdentityTokenCredentialsProvider",
                "WebIdentityTokenFileCredentialsProvider",
                ProviderSpec::WebIdentity,
            ),
        ] {
            assert_eq!(ok(v1).0, vec![want.clone()], "{v1}");
            assert_eq!(ok(v2).0, vec![want], "{v2}");
        }
        assert_eq!(ok("EnvironmentVariableCredentialsProvider").0, vec![ProviderSpec::Environment]);
        assert_eq!(ok("InstanceProfileCredentialsProvider").0, vec![ProviderSpec::InstanceProfile]);
        assert_eq!(ok("ContainerCredentialsProvider").0, vec![ProviderSpec::Container]);
        assert_eq!(ok("AnonymousCredentialsProvider").0, vec![ProviderSpec::Anonymous]);
    }

    #[test]
    fn fully_qualified_names() {
        assert_eq!(ok("com.amazonaws.auth.DefaultAWSCredentialsProviderChain").0, vec![ProviderSpec::DefaultChain]);
        assert_eq!(
            ok("software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider").0,
            vec![ProviderSpec::DefaultChain]
        );
        assert_eq!(
            ok("com.amazonaws.auth.profile.ProfileCredentialsProvider|dev").0,
            vec![ProviderSpec::Profile { name: Some("dev".into()), file: None }]
        );
        assert!(matches!(
            ok("software.amazon.awssdk.services.sts.auth.StsAssumeRoleCredentialsProvider|arn:aws:iam::123456789012:role/r|s1").0[..],
            [ProviderSpec::AssumeRole(_)]
        ));
    }

    #[test]
    fn chain_with_whitespace_empty_elements_and_unknown_names() {
        let (providers, warnings) = ok(
            " EnvironmentVariableCredentialsProvider , ,NoSuchProvider, ProfileCredentialsProvider | prod ,defaultcredentialsprovider",
        );
        assert_eq!(
            providers,
            vec![ProviderSpec::Environment, ProviderSpec::Profile { name: Some("prod".into()), file: None }]
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("`NoSuchProvider` skipped"));
        assert!(warnings[1].contains("did you mean `DefaultCredentialsProvider`"));
    }

    #[test]
    fn profile_forms() {
        assert_eq!(ok("ProfileCredentialsProvider").0, vec![ProviderSpec::Profile { name: None, file: None }]);
        assert_eq!(
            ok("ProfileCredentialsProvider|/etc/aws/creds|ops").0,
            vec![ProviderSpec::Profile { name: Some("ops".into()), file: Some("/etc/aws/creds".into()) }]
        );
        assert!(CredentialsSpec::parse("ProfileCredentialsProvider|a|b|c").is_err());
    }

    #[test]
    fn extra_arguments_of_argumentless_providers_are_ignored_with_a_warning() {
        let (providers, warnings) = ok("DefaultCredentialsProvider|x");
        assert_eq!(providers, vec![ProviderSpec::DefaultChain]);
        assert!(warnings[0].contains("takes no arguments"));
    }

    #[test]
    fn nothing_usable_is_an_error() {
        for raw in ["", " , ", "Nope", "com.example.MyProvider|x, Other"] {
            assert!(matches!(CredentialsSpec::parse(raw), Err(CredentialsError::NoProviders { .. })), "{raw}");
        }
    }

    #[test]
    fn assume_role_all_forms_and_nested_keys() {
        let (providers, warnings) = ok(
            "KclStsAssumeRoleCredentialsProvider|arn:aws:iam::123456789012:role/kcl|sess|endpoint=https://sts.example.com^us-west-2|endpointRegion=eu-west-1|externalId=ext-1|bogus=1|a=b=c",
        );
        assert_eq!(
            providers,
            vec![ProviderSpec::AssumeRole(AssumeRoleSpec {
                role_arn: "arn:aws:iam::123456789012:role/kcl".into(),
                session_name: "sess".into(),
                external_id: Some("ext-1".into()),
                endpoint: Some(StsEndpoint {
                    url: "https://sts.example.com".into(),
                    signing_region: "us-west-2".into()
                }),
                endpoint_region: Some("eu-west-1".into()),
            })]
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("unknown nested property `bogus`"));
        assert!(warnings[1].contains("malformed nested property `a=b=c`"));
        for name in [
            "STSAssumeRoleSessionCredentialsProvider",
            "KclSTSAssumeRoleSessionCredentialsProvider",
            "StsAssumeRoleCredentialsProvider",
        ] {
            let (p, _) = ok(&format!("{name}|arn:aws-cn:iam::123456789012:role/path/r|s-1"));
            assert!(matches!(p[..], [ProviderSpec::AssumeRole(_)]), "{name}");
        }
    }

    #[test]
    fn assume_role_argument_errors() {
        let cases = [
            ("StsAssumeRoleCredentialsProvider", "role ARN"),
            ("StsAssumeRoleCredentialsProvider|arn:aws:s3:::bucket|s", "role ARN"),
            ("StsAssumeRoleCredentialsProvider|arn:aws:iam::12345:role/r|s", "role ARN"),
            ("StsAssumeRoleCredentialsProvider|arn:aws:iam::123456789012:role/r", "session name"),
            ("StsAssumeRoleCredentialsProvider|arn:aws:iam::123456789012:role/r|bad name", "session name"),
            ("StsAssumeRoleCredentialsProvider|arn:aws:iam::123456789012:role/r|s1|endpoint=https://x", "endpoint"),
            (
                "StsAssumeRoleCredentialsProvider|arn:aws:iam::123456789012:role/r|s1|endpoint=nourl^us-east-1",
                "endpoint",
            ),
            ("StsAssumeRoleCredentialsProvider|arn:aws:iam::123456789012:role/r|s1|endpoint=https://x^a^b", "endpoint"),
            (
                "StsAssumeRoleCredentialsProvider|arn:aws:iam::123456789012:role/r|s1|endpointRegion=Not A Region",
                "endpointRegion",
            ),
            ("StsAssumeRoleCredentialsProvider|arn:aws:iam::123456789012:role/r|s1|externalId=", "externalId"),
        ];
        for (raw, needle) in cases {
            let err = CredentialsSpec::parse(raw).unwrap_err().to_string();
            assert!(err.contains(needle), "{raw}: {err}");
        }
    }

    #[test]
    fn anonymous_must_be_alone() {
        assert_eq!(
            CredentialsSpec::parse("AnonymousCredentialsProvider,DefaultCredentialsProvider"),
            Err(CredentialsError::AnonymousInChain)
        );
    }

    #[test]
    fn external_ids_are_hidden_in_reported_values() {
        assert_eq!(
            hide_external_ids("StsAssumeRoleCredentialsProvider|arn:aws:iam::1:role/r|s|externalId=top-secret|endpointRegion=eu-west-1"),
            "StsAssumeRoleCredentialsProvider|arn:aws:iam::1:role/r|s|externalId=(hidden)|endpointRegion=eu-west-1"
        );
        assert_eq!(hide_external_ids("a|EXTERNALID=x=y"), "a|EXTERNALID=(hidden)");
        assert_eq!(hide_external_ids("DefaultCredentialsProvider"), "DefaultCredentialsProvider");
    }

    #[test]
    fn display_is_readable() {
        let (spec, _) =
            CredentialsSpec::parse("StsAssumeRoleCredentialsProvider|arn:aws:iam::123456789012:role/r|s1|externalId=x")
                .unwrap();
        assert_eq!(
            spec.providers[0].to_string(),
            "assume role `arn:aws:iam::123456789012:role/r` as `s1`, external id set (hidden)"
        );
    }
}
