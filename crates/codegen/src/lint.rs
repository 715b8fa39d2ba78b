//! The lints every schema set must pass before anything is generated from it.
//!
//! They keep the schema inside what both typify and the `jsonschema` crate handle the same way,
//! and inside what TypeScript can express: unions tagged by a constant `type`, no untagged
//! `anyOf` but `T | null`, integers bounded within ±(2^53 − 1), optional and nullable kept
//! apart, a description on every definition and property, and test vectors for every message
//! and body that the schema itself accepts and refuses as they claim.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use serde_json::{Map, Value};

use crate::set::{SchemaSet, ref_name, type_tag};

/// The largest integer every JSON implementation represents exactly: 2^53 − 1.
pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// The keywords a definition may use; anything else is refused.
const KEYWORDS: &[&str] = &[
    "$ref",
    "description",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "oneOf",
    "anyOf",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
];

/// One lint finding: where, what is wrong, and what it touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    /// A JSON-pointer-like location (`Subscribe/properties/id`) or a file name.
    pub location: String,
    /// What is wrong, and what to do instead.
    pub message: String,
    /// What the finding touches: what the schema means, or only its documentation and tests.
    pub kind: LintKind,
}

/// What a lint finding touches. Code generation refuses every kind; a server that loads a set
/// to check payloads needs only the meaning of its schemas to be sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LintKind {
    /// What the schema means or how implementations read it: keywords, types, bounds, tags,
    /// tables, names.
    Meaning,
    /// A definition or property without a description.
    Description,
    /// A test vector that is missing, or that the schema does not judge as it claims.
    Vector,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Runs every lint on `set`; an empty result means the set may be generated from.
pub fn lint(set: &SchemaSet) -> Vec<Lint> {
    let mut lints = Lints::default();
    for (name, schema) in set.defs() {
        if !is_upper_camel(name) {
            lints.push(name, "definition names are UpperCamelCase");
        }
        lints.schema(name, schema, true);
    }
    lints.unions(set);
    lints.tables(set);
    lints.vectors(set);
    lints.found
}

#[derive(Default)]
struct Lints {
    found: Vec<Lint>,
}

impl Lints {
    /// A finding about what the schema means.
    fn push(&mut self, location: &str, message: impl Into<String>) {
        self.push_kind(LintKind::Meaning, location, message);
    }

    fn push_kind(&mut self, kind: LintKind, location: &str, message: impl Into<String>) {
        self.found.push(Lint {
            location: location.to_owned(),
            message: message.into(),
            kind,
        });
    }

