//! The application's channel namespaces and their payload schemas (FERRY-CHANNEL-4,
//! FERRY-CHANNEL-5). By default, the example application of `schema/example-app/`, embedded;
//! with `--app DIR`, the application schema sets named, loaded and linked at start by the code
//! generator's own loader and lints ([`Namespaces::load`]), so that a set the server accepts is
//! exactly a set `ferry-codegen generate --schema DIR` accepts.

use std::path::{Path, PathBuf};

use ferry_protocol::{ChannelName, ChannelPattern, ErrorCode, Payload};
use serde::Deserialize;

const EXAMPLE_BUNDLE: &str =
    include_str!("../../../generated/example-app/schema/bundle.schema.json");
const EXAMPLE_CHANNELS: &str = include_str!("../../../schema/example-app/channels.json");

/// One namespace: a pattern and the validator of its payloads.
pub struct Namespace {
    /// The channels it covers.
    pub pattern: ChannelPattern,
    /// The payload definition's name.
    pub payload: String,
    validator: jsonschema::Validator,
}

/// The namespaces a server declares.
pub struct Namespaces {
    namespaces: Vec<Namespace>,
}

/// An application schema set that cannot be served: the file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct AppError {
    /// The file (or folder) at fault.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: String,
}

/// Loads and lints one set with the code generator's rules.
fn load_set(dir: &Path) -> Result<ferry_codegen::SchemaSet, AppError> {
    let set =
        ferry_codegen::SchemaSet::load(dir, &dir.display().to_string()).map_err(
            |error| match error {
                ferry_codegen::Error::Io { path, source } => AppError {
                    path,
                    problem: source.to_string(),
                },
                ferry_codegen::Error::Json { path, source } => AppError {
                    path,
                    problem: source.to_string(),
                },
                ferry_codegen::Error::Schema { path, message } => AppError {
                    path,
                    problem: message,
                },
                other => AppError {
                    path: dir.to_owned(),
                    problem: other.to_string(),
                },
            },
        )?;
    let lints = ferry_codegen::lint(&set);
    if let Some(first) = lints.first() {
        // A location starts with a definition (`TaskProgress/properties/id`) or a file name.
        let head = first.location.split('/').next().unwrap_or_default();
        let file = set
            .files
            .iter()
            .find(|file| file.defs.iter().any(|def| def == head))
            .map_or_else(
                || {
                    if first.location.ends_with(".json") {
                        first.location.clone()
                    } else {
                        String::new()
                    }
                },
                |file| file.name.clone(),
            );
        let more = match lints.len() {
            1 => String::new(),
            n => format!(
                " (and {} more; `ferry-codegen lint --schema {}` lists them)",
                n - 1,
                dir.display()
            ),
        };
        return Err(AppError {
            path: dir.join(file),
            problem: format!("{}: {}{more}", first.location, first.message),
        });
    }
    Ok(set)
}

/// Whether some channel matches both patterns (FERRY-CHANNEL-3's wildcards: `*` one segment,
/// a final `**` one or more).
fn patterns_overlap(a: &str, b: &str) -> bool {
    fn overlap(a: &[&str], b: &[&str]) -> bool {
        match (a, b) {
            ([], []) => true,
            (["**"], rest) | (rest, ["**"]) => !rest.is_empty(),
            ([], _) | (_, []) => false,
            ([x, a @ ..], [y, b @ ..]) => (*x == "*" || *y == "*" || x == y) && overlap(a, b),
        }
    }
    let a: Vec<&str> = a.split(':').collect();
    let b: Vec<&str> = b.split(':').collect();
    overlap(&a, &b)
}

/// Why a payload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The channel belongs to no namespace.
    #[error("the channel belongs to no declared namespace")]
    UnknownChannel,
    /// The payload breaks the namespace's schema.
    #[error("the payload does not match {schema}: {problem}")]
    Invalid {
        /// The payload definition.
        schema: String,
        /// The first problem found, with its location.
        problem: String,
    },
    /// The payload is JSON by the grammar but not a value every decoder reads the same way (a
    /// lone surrogate in a string, a number out of the range of a double).
    #[error("the payload is not portable JSON: {0}")]
    NotPortable(String),
}

impl PayloadError {
    /// The error code a publish refused for this reason gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownChannel => ErrorCode::UnknownChannel,
            Self::Invalid { .. } | Self::NotPortable(_) => ErrorCode::PayloadInvalid,
        }
    }
}

#[derive(Deserialize)]
struct Catalog {
    namespaces: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    pattern: ChannelPattern,
    payload: String,
}

impl Namespaces {
    /// The example application's namespaces: tasks, approvals, agent activity, command output.
    pub fn example_app() -> Self {
        Self::from_sources(EXAMPLE_BUNDLE, EXAMPLE_CHANNELS)
            .expect("the embedded example application is valid")
    }

    /// No namespaces: every channel exists and payloads are not checked (FERRY-CHANNEL-4 and
    /// FERRY-CHANNEL-5 apply to servers that declare namespaces).
    pub fn none() -> Self {
        Self {
            namespaces: Vec::new(),
        }
    }

