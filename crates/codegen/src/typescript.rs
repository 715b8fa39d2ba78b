//! TypeScript output: a small npm package rendered from minijinja templates.
//!
//! - `src/types.ts`: an interface per object definition and a type per other definition; tagged
//!   unions are discriminated unions on `type`; optional members are `f?: T` and nullable ones
//!   `T | null` (the package compiles with `exactOptionalPropertyTypes`, which keeps the two
//!   apart); constraints TypeScript cannot express become doc tags (`@maximum`, `@pattern`, ...).
//! - `src/guards.ts`: a validator (`validateX`, a list of problems) and a type guard (`isX`) per
//!   definition, enforcing every constraint of the schema at run time, and `parseX` for unions;
//!   built from the checks of the shared runtime package `@ferry/validator`
//!   (`clients/typescript/packages/validator`), which the package depends on.
//! - `src/constants.ts`, `src/endpoints.ts` (when the set has tables): close codes with their
//!   client action, error codes, defaults, rules, endpoint descriptors.
//! - `src/channels.ts` (when the set has `channels.json`): namespaces and a `ChannelPayload<C>`
//!   type that maps a channel name to its payload type.
//! - `src/methods.ts` (when the set has `methods.json`): the RPC methods and the
//!   `MethodParams<M>` and `MethodResult<M>` types of each method name, for typed calls.
//! - `test/vectors.test.ts`: every valid vector as a typed literal (so `tsc --strict` checks it
//!   against its type), and a node test that runs every vector through the guards.
//! - `package.json`, `tsconfig.json` (type-check and test), `tsconfig.build.json` (the shipped
//!   build) and `lib/cjs/package.json`: the package installs from a folder, a tarball or git as
//!   it is, through an `exports` map that serves ES modules (`lib/esm`) and CommonJS (`lib/cjs`),
//!   each with its declarations. `npm run build` writes `lib/` (and `prepare` runs it, for a git
//!   install); Ferry's own generated packages commit `lib/`.
//!
//! Definitions whose names would shadow a global of JavaScript or the DOM (`Event`, `Error`,
//! `Text`, ...) are exported with a `Message` suffix (`EventMessage`, `ErrorMessage`), so an
//! application can import them without hiding the platform's own types.

use minijinja::context;
use minijinja::value::{Serde, Value as Jinja};
use serde::Serialize;
use serde_json::Value;

use crate::lint::{nullable_inner, referenced};
use crate::set::SchemaSet;
use crate::{Error, banner};

const TEMPLATES: &[(&str, &str)] = &[
    (
        "types.ts",
        include_str!("../templates/typescript/types.ts.j2"),
    ),
    (
        "guards.ts",
        include_str!("../templates/typescript/guards.ts.j2"),
    ),
    (
        "constants.ts",
        include_str!("../templates/typescript/constants.ts.j2"),
    ),
    (
        "endpoints.ts",
        include_str!("../templates/typescript/endpoints.ts.j2"),
    ),
    (
        "channels.ts",
        include_str!("../templates/typescript/channels.ts.j2"),
    ),
    (
        "methods.ts",
        include_str!("../templates/typescript/methods.ts.j2"),
    ),
    (
        "index.ts",
        include_str!("../templates/typescript/index.ts.j2"),
    ),
    (
        "vectors.test.ts",
        include_str!("../templates/typescript/vectors.test.ts.j2"),
    ),
    (
        "package.json",
        include_str!("../templates/typescript/package.json.j2"),
    ),
    (
        "tsconfig.json",
        include_str!("../templates/typescript/tsconfig.json.j2"),
    ),
    (
        "tsconfig.build.json",
        include_str!("../templates/typescript/tsconfig.build.json.j2"),
    ),
    (
        "cjs-package.json",
        include_str!("../templates/typescript/cjs-package.json.j2"),
    ),
];

/// The npm package of the checks every generated package is built from.
pub const VALIDATOR_PACKAGE: &str = "@ferry/validator";

/// Where `@ferry/validator` lives in Ferry's repository.
pub const VALIDATOR_PATH: &str = "clients/typescript/packages/validator";

