//! The application's channel namespaces and their payload schemas (FERRY-CHANNEL-4,
//! FERRY-CHANNEL-5). By default, the example application of `schema/example-app/`, embedded;
//! with `--app DIR`, the application schema sets named, loaded and linked at start by the code
//! generator's own loader and lints ([`Namespaces::load`]), so that the server reads a set's
//! schemas exactly as `ferry-codegen generate --schema DIR` does. A set whose schemas break a
//! lint is refused; one that lacks only descriptions or test vectors, which code generation
//! still demands, is served with a warning.

use std::path::{Path, PathBuf};

use ferry_codegen::tables::Exclusive as Declared;
pub use ferry_codegen::tables::Hook;
use ferry_protocol::{ChannelName, ChannelPattern, ErrorCode, Exclusive, MethodName, Payload};
use serde::Deserialize;

const EXAMPLE_BUNDLE: &str =
    include_str!("../../../generated/example-app/schema/bundle.schema.json");
const EXAMPLE_CHANNELS: &str = include_str!("../../../schema/example-app/channels.json");
const EXAMPLE_METHODS: &str = include_str!("../../../schema/example-app/methods.json");

/// One namespace: a pattern and the validator of its payloads.
pub struct Namespace {
    /// The channels it covers.
    pub pattern: ChannelPattern,
    /// The payload definition's name.
    pub payload: String,
    /// The backend hooks its channels' publishes and subscribes go through.
    pub hooks: Vec<Hook>,
    /// Whether its channels keep presence (FERRY-PRESENCE-1).
    pub presence: bool,
    /// Whether its channels are exclusive, and what a second hold does (FERRY-HOLD-1).
    pub exclusive: Option<Exclusive>,
    validator: jsonschema::Validator,
}

/// One RPC method an application declares, with the validators of its params and result.
pub struct Method {
    /// The method's name.
    pub name: MethodName,
    /// Whether running it twice has the effect of running it once (FERRY-RPC-5).
    pub idempotent: bool,
    params: Checked,
    result: Checked,
}

/// A definition and its compiled validator.
struct Checked {
    def: String,
    validator: jsonschema::Validator,
}

impl Checked {
    fn compile(bundle: &serde_json::Value, def: &str) -> Result<Self, String> {
        let mut schema = bundle.clone();
        schema["$ref"] = serde_json::Value::from(format!("#/$defs/{def}"));
        let validator = jsonschema::draft202012::new(&schema)
            .map_err(|e| format!("the schema {def} does not compile: {e}"))?;
        Ok(Self {
            def: def.to_owned(),
            validator,
        })
    }

    fn check(&self, value: &Payload) -> Result<(), PayloadError> {
        let value = value
            .to_value()
            .map_err(|e| PayloadError::NotPortable(e.to_string()))?;
        match self.validator.iter_errors(&value).next() {
            None => Ok(()),
            Some(error) => Err(PayloadError::Invalid {
                schema: self.def.clone(),
                problem: format!("{error} at \"{}\"", error.instance_path()),
            }),
        }
    }
}

