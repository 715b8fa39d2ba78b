//! Loading a schema set: its `*.schema.json` files bundled into one document, its tagged
//! unions, its tables and its test vectors.
//!
//! A schema set is a folder. Every `*.schema.json` in it contributes its `$defs`; references
//! between files (`definitions.schema.json#/$defs/ChannelName`) and within one (`#/$defs/Seq`)
//! are rewritten into one bundle whose `$defs` hold every definition, so definition names are
//! unique across the set. The tables (`close-codes.json`, `error-codes.json`, `defaults.json`,
//! `rules.json`, `endpoints.json`), the channel catalogue (`channels.json`) and the method
//! catalogue (`methods.json`) are optional;
//! `vectors/<Type>.json` hold the test vectors. Subfolders other than `vectors/` are not part of
//! the set (the protocol's `schema/example-app/` is a set of its own).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::tables::{
    ChannelCatalog, CloseCodeTable, DefaultsTable, EndpointTable, ErrorCodeTable, MethodCatalog,
    RuleCatalogue, VectorFile,
};

/// The JSON Schema dialect every schema file declares.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// A loaded schema set.
#[derive(Debug, Clone)]
pub struct SchemaSet {
    /// The folder as named by the caller; it appears in generated banners.
    pub label: String,
    /// SHA-256 (hex) over every input file's relative path and bytes.
    pub hash: String,
    /// The schema files, by file name.
    pub files: Vec<SchemaFile>,
    /// One document whose `$defs` hold every definition, references rewritten to `#/$defs/..`.
    pub bundle: Value,
    /// Definitions that are `oneOf` unions of messages tagged by a constant `type`.
    pub unions: Vec<TaggedUnion>,
    /// `close-codes.json`, if present.
    pub close_codes: Option<CloseCodeTable>,
    /// `error-codes.json`, if present.
    pub error_codes: Option<ErrorCodeTable>,
    /// `defaults.json`, if present.
    pub defaults: Option<DefaultsTable>,
    /// `rules.json`, if present.
    pub rules: Option<RuleCatalogue>,
    /// `endpoints.json`, if present.
    pub endpoints: Option<EndpointTable>,
    /// `channels.json`, if present.
    pub channels: Option<ChannelCatalog>,
    /// `methods.json`, if present.
    pub methods: Option<MethodCatalog>,
    /// The test vectors, by type name.
    pub vectors: BTreeMap<String, VectorFile>,
}

/// One `*.schema.json` file.
#[derive(Debug, Clone)]
pub struct SchemaFile {
    /// The file name.
    pub name: String,
    /// Its `title`.
    pub title: String,
    /// Its `description`.
    pub description: String,
    /// The names of the definitions it holds, in file order.
    pub defs: Vec<String>,
}

/// A `oneOf` whose variants are references to objects with a constant `type` property.
#[derive(Debug, Clone)]
pub struct TaggedUnion {
    /// The union's definition name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// The variants, in schema order.
    pub variants: Vec<UnionVariant>,
}

/// One variant of a tagged union.
#[derive(Debug, Clone)]
pub struct UnionVariant {
    /// The value of `type` that selects it.
    pub tag: String,
    /// The definition of its body.
    pub def: String,
}

impl SchemaSet {
    /// Loads the schema set in `dir`; `label` is how generated files will name it.
    pub fn load(dir: &Path, label: &str) -> Result<Self, Error> {
        let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
        let mut schema_names = Vec::new();
        for entry in read_dir_sorted(dir)? {
            let name = file_name(&entry);
            if entry.is_file() && name.ends_with(".json") {
                if name.ends_with(".schema.json") {
                    schema_names.push(name.clone());
                }
                inputs.push((name, read(&entry)?));
            }
        }
        let vectors_dir = dir.join("vectors");
        let mut vectors = BTreeMap::new();
        if vectors_dir.is_dir() {
            for entry in read_dir_sorted(&vectors_dir)? {
                let name = file_name(&entry);
                if entry.is_file() && name.ends_with(".json") {
                    let bytes = read(&entry)?;
                    let file: VectorFile = parse(&entry, &bytes)?;
                    let expected = format!("{}.json", file.type_name);
                    if name != expected {
                        return Err(Error::schema(
                            &entry,
                            format!(
                                "holds vectors for {} and must be named {expected}",
                                file.type_name
                            ),
                        ));
                    }
                    vectors.insert(file.type_name.clone(), file);
                    inputs.push((format!("vectors/{name}"), bytes));
                }
            }
        }
        if schema_names.is_empty() {
            return Err(Error::schema(dir, "holds no *.schema.json file".to_owned()));
        }

        let mut hasher = Sha256::new();
        for (name, bytes) in &inputs {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(bytes);
            hasher.update([0]);
        }
        let hash = hex(&hasher.finalize());

        let input = |name: &str| {
            inputs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b.as_slice())
        };