/// Globals of JavaScript and the DOM that a definition must not shadow: a definition with one
/// of these names is exported as `<Name>Message`.
const SHADOWED_GLOBALS: &[&str] = &[
    "Array",
    "Blob",
    "Boolean",
    "Comment",
    "Date",
    "Document",
    "Element",
    "Error",
    "Event",
    "File",
    "Headers",
    "Location",
    "Map",
    "Node",
    "Notification",
    "Number",
    "Object",
    "Promise",
    "Request",
    "Response",
    "Set",
    "String",
    "Symbol",
    "Text",
    "URL",
    "WebSocket",
    "Window",
];

/// How to generate the TypeScript package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeScriptOptions {
    /// The npm name of the package; `None` picks `@ferry/protocol` for the protocol's own set
    /// and `@ferry-app/<folder>` for any other.
    pub package_name: Option<String>,
    /// The npm dependency specifier of `@ferry/validator` (a version range, or `file:` path).
    pub validator: String,
}

impl Default for TypeScriptOptions {
    fn default() -> Self {
        Self {
            package_name: None,
            validator: "^0.1.0".to_owned(),
        }
    }
}

impl TypeScriptOptions {
    /// The options for a schema set whose output folder is `out`, relative to the root of
    /// Ferry's repository: the validator is the repository's own, by a relative `file:` path.
    pub fn in_repository(out: &str) -> Self {
        let depth = out.split('/').filter(|s| !s.is_empty()).count() + 1;
        Self {
            package_name: None,
            validator: format!("file:{}{VALIDATOR_PATH}", "../".repeat(depth)),
        }
    }
}

/// The exported TypeScript name of a definition.
pub fn ts_name(name: &str) -> String {
    if SHADOWED_GLOBALS.contains(&name) {
        format!("{name}Message")
    } else {
        name.to_owned()
    }
}

/// Whether `name` is a valid npm package name: lowercase, at most 214 characters, an optional
/// `@scope/`, and only URL-safe characters that do not start with `.` or `_`.
pub fn is_valid_package_name(name: &str) -> bool {
    let part_ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with(['.', '_'])
            && part.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_' | '~')
            })
    };
    if name.len() > 214 {
        return false;
    }
    match name.strip_prefix('@') {
        Some(scoped) => scoped
            .split_once('/')
            .is_some_and(|(scope, pkg)| part_ok(scope) && part_ok(pkg)),
        None => part_ok(name),
    }
}

/// A definition as the templates see it.
#[derive(Serialize)]
struct TsDef {
    name: String,
    doc: String,
    /// Members, for object definitions; `None` for type aliases.
    fields: Option<Vec<TsField>>,
    /// The aliased type, for non-object definitions.
    alias: String,
    /// A TypeScript expression of type `Check` that validates the definition.
    check: String,
    /// Whether it is a tagged union (it gets a `parse` function).
    union: bool,
}

#[derive(Serialize)]
struct TsField {
    name: String,
    optional: bool,
    ts_type: String,
    doc: String,
}

#[derive(Serialize)]
struct TsVectors {
    type_name: String,
    /// The union the type is a variant of, if any.
    union: Option<String>,
    valid: Vec<TsVector>,
    invalid: Vec<TsVector>,
}

#[derive(Serialize)]
struct TsVector {
    name: String,
    ident: String,
    literal: String,
}

