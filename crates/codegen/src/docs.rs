//! The human-readable reference: `docs/PROTOCOL.md` for the protocol, `docs/CHANNELS.md` for an
//! application's channel payloads, rendered from a minijinja template.
//!
//! It covers every message, endpoint, body, definition, table and rule, and shows examples
//! taken from the test vectors, so a reader who never saw the Rust or TypeScript code can tell
//! what to send and what to expect.

use minijinja::context;
use minijinja::value::{Serde, Value as Jinja};
use serde::Serialize;
use serde_json::Value;

use crate::lint::{nullable_inner, referenced};
use crate::set::SchemaSet;
use crate::{Error, banner};

const TEMPLATE: &str = include_str!("../templates/docs/reference.md.j2");

/// The file name of the set's reference: `PROTOCOL.md` for a set with a rule catalogue,
/// `CHANNELS.md` for an application's set (one with a `channels.json`), `REFERENCE.md` for any
/// other set of messages.
pub fn file_name(set: &SchemaSet) -> &'static str {
    if set.rules.is_some() {
        "PROTOCOL.md"
    } else if set.channels.is_some() {
        "CHANNELS.md"
    } else {
        "REFERENCE.md"
    }
}

#[derive(Serialize)]
struct DocDef {
    name: String,
    anchor: String,
    description: String,
    /// The `type` tag, for messages.
    tag: Option<String>,
    /// A one-line summary of the type, for non-object definitions.
    summary: String,
    fields: Vec<DocField>,
    /// For unions: the variants' definition names.
    variants: Vec<String>,
    examples: Vec<DocExample>,
    refused: Vec<DocExample>,
}

#[derive(Serialize)]
struct DocField {
    name: String,
    ty: String,
    presence: &'static str,
    description: String,
}

#[derive(Serialize)]
struct DocExample {
    name: String,
    description: String,
    json: String,
}

#[derive(Serialize)]
struct BackoffRow {
    attempt: u32,
    nominal_ms: u64,
    min_ms: u64,
    max_ms: u64,
}

