//! Bearer credentials: who is calling, and with which rights (FERRY-TICKET-1).
//!
//! Two modes: development (one generated token with every right, loudly labelled, loopback
//! only) and a tokens file. Credentials are never logged (FERRY-TICKET-6).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ferry_protocol::{Permission, UserId};
use serde::Deserialize;

/// The rights a credential carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// Who it is.
    pub user: UserId,
    /// What it may read and write over WebSocket, and read through the history endpoint.
    pub permissions: Vec<Permission>,
    /// Whether it may publish through the backend endpoint (still within its write rights).
    pub backend: bool,
}

/// How credentials are checked.
#[derive(Debug, Clone)]
pub struct Auth {
    tokens: HashMap<String, Identity>,
}

/// A tokens file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read.
    #[error("cannot read the tokens file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("the tokens file {path} is invalid: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml reported, naming the field.
        source: toml::de::Error,
    },
    /// Two entries share a token.
    #[error("the tokens file {0} lists a token twice")]
    Duplicate(PathBuf),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: String,
    user: UserId,
    #[serde(default)]
    backend: bool,
    permissions: Vec<Permission>,
}

impl Auth {
    /// Development auth: one random token that may read, write and publish everywhere.
    /// Returns the token, for the operator to copy.
    pub fn development() -> (Self, String) {
        let token = format!("dev-{:032x}", rand::random::<u128>());
        let identity = Identity {
            user: "developer".parse().expect("a valid user id"),
            permissions: vec![
                serde_json::from_value(
                    serde_json::json!({ "pattern": "**", "read": true, "write": true }),
                )
                .expect("a valid permission"),
            ],
            backend: true,
        };
        (
            Self {
                tokens: HashMap::from([(token.clone(), identity)]),
            },
            token,
        )
    }

    /// Tokens from a TOML file:
    ///
    /// ```toml
    /// [[tokens]]
    /// token = "…"
    /// user = "ada"
    /// backend = false          # may it use POST /v1/publish
    /// permissions = [{ pattern = "project:alpha:*", read = true, write = true }]
    /// ```
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: TokensFile = toml::from_str(&text).map_err(|source| AuthError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let mut tokens = HashMap::new();
        for entry in file.tokens {
            let identity = Identity {
                user: entry.user,
                permissions: entry.permissions,
                backend: entry.backend,
            };
            if tokens.insert(entry.token, identity).is_some() {
                return Err(AuthError::Duplicate(path.to_owned()));
            }
        }
        Ok(Self { tokens })
    }

    /// The identity behind an `Authorization` header value (`Bearer <token>`), if any.
    pub fn check(&self, authorization: Option<&str>) -> Option<&Identity> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        self.tokens.get(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_tokens_are_accepted() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, "[[tokens]]\ntoken = \"t-ada\"\nuser = \"ada\"\npermissions = [{ pattern = \"project:alpha:*\", read = true, write = false }]\n").expect("write");
        let auth = Auth::from_file(&path).expect("a valid file");
        let ada = auth.check(Some("Bearer t-ada")).expect("known token");
        assert_eq!(ada.user.as_str(), "ada");
        assert!(!ada.backend);
        assert!(auth.check(Some("Bearer t-eve")).is_none());
        assert!(
            auth.check(Some("t-ada")).is_none(),
            "the Bearer scheme is required"
        );
        assert!(auth.check(None).is_none());
    }

    #[test]
    fn a_bad_tokens_file_names_the_problem() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, "[[tokens]]\ntoken = \"t\"\nuser = \"ada\"\npermissions = [{ pattern = \"Not A Pattern\", read = true, write = true }]\n").expect("write");
        let error = Auth::from_file(&path).expect_err("an invalid pattern");
        assert!(error.to_string().contains("tokens file"), "{error}");
    }

    #[test]
    fn the_development_token_has_every_right() {
        let (auth, token) = Auth::development();
        let identity = auth
            .check(Some(&format!("Bearer {token}")))
            .expect("the printed token works");
        assert!(identity.backend);
        assert!(ferry_protocol::permits(
            &identity.permissions,
            &"any:channel".parse().expect("valid"),
            ferry_protocol::Access::Write
        ));
    }
}
