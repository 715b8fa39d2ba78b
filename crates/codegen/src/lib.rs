//! Ferry's code generator: Rust and TypeScript types, constants and a protocol reference, all
//! from one folder of JSON Schema.
//!
//! A [`SchemaSet`] is loaded from a folder ([`SchemaSet::load`]), checked by the [`lint`]s, and
//! turned into an [`Output`] by [`generate`]: an in-memory map from relative path to file
//! content. [`Output::write`] puts it on disk; [`Output::diff`] compares it with what is there,
//! which is how `ferry-codegen check` finds a stale `generated/` folder.
//!
//! What each output is made with:
//! - Rust: [typify](https://docs.rs/typify) for the types ([`rust::types`]), with tagged unions
//!   and bounded numbers emitted so that a mis-tagged frame or an out-of-range integer does not
//!   decode; tables as constants ([`rust::tables`]); all printed by prettyplease.
//! - TypeScript: [minijinja](https://docs.rs/minijinja) templates ([`typescript`]): types with
//!   discriminated unions, runtime validators and type guards, constants, endpoint descriptors,
//!   and a test that type-checks and runs every test vector.
//! - Docs: a minijinja template renders `docs/PROTOCOL.md` ([`docs`]).
//!
//! Every file starts with a banner naming the source folder and the SHA-256 of its inputs, and
//! the output is byte-identical across runs.

pub mod docs;
pub mod lint;
pub mod rust;
pub mod set;
pub mod tables;
pub mod typescript;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

pub use lint::{Lint, lint};
pub use set::SchemaSet;

/// Everything that can go wrong while loading, linting or generating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not valid JSON, or does not have the shape its table requires.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde_json reported (it names the field and line).
        source: serde_json::Error,
    },
    /// The schema set is not well formed (a bad reference, a duplicate definition, ...).
    #[error("{path}: {message}")]
    Schema {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The schema set breaks one or more lints.
    #[error("the schema breaks {} lint(s):\n{}", .0.len(), .0.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n"))]
    Lint(Vec<Lint>),
    /// A generator failed (typify refused a schema, a template failed to render, ...).
    #[error("generation failed: {0}")]
    Generate(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn schema(path: &Path, message: String) -> Self {
        Self::Schema {
            path: path.to_owned(),
            message,
        }
    }
}

/// How to generate.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Rust-specific settings.
    pub rust: rust::RustOptions,
}

/// Generated files, by path relative to the output folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// File contents by relative path.
    pub files: BTreeMap<PathBuf, String>,
}

/// The folders below the output folder that belong to the generator: a file in one of them
/// that the generator did not produce is stale.
pub const OWNED_DIRS: &[&str] = &[
    "rust",
    "docs",
    "schema",
    "typescript/src",
    "typescript/test",
];

/// Lints `set` and generates every output from it.
pub fn generate(set: &SchemaSet, options: &Options) -> Result<Output, Error> {
    let lints = lint(set);
    if !lints.is_empty() {
        return Err(Error::Lint(lints));
    }
    let mut files = BTreeMap::new();
    files.insert(
        PathBuf::from("rust/types.rs"),
        rust::types(set, &options.rust)?,
    );
    if let Some(tables) = rust::tables(set)? {
        files.insert(PathBuf::from("rust/tables.rs"), tables);
    }
    let bundle =
        serde_json::to_string_pretty(&set.bundle).map_err(|e| Error::Generate(e.to_string()))?;
    files.insert(
        PathBuf::from("schema/bundle.schema.json"),
        format!("{bundle}\n"),
    );
    for (path, content) in typescript::generate(set)? {
        files.insert(Path::new("typescript").join(path), content);
    }
    files.insert(
        PathBuf::from("docs").join(docs::file_name(set)),
        docs::generate(set)?,
    );
    Ok(Output { files })
}

/// One difference between the generated output and the files on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    /// The file, relative to the output folder.
    pub path: PathBuf,
    /// A unified diff from what is on disk to what would be generated.
    pub unified: String,
}

impl Output {
    /// Writes every file below `out`, creating folders, and removes stale files from the
    /// generator's own folders. Files whose content is unchanged are not rewritten.
    pub fn write(&self, out: &Path) -> Result<(), Error> {
        for stale in self.stale(out)? {
            fs::remove_file(out.join(&stale)).map_err(|e| Error::io(&stale, e))?;
        }
        for (path, content) in &self.files {
            let target = out.join(path);
            if fs::read_to_string(&target).is_ok_and(|old| old == *content) {
                continue;
            }
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            fs::write(&target, content).map_err(|e| Error::io(&target, e))?;
        }
        Ok(())
    }

    /// Compares the output with the files below `out`: one entry per file that is missing,
    /// different or stale. Empty when `out` is up to date.
    pub fn diff(&self, out: &Path) -> Result<Vec<FileDiff>, Error> {
        let mut diffs = Vec::new();
        for (path, new) in &self.files {
            let old = fs::read_to_string(out.join(path)).ok();
            if old.as_ref() != Some(new) {
                let old = old.unwrap_or_default();
                diffs.push(FileDiff {
                    path: path.clone(),
                    unified: unified(path, &old, new),
                });
            }
        }
        for stale in self.stale(out)? {
            let old = fs::read_to_string(out.join(&stale)).unwrap_or_default();
            diffs.push(FileDiff {
                unified: unified(&stale, &old, ""),
                path: stale,
            });
        }
        Ok(diffs)
    }

    /// Files in the generator's folders below `out` that it would not produce.
    fn stale(&self, out: &Path) -> Result<Vec<PathBuf>, Error> {
        let mut stale = Vec::new();
        for dir in OWNED_DIRS {
            let mut pending = vec![out.join(dir)];
            while let Some(dir) = pending.pop() {
                let Ok(entries) = fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.map_err(|e| Error::io(&dir, e))?.path();
                    if path.is_dir() {
                        pending.push(path);
                    } else if let Ok(relative) = path.strip_prefix(out)
                        && !self.files.contains_key(relative)
                    {
                        stale.push(relative.to_owned());
                    }
                }
            }
        }
        stale.sort();
        Ok(stale)
    }
}

fn unified(path: &Path, old: &str, new: &str) -> String {
    let name = path.display().to_string();
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string()
}

/// The banner every generated file starts with, as comment lines with the given prefix.
pub fn banner(set: &SchemaSet, comment: &str) -> String {
    format!(
        "{comment} Generated by ferry-codegen from {} (sha256 {}).\n{comment} Do not edit: change the schema and run `ferry-codegen generate`.\n\n",
        set.label, set.hash
    )
}

/// A validator (the `jsonschema` crate, draft 2020-12) for the definition `name` of `set`.
pub fn validator_for(set: &SchemaSet, name: &str) -> Result<jsonschema::Validator, String> {
    let schema = serde_json::json!({
        "$schema": set::DIALECT,
        "$defs": set.defs(),
        "$ref": format!("#/$defs/{name}"),
    });
    jsonschema::draft202012::new(&schema).map_err(|e| e.to_string())
}
