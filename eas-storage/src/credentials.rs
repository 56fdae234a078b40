//! Credentials for OSS/S3: explicit, or from the environment.
//!
//! [`Credentials::from_env`] reads `OSS_ACCESS_KEY_ID` / `OSS_ACCESS_KEY_SECRET`, else
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN` when set), and
//! `AWS_REGION` in both cases. Without a key pair, requests go unsigned (public buckets).
//!
//! ```
//! use eas_storage::Credentials;
//!
//! let env = |name: &str| match name {
//!     "OSS_ACCESS_KEY_ID" => Some("id".to_owned()),
//!     "OSS_ACCESS_KEY_SECRET" => Some("secret".to_owned()),
//!     _ => None,
//! };
//! let credentials = Credentials::from_lookup(env);
//! assert_eq!(credentials.access_key_id.as_deref(), Some("id"));
//! ```

/// A key pair (or none, for anonymous access) and the region to sign for.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<String>,
    /// A session token (temporary credentials).
    pub session_token: Option<String>,
    /// The region to sign requests for, when the endpoint does not tell it (`AWS_REGION`).
    pub region: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .field("region", &self.region)
            .finish()
    }
}

impl Credentials {
    /// No key: requests are not signed.
    #[must_use]
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// An explicit key pair.
    #[must_use]
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: Some(access_key_id.into()),
            secret_access_key: Some(secret_access_key.into()),
            ..Self::default()
        }
    }

    /// The same, signing for `region`.
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// From the process environment (see the module docs for the variables).
    #[must_use]
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// From any lookup of environment-variable names (for tests).
    #[must_use]
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let pair = |id: &str, secret: &str| Some((lookup(id)?, lookup(secret)?));
        let (access_key_id, secret_access_key, session_token) =
            if let Some((id, secret)) = pair("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET") {
                (Some(id), Some(secret), lookup("OSS_SESSION_TOKEN"))
            } else if let Some((id, secret)) = pair("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") {
                (Some(id), Some(secret), lookup("AWS_SESSION_TOKEN"))
            } else {
                (None, None, None)
            };
        Self {
            access_key_id,
            secret_access_key,
            session_token,
            region: lookup("AWS_REGION"),
        }
    }

    /// Whether a key pair is present.
    #[must_use]
    pub const fn is_anonymous(&self) -> bool {
        self.access_key_id.is_none() || self.secret_access_key.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn oss_variables_should_win_over_aws_ones() {
        let c = Credentials::from_lookup(lookup(&[
            ("OSS_ACCESS_KEY_ID", "oss-id"),
            ("OSS_ACCESS_KEY_SECRET", "oss-secret"),
            ("AWS_ACCESS_KEY_ID", "aws-id"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("AWS_REGION", "eu-west-1"),
        ]));
        assert_eq!(c.access_key_id.as_deref(), Some("oss-id"));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn aws_variables_should_be_used_when_oss_ones_are_incomplete() {
        let c = Credentials::from_lookup(lookup(&[
            ("OSS_ACCESS_KEY_ID", "only-id"),
            ("AWS_ACCESS_KEY_ID", "aws-id"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("AWS_SESSION_TOKEN", "tok"),
        ]));
        assert_eq!(c.access_key_id.as_deref(), Some("aws-id"));
        assert_eq!(c.session_token.as_deref(), Some("tok"));
        assert!(!c.is_anonymous());
    }

    #[test]
    fn no_variables_should_mean_anonymous_and_debug_should_hide_secrets() {
        assert!(Credentials::from_lookup(|_| None).is_anonymous());
        let shown = format!("{:?}", Credentials::new("id", "very-secret"));
        assert!(!shown.contains("very-secret"), "{shown}");
    }
}