    /// Checks one schema; `named` is true for a definition or a property (which need a
    /// description) and false for items of arrays and arms of `anyOf`.
    fn schema(&mut self, at: &str, schema: &Value, named: bool) {
        let Some(map) = schema.as_object() else {
            self.push(at, "a schema must be a JSON object");
            return;
        };
        for key in map.keys() {
            if !KEYWORDS.contains(&key.as_str()) {
                self.push(
                    at,
                    format!(
                        "uses {key:?}, which is not among the supported keywords ({})",
                        KEYWORDS.join(", ")
                    ),
                );
            }
        }
        let described = map
            .get("description")
            .and_then(Value::as_str)
            .is_some_and(|d| !d.trim().is_empty());
        if named && !described {
            self.push_kind(LintKind::Description, at, "needs a description");
        }
        if map.contains_key("$ref") {
            let others = map
                .keys()
                .filter(|k| *k != "$ref" && *k != "description")
                .count();
            if others > 0 {
                self.push(at, "a $ref may only stand beside a description");
            }
            return;
        }
        if let Some(Value::Array(arms)) = map.get("oneOf") {
            if !arms.iter().all(|arm| arm.get("$ref").is_some()) {
                self.push(
                    at,
                    "oneOf variants must be $refs to object definitions tagged by a constant type",
                );
            }
            return;
        }
        if let Some(Value::Array(arms)) = map.get("anyOf") {
            let nulls = arms
                .iter()
                .filter(|a| a.get("type") == Some(&Value::from("null")))
                .count();
            if arms.len() != 2 || nulls != 1 {
                self.push(
                    at,
                    "anyOf is only allowed as [T, {\"type\": \"null\"}] (a nullable T)",
                );
            }
            for (i, arm) in arms.iter().enumerate() {
                if arm.get("type") != Some(&Value::from("null")) {
                    self.schema(&format!("{at}/anyOf/{i}"), arm, false);
                }
            }
            return;
        }
        if map.contains_key("const") && !at.ends_with("/properties/type") {
            self.push(
                at,
                "const is only allowed as the type tag of a message; use a one-value enum",
            );
        }
        match map.get("type").and_then(Value::as_str) {
            Some("object") => self.object(at, map),
            Some("array") => match map.get("items") {
                Some(items) => self.schema(&format!("{at}/items"), items, false),
                None => self.push(at, "arrays need items"),
            },
            Some("integer") => self.integer(at, map),
            Some("number") if map.contains_key("minimum") != map.contains_key("maximum") => {
                self.push(at, "a bounded number needs both minimum and maximum");
            }
            Some("number") => {}
            Some("string") => {
                if let Some(pattern) = map.get("pattern").and_then(Value::as_str) {
                    if let Err(e) = regress::Regex::new(pattern) {
                        self.push(
                            at,
                            format!(
                                "pattern does not compile as ECMA-262 (JSON Schema's dialect): {e}"
                            ),
                        );
                    }
                    if let Err(e) = regex::Regex::new(pattern) {
                        self.push(at, format!("pattern uses what the generated Rust's regex engine lacks (look-around, back-references): {e}"));
                    }
                }
            }
            Some("boolean") | Some("null") => {}
            Some(other) => self.push(at, format!("unknown type {other:?}")),
            None if map.contains_key("enum") || map.contains_key("const") => {}
            // No type: any JSON value (an application payload).
            None => {}
        }
    }

    fn object(&mut self, at: &str, map: &Map<String, Value>) {
        let empty = Map::new();
        let properties = map
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        if !properties.is_empty() && map.get("additionalProperties") != Some(&Value::Bool(false)) {
            self.push(
                at,
                "objects with properties must set additionalProperties: false",
            );
        }
        let required: Vec<&str> = map
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for name in &required {
            if !properties.contains_key(*name) {
                self.push(
                    at,
                    format!("requires {name:?}, which is not among its properties"),
                );
            }
        }
        for (name, property) in properties {
            let here = format!("{at}/properties/{name}");
            if !is_snake(name) {
                self.push(&here, "property names are snake_case");
            }
            let nullable = property.get("anyOf").is_some();
            if nullable && !required.contains(&name.as_str()) {
                self.push(&here, "a nullable property must be required: optional (may be absent) and nullable (may be null) are kept apart");
            }
            self.schema(&here, property, true);
        }
    }

    fn integer(&mut self, at: &str, map: &Map<String, Value>) {
        let bound = |key: &str| map.get(key).and_then(Value::as_i64);
        match (bound("minimum"), bound("maximum")) {
            (Some(min), Some(max)) => {
                if min < -MAX_SAFE_INTEGER || max > MAX_SAFE_INTEGER {
                    self.push(at, "integer bounds must lie within ±(2^53 − 1)");
                }
                if min > max {
                    self.push(at, "minimum exceeds maximum");
                }
            }
            _ => self.push(
                at,
                "integers need whole-number minimum and maximum within ±(2^53 − 1)",
            ),
        }
    }

    fn unions(&mut self, set: &SchemaSet) {
        let mut in_union = HashSet::new();
        for union in &set.unions {
            let mut tags = HashSet::new();
            for variant in &union.variants {
                if !tags.insert(&variant.tag) {
                    self.push(
                        &union.name,
                        format!("two variants share the tag {:?}", variant.tag),
                    );
                }
                in_union.insert(variant.def.as_str());
                if set
                    .def(&variant.def)
                    .and_then(|d| d.pointer("/required"))
                    .and_then(Value::as_array)
                    .is_none_or(|r| !r.contains(&Value::from("type")))
                {
                    self.push(&variant.def, "a message must require its type tag");
                }
            }
        }
        for (name, schema) in set.defs() {
            if schema.get("oneOf").is_some() && !set.unions.iter().any(|u| &u.name == name) {
                self.push(
                    name,
                    "every oneOf variant must be a $ref to an object with a constant type tag",
                );
            }
            if type_tag(schema).is_some() && !in_union.contains(name.as_str()) {
                self.push(name, "has a type tag but belongs to no union");
            }
        }
    }

