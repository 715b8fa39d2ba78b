//! Rust output: typify for every definition, plus what typify cannot do well on its own.
//!
//! Three adjustments make the generated types hold the schema's promises:
//! - **Tagged unions.** typify turns a `oneOf` of `$ref`s into an untagged enum whose variants
//!   keep a free `type: serde_json::Value`, so a frame of one type can decode as another. Here
//!   the union's variants are given to typify without their `type` property, and the union
//!   itself is emitted as an enum serialized with `#[serde(tag = "type")]` and deserialized by
//!   `ferry_protocol::runtime::deserialize_tagged`: a tag selects exactly one body, a body that
//!   does not match the tag's message is refused, and when `type` comes first the body streams
//!   into its struct without being buffered.
//! - **Bounded numbers.** typify ignores `maximum` (and most `minimum`s). Every bounded integer
//!   or number schema is mapped to a `UInt`, `Int` or `Float` from `ferry_protocol::bounded`,
//!   whose deserializer refuses values outside the bounds.
//! - **Optional is not nullable.** typify reads an optional member into `Option<T>`, which
//!   also takes an explicit `null`. Optional members get `deserialize_with` a function that
//!   refuses `null`, so a member is either absent or a valid `T`, as the schema says.
//! - **Patterns.** typify checks `pattern`s with regress, a backtracking engine; the generated
//!   code uses `ferry_protocol::runtime::Regex` (the `regex` crate) instead, linear in the input.
//! - **Any JSON value.** A definition that admits every JSON value (only annotations, no
//!   keyword) is `ferry_protocol::runtime::RawJson` under its own name, a type alias: its text
//!   is checked to be JSON and kept as it is, so a message that only carries it (an event's
//!   payload) never builds a tree of it.
//! - **Strings checked in place.** typify decodes a constrained string (a `pattern` or a length)
//!   into a `String`, checks it, and copies it into the newtype. Here the decoded `String` is
//!   checked and moved, one allocation instead of two, and patterns are tested with
//!   `is_match`, which stops at the first proof, instead of `find`.
//! - **Formatting.** The token stream is printed with prettyplease under a banner naming the
//!   source and its hash, so the output is stable and reads well in a diff.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use schemars::schema::{RootSchema, SchemaObject};
use serde_json::Value;
use typify::{TypeSpace, TypeSpaceSettings};

use crate::Error;
use crate::set::SchemaSet;

/// Where the generated code finds Ferry's runtime support (`ferry_protocol::runtime`: the
/// bounded number types and the deserializer of optional members).
#[derive(Debug, Clone)]
pub struct RustOptions {
    /// A path to `ferry_protocol::runtime`: `crate::runtime` inside ferry-protocol,
    /// `::ferry_protocol::runtime` in an application crate.
    pub runtime_path: String,
}

impl Default for RustOptions {
    fn default() -> Self {
        Self {
            runtime_path: "::ferry_protocol::runtime".to_owned(),
        }
    }
}