/// The package's files, by path relative to `typescript/`.
pub fn generate(
    set: &SchemaSet,
    options: &TypeScriptOptions,
) -> Result<Vec<(String, String)>, Error> {
    let env = crate::templates(TEMPLATES)?;

    let defs: Vec<TsDef> = set
        .defs()
        .iter()
        .map(|(name, schema)| ts_def(set, name, schema))
        .collect();
    let used = used_helpers(&defs);
    let vectors: Vec<TsVectors> = set
        .vectors
        .values()
        .map(|file| ts_vectors(set, file))
        .collect();
    let has_tables = set.close_codes.is_some();
    let namespaces = set.channels.as_ref().map(|c| {
        c.namespaces
            .iter()
            .map(|ns| context! { pattern => ns.pattern.clone(), payload => ts_name(&ns.payload), description => ns.description.clone(), template => template_literal(&ns.pattern) })
            .collect::<Vec<_>>()
    });
    let package = match &options.package_name {
        Some(name) if is_valid_package_name(name) => name.clone(),
        Some(name) => {
            return Err(Error::Generate(format!(
                "{name:?} is not a valid npm package name (lowercase letters, digits, '-', '.', '_' or '~', optionally under an @scope/)"
            )));
        }
        None if set.rules.is_some() => "@ferry/protocol".to_owned(),
        None => format!(
            "@ferry-app/{}",
            set.label.rsplit('/').next().unwrap_or("app")
        ),
    };
    let subprotocol = set
        .defs()
        .get("Welcome")
        .and_then(|w| w.pointer("/properties/protocol/enum/0"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let ticket_parameter = set.endpoints.as_ref().and_then(|t| {
        t.endpoints
            .iter()
            .find(|e| e.response_content_type == "websocket")
            .map(|e| e.auth.clone())
    });
    let ctx = context! {
        banner => banner(set, "//"),
        label => set.label.clone(),
        note => format!("Generated by ferry-codegen from {} (sha256 {}). Do not edit.", set.label, set.hash),
        package,
        validator => options.validator.clone(),
        validator_package => VALIDATOR_PACKAGE,
        subprotocol,
        ticket_parameter,
        defs => Jinja::from(Serde(&defs)),
        used,
        unions => set.unions.iter().map(|u| context! { name => ts_name(&u.name), variants => u.variants.iter().map(|v| ts_name(&v.def)).collect::<Vec<_>>() }).collect::<Vec<_>>(),
        vectors => Jinja::from(Serde(&vectors)),
        close_codes => set.close_codes.as_ref().map(|t| t.codes.iter().map(|c| context! { code => c.code, name => c.name.clone(), camel => heck::AsUpperCamelCase(&c.name).to_string(), sent_when => c.sent_when.clone(), action => c.action.as_str(), rules => c.rules.clone() }).collect::<Vec<_>>()),
        close_actions => set.close_codes.as_ref().map(|t| {
            let mut actions: Vec<&str> = Vec::new();
            for c in &t.codes {
                if !actions.contains(&c.action.as_str()) {
                    actions.push(c.action.as_str());
                }
            }
            actions
        }),
        close_codes_doc => set.close_codes.as_ref().map(|t| doc_block(&t.description, "")),
        error_codes => set.error_codes.as_ref().map(|t| Jinja::from(Serde(&t.codes))),
        defaults => set.defaults.as_ref().map(|t| t.values.iter().map(|v| context! { camel => heck::AsLowerCamelCase(&v.name).to_string(), value => v.value.to_string(), doc => doc_block(&format!("{} ({})", v.description, v.unit), "  ") }).collect::<Vec<_>>()),
        rules => set.rules.as_ref().map(|c| c.sections.iter().flat_map(|s| s.rules.iter().map(move |r| context! { id => r.id.clone(), level => r.level.as_str(), section => s.name.clone(), text => r.text.clone() })).collect::<Vec<_>>()),
        endpoints => set.endpoints.as_ref().map(|t| t.endpoints.iter().map(|e| context! { e => Jinja::from(Serde(e)), camel => heck::AsLowerCamelCase(&e.name).to_string(), doc => doc_block(&e.summary, "  ") }).collect::<Vec<_>>()),
        namespaces,
        methods => set.methods.as_ref().map(|m| m.methods.iter().map(|m| context! { name => m.name.clone(), params => ts_name(&m.params), result => ts_name(&m.result), description => m.description.clone() }).collect::<Vec<_>>()),
        has_tables,
    };

    let mut files = vec![
        ("package.json".to_owned(), "package.json"),
        ("tsconfig.json".to_owned(), "tsconfig.json"),
        ("tsconfig.build.json".to_owned(), "tsconfig.build.json"),
        ("lib/cjs/package.json".to_owned(), "cjs-package.json"),
        ("src/types.ts".to_owned(), "types.ts"),
        ("src/guards.ts".to_owned(), "guards.ts"),
        ("src/index.ts".to_owned(), "index.ts"),
        ("test/vectors.test.ts".to_owned(), "vectors.test.ts"),
    ];
    if has_tables {
        files.push(("src/constants.ts".to_owned(), "constants.ts"));
        files.push(("src/endpoints.ts".to_owned(), "endpoints.ts"));
    }
    if set.channels.is_some() {
        files.push(("src/channels.ts".to_owned(), "channels.ts"));
    }
    if set.methods.is_some() {
        files.push(("src/methods.ts".to_owned(), "methods.ts"));
    }
    files
        .into_iter()
        .map(|(path, template)| {
            let rendered = env
                .get_template(template)
                .and_then(|t| t.render(&ctx))
                .map_err(template_error)?;
            Ok((path, rendered))
        })
        .collect()
}

fn template_error(error: minijinja::Error) -> Error {
    Error::Generate(format!("TypeScript template: {error}"))
}

fn ts_def(set: &SchemaSet, name: &str, schema: &Value) -> TsDef {
    let union = set.unions.iter().find(|u| u.name == name);
    let description = schema["description"].as_str().unwrap_or_default();
    let fields = (schema.get("type") == Some(&Value::from("object"))
        && schema.get("properties").is_some())
    .then(|| {
        let required = required(schema);
        schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(field, prop)| TsField {
                name: field.clone(),
                optional: !required.contains(&field.as_str()),
                ts_type: ts_type(prop),
                doc: doc_block(
                    &with_constraints(prop["description"].as_str().unwrap_or_default(), prop),
                    "  ",
                ),
            })
            .collect()
    });
    TsDef {
        name: ts_name(name),
        doc: doc_block(&with_constraints(description, schema), ""),
        alias: if fields.is_some() {
            String::new()
        } else {
            ts_type(schema)
        },
        fields,
        check: match union {
            Some(u) => {
                let arms: Vec<String> = u
                    .variants
                    .iter()
                    .map(|v| format!("[{}, check{}]", js_string(&v.tag), ts_name(&v.def)))
                    .collect();
                format!("tagged([{}])", arms.join(", "))
            }
            None => ts_check(schema),
        },
        union: union.is_some(),
    }
}

/// The checks of `@ferry/validator` that `guards.ts` calls (it imports only those, so the
/// package compiles under `noUnusedLocals`).
fn used_helpers(defs: &[TsDef]) -> Vec<&'static str> {
    const HELPERS: &[&str] = &[
        "string",
        "integer",
        "number",
        "boolean",
        "nullValue",
        "anyJson",
        "anyObject",
        "oneOfValues",
        "nullable",
        "array",
        "object",
        "tagged",
    ];
    let calls = |name: &str| {
        defs.iter().any(|d| {
            d.check
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| word == name)
        })
    };
    HELPERS.iter().copied().filter(|h| calls(h)).collect()
}