    /// Namespaces from application schema sets (each a folder as `ferry-codegen generate
    /// --schema` reads it: `*.schema.json`, `channels.json`, `vectors/`). Each set must pass the
    /// code generator's lints and declare its namespaces in `channels.json`; several sets
    /// combine when no channel lies in namespaces of two of them.
    pub fn load(dirs: &[PathBuf]) -> Result<Self, AppError> {
        let mut namespaces: Vec<Namespace> = Vec::new();
        let mut owners: Vec<PathBuf> = Vec::new();
        for dir in dirs {
            let set = load_set(dir)?;
            let catalog = set.channels.as_ref().ok_or_else(|| AppError {
                path: dir.join("channels.json"),
                problem: "is missing: an application set declares its namespaces there".into(),
            })?;
            let entries = catalog
                .namespaces
                .iter()
                .map(|ns| {
                    let pattern = ns.pattern.parse::<ChannelPattern>().map_err(|e| AppError {
                        path: dir.join("channels.json"),
                        problem: format!("{:?} is not a channel pattern: {e}", ns.pattern),
                    })?;
                    Ok(Entry {
                        pattern,
                        payload: ns.payload.clone(),
                    })
                })
                .collect::<Result<Vec<_>, AppError>>()?;
            let loaded = Self::from_bundle(&set.bundle, entries).map_err(|problem| AppError {
                path: dir.clone(),
                problem,
            })?;
            for new in &loaded.namespaces {
                if let Some((old, owner)) = namespaces
                    .iter()
                    .zip(&owners)
                    .find(|(old, _)| patterns_overlap(&old.pattern, &new.pattern))
                {
                    return Err(AppError {
                        path: dir.join("channels.json"),
                        problem: format!(
                            "namespace {} overlaps {} of {}: a channel may lie in one application only",
                            &*new.pattern,
                            &*old.pattern,
                            owner.display()
                        ),
                    });
                }
            }
            owners.extend(loaded.namespaces.iter().map(|_| dir.clone()));
            namespaces.extend(loaded.namespaces);
        }
        Ok(Self { namespaces })
    }

    /// Namespaces from a bundled schema (`generated/<app>/schema/bundle.schema.json`) and a
    /// `channels.json`.
    pub fn from_sources(bundle: &str, channels: &str) -> Result<Self, String> {
        let bundle: serde_json::Value = serde_json::from_str(bundle)
            .map_err(|e| format!("the schema bundle is not JSON: {e}"))?;
        let catalog: Catalog =
            serde_json::from_str(channels).map_err(|e| format!("channels.json is invalid: {e}"))?;
        Self::from_bundle(&bundle, catalog.namespaces)
    }

    /// Compiles one validator per namespace, once, against the set's bundle.
    fn from_bundle(bundle: &serde_json::Value, entries: Vec<Entry>) -> Result<Self, String> {
        let namespaces = entries
            .into_iter()
            .map(|entry| {
                let mut schema = bundle.clone();
                schema["$ref"] = serde_json::Value::from(format!("#/$defs/{}", entry.payload));
                let validator = jsonschema::draft202012::new(&schema).map_err(|e| {
                    format!("the payload schema {} does not compile: {e}", entry.payload)
                })?;
                Ok(Namespace {
                    pattern: entry.pattern,
                    payload: entry.payload,
                    validator,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { namespaces })
    }

    /// The patterns, for the server session's unknown_channel check.
    pub fn patterns(&self) -> Vec<ChannelPattern> {
        self.namespaces
            .iter()
            .map(|ns| ns.pattern.clone())
            .collect()
    }

    /// Whether `channel` exists: it lies in a namespace, or the server declares none.
    pub fn declares(&self, channel: &ChannelName) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|ns| ns.pattern.matches(channel))
    }

    /// Checks a payload published to `channel`: that it is portable JSON, and that it matches
    /// its namespace's schema. Events are relayed without being parsed again, so this is where
    /// every published payload is parsed once.
    pub fn check(&self, channel: &ChannelName, payload: &Payload) -> Result<(), PayloadError> {
        let value = payload
            .to_value()
            .map_err(|e| PayloadError::NotPortable(e.to_string()))?;
        if self.namespaces.is_empty() {
            return Ok(());
        }
        let namespace = self
            .namespaces
            .iter()
            .find(|ns| ns.pattern.matches(channel))
            .ok_or(PayloadError::UnknownChannel)?;
        match namespace.validator.iter_errors(&value).next() {
            None => Ok(()),
            Some(error) => Err(PayloadError::Invalid {
                schema: namespace.payload.clone(),
                problem: format!("{error} at \"{}\"", error.instance_path()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn payloads_are_checked_against_their_namespace() {
        let namespaces = Namespaces::example_app();
        let tasks: ChannelName = "project:alpha:tasks".parse().expect("valid");
        let good = Payload::from(
            json!({ "task_id": "T-1", "status": "running", "progress": 0.5, "assignee": null }),
        );
        assert_eq!(namespaces.check(&tasks, &good), Ok(()));
        let bad = Payload::from(
            json!({ "task_id": "T-1", "status": "done", "progress": 0.5, "assignee": null }),
        );
        assert!(matches!(
            namespaces.check(&tasks, &bad),
            Err(PayloadError::Invalid { .. })
        ));
        let elsewhere: ChannelName = "billing:invoices".parse().expect("valid");
        assert_eq!(
            namespaces.check(&elsewhere, &good),
            Err(PayloadError::UnknownChannel)
        );
    }

    #[test]
    fn patterns_overlap_when_one_channel_matches_both() {
        assert!(patterns_overlap("billing:*:invoices", "billing:**"));
        assert!(patterns_overlap("billing:*:invoices", "*:acme:*"));
        assert!(patterns_overlap("**", "a"));
        assert!(!patterns_overlap("billing:*:invoices", "billing:*:refunds"));
        assert!(!patterns_overlap("billing:*", "billing:*:invoices"));
        assert!(!patterns_overlap("billing:**", "billing"));
    }
}