/// Renders the set's reference.
pub fn generate(set: &SchemaSet) -> Result<String, Error> {
    let env = crate::templates(&[("reference.md", TEMPLATE)])?;

    let doc = |name: &str| doc_def(set, name);
    let client = set.unions.iter().find(|u| u.name == "ClientMessage");
    let server = set.unions.iter().find(|u| u.name == "ServerMessage");
    let variants = |u: Option<&crate::set::TaggedUnion>| -> Vec<DocDef> {
        u.map(|u| u.variants.iter().map(|v| doc(&v.def)).collect())
            .unwrap_or_default()
    };
    let listed: Vec<&str> = set
        .messages()
        .chain(set.bodies())
        .chain(set.unions.iter().map(|u| u.name.as_str()))
        .collect();
    let definitions: Vec<DocDef> = set
        .defs()
        .keys()
        .filter(|n| !listed.contains(&n.as_str()))
        .map(|n| doc(n))
        .collect();
    let payload_unions: Vec<DocDef> = set
        .unions
        .iter()
        .filter(|u| u.name != "ClientMessage" && u.name != "ServerMessage")
        .map(|u| doc(&u.name))
        .collect();
    let payload_variants: Vec<DocDef> = set
        .unions
        .iter()
        .filter(|u| u.name != "ClientMessage" && u.name != "ServerMessage")
        .flat_map(|u| u.variants.iter().map(|v| doc(&v.def)))
        .collect();

    let ctx = context! {
        banner => format!("<!-- {} -->", banner(set, "").lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")),
        label => set.label.clone(),
        files => set.files.iter().map(|f| context! { name => f.name.clone(), title => f.title.clone(), description => f.description.clone() }).collect::<Vec<_>>(),
        client_messages => Jinja::from(Serde(variants(client))),
        server_messages => Jinja::from(Serde(variants(server))),
        client_union => client.map(|u| doc(&u.name)).map(|d| Jinja::from(Serde(d))),
        server_union => server.map(|u| doc(&u.name)).map(|d| Jinja::from(Serde(d))),
        bodies => Jinja::from(Serde(set.bodies().iter().map(|n| doc(n)).collect::<Vec<_>>())),
        payload_unions => Jinja::from(Serde(payload_unions)),
        payload_variants => Jinja::from(Serde(payload_variants)),
        definitions => Jinja::from(Serde(definitions)),
        rules => set.rules.as_ref().map(|r| Jinja::from(Serde(r))),
        close_codes => set.close_codes.as_ref().map(|t| Jinja::from(Serde(t))),
        error_codes => set.error_codes.as_ref().map(|t| Jinja::from(Serde(t))),
        defaults => set.defaults.as_ref().map(|t| Jinja::from(Serde(t))),
        endpoints => set.endpoints.as_ref().map(|t| Jinja::from(Serde(t.endpoints.iter().map(|e| context! { e => Jinja::from(Serde(e)), request => e.request.as_deref().map(link), query => e.query.as_deref().map(link), response => e.response.as_deref().map(link) }).collect::<Vec<_>>()))),
        endpoints_description => set.endpoints.as_ref().map(|t| t.description.clone()),
        channels => set.channels.as_ref().map(|c| Jinja::from(Serde(c.namespaces.iter().map(|ns| context! { pattern => ns.pattern.clone(), payload => link(&ns.payload), description => ns.description.clone(), hooks => ns.hooks.iter().map(|h| match h { crate::tables::Hook::Publish => "publish", crate::tables::Hook::Subscribe => "subscribe" }).collect::<Vec<_>>(), presence => ns.presence, exclusive => ns.exclusive.map(|e| match e { crate::tables::Exclusive::Refuse => "refuse", crate::tables::Exclusive::TakeOver => "take_over" }) }).collect::<Vec<_>>()))),
        channels_description => set.channels.as_ref().map(|c| c.description.clone()),
        methods => set.methods.as_ref().map(|m| m.methods.iter().map(|m| context! { name => m.name.clone(), params => link(&m.params), result => link(&m.result), description => m.description.clone(), idempotent => m.idempotent }).collect::<Vec<_>>()),
        methods_description => set.methods.as_ref().map(|m| m.description.clone()),
        reconnect => set.def("ReconnectPolicy").and_then(|d| d["description"].as_str()).map(str::to_owned),
        backoff => set.defaults.as_ref().map(backoff_table),
        compatibility => crate::breaking::rules::markdown_table(),
    };
    let mut text = env
        .get_template("reference.md")
        .and_then(|t| t.render(ctx))
        .map_err(template_error)?;
    while text.contains("\n\n\n") {
        text = text.replace("\n\n\n", "\n\n");
    }
    Ok(text)
}

fn template_error(error: minijinja::Error) -> Error {
    Error::Generate(format!("docs template: {error}"))
}

fn doc_def(set: &SchemaSet, name: &str) -> DocDef {
    let schema = set.def(name).cloned().unwrap_or(Value::Null);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let fields: Vec<DocField> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(field, prop)| DocField {
                    name: field.clone(),
                    ty: md_type(prop),
                    presence: match (
                        required.contains(&field.as_str()),
                        nullable_inner(prop).is_some(),
                    ) {
                        (true, true) => "required, nullable",
                        (true, false) => "required",
                        (false, _) => "optional",
                    },
                    description: cell(prop["description"].as_str().unwrap_or_default()),
                })
                .collect()
        })
        .unwrap_or_default();
    let vectors = set.vectors.get(name);
    let examples = |list: Option<&Vec<crate::tables::Vector>>, most: usize| -> Vec<DocExample> {
        list.into_iter()
            .flatten()
            .take(most)
            .map(|v| DocExample {
                name: v.name.clone(),
                description: v.description.clone(),
                json: serde_json::to_string(&v.value).unwrap_or_default(),
            })
            .collect()
    };
    DocDef {
        name: name.to_owned(),
        anchor: name.to_lowercase(),
        description: schema["description"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        tag: crate::set::type_tag(&schema).map(str::to_owned),
        summary: if fields.is_empty() {
            md_type(&schema)
        } else {
            String::new()
        },
        fields,
        variants: set
            .unions
            .iter()
            .find(|u| u.name == name)
            .map(|u| u.variants.iter().map(|v| v.def.clone()).collect())
            .unwrap_or_default(),
        examples: examples(vectors.map(|v| &v.valid), 2),
        refused: examples(vectors.map(|v| &v.invalid), 3),
    }
}