        let mut files = Vec::new();
        let mut defs = Map::new();
        for name in &schema_names {
            let path = dir.join(name);
            let doc: Value = parse(&path, input(name).expect("listed above"))?;
            let (file, file_defs) = schema_file(&path, name, doc)?;
            for (def_name, schema) in file_defs {
                if defs.contains_key(&def_name) {
                    return Err(Error::schema(
                        &path,
                        format!("defines {def_name}, which another schema file defines too"),
                    ));
                }
                defs.insert(def_name, schema);
            }
            files.push(file);
        }
        let mut bundle = Map::new();
        bundle.insert("$schema".into(), DIALECT.into());
        bundle.insert("$defs".into(), Value::Object(defs));
        let bundle = Value::Object(bundle);
        check_refs(&bundle, dir)?;
        let unions = find_unions(&bundle);

        Ok(Self {
            label: label.to_owned(),
            hash,
            files,
            bundle,
            unions,
            close_codes: table(dir, "close-codes.json", input("close-codes.json"))?,
            error_codes: table(dir, "error-codes.json", input("error-codes.json"))?,
            defaults: table(dir, "defaults.json", input("defaults.json"))?,
            rules: table(dir, "rules.json", input("rules.json"))?,
            endpoints: table(dir, "endpoints.json", input("endpoints.json"))?,
            channels: table(dir, "channels.json", input("channels.json"))?,
            methods: table(dir, "methods.json", input("methods.json"))?,
            vectors,
        })
    }

    /// Every definition of the bundle, in file order.
    pub fn defs(&self) -> &Map<String, Value> {
        self.bundle["$defs"]
            .as_object()
            .expect("bundle always has $defs")
    }

    /// The definition named `name`.
    pub fn def(&self, name: &str) -> Option<&Value> {
        self.defs().get(name)
    }

    /// The tagged union `def` is a variant of, with its tag, if any.
    pub fn union_of(&self, def: &str) -> Option<(&TaggedUnion, &str)> {
        self.unions.iter().find_map(|union| {
            union
                .variants
                .iter()
                .find(|v| v.def == def)
                .map(|v| (union, v.tag.as_str()))
        })
    }

    /// Names of the definitions that travel as messages: the variants of every tagged union.
    pub fn messages(&self) -> impl Iterator<Item = &str> {
        self.unions
            .iter()
            .flat_map(|u| u.variants.iter().map(|v| v.def.as_str()))
    }

    /// Names of the definitions that are HTTP bodies or queries, channel payloads, or method
    /// params and results, in table order, without repeats.
    pub fn bodies(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        let endpoints = self.endpoints.iter().flat_map(|t| &t.endpoints);
        for e in endpoints {
            for name in [&e.request, &e.query, &e.response].into_iter().flatten() {
                if self.union_of(name).is_none() && !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        let payloads = self.channels.iter().flat_map(|c| &c.namespaces);
        let methods = self.methods.iter().flat_map(|m| &m.methods);
        let carried = payloads
            .map(|ns| &ns.payload)
            .chain(methods.flat_map(|m| [&m.params, &m.result]));
        for name in carried {
            if !names.contains(&name.as_str()) && !self.unions.iter().any(|u| &u.name == name) {
                names.push(name);
            }
        }
        names
    }
}

fn schema_file(
    path: &Path,
    name: &str,
    doc: Value,
) -> Result<(SchemaFile, Map<String, Value>), Error> {
    let Value::Object(mut doc) = doc else {
        return Err(Error::schema(path, "is not a JSON object".to_owned()));
    };
    if doc.get("$schema").and_then(Value::as_str) != Some(DIALECT) {
        return Err(Error::schema(
            path,
            format!("must declare \"$schema\": \"{DIALECT}\""),
        ));
    }
    let text = |doc: &Map<String, Value>, key: &str| -> Result<String, Error> {
        doc.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::schema(path, format!("needs a string \"{key}\"")))
    };
    let title = text(&doc, "title")?;
    let description = text(&doc, "description")?;
    let Some(Value::Object(mut defs)) = doc.remove("$defs") else {
        return Err(Error::schema(path, "needs an object \"$defs\"".to_owned()));
    };
    for schema in defs.values_mut() {
        rewrite_refs(schema, path)?;
    }
    let file = SchemaFile {
        name: name.to_owned(),
        title,
        description,
        defs: defs.keys().cloned().collect(),
    };
    Ok((file, defs))
}