    fn tables(&mut self, set: &SchemaSet) {
        let rule_ids: HashSet<&str> = set
            .rules
            .iter()
            .flat_map(|c| &c.sections)
            .flat_map(|s| &s.rules)
            .map(|r| r.id.as_str())
            .collect();
        if let Some(catalogue) = &set.rules {
            let mut seen = HashSet::new();
            for section in &catalogue.sections {
                for (i, rule) in section.rules.iter().enumerate() {
                    let expected = format!("FERRY-{}-{}", section.name, i + 1);
                    if rule.id != expected {
                        self.push(
                            "rules.json",
                            format!(
                                "{} should be {expected}: ids number each section's rules from 1",
                                rule.id
                            ),
                        );
                    }
                    if !seen.insert(&rule.id) {
                        self.push("rules.json", format!("{} appears twice", rule.id));
                    }
                }
            }
        }
        let mut cite = |file: &str, ids: &[String]| {
            for id in ids {
                if !rule_ids.contains(id.as_str()) {
                    self.push(
                        file,
                        format!("cites {id}, which rules.json does not define"),
                    );
                }
            }
        };
        let close_codes = set.close_codes.iter().flat_map(|t| &t.codes);
        for code in close_codes.clone() {
            cite("close-codes.json", &code.rules);
        }
        for row in set.error_codes.iter().flat_map(|t| &t.codes) {
            cite("error-codes.json", &row.rules);
        }
        for value in set.defaults.iter().flat_map(|t| &t.values) {
            cite("defaults.json", &value.rules);
        }
        for endpoint in set.endpoints.iter().flat_map(|t| &t.endpoints) {
            cite("endpoints.json", &endpoint.rules);
        }

        let mut codes = BTreeSet::new();
        for code in close_codes {
            if !(1000..=4999).contains(&code.code) || !codes.insert(code.code) {
                self.push(
                    "close-codes.json",
                    format!("{} is out of range or listed twice", code.code),
                );
            }
            if !is_snake(&code.name) {
                self.push(
                    "close-codes.json",
                    format!("{}: names are snake_case", code.code),
                );
            }
        }
        if let Some(table) = &set.error_codes {
            let enumerated: Vec<&str> = set
                .def("ErrorCode")
                .and_then(|d| d.get("enum"))
                .and_then(Value::as_array)
                .map(|e| e.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let tabled: Vec<&str> = table.codes.iter().map(|c| c.code.as_str()).collect();
            if enumerated != tabled {
                self.push("error-codes.json", format!("lists {tabled:?} but the ErrorCode enum lists {enumerated:?}; keep them equal and in the same order"));
            }
        }
        for value in set.defaults.iter().flat_map(|t| &t.values) {
            let whole = value.value.as_u64().is_some();
            if !value.is_ratio() && !whole {
                self.push(
                    "defaults.json",
                    format!("{}: only ratios may be fractional or negative", value.name),
                );
            }
        }
        let error_codes: HashSet<&str> = set
            .error_codes
            .iter()
            .flat_map(|t| &t.codes)
            .map(|c| c.code.as_str())
            .collect();
        for endpoint in set.endpoints.iter().flat_map(|t| &t.endpoints) {
            for name in [&endpoint.request, &endpoint.query, &endpoint.response]
                .into_iter()
                .flatten()
            {
                if set.def(name).is_none() {
                    self.push(
                        "endpoints.json",
                        format!(
                            "{} names {name}, which no schema file defines",
                            endpoint.name
                        ),
                    );
                }
            }
            for error in &endpoint.errors {
                if !error_codes.contains(error.code.as_str()) {
                    self.push(
                        "endpoints.json",
                        format!(
                            "{} answers {}, which error-codes.json does not define",
                            endpoint.name, error.code
                        ),
                    );
                }
            }
        }
        for ns in set.channels.iter().flat_map(|c| &c.namespaces) {
            if set.def(&ns.payload).is_none() {
                self.push(
                    "channels.json",
                    format!(
                        "{} carries {}, which no schema file defines",
                        ns.pattern, ns.payload
                    ),
                );
            }
            if let Some(twice) = ns
                .hooks
                .iter()
                .enumerate()
                .find_map(|(i, hook)| ns.hooks[..i].contains(hook).then_some(hook))
            {
                self.push(
                    "channels.json",
                    format!("{} declares the {twice:?} hook twice", ns.pattern),
                );
            }
        }
        let methods = set.methods.iter().flat_map(|m| &m.methods);
        for (i, method) in methods.clone().enumerate() {
            if !is_method_name(&method.name) {
                self.push(
                    "methods.json",
                    format!(
                        "{:?} is not a method name: one to eight ':'-separated segments of a-z, 0-9, '_' and '-', each starting with a letter or digit",
                        method.name
                    ),
                );
            }
            if methods.clone().take(i).any(|m| m.name == method.name) {
                self.push("methods.json", format!("{} is declared twice", method.name));
            }
            for (role, def) in [("params", &method.params), ("result", &method.result)] {
                if set.def(def).is_none() {
                    self.push(
                        "methods.json",
                        format!(
                            "{} takes {role} {def}, which no schema file defines",
                            method.name
                        ),
                    );
                }
            }
        }
    }

    fn vectors(&mut self, set: &SchemaSet) {
        let needing: Vec<&str> = set.messages().chain(set.bodies()).collect();
        for name in &needing {
            match set.vectors.get(*name) {
                Some(file) if !file.valid.is_empty() && !file.invalid.is_empty() => {}
                _ => self.push_kind(
                    LintKind::Vector,
                    &format!("vectors/{name}.json"),
                    "every message and body needs at least one valid and one invalid vector",
                ),
            }
        }
        for (name, file) in &set.vectors {
            let at = format!("vectors/{name}.json");
            if set.def(name).is_none() {
                self.push_kind(
                    LintKind::Vector,
                    &at,
                    format!("{name} is not a definition of this set"),
                );
                continue;
            }
            let mut names = HashSet::new();
            for vector in file.valid.iter().chain(&file.invalid) {
                if !names.insert(&vector.name) {
                    self.push_kind(
                        LintKind::Vector,
                        &at,
                        format!("the name {:?} is used twice", vector.name),
                    );
                }
            }
            let validator = match crate::validator_for(set, name) {
                Ok(v) => v,
                Err(e) => {
                    self.push(&at, format!("the schema does not compile: {e}"));
                    continue;
                }
            };
            for vector in &file.valid {
                if let Some(error) = validator.iter_errors(&vector.value).next() {
                    self.push_kind(
                        LintKind::Vector,
                        &at,
                        format!(
                            "valid vector {:?} is refused by the schema at \"{}\": {error}",
                            vector.name,
                            error.instance_path()
                        ),
                    );
                }
            }
            for vector in &file.invalid {
                if validator.is_valid(&vector.value) {
                    self.push_kind(
                        LintKind::Vector,
                        &at,
                        format!("invalid vector {:?} is accepted by the schema", vector.name),
                    );
                }
            }
        }
    }
}

fn is_snake(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_upper_camel(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Whether `schema` is `anyOf: [T, null]`, returning `T`.
pub fn nullable_inner(schema: &Value) -> Option<&Value> {
    let arms = schema.get("anyOf")?.as_array()?;
    arms.iter()
        .find(|a| a.get("type") != Some(&Value::from("null")))
}

/// The definition a schema refers to, if it is a `$ref`.
pub fn referenced(schema: &Value) -> Option<&str> {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(ref_name)
}

/// Whether `name` is a method name: the channel grammar (`MethodName` in
/// `definitions.schema.json`), one to eight ':'-separated segments of at most 64 characters.
fn is_method_name(name: &str) -> bool {
    let segments: Vec<&str> = name.split(':').collect();
    segments.len() <= 8
        && segments.iter().all(|segment| {
            let mut chars = segment.chars();
            segment.len() <= 64
                && chars
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && chars
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        })
}
