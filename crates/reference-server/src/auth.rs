//! Bearer credentials: who is calling, and with which rights (FERRY-TICKET-1).
//!
//! Three modes: development (one generated token with every right, loudly labelled, loopback
//! only), a tokens file, and JWT verification (HS256 with a shared secret, or RS256 with a
//! public key). Credentials are never logged (FERRY-TICKET-6).

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
pub struct Auth {
    tokens: HashMap<String, Identity>,
    jwt: Option<JwtVerifier>,
}

/// Verifies JSON Web Tokens: the signature (HS256 or RS256), `exp` and, when present, `nbf`
/// (RFC 7519 §4.1.4 and §4.1.5, each with jsonwebtoken's default leeway of 60 s for clock
/// skew), and the claims
///
/// ```json
/// { "sub": "ada", "exp": 1795400000,
///   "ferry": { "permissions": [{ "pattern": "project:alpha:*", "read": true, "write": true }], "backend": false } }
/// ```
///
/// `sub` becomes the user, `ferry.permissions` the rights bound to tickets, and `ferry.backend`
/// (default false) whether the token may use the backend publish endpoint.
pub struct JwtVerifier {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl std::fmt::Debug for Auth {
    /// Counts only: credentials never appear in logs (FERRY-TICKET-6).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .field(
                "jwt",
                &self.jwt.as_ref().map(|j| j.validation.algorithms.clone()),
            )
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: UserId,
    ferry: FerryClaim,
}

#[derive(Deserialize)]
struct FerryClaim {
    permissions: Vec<Permission>,
    #[serde(default)]
    backend: bool,
}