/// Rewrites `file.schema.json#/$defs/X` and `#/$defs/X` to the bundle's `#/$defs/X`.
fn rewrite_refs(schema: &mut Value, path: &Path) -> Result<(), Error> {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("$ref") {
                let (file, pointer) = reference
                    .split_once('#')
                    .unwrap_or((reference.as_str(), ""));
                let name = pointer.strip_prefix("/$defs/").filter(|n| !n.contains('/'));
                match name {
                    Some(name) if file.is_empty() || file.ends_with(".schema.json") => {
                        *reference = format!("#/$defs/{name}");
                    }
                    _ => {
                        return Err(Error::schema(
                            path,
                            format!(
                                "has the reference {reference:?}; use \"#/$defs/Name\" or \"file.schema.json#/$defs/Name\""
                            ),
                        ));
                    }
                }
            }
            for value in map.values_mut() {
                rewrite_refs(value, path)?;
            }
        }
        Value::Array(items) => {
            for value in items {
                rewrite_refs(value, path)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_refs(bundle: &Value, dir: &Path) -> Result<(), Error> {
    let defs = bundle["$defs"]
        .as_object()
        .expect("bundle always has $defs");
    let mut missing = Vec::new();
    visit_refs(bundle, &mut |name| {
        if !defs.contains_key(name) {
            missing.push(name.to_owned());
        }
    });
    match missing.first() {
        None => Ok(()),
        Some(name) => Err(Error::schema(
            dir,
            format!("refers to {name}, which no schema file defines"),
        )),
    }
}

/// Calls `f` with the definition name of every `$ref` below `schema`.
pub(crate) fn visit_refs(schema: &Value, f: &mut impl FnMut(&str)) {
    match schema {
        Value::Object(map) => {
            if let Some(name) = map.get("$ref").and_then(Value::as_str).and_then(ref_name) {
                f(name);
            }
            map.values().for_each(|v| visit_refs(v, f));
        }
        Value::Array(items) => items.iter().for_each(|v| visit_refs(v, f)),
        _ => {}
    }
}

/// The definition name of a bundle reference (`#/$defs/Name`).
pub fn ref_name(reference: &str) -> Option<&str> {
    reference.strip_prefix("#/$defs/")
}

/// The constant `type` tag of an object definition, if it has one.
pub fn type_tag(schema: &Value) -> Option<&str> {
    schema
        .pointer("/properties/type/const")
        .and_then(Value::as_str)
}

fn find_unions(bundle: &Value) -> Vec<TaggedUnion> {
    let defs = bundle["$defs"]
        .as_object()
        .expect("bundle always has $defs");
    let mut unions = Vec::new();
    for (name, schema) in defs {
        let Some(Value::Array(variants)) = schema.get("oneOf") else {
            continue;
        };
        let variants: Option<Vec<UnionVariant>> = variants
            .iter()
            .map(|v| {
                let def = v.get("$ref").and_then(Value::as_str).and_then(ref_name)?;
                let tag = type_tag(defs.get(def)?)?;
                Some(UnionVariant {
                    tag: tag.to_owned(),
                    def: def.to_owned(),
                })
            })
            .collect();
        // A oneOf that is not fully tagged is left to the lints, which reject it.
        if let Some(variants) = variants {
            unions.push(TaggedUnion {
                name: name.clone(),
                description: schema["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                variants,
            });
        }
    }
    unions
}

fn table<T: DeserializeOwned>(
    dir: &Path,
    name: &str,
    bytes: Option<&[u8]>,
) -> Result<Option<T>, Error> {
    bytes.map(|bytes| parse(&dir.join(name), bytes)).transpose()
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths = entries
        .map(|e| e.map(|e| e.path()).map_err(|err| Error::io(dir, err)))
        .collect::<Result<Vec<_>, _>>()?;
    paths.sort();
    Ok(paths)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    fs::read(path).map_err(|e| Error::io(path, e))
}

fn parse<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