/// The Rust types of every definition of `set`, formatted, with a banner.
pub fn types(set: &SchemaSet, options: &RustOptions) -> Result<String, Error> {
    let mut input = set.bundle.clone();
    let defs = input["$defs"]
        .as_object_mut()
        .expect("bundle always has $defs");
    for union in &set.unions {
        defs.shift_remove(&union.name);
        for variant in &union.variants {
            let body = defs
                .get_mut(&variant.def)
                .expect("union variants are definitions");
            if let Some(props) = body.get_mut("properties").and_then(Value::as_object_mut) {
                props.shift_remove("type");
            }
            if let Some(required) = body.get_mut("required").and_then(Value::as_array_mut) {
                required.retain(|r| r != "type");
            }
        }
    }

    let mut settings = TypeSpaceSettings::default();
    settings
        .with_struct_builder(false)
        .with_derive("PartialEq".to_owned());
    for (schema, type_name) in bounded_conversions(&input, &options.runtime_path)? {
        settings.with_conversion(schema, type_name, std::iter::empty());
    }
    let raw = any_value_definitions(&input);
    let raw_json: syn::Path = syn::parse_str(&format!("{}::RawJson", options.runtime_path))
        .expect("the runtime path is a Rust path");
    for (name, _) in &raw {
        settings.with_replacement(name, quote!(#raw_json), std::iter::empty());
    }
    let root: RootSchema = serde_json::from_value(input)
        .map_err(|e| Error::Generate(format!("schemars cannot read the bundle: {e}")))?;
    let mut space = TypeSpace::new(&settings);
    space
        .add_root_schema(root)
        .map_err(|e| Error::Generate(format!("typify: {e}")))?;

    let mut file: syn::File = syn::parse2(space.to_stream())
        .map_err(|e| Error::Generate(format!("typify's output does not parse: {e}")))?;
    refuse_null_in_optional_members(&mut file, &options.runtime_path)?;
    check_strings_in_place(&mut file);
    let mut tokens = quote! { #file };
    for union in &set.unions {
        tokens.extend(union_enum(set, union, &options.runtime_path));
    }
    for (name, description) in &raw {
        let ident = format_ident!("{name}");
        let doc = doc_lines(description);
        tokens.extend(quote! { #doc pub type #ident = #raw_json; });
    }
    for method in set.methods.iter().flat_map(|m| &m.methods) {
        tokens.extend(method_type(method, &options.runtime_path));
    }
    // typify checks patterns with regress, a backtracking engine; the runtime's `Regex` (the
    // `regex` crate) has the same `new` and `find` and runs in linear time.
    Ok(format(set, &tokens)?
        .replace(
            "::regress::Regex",
            &format!("{}::Regex", options.runtime_path),
        )
        .replace("PATTERN.find(value).is_none()", "!PATTERN.is_match(value)"))
}

/// The unit type of an RPC method (`tasks:start` becomes `TasksStart`), implementing the
/// runtime's `Method` with the method's name and the types of its params and result, so that a
/// client's call is typed end to end.
fn method_type(method: &crate::tables::Method, runtime: &str) -> TokenStream {
    let ident = format_ident!("{}", method_type_name(&method.name));
    let doc = doc_lines(&format!(
        "The RPC method `{}`: {} (params [`{}`], result [`{}`]).",
        method.name, method.description, method.params, method.result
    ));
    let trait_path: syn::Path =
        syn::parse_str(&format!("{runtime}::Method")).expect("the runtime path is a Rust path");
    let name = &method.name;
    let params = format_ident!("{}", method.params);
    let result = format_ident!("{}", method.result);
    quote! {
        #doc
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct #ident;
        impl #trait_path for #ident {
            const NAME: &'static str = #name;
            type Params = #params;
            type Result = #result;
        }
    }
}

/// `tasks:start` as a type name: `TasksStart`.
pub fn method_type_name(method: &str) -> String {
    heck::AsUpperCamelCase(method.replace(':', "_")).to_string()
}

/// Makes every constrained string newtype check the `String` it decoded and keep it, instead of
/// checking a `&str` and copying it: typify's checks move from `FromStr` into
/// `TryFrom<String>`, which then moves the string into the newtype, and both `FromStr` and
/// `Deserialize` go through it. Types whose impls do not have typify's usual shape are left as
/// they are.
fn check_strings_in_place(file: &mut syn::File) {
    let copy_out = quote!(Ok(Self(value.to_string()))).to_string();
    let mut checks: std::collections::HashMap<String, Vec<syn::Stmt>> = Default::default();
    for item in &file.items {
        let syn::Item::Impl(block) = item else {
            continue;
        };
        let Some((name, StringImpl::FromStr)) = string_impl(block) else {
            continue;
        };
        for impl_item in &block.items {
            if let syn::ImplItem::Fn(method) = impl_item
                && let Some((last, rest)) = method.block.stmts.split_last()
                && quote!(#last).to_string() == copy_out
            {
                checks.insert(name.clone(), rest.to_vec());
            }
        }
    }
    let parse = quote!(::std::string::String::deserialize(deserializer)?.parse()).to_string();
    for item in &mut file.items {
        let syn::Item::Impl(block) = item else {
            continue;
        };
        let Some((name, kind)) = string_impl(block) else {
            continue;
        };
        let Some(stmts) = checks.get(&name) else {
            continue;
        };
        for impl_item in &mut block.items {
            let syn::ImplItem::Fn(method) = impl_item else {
                continue;
            };
            match kind {
                StringImpl::FromStr => {
                    method.block = syn::parse_quote!({ Self::try_from(value.to_string()) });
                }
                StringImpl::TryFromString => {
                    method.block = syn::parse_quote!({
                        {
                            let value: &str = &value;
                            #(#stmts)*
                        }
                        Ok(Self(value))
                    });
                }
                StringImpl::Deserialize => {
                    let body = &method.block;
                    if quote!(#body).to_string().contains(&parse) {
                        method.block = syn::parse_quote!({
                            Self::try_from(::std::string::String::deserialize(deserializer)?)
                                .map_err(|e: self::error::ConversionError| {
                                    <D::Error as ::serde::de::Error>::custom(e.to_string())
                                })
                        });
                    }
                }
            }
        }
    }
}

/// The impls of a string newtype that [`check_strings_in_place`] rewrites.
#[derive(Clone, Copy)]
enum StringImpl {
    FromStr,
    TryFromString,
    Deserialize,
}

/// The type name and the kind of `block`, if it is one of the impls in [`StringImpl`].
fn string_impl(block: &syn::ItemImpl) -> Option<(String, StringImpl)> {
    let (path, _) = block.trait_.as_ref()?;
    let last = path.segments.last()?;
    let arguments = &last.arguments;
    let kind = if last.ident == "FromStr" {
        StringImpl::FromStr
    } else if last.ident == "Deserialize" {
        StringImpl::Deserialize
    } else if last.ident == "TryFrom"
        && quote!(#arguments).to_string() == quote!(<::std::string::String>).to_string()
    {
        StringImpl::TryFromString
    } else {
        return None;
    };
    Some((self_type_name(block)?, kind))
}

fn self_type_name(block: &syn::ItemImpl) -> Option<String> {
    match block.self_ty.as_ref() {
        syn::Type::Path(path) => Some(path.path.segments.last()?.ident.to_string()),
        _ => None,
    }
}

/// The definitions that admit every JSON value (nothing but annotations), with their
/// descriptions, in bundle order.
fn any_value_definitions(bundle: &Value) -> Vec<(String, String)> {
    const ANNOTATIONS: [&str; 4] = ["description", "title", "$comment", "examples"];
    bundle["$defs"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, def)| {
            let object = def.as_object()?;
            object
                .keys()
                .all(|key| ANNOTATIONS.contains(&key.as_str()))
                .then(|| {
                    let description = object.get("description").and_then(Value::as_str);
                    (name.clone(), description.unwrap_or_default().to_owned())
                })
        })
        .collect()
}

/// Adds `#[serde(default, deserialize_with = "<runtime>::present")]` to every optional member
/// (an `Option` that typify skips when `None` and reads with serde's default, which would take
/// `null`).
fn refuse_null_in_optional_members(file: &mut syn::File, runtime: &str) -> Result<(), Error> {
    let present = format!("{runtime}::present");
    let attr: syn::Attribute = syn::parse_quote!(#[serde(default, deserialize_with = #present)]);
    for item in &mut file.items {
        let syn::Item::Struct(item) = item else {
            continue;
        };
        for field in item.fields.iter_mut() {
            let serde_attrs: Vec<String> = field
                .attrs
                .iter()
                .filter(|a| a.path().is_ident("serde"))
                .map(|a| quote!(#a).to_string())
                .collect();
            let skipped_when_none = serde_attrs.iter().any(|a| a.contains("Option::is_none"));
            let custom = serde_attrs
                .iter()
                .any(|a| a.contains("deserialize_with") || a.contains("default"));
            if skipped_when_none && !custom {
                field.attrs.push(attr.clone());
            }
        }
    }
    Ok(())
}

/// Maps every bounded integer and number schema to a bounded type, as typify conversions.
fn bounded_conversions(bundle: &Value, path: &str) -> Result<Vec<(SchemaObject, String)>, Error> {
    let mut found: Vec<(Value, String)> = Vec::new();
    collect_bounded(bundle, path, &mut found);
    found
        .into_iter()
        .map(|(schema, name)| {
            let object: SchemaObject =
                serde_json::from_value(schema).map_err(|e| Error::Generate(e.to_string()))?;
            Ok((object, name))
        })
        .collect()
}

fn collect_bounded(schema: &Value, path: &str, found: &mut Vec<(Value, String)>) {
    match schema {
        Value::Object(map) => {
            let bounds = (map.get("minimum"), map.get("maximum"));
            let kind = map.get("type").and_then(Value::as_str);
            if let (Some(min), Some(max), Some(kind @ ("integer" | "number"))) =
                (bounds.0, bounds.1, kind)
            {
                let key = serde_json::json!({ "type": kind, "minimum": min, "maximum": max });
                let name = match (kind, min.as_i64(), max.as_i64()) {
                    ("integer", Some(lo), Some(hi)) if lo >= 0 => {
                        format!("{path}::UInt<{lo}, {hi}>")
                    }
                    ("integer", Some(lo), Some(hi)) => format!("{path}::Int<{lo}, {hi}>"),
                    _ => {
                        let micros =
                            |v: &Value| (v.as_f64().unwrap_or_default() * 1e6).round() as i64;
                        format!("{path}::Float<{}, {}>", micros(min), micros(max))
                    }
                };
                if !found.iter().any(|(k, _)| *k == key) {
                    found.push((key, name));
                }
            }
            map.values().for_each(|v| collect_bounded(v, path, found));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_bounded(v, path, found)),
        _ => {}
    }
}

fn union_enum(set: &SchemaSet, union: &crate::set::TaggedUnion, runtime: &str) -> TokenStream {
    let name = format_ident!("{}", union.name);
    let runtime: syn::Path = syn::parse_str(runtime).expect("the runtime path is a Rust path");
    let doc = doc_lines(&union.description);
    let variants = union.variants.iter().map(|v| {
        let ident = format_ident!("{}", v.def);
        let tag = &v.tag;
        let doc = doc_lines(
            set.def(&v.def)
                .and_then(|d| d["description"].as_str())
                .unwrap_or_default(),
        );
        quote! { #doc #[serde(rename = #tag)] #ident(#ident), }
    });
    let arms = union.variants.iter().map(|v| {
        let ident = format_ident!("{}", v.def);
        let tag = &v.tag;
        quote! { Self::#ident(_) => #tag, }
    });
    let decoders = union.variants.iter().map(|v| {
        let ident = format_ident!("{}", v.def);
        let tag = &v.tag;
        quote! { #tag => <#ident as ::serde::Deserialize>::deserialize(body).map(Self::#ident), }
    });
    let tags = union.variants.iter().map(|v| &v.tag);
    let froms = union.variants.iter().map(|v| {
        let ident = format_ident!("{}", v.def);
        quote! {
            impl ::std::convert::From<#ident> for #name {
                fn from(value: #ident) -> Self { Self::#ident(value) }
            }
        }
    });
    quote! {
        #doc
        #[derive(::serde::Serialize, Clone, Debug, PartialEq)]
        #[serde(tag = "type")]
        pub enum #name { #(#variants)* }

        impl #name {
            /// Every value the `type` tag may take, in schema order.
            pub const TYPES: &'static [&'static str] = &[#(#tags),*];

            /// The value of this message's `type` tag.
            pub fn type_name(&self) -> &'static str {
                match self { #(#arms)* }
            }
        }

        impl #runtime::Tagged for #name {
            const TYPES: &'static [&'static str] = Self::TYPES;

            fn from_tag<'de, D: ::serde::Deserializer<'de>>(tag: &str, body: D) -> ::std::result::Result<Self, D::Error> {
                match tag {
                    #(#decoders)*
                    other => ::std::result::Result::Err(<D::Error as ::serde::de::Error>::unknown_variant(other, Self::TYPES)),
                }
            }
        }

        impl<'de> ::serde::Deserialize<'de> for #name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> ::std::result::Result<Self, D::Error> {
                #runtime::deserialize_tagged(deserializer)
            }
        }

        #(#froms)*
    }
}

/// The Rust constants of the set's tables: close codes with their client action, error codes,
/// defaults, rules and endpoints. `None` when the set has no tables.
pub fn tables(set: &SchemaSet) -> Result<Option<String>, Error> {
    if set.close_codes.is_none()
        && set.error_codes.is_none()
        && set.defaults.is_none()
        && set.rules.is_none()
        && set.endpoints.is_none()
    {
        return Ok(None);
    }
    let mut tokens = TokenStream::new();
    if let Some(table) = &set.close_codes {
        tokens.extend(close_codes(table));
    }
    if let Some(table) = &set.error_codes {
        tokens.extend(error_codes(table));
    }
    if let Some(table) = &set.defaults {
        tokens.extend(defaults(table));
    }
    if let Some(catalogue) = &set.rules {
        tokens.extend(rules(catalogue));
    }
    if let Some(table) = &set.endpoints {
        tokens.extend(endpoints(table));
    }
    format(set, &tokens).map(Some)
}

fn close_codes(table: &crate::tables::CloseCodeTable) -> TokenStream {
    let doc = doc_lines(&table.description);
    let consts = table.codes.iter().map(|c| {
        let ident = format_ident!("{}", c.name.to_uppercase());
        let code = c.code;
        let doc = doc_lines(&c.sent_when);
        quote! { #doc pub const #ident: u16 = #code; }
    });
    let rows = table.codes.iter().map(|c| {
        let (code, name, sent_when, rules) = (c.code, &c.name, &c.sent_when, &c.rules);
        let action = format_ident!("{}", heck::AsUpperCamelCase(c.action.as_str()).to_string());
        quote! { CloseCodeInfo { code: #code, name: #name, sent_when: #sent_when, action: ClientAction::#action, rules: &[#(#rules),*] }, }
    });
    quote! {
        /// What a client does when its session closes with a given code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ClientAction {
            /// Do not reconnect; report the reason to the application.
            Stop,
            /// Get a new ticket and retry at once; under backoff if the previous attempt also ended so.
            RenewTicket,
            /// Retry under the reconnect policy.
            Backoff,
            /// Wait the goodbye's `retry_after_ms`, or back off when there is none.
            RetryAfterHint,
        }

        /// One row of the close-code table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct CloseCodeInfo {
            /// The numeric close code.
            pub code: u16,
            /// Its snake_case name.
            pub name: &'static str,
            /// When a server sends it, or why a client observes it.
            pub sent_when: &'static str,
            /// What a client does on it.
            pub action: ClientAction,
            /// The rule ids it implements.
            pub rules: &'static [&'static str],
        }

        /// The close codes, by name.
        pub mod close_code { #(#consts)* }

        #doc
        pub const CLOSE_CODES: &[CloseCodeInfo] = &[#(#rows)*];
    }
}

fn error_codes(table: &crate::tables::ErrorCodeTable) -> TokenStream {
    let doc = doc_lines(&table.description);
    let rows = table.codes.iter().map(|c| {
        let variant = format_ident!("{}", heck::AsUpperCamelCase(&c.code).to_string());
        let (meaning, retryable, status, rules) = (&c.meaning, c.retryable, c.http_status, &c.rules);
        quote! { ErrorCodeInfo { code: ErrorCode::#variant, meaning: #meaning, retryable: #retryable, http_status: #status, rules: &[#(#rules),*] }, }
    });
    quote! {
        /// One row of the error-code table.
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct ErrorCodeInfo {
            /// The code.
            pub code: ErrorCode,
            /// What it means.
            pub meaning: &'static str,
            /// Whether the same request may succeed later.
            pub retryable: bool,
            /// The HTTP status an endpoint answers with.
            pub http_status: u16,
            /// The rule ids it implements.
            pub rules: &'static [&'static str],
        }

        #doc
        pub const ERROR_CODES: &[ErrorCodeInfo] = &[#(#rows)*];
    }
}

fn defaults(table: &crate::tables::DefaultsTable) -> TokenStream {
    let doc = doc_lines(&table.description);
    let consts = table.values.iter().map(|v| {
        let ident = format_ident!("{}", v.name.to_uppercase());
        let doc = doc_lines(&format!(
            "{} ({}{})",
            v.description,
            v.unit,
            if v.advertised {
                ", advertised in the welcome"
            } else {
                ""
            }
        ));
        if v.is_ratio() {
            let value = v.value.as_f64().unwrap_or_default();
            quote! { #doc pub const #ident: f64 = #value; }
        } else {
            let value = v.value.as_u64().unwrap_or_default();
            quote! { #doc pub const #ident: u64 = #value; }
        }
    });
    quote! { #doc pub mod defaults { #(#consts)* } }
}

fn rules(catalogue: &crate::tables::RuleCatalogue) -> TokenStream {
    let doc = doc_lines(&catalogue.description);
    let all = catalogue
        .sections
        .iter()
        .flat_map(|s| s.rules.iter().map(move |r| (s, r)));
    let consts = all.clone().map(|(_, r)| {
        let ident = format_ident!("{}", r.id.replace('-', "_"));
        let id = &r.id;
        let doc = doc_lines(&format!("{}: {}", r.level.as_str(), r.text));
        quote! { #doc pub const #ident: &str = #id; }
    });
    let rows = all.map(|(s, r)| {
        let (id, section, text) = (&r.id, &s.name, &r.text);
        let level = format_ident!("{}", heck::AsUpperCamelCase(r.level.as_str()).to_string());
        quote! { Rule { id: #id, level: RuleLevel::#level, section: #section, text: #text }, }
    });
    quote! {
        /// How binding a rule is (RFC 2119).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum RuleLevel {
            /// An absolute requirement.
            Must,
            /// A recommendation.
            Should,
        }

        /// One rule of the catalogue.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct Rule {
            /// The stable id, `FERRY-<SECTION>-<n>`.
            pub id: &'static str,
            /// MUST or SHOULD.
            pub level: RuleLevel,
            /// The section the rule belongs to.
            pub section: &'static str,
            /// The sentence the rule states.
            pub text: &'static str,
        }

        /// Rule ids, for tests and conformance cases to cite.
        pub mod rule { #(#consts)* }

        #doc
        pub const RULES: &[Rule] = &[#(#rows)*];
    }
}

fn endpoints(table: &crate::tables::EndpointTable) -> TokenStream {
    let doc = doc_lines(&table.description);
    let option = |v: &Option<String>| match v {
        Some(s) => quote! { Some(#s) },
        None => quote! { None },
    };
    let consts = table.endpoints.iter().map(|e| {
        let ident = format_ident!("{}", e.name.to_uppercase());
        let doc = doc_lines(&e.summary);
        let (name, method, path, auth, content_type, status) = (
            &e.name,
            &e.method,
            &e.path,
            &e.auth,
            &e.response_content_type,
            e.success_status,
        );
        let (request, query, response) =
            (option(&e.request), option(&e.query), option(&e.response));
        quote! {
            #doc
            pub const #ident: super::Endpoint = super::Endpoint {
                name: #name, method: #method, path: #path, auth: #auth,
                request: #request, query: #query, response: #response,
                response_content_type: #content_type, success_status: #status,
            };
        }
    });
    let all = table
        .endpoints
        .iter()
        .map(|e| format_ident!("{}", e.name.to_uppercase()));
    quote! {
        /// An HTTP or WebSocket endpoint of a Ferry server.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct Endpoint {
            /// A snake_case name.
            pub name: &'static str,
            /// The HTTP method.
            pub method: &'static str,
            /// The path.
            pub path: &'static str,
            /// `bearer`, `ticket` or `none`.
            pub auth: &'static str,
            /// The request body's type, if any.
            pub request: Option<&'static str>,
            /// The query string's type, if any.
            pub query: Option<&'static str>,
            /// The response body's type, if any.
            pub response: Option<&'static str>,
            /// The response's content type.
            pub response_content_type: &'static str,
            /// The status of a successful response.
            pub success_status: u16,
        }

        /// The endpoints, by name.
        pub mod endpoint { #(#consts)* }

        #doc
        pub const ENDPOINTS: &[Endpoint] = &[#(endpoint::#all),*];
    }
}

fn doc_lines(text: &str) -> TokenStream {
    let text = format!(" {text}");
    quote! { #[doc = #text] }
}

fn format(set: &SchemaSet, tokens: &TokenStream) -> Result<String, Error> {
    let file: syn::File = syn::parse2(tokens.clone())
        .map_err(|e| Error::Generate(format!("generated Rust does not parse: {e}")))?;
    Ok(format!(
        "{}{}",
        crate::banner(set, "//"),
        prettyplease::unparse(&file)
    ))
}