fn required(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The TypeScript type of a schema.
fn ts_type(schema: &Value) -> String {
    if let Some(name) = referenced(schema) {
        return ts_name(name);
    }
    if let Some(inner) = nullable_inner(schema) {
        return format!("{} | null", ts_type(inner));
    }
    if let Some(arms) = schema.get("oneOf").and_then(Value::as_array) {
        return arms.iter().map(ts_type).collect::<Vec<_>>().join(" | ");
    }
    if let Some(value) = schema.get("const") {
        return value.to_string();
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => "string".into(),
        Some("integer") | Some("number") => "number".into(),
        Some("boolean") => "boolean".into(),
        Some("null") => "null".into(),
        Some("array") => {
            let item = ts_type(&schema["items"]);
            if item.contains(' ') {
                format!("Array<{item}>")
            } else {
                format!("{item}[]")
            }
        }
        Some("object") => match schema.get("properties").and_then(Value::as_object) {
            Some(props) => {
                let required = required(schema);
                let members: Vec<String> = props
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{k}{}: {}",
                            if required.contains(&k.as_str()) {
                                ""
                            } else {
                                "?"
                            },
                            ts_type(v)
                        )
                    })
                    .collect();
                format!("{{ {} }}", members.join("; "))
            }
            None => "{ [key: string]: JsonValue }".into(),
        },
        _ => "JsonValue".into(),
    }
}