/// A Markdown link to a definition's section.
fn link(name: &str) -> String {
    format!("[{name}](#{})", name.to_lowercase())
}

/// A table-cell-safe one-line description of a schema's type and constraints.
fn md_type(schema: &Value) -> String {
    if let Some(name) = referenced(schema) {
        return link(name);
    }
    if let Some(inner) = nullable_inner(schema) {
        return format!("{} or null", md_type(inner));
    }
    if let Some(arms) = schema.get("oneOf").and_then(Value::as_array) {
        return arms.iter().map(md_type).collect::<Vec<_>>().join(" or ");
    }
    if let Some(value) = schema.get("const") {
        return format!("`{value}`");
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return cell(
            &values
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(" or "),
        );
    }
    let bound = |key: &str| schema.get(key).map(Value::to_string);
    let range = |lo: Option<String>, hi: Option<String>, unit: &str| match (lo, hi) {
        (Some(lo), Some(hi)) => format!(", {lo} to {hi}{unit}"),
        (Some(lo), None) => format!(", at least {lo}{unit}"),
        (None, Some(hi)) => format!(", at most {hi}{unit}"),
        (None, None) => String::new(),
    };
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => {
            let mut text = format!(
                "string{}",
                range(bound("minLength"), bound("maxLength"), " characters")
            );
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                text.push_str(&format!(", matching `{pattern}`"));
            }
            cell(&text)
        }
        Some(kind @ ("integer" | "number")) => {
            format!("{kind}{}", range(bound("minimum"), bound("maximum"), ""))
        }
        Some("boolean") => "boolean".into(),
        Some("array") => format!(
            "array of {}{}",
            md_type(&schema["items"]),
            range(bound("minItems"), bound("maxItems"), " items")
        ),
        Some("object") => "object".into(),
        Some(other) => other.into(),
        None => "any JSON value".into(),
    }
}

/// Escapes a text for a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The delay range of the first retries at the default reconnect policy: enough retries to
/// reach the cap, and one more.
///
/// This is the formula of FERRY-RECONNECT-2 once more, for the reader; the workspace tests
/// check the rendered table against `ferry_protocol::BackoffPolicy`, which is the rule's one
/// implementation.
fn backoff_table(defaults: &crate::tables::DefaultsTable) -> minijinja::Value {
    let value = |name: &str| {
        defaults
            .values
            .iter()
            .find(|v| v.name == name)
            .map(|v| &v.value)
    };
    let get = |name: &str| {
        value(name)
            .and_then(serde_json::Number::as_f64)
            .unwrap_or_default()
    };
    let (base, factor, cap, jitter) = (
        get("reconnect_base_ms"),
        get("reconnect_factor"),
        get("reconnect_cap_ms"),
        get("reconnect_jitter"),
    );
    let nominal = |attempt: u32| (base * factor.powi(attempt as i32 - 1)).min(cap);
    let last = (1..=30).find(|&n| nominal(n) >= cap).unwrap_or(30) + 1;
    let rows: Vec<BackoffRow> = (1..=last)
        .map(|attempt| {
            let nominal = nominal(attempt);
            BackoffRow {
                attempt,
                nominal_ms: nominal as u64,
                min_ms: (nominal * (1.0 - jitter)).floor() as u64,
                max_ms: nominal as u64,
            }
        })
        .collect();
    let shown = |name: &str| value(name).map(ToString::to_string).unwrap_or_default();
    context! {
        base_ms => shown("reconnect_base_ms"),
        factor => shown("reconnect_factor"),
        cap_ms => shown("reconnect_cap_ms"),
        jitter => shown("reconnect_jitter"),
        rows => Jinja::from(Serde(rows)),
    }
}