impl JwtVerifier {
    /// Verifies HS256 tokens signed with `secret`.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::new(
            jsonwebtoken::DecodingKey::from_secret(secret),
            jsonwebtoken::Algorithm::HS256,
        )
    }

    /// Verifies RS256 tokens against a PEM-encoded RSA public key.
    pub fn rs256(public_key_pem: &[u8]) -> Result<Self, AuthError> {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_key_pem)
            .map_err(|e| AuthError::Key(e.to_string()))?;
        Ok(Self::new(key, jsonwebtoken::Algorithm::RS256))
    }

    fn new(key: jsonwebtoken::DecodingKey, algorithm: jsonwebtoken::Algorithm) -> Self {
        let mut validation = jsonwebtoken::Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // RFC 7519 §4.1.5: a token is not accepted before its `nbf`.
        validation.validate_nbf = true;
        Self { key, validation }
    }

    fn verify(&self, token: &str) -> Option<Identity> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .ok()?
            .claims;
        Some(Identity {
            user: claims.sub,
            permissions: claims.ferry.permissions,
            backend: claims.ferry.backend,
        })
    }
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
    /// A JWT key file could not be read or is not a valid key.
    #[error("the JWT key is not usable: {0}")]
    Key(String),
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
        Self::development_with(format!("dev-{:032x}", rand::random::<u128>()))
    }

    /// Development auth with this token (`--dev-token`, or the one kept in the user's data
    /// directory by [`stable_dev_token`], so that it survives restarts).
    pub fn development_with(token: String) -> (Self, String) {
        let identity = Identity {
            user: "developer".parse().expect("a valid user id"),
            permissions: vec![
                serde_json::from_value(
                    serde_json::json!({ "pattern": "**", "read": true, "write": true, "call": true }),
                )
                .expect("a valid permission"),
            ],
            backend: true,
        };
        (
            Self {
                tokens: HashMap::from([(token.clone(), identity)]),
                jwt: None,
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
        Ok(Self { tokens, jwt: None })
    }

    /// JWT verification.
    pub fn jwt(verifier: JwtVerifier) -> Self {
        Self {
            tokens: HashMap::new(),
            jwt: Some(verifier),
        }
    }

    /// The identity behind an `Authorization` header value (`Bearer <token>`, the scheme
    /// matched without regard to case as RFC 7235 §2.1 says), if any.
    pub fn check(&self, authorization: Option<&str>) -> Option<Identity> {
        let (scheme, token) = authorization?.trim_start().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("Bearer") {
            return None;
        }
        let token = token.trim();
        match &self.jwt {
            Some(verifier) => verifier.verify(token),
            None => self.tokens.get(token).cloned(),
        }
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
        for scheme in ["bearer", "BEARER", "BeArEr"] {
            assert!(
                auth.check(Some(&format!("{scheme} t-ada"))).is_some(),
                "RFC 7235: the scheme {scheme} is case-insensitive"
            );
        }
        assert!(auth.check(Some("Basic t-ada")).is_none());
        assert!(auth.check(Some("Bearert-ada")).is_none());
    }

    #[test]
    fn a_bad_tokens_file_names_the_problem() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, "[[tokens]]\ntoken = \"t\"\nuser = \"ada\"\npermissions = [{ pattern = \"Not A Pattern\", read = true, write = true }]\n").expect("write");
        let error = Auth::from_file(&path).expect_err("an invalid pattern");
        assert!(error.to_string().contains("tokens file"), "{error}");
    }

    fn claims(exp_offset: i64) -> serde_json::Value {
        let exp = jsonwebtoken::get_current_timestamp() as i64 + exp_offset;
        serde_json::json!({ "sub": "ada", "exp": exp, "ferry": { "permissions": [{ "pattern": "project:alpha:*", "read": true, "write": true }] } })
    }

    fn sign(
        claims: &serde_json::Value,
        algorithm: jsonwebtoken::Algorithm,
        key: &jsonwebtoken::EncodingKey,
    ) -> String {
        jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), claims, key).expect("signs")
    }

    #[test]
    fn an_hs256_token_carries_its_user_and_permissions_until_it_expires() {
        let auth = Auth::jwt(JwtVerifier::hs256(b"a test secret of enough length!!"));
        let key = jsonwebtoken::EncodingKey::from_secret(b"a test secret of enough length!!");
        let valid = sign(&claims(600), jsonwebtoken::Algorithm::HS256, &key);
        let identity = auth
            .check(Some(&format!("Bearer {valid}")))
            .expect("a valid token");
        assert_eq!(identity.user.as_str(), "ada");
        assert_eq!(identity.permissions.len(), 1);
        assert!(!identity.backend);
        let expired = sign(&claims(-3_600), jsonwebtoken::Algorithm::HS256, &key);
        assert!(
            auth.check(Some(&format!("Bearer {expired}"))).is_none(),
            "an expired token"
        );
        let forged = sign(
            &claims(600),
            jsonwebtoken::Algorithm::HS256,
            &jsonwebtoken::EncodingKey::from_secret(b"another secret entirely, forged!"),
        );
        assert!(
            auth.check(Some(&format!("Bearer {forged}"))).is_none(),
            "a token signed with another secret"
        );
        let mut no_rights = claims(600);
        no_rights
            .as_object_mut()
            .expect("an object")
            .remove("ferry");
        let bare = sign(&no_rights, jsonwebtoken::Algorithm::HS256, &key);
        assert!(
            auth.check(Some(&format!("Bearer {bare}"))).is_none(),
            "a token without the ferry claim"
        );
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let mut early = claims(7_200);
        early["nbf"] = serde_json::json!(now + 3_600);
        let early = sign(&early, jsonwebtoken::Algorithm::HS256, &key);
        assert!(
            auth.check(Some(&format!("Bearer {early}"))).is_none(),
            "a token valid only from one hour ahead (RFC 7519 §4.1.5)"
        );
        let mut started = claims(600);
        started["nbf"] = serde_json::json!(now - 10);
        let started = sign(&started, jsonwebtoken::Algorithm::HS256, &key);
        assert!(
            auth.check(Some(&format!("Bearer {started}"))).is_some(),
            "a token whose nbf has passed"
        );
    }

    #[test]
    fn an_rs256_token_is_checked_against_the_public_key() {
        let private = include_bytes!("../tests/fixtures/jwt-test-private.pem");
        let public = include_bytes!("../tests/fixtures/jwt-test-public.pem");
        let auth = Auth::jwt(JwtVerifier::rs256(public).expect("a valid public key"));
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(private).expect("a valid private key");
        let token = sign(&claims(600), jsonwebtoken::Algorithm::RS256, &key);
        assert_eq!(
            auth.check(Some(&format!("Bearer {token}")))
                .map(|i| i.user.to_string())
                .as_deref(),
            Some("ada")
        );
        // An HS256 token signed with the public key as a secret (the algorithm-confusion attack).
        let confused = sign(
            &claims(600),
            jsonwebtoken::Algorithm::HS256,
            &jsonwebtoken::EncodingKey::from_secret(public),
        );
        assert!(auth.check(Some(&format!("Bearer {confused}"))).is_none());
        assert!(JwtVerifier::rs256(b"not a key").is_err());
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

/// The development token kept in `dir` (created, readable by its owner alone, on first use),
/// so that it stays the same across restarts and the walkthrough's `FERRY_TOKEN` keeps working.
pub fn stable_dev_token(dir: &std::path::Path) -> std::io::Result<String> {
    let path = dir.join("dev-token");
    match std::fs::read_to_string(&path) {
        Ok(token) if token.trim().starts_with("dev-") => return Ok(token.trim().to_owned()),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold a development token", path.display()),
            ));
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    std::fs::create_dir_all(dir)?;
    let token = format!("dev-{:032x}", rand::random::<u128>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())?;
            Ok(token)
        }
        // Another server started at the same moment wrote it first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            std::thread::sleep(std::time::Duration::from_millis(50));
            Ok(std::fs::read_to_string(&path)?.trim().to_owned())
        }
        Err(error) => Err(error),
    }
}

/// Where the development token is kept: `$XDG_DATA_HOME/ferry`, else `~/.local/share/ferry`.
pub fn dev_token_dir() -> Option<std::path::PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| std::path::PathBuf::from(home).join(".local/share"))
        })?;
    Some(data.join("ferry"))
}

#[cfg(test)]
mod dev_token_tests {
    use super::*;

    #[test]
    fn the_kept_development_token_survives_a_restart() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let kept = dir.path().join("ferry");
        let first = stable_dev_token(&kept).expect("created");
        assert!(first.starts_with("dev-") && first.len() == 36, "{first}");
        assert_eq!(stable_dev_token(&kept).expect("read back"), first);
        std::fs::write(kept.join("dev-token"), "garbage").expect("write");
        assert!(
            stable_dev_token(&kept).is_err(),
            "a file that is not a token is refused"
        );
    }
}
