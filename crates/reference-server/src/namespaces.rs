//! The application's channel namespaces and their payload schemas (FERRY-CHANNEL-4,
//! FERRY-CHANNEL-5). By default, the example application of `schema/example-app/`, embedded.

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

    /// Namespaces from a bundled schema (`generated/<app>/schema/bundle.schema.json`) and a
    /// `channels.json`.
    pub fn from_sources(bundle: &str, channels: &str) -> Result<Self, String> {
        let bundle: serde_json::Value = serde_json::from_str(bundle)
            .map_err(|e| format!("the schema bundle is not JSON: {e}"))?;
        let catalog: Catalog =
            serde_json::from_str(channels).map_err(|e| format!("channels.json is invalid: {e}"))?;
        let namespaces = catalog
            .namespaces
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
}