/// A TypeScript expression (of type `Check`) that validates a schema at run time.
fn ts_check(schema: &Value) -> String {
    if let Some(name) = referenced(schema) {
        return format!("check{}", ts_name(name));
    }
    if let Some(inner) = nullable_inner(schema) {
        return format!("nullable({})", ts_check(inner));
    }
    if let Some(value) = schema.get("const") {
        return format!("oneOfValues([{value}])");
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().map(Value::to_string).collect();
        return format!("oneOfValues([{}])", values.join(", "));
    }
    let num = |key: &str| {
        schema
            .get(key)
            .map_or("undefined".to_owned(), Value::to_string)
    };
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => {
            let pattern = schema
                .get("pattern")
                .and_then(Value::as_str)
                .map_or("undefined".to_owned(), |p| {
                    format!("new RegExp({}, \"u\")", js_string(p))
                });
            format!(
                "string({}, {}, {pattern})",
                num("minLength"),
                num("maxLength")
            )
        }
        Some("integer") => format!("integer({}, {})", num("minimum"), num("maximum")),
        Some("number") => format!("number({}, {})", num("minimum"), num("maximum")),
        Some("boolean") => "boolean".into(),
        Some("null") => "nullValue".into(),
        Some("array") => format!(
            "array({}, {}, {})",
            ts_check(&schema["items"]),
            num("minItems"),
            num("maxItems")
        ),
        Some("object") => match schema.get("properties").and_then(Value::as_object) {
            Some(props) => {
                let required: Vec<String> = required(schema).into_iter().map(js_string).collect();
                let members: Vec<String> = props
                    .iter()
                    .map(|(k, v)| format!("[{}, {}]", js_string(k), ts_check(v)))
                    .collect();
                format!(
                    "object([{}], [{}])",
                    required.join(", "),
                    members.join(", ")
                )
            }
            None => "anyObject".into(),
        },
        _ => "anyJson".into(),
    }
}

fn ts_vectors(set: &SchemaSet, file: &crate::tables::VectorFile) -> TsVectors {
    let vectors = |kind: &str, list: &[crate::tables::Vector]| -> Vec<TsVector> {
        list.iter()
            .enumerate()
            .map(|(i, v)| TsVector {
                name: v.name.clone(),
                ident: format!("{kind}{}{i}", ts_name(&file.type_name)),
                literal: literal(&v.value),
            })
            .collect()
    };
    TsVectors {
        type_name: ts_name(&file.type_name),
        union: set.union_of(&file.type_name).map(|(u, _)| ts_name(&u.name)),
        valid: vectors("valid", &file.valid),
        invalid: vectors("invalid", &file.invalid),
    }
}

/// A JSON value as a TypeScript literal (JSON is valid TypeScript), indented for a `const`.
fn literal(value: &Value) -> String {
    let pretty = serde_json::to_string_pretty(value).expect("JSON values always serialize");
    pretty.replace('\n', "\n  ")
}

/// A string as a JavaScript string literal.
fn js_string(s: &str) -> String {
    Value::from(s).to_string()
}

/// A channel pattern as a TypeScript template literal type: `project:*:tasks` becomes
/// `` `project:${string}:tasks` ``.
fn template_literal(pattern: &str) -> String {
    let segments: Vec<&str> = pattern
        .split(':')
        .map(|s| {
            if s == "*" || s == "**" {
                "${string}"
            } else {
                s
            }
        })
        .collect();
    format!("`{}`", segments.join(":"))
}

/// The description plus doc tags for the constraints TypeScript cannot express.
fn with_constraints(description: &str, schema: &Value) -> String {
    let schema = nullable_inner(schema).unwrap_or(schema);
    let mut text = description.to_owned();
    for key in [
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
    ] {
        if let Some(value) = schema.get(key) {
            let shown = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            text.push_str(&format!("\n@{key} {shown}"));
        }
    }
    if schema.get("type") == Some(&Value::from("integer")) {
        text.push_str("\n@integer");
    }
    text
}

/// A JSDoc block, each line prefixed with `indent`.
fn doc_block(text: &str, indent: &str) -> String {
    let text = text.replace("*/", "*\\/");
    let mut out = format!("{indent}/**\n");
    for line in text.lines() {
        out.push_str(&format!("{indent} * {line}\n").replace(" * \n", " *\n"));
    }
    out.push_str(&format!("{indent} */"));
    out
}
