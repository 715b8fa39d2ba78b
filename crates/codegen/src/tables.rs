//! The data files of a schema set: close codes, error codes, defaults, rules, endpoints, channel
//! namespaces and test vectors. Each is read with `deny_unknown_fields`, so a typo in a table is
//! a load error that names the field, not a silently ignored key.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `close-codes.json`: every WebSocket close code and the client's action on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseCodeTable {
    /// What the table is, for the generated reference.
    pub description: String,
    /// The codes, in ascending order.
    pub codes: Vec<CloseCode>,
}

/// One row of the close-code table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseCode {
    /// The numeric close code (1000-4999).
    pub code: u16,
    /// A snake_case name, used for generated constants.
    pub name: String,
    /// When a server sends it (or why a client observes it).
    pub sent_when: String,
    /// What a client does on it.
    pub action: ClientAction,
    /// Rule ids this code implements.
    pub rules: Vec<String>,
}

/// What a client does when its session closes with a given code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAction {
    /// Do not reconnect; report the reason.
    Stop,
    /// Get a new ticket and retry at once (under backoff if it repeats).
    RenewTicket,
    /// Retry under the reconnect policy.
    Backoff,
    /// Wait the goodbye's retry hint, or back off when there is none.
    RetryAfterHint,
}

impl ClientAction {
    /// The wire name of the action, as written in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::RenewTicket => "renew_ticket",
            Self::Backoff => "backoff",
            Self::RetryAfterHint => "retry_after_hint",
        }
    }
}

/// `error-codes.json`: every error code and whether retrying can help.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorCodeTable {
    /// What the table is, for the generated reference.
    pub description: String,
    /// The codes, in the order of the `ErrorCode` enum in the schema.
    pub codes: Vec<ErrorCodeRow>,
}

/// One row of the error-code table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorCodeRow {
    /// The code as it appears on the wire.
    pub code: String,
    /// What it means.
    pub meaning: String,
    /// Whether the same request may succeed later.
    pub retryable: bool,
    /// The HTTP status an endpoint answers with.
    pub http_status: u16,
    /// Rule ids this code implements.
    pub rules: Vec<String>,
}

/// `defaults.json`: the protocol's defaults and fixed limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsTable {
    /// What the table is, for the generated reference.
    pub description: String,
    /// The values.
    pub values: Vec<DefaultValue>,
}

/// One default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultValue {
    /// A snake_case name, used for generated constants.
    pub name: String,
    /// The value: a non-negative integer, or a number when `unit` is `ratio`.
    pub value: serde_json::Number,
    /// The unit (`ms`, `bytes`, `count`, `ratio`, ...).
    pub unit: String,
    /// Whether the value is advertised in the welcome (and so may differ per server).
    pub advertised: bool,
    /// What it means.
    pub description: String,
    /// Rule ids that cite it.
    pub rules: Vec<String>,
}

impl DefaultValue {
    /// Whether the value is a fraction or factor (a float) rather than a whole number.
    pub fn is_ratio(&self) -> bool {
        self.unit == "ratio"
    }
}

/// `rules.json`: the rule catalogue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleCatalogue {
    /// What the catalogue is, for the generated reference.
    pub description: String,
    /// Rules grouped by topic.
    pub sections: Vec<RuleSection>,
}

/// A group of rules on one topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    /// The id segment shared by the section's rules (`TICKET` in `FERRY-TICKET-3`).
    pub name: String,
    /// A human title.
    pub title: String,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// One protocol rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The stable id, `FERRY-<SECTION>-<n>`.
    pub id: String,
    /// `MUST` or `SHOULD`.
    pub level: RuleLevel,
    /// The sentence the rule states.
    pub text: String,
}

/// How binding a rule is (RFC 2119).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleLevel {
    /// An absolute requirement.
    #[serde(rename = "MUST")]
    Must,
    /// A recommendation.
    #[serde(rename = "SHOULD")]
    Should,
}