/// The namespaces and methods a server declares.
pub struct Namespaces {
    namespaces: Vec<Namespace>,
    methods: Vec<Method>,
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

/// Loads and lints one set with the code generator's rules: a lint about what the schemas mean
/// refuses the set, one about their descriptions or vectors is logged as a warning.
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
    let (lints, hygiene): (Vec<_>, Vec<_>) = ferry_codegen::lint(&set)
        .into_iter()
        .partition(|lint| lint.kind == ferry_codegen::LintKind::Meaning);
    if let Some(first) = hygiene.first() {
        tracing::warn!(
            app = %dir.display(),
            findings = hygiene.len(),
            first = %first,
            "the set lacks descriptions or test vectors that `ferry-codegen lint --schema {}` demands; serving it anyway",
            dir.display()
        );
    }
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
                " (and {} more; `ferry-codegen lint --schema {}` lists them, with any missing descriptions and vectors)",
                n - 1,
                dir.display()
            ),
        };
        return Err(AppError {
            path: dir.join(&file),
            // A lint located at a file (`methods.json`) is already named by the path.
            problem: if first.location == file {
                format!("{}{more}", first.message)
            } else {
                format!("{}: {}{more}", first.location, first.message)
            },
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
    #[serde(default)]
    hooks: Vec<Hook>,
    #[serde(default)]
    presence: bool,
    #[serde(default)]
    exclusive: Option<Declared>,
}

impl Namespaces {
    /// The example application's namespaces: tasks, approvals, agent activity, command output.
    pub fn example_app() -> Self {
        let mut namespaces = Self::from_sources(EXAMPLE_BUNDLE, EXAMPLE_CHANNELS)
            .expect("the embedded example application is valid");
        let methods: ferry_codegen::tables::MethodCatalog =
            serde_json::from_str(EXAMPLE_METHODS).expect("the example methods.json is valid");
        let bundle = serde_json::from_str(EXAMPLE_BUNDLE).expect("the example bundle is JSON");
        namespaces.methods = compile_methods(&bundle, &methods.methods)
            .expect("the example application's methods compile");
        namespaces
    }

    /// No namespaces: every channel exists and payloads are not checked (FERRY-CHANNEL-4 and
    /// FERRY-CHANNEL-5 apply to servers that declare namespaces).
    pub fn none() -> Self {
        Self {
            namespaces: Vec::new(),
            methods: Vec::new(),
        }
    }

    /// Namespaces from application schema sets (each a folder as `ferry-codegen generate
    /// --schema` reads it: `*.schema.json`, `channels.json`, `vectors/`). Each set's schemas must
    /// pass the code generator's lints (missing descriptions and vectors are only warned about)
    /// and declare its namespaces in `channels.json`; several sets
    /// combine when no channel lies in namespaces of two of them.
    pub fn load(dirs: &[PathBuf]) -> Result<Self, AppError> {
        let mut namespaces: Vec<Namespace> = Vec::new();
        let mut methods: Vec<Method> = Vec::new();
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
                        hooks: ns.hooks.clone(),
                        presence: ns.presence,
                        exclusive: ns.exclusive,
                    })
                })
                .collect::<Result<Vec<_>, AppError>>()?;
            let loaded = Self::from_bundle(&set.bundle, entries).map_err(|problem| AppError {
                path: dir.clone(),
                problem,
            })?;
            let declared = set.methods.as_ref().map_or(&[][..], |m| &m.methods[..]);
            for method in compile_methods(&set.bundle, declared).map_err(|problem| AppError {
                path: dir.join("methods.json"),
                problem,
            })? {
                if methods.iter().any(|m| m.name == method.name) {
                    return Err(AppError {
                        path: dir.join("methods.json"),
                        problem: format!(
                            "method {} is declared by another application too",
                            method.name.as_str()
                        ),
                    });
                }
                methods.push(method);
            }
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
        Ok(Self {
            namespaces,
            methods,
        })
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
                    hooks: entry.hooks,
                    presence: entry.presence,
                    exclusive: entry.exclusive.map(|declared| match declared {
                        Declared::Refuse => Exclusive::Refuse,
                        Declared::TakeOver => Exclusive::TakeOver,
                    }),
                    validator,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            namespaces,
            methods: Vec::new(),
        })
    }

    /// The declared methods' names, for the server session's unknown_method check.
    pub fn method_names(&self) -> Vec<MethodName> {
        self.methods.iter().map(|m| m.name.clone()).collect()
    }

    /// The declared method `name`.
    pub fn method(&self, name: &MethodName) -> Option<&Method> {
        self.methods.iter().find(|m| m.name == *name)
    }

    /// Whether the namespace of `channel` declares `hook`.
    pub fn hooks(&self, channel: &ChannelName, hook: Hook) -> bool {
        self.namespaces
            .iter()
            .find(|ns| ns.pattern.matches(channel))
            .is_some_and(|ns| ns.hooks.contains(&hook))
    }

    /// The patterns of the namespaces that keep presence, for the server session
    /// (FERRY-PRESENCE-1).
    pub fn presence_patterns(&self) -> Vec<ChannelPattern> {
        self.namespaces
            .iter()
            .filter(|ns| ns.presence)
            .map(|ns| ns.pattern.clone())
            .collect()
    }

    /// The exclusive namespaces' patterns and modes, for the server session (FERRY-HOLD-1).
    pub fn exclusive_patterns(&self) -> Vec<(ChannelPattern, Exclusive)> {
        self.namespaces
            .iter()
            .filter_map(|ns| ns.exclusive.map(|mode| (ns.pattern.clone(), mode)))
            .collect()
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

impl Method {
    /// Checks a call's params against the method's params schema (FERRY-RPC-1).
    pub fn check_params(&self, params: &Payload) -> Result<(), PayloadError> {
        self.params.check(params)
    }

    /// Checks the backend's result against the method's result schema (FERRY-RPC-4).
    pub fn check_result(&self, result: &Payload) -> Result<(), PayloadError> {
        self.result.check(result)
    }
}

/// Compiles the validators of each declared method against the set's bundle.
fn compile_methods(
    bundle: &serde_json::Value,
    declared: &[ferry_codegen::tables::Method],
) -> Result<Vec<Method>, String> {
    declared
        .iter()
        .map(|method| {
            Ok(Method {
                name: method
                    .name
                    .parse()
                    .map_err(|e| format!("{:?} is not a method name: {e}", method.name))?,
                idempotent: method.idempotent,
                params: Checked::compile(bundle, &method.params)?,
                result: Checked::compile(bundle, &method.result)?,
            })
        })
        .collect()
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
    fn the_example_applications_method_checks_its_params_and_result() {
        let namespaces = Namespaces::example_app();
        let name: MethodName = "tasks:start".parse().expect("valid");
        assert_eq!(namespaces.method_names(), vec![name.clone()]);
        let method = namespaces.method(&name).expect("declared");
        assert!(!method.idempotent);
        let params = Payload::from(json!({ "project": "alpha", "title": "Build" }));
        assert_eq!(method.check_params(&params), Ok(()));
        assert!(matches!(
            method.check_params(&Payload::from(json!({ "project": "alpha" }))),
            Err(PayloadError::Invalid { schema, .. }) if schema == "StartTask"
        ));
        assert_eq!(
            method.check_result(&Payload::from(json!({ "task_id": "t-1" }))),
            Ok(())
        );
        assert!(matches!(
            method.check_result(&Payload::from(json!({}))),
            Err(PayloadError::Invalid { schema, .. }) if schema == "TaskStarted"
        ));
        let stop: MethodName = "tasks:stop".parse().expect("valid");
        assert!(namespaces.method(&stop).is_none());
        let tasks: ChannelName = "project:alpha:tasks".parse().expect("valid");
        assert!(
            !namespaces.hooks(&tasks, Hook::Publish),
            "the example declares no hooks"
        );
    }

    #[test]
    fn a_method_whose_params_no_schema_defines_stops_the_load_naming_methods_json() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/example-app");
        for entry in std::fs::read_dir(&example).expect("the example app") {
            let entry = entry.expect("an entry");
            if entry.path().is_file() {
                std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
            }
        }
        std::fs::create_dir(dir.path().join("vectors")).expect("mkdir");
        for entry in std::fs::read_dir(example.join("vectors")).expect("vectors") {
            let entry = entry.expect("an entry");
            std::fs::copy(
                entry.path(),
                dir.path().join("vectors").join(entry.file_name()),
            )
            .expect("copy");
        }
        let methods = json!({ "description": "d", "methods": [
            { "name": "tasks:stop", "params": "StopTask", "result": "TaskStarted", "description": "d" }
        ]});
        std::fs::write(dir.path().join("methods.json"), methods.to_string()).expect("write");
        let error = Namespaces::load(&[dir.path().to_owned()])
            .err()
            .expect("refused");
        assert_eq!(error.path, dir.path().join("methods.json"));
        assert!(
            error
                .problem
                .starts_with("tasks:stop takes params StopTask, which no schema file defines"),
            "{}",
            error.problem
        );
    }

    /// Writes a one-namespace set whose payload definition is `payload`, without vectors.
    fn set_without_vectors(payload: serde_json::Value) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temp dir");
        let channels = json!({ "description": "d", "namespaces": [
            { "pattern": "orders:*", "payload": "OrderNote", "description": "d" }
        ]});
        let payloads = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "t", "description": "d", "$defs": { "OrderNote": payload }
        });
        std::fs::write(dir.path().join("channels.json"), channels.to_string()).expect("write");
        std::fs::write(
            dir.path().join("payloads.schema.json"),
            payloads.to_string(),
        )
        .expect("write");
        dir
    }

    #[test]
    fn a_set_lacking_only_vectors_and_descriptions_is_served_and_one_with_a_bad_schema_is_not() {
        // No description on the property, no vectors/: code generation refuses it, the server
        // serves it and checks payloads as usual.
        let sloppy = set_without_vectors(json!({
            "description": "A note.", "type": "object", "additionalProperties": false,
            "required": ["text"], "properties": { "text": { "type": "string", "maxLength": 5 } }
        }));
        let namespaces = Namespaces::load(&[sloppy.path().to_owned()]).expect("served");
        let channel: ChannelName = "orders:1".parse().expect("valid");
        let good = Payload::from(json!({ "text": "ok" }));
        assert_eq!(namespaces.check(&channel, &good), Ok(()));
        let bad = Payload::from(json!({ "text": "too long" }));
        assert!(matches!(
            namespaces.check(&channel, &bad),
            Err(PayloadError::Invalid { .. })
        ));

        // A keyword outside the subset changes what the schema means: refused.
        let unsound = set_without_vectors(json!({
            "description": "A note.", "type": "object", "minProperties": 1
        }));
        let error = Namespaces::load(&[unsound.path().to_owned()])
            .err()
            .expect("refused");
        assert!(error.problem.contains("minProperties"), "{}", error.problem);
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