impl RuleLevel {
    /// The level as written in the catalogue.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Must => "MUST",
            Self::Should => "SHOULD",
        }
    }
}

/// `endpoints.json`: the HTTP and WebSocket endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointTable {
    /// What the table is, for the generated reference.
    pub description: String,
    /// The endpoints.
    pub endpoints: Vec<Endpoint>,
}

/// One endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// A snake_case name, used for generated constants.
    pub name: String,
    /// The HTTP method.
    pub method: String,
    /// The path.
    pub path: String,
    /// `bearer`, `ticket` or `none`.
    pub auth: String,
    /// What it does.
    pub summary: String,
    /// The request body's definition, if any.
    pub request: Option<String>,
    /// The query string's definition, if any.
    pub query: Option<String>,
    /// The response body's definition, if any.
    pub response: Option<String>,
    /// The response's content type.
    pub response_content_type: String,
    /// The status of a successful response.
    pub success_status: u16,
    /// The error statuses and their codes.
    pub errors: Vec<EndpointError>,
    /// Rule ids the endpoint implements.
    pub rules: Vec<String>,
}

/// One error an endpoint may answer with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointError {
    /// The HTTP status.
    pub status: u16,
    /// The error code in the body.
    pub code: String,
    /// When it happens.
    pub when: String,
}

/// `channels.json` of an application schema set: channel namespaces and their payloads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelCatalog {
    /// What the application is.
    pub description: String,
    /// The namespaces, most specific first.
    pub namespaces: Vec<Namespace>,
}

/// A channel namespace: the channels a pattern matches carry one payload type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    /// A channel pattern (`*` one segment, final `**` the rest).
    pub pattern: String,
    /// The definition every payload must match.
    pub payload: String,
    /// What the channels carry.
    pub description: String,
    /// The backend hooks client requests on these channels go through (FERRY-HOOK-1,
    /// FERRY-HOOK-2); none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<Hook>,
    /// Whether the channels keep presence: who is subscribed, as members and join and leave
    /// events (FERRY-PRESENCE-1); false by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub presence: bool,
    /// Whether one session at a time holds each channel as its only publisher, and what a
    /// second hold does (FERRY-HOLD-1); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive: Option<Exclusive>,
}

/// What an exclusive namespace does with a hold asked while another session holds the channel
/// (FERRY-HOLD-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusive {
    /// The second hold is refused with `held`.
    Refuse,
    /// The second hold is granted and the previous holder's session is closed with 4412.
    TakeOver,
}

/// A backend hook a namespace can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// Client publishes are accepted, replaced or refused by the backend before they are stored.
    Publish,
    /// Client subscribes are accepted or refused by the backend before they take effect.
    Subscribe,
}

/// `methods.json` of an application schema set: the RPC methods clients may call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodCatalog {
    /// What the methods are for.
    pub description: String,
    /// The methods, each named once.
    pub methods: Vec<Method>,
}

/// One RPC method: its name, the schemas of its params and result, and how it may be retried.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    /// The method's name, in the channel grammar (`tasks:start`); a ticket needs `call` on a
    /// pattern that matches it.
    pub name: String,
    /// The definition the call's params must match.
    pub params: String,
    /// The definition the method's result must match.
    pub result: String,
    /// What the method does.
    pub description: String,
    /// Whether executing the method twice has the effect of executing it once, so the server
    /// may retry its backend call (FERRY-RPC-5); false by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// A file of test vectors for one type: `vectors/<Type>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFile {
    /// The definition the vectors are for.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Values every implementation must accept.
    pub valid: Vec<Vector>,
    /// Values every implementation must refuse.
    pub invalid: Vec<Vector>,
}

/// One test vector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vector {
    /// A short kebab-case name, unique within the file.
    pub name: String,
    /// What the case shows (for valid) or why it must be refused (for invalid).
    pub description: String,
    /// The JSON value.
    pub value: Value,
}
