//! The breaking-change check: compares a schema set with an older version of itself and judges
//! every change by the direction its message travels.
//!
//! Driven by [`compare`] (two loaded [`SchemaSet`]s and their [`Compatibility`] declarations)
//! or [`check`] (a folder and an older folder or git revision). The answer is a [`SetReport`]:
//! one [`Change`] per difference, each with the [rule](rules::RULES) that judged it, the
//! direction, the verdict, and whether the new set declares it. A breaking change passes only
//! when the new set says so out loud in its `compatibility.json`: a `version` whose major is
//! raised, or an `allow` entry with a reason.
//!
//! What is compared:
//! - the tagged unions: `ClientMessage` as read by servers (the new side), `ServerMessage` as
//!   read by clients (the old side), any other union (an application's or the conformance
//!   adapter's) both ways; variants are matched by their `type` tag;
//! - every endpoint's request body and query (read by the server) and response body (read by
//!   the caller), and its method, path, auth, statuses and content type;
//! - every channel namespace's payload, both ways (publishers write, subscribers read);
//! - the close-code, error-code, defaults and rule tables.

pub mod rules;
mod schema;
mod source;
mod tables;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use rules::{CompatRule, Effect, RULES, Reader};
pub use source::{Baseline, load_baseline};

use crate::Error;
use crate::set::SchemaSet;

/// The file of a schema set that declares its version and the breaking changes it allows.
pub const COMPATIBILITY_FILE: &str = "compatibility.json";

/// Which way a message travels, and so who reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A WebSocket frame a client sends; servers read it.
    ClientToServer,
    /// A WebSocket frame a server sends; deployed clients read it.
    ServerToClient,
    /// An HTTP request body or query; servers read it.
    Request,
    /// An HTTP response body; callers read it.
    Response,
    /// Read and written by both versions: channel payloads, other unions.
    Both,
    /// Not a message: a table or an endpoint as a whole.
    None,
}

impl Direction {
    /// Who reads messages travelling this way.
    pub fn reader(self) -> Reader {
        match self {
            Self::ClientToServer | Self::Request | Self::None => Reader::New,
            Self::ServerToClient | Self::Response => Reader::Old,
            Self::Both => Reader::Both,
        }
    }

    /// The direction of a tagged union's messages, from its name.
    pub fn of_union(name: &str) -> Self {
        match name {
            "ClientMessage" => Self::ClientToServer,
            "ServerMessage" => Self::ServerToClient,
            _ => Self::Both,
        }
    }

    /// How the table names the direction.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientToServer => "client -> server",
            Self::ServerToClient => "server -> client",
            Self::Request => "http request",
            Self::Response => "http response",
            Self::Both => "both ways",
            Self::None => "-",
        }
    }
}

/// Where a change is, before it is placed in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// Inside a definition: its name and the member path below it (`[]` for array items).
    Def { def: String, path: Vec<String> },
    /// A row of a table file, found by a needle on its line.
    Row {
        file: &'static str,
        needle: String,
        label: String,
    },
}

impl Location {
    fn def(name: &str) -> Self {
        Self::Def {
            def: name.to_owned(),
            path: Vec::new(),
        }
    }

    fn row(file: &'static str, needle: &str, label: String) -> Self {
        Self::Row {
            file,
            needle: needle.to_owned(),
            label,
        }
    }

    fn below(&self, segment: &str) -> Self {
        match self {
            Self::Def { def, path } => {
                let mut path = path.clone();
                path.push(segment.to_owned());
                Self::Def {
                    def: def.clone(),
                    path,
                }
            }
            row => row.clone(),
        }
    }

    fn member(&self, name: &str) -> Self {
        self.below(name)
    }

    fn item(&self) -> Self {
        self.below("[]")
    }

    fn label(&self) -> String {
        match self {
            Self::Def { def, path } => {
                let mut out = def.clone();
                for segment in path {
                    if segment != "[]" {
                        out.push('.');
                    }
                    out.push_str(segment);
                }
                out
            }
            Self::Row { label, .. } => label.clone(),
        }
    }
}

/// A difference found by a comparer, before it is judged.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    rule: &'static str,
    /// The schema effect, for rules judged by it.
    effect: Option<Effect>,
    direction: Direction,
    at: Location,
    detail: String,
}

/// Whether a change breaks anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A reader built against one version refuses, or misreads, what the other sends.
    Breaking,
    /// Every reader keeps working.
    Compatible,
}

/// One judged change.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The rule that judged it (an id of [`RULES`]).
    pub rule: &'static str,
    /// What changed.
    pub change: String,
    /// Where: a definition and member path (`Welcome.heartbeat.interval_ms`) or a table row.
    #[serde(rename = "where")]
    pub location: String,
    /// Which way the message travels.
    pub direction: Direction,
    /// The verdict.
    pub verdict: Verdict,
    /// For a breaking change the new set declares: why it may pass.
    pub declared: Option<String>,
    /// The file of the new set the change is in, as the caller named the set's folder.
    pub file: String,
    /// The line in that file (1-based).
    pub line: usize,
}

impl Change {
    /// Whether the change breaks and the new set does not declare it.
    pub fn fails(&self) -> bool {
        self.verdict == Verdict::Breaking && self.declared.is_none()
    }
}

/// `compatibility.json`: a schema set's version and the breaking changes it allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compatibility {
    /// What the file is.
    pub description: String,
    /// The set's version, `MAJOR.MINOR.PATCH`. Raising the major declares every breaking
    /// change against an older major.
    pub version: String,
    /// Breaking changes allowed without a new major, each with its reason.
    #[serde(default)]
    pub allow: Vec<Allowance>,
}

/// One allowed breaking change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowance {
    /// The rule id the change is judged by.
    pub rule: String,
    /// Where, as the check prints it; a definition also covers every member below it.
    #[serde(rename = "where")]
    pub location: String,
    /// Why the change may pass.
    pub reason: String,
}

impl Compatibility {
    /// The declaration of a set without a `compatibility.json`: version 1.0.0, nothing allowed.
    pub fn implicit() -> Self {
        Self {
            description: String::new(),
            version: "1.0.0".to_owned(),
            allow: Vec::new(),
        }
    }

    /// Reads `compatibility.json` of the set in `dir`, or [`Compatibility::implicit`].
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(COMPATIBILITY_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::implicit()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let this: Self = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        this.major().map_err(|m| Error::schema(&path, m))?;
        if let Some(a) = this.allow.iter().find(|a| a.reason.trim().is_empty()) {
            return Err(Error::schema(
                &path,
                format!("allows {} at {} without a reason", a.rule, a.location),
            ));
        }
        if let Some(a) = this
            .allow
            .iter()
            .find(|a| !RULES.iter().any(|r| r.id == a.rule))
        {
            return Err(Error::schema(
                &path,
                format!("allows {}, which is no compatibility rule", a.rule),
            ));
        }
        Ok(this)
    }

    /// The major version.
    pub fn major(&self) -> Result<u64, String> {
        let parts: Vec<&str> = self.version.split('.').collect();
        match parts.as_slice() {
            [major, minor, patch]
                if [major, minor, patch]
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) =>
            {
                major
                    .parse()
                    .map_err(|e| format!("version {:?}: {e}", self.version))
            }
            _ => Err(format!(
                "version {:?} is not MAJOR.MINOR.PATCH",
                self.version
            )),
        }
    }

    fn declares(&self, old: &Self, change: &Change) -> Option<String> {
        let (Ok(new_major), Ok(old_major)) = (self.major(), old.major()) else {
            return None;
        };
        if new_major > old_major {
            return Some(format!("version {} -> {}", old.version, self.version));
        }
        self.allow
            .iter()
            .find(|a| {
                a.rule == change.rule
                    && (change.location == a.location
                        || change.location.starts_with(&format!("{}.", a.location)))
            })
            .map(|a| a.reason.clone())
    }
}

/// One side of a comparison: a loaded set, its declaration, and the folder it was read from.
#[derive(Debug, Clone)]
pub struct Side {
    /// The schema set.
    pub set: SchemaSet,
    /// Its `compatibility.json`.
    pub compatibility: Compatibility,
    /// The folder its files are in (for line numbers).
    pub dir: PathBuf,
}

impl Side {
    /// Loads the set in `dir`, naming it `label`.
    pub fn load(dir: &Path, label: &str) -> Result<Self, Error> {
        Ok(Self {
            set: SchemaSet::load(dir, label)?,
            compatibility: Compatibility::load(dir)?,
            dir: dir.to_owned(),
        })
    }
}

/// The judged changes between two versions of one schema set.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    /// The new set, as named by the caller.
    pub schema: String,
    /// The old set: a folder, or `REV:path`.
    pub against: String,
    /// The old set's version.
    pub old_version: String,
    /// The new set's version.
    pub new_version: String,
    /// Every change, breaking ones first.
    pub changes: Vec<Change>,
}

impl SetReport {
    /// The number of breaking changes the new set does not declare.
    pub fn failures(&self) -> usize {
        self.changes.iter().filter(|c| c.fails()).count()
    }
}

/// Compares `new` with `old` and judges every change.
pub fn compare(old: &Side, new: &Side, against: &str) -> SetReport {
    let mut comparer = schema::Comparer::new(&old.set, &new.set);
    tables::compare_roots(&mut comparer, &old.set, &new.set);
    let mut found = comparer.found;
    tables::compare(&old.set, &new.set, &mut found);

    let lines = source::LineIndex::new(new);
    let mut changes: Vec<Change> = found
        .into_iter()
        .map(|f| {
            let breaks = match (f.effect, rules::rule(f.rule).judgement) {
                (Some(effect), _) => effect.breaks(f.direction.reader()),
                (None, rules::Judgement::Breaking) => true,
                (None, _) => false,
            };
            let (file, line) = lines.place(&f.at);
            let mut change = Change {
                rule: f.rule,
                change: f.detail,
                location: f.at.label(),
                direction: f.direction,
                verdict: if breaks {
                    Verdict::Breaking
                } else {
                    Verdict::Compatible
                },
                declared: None,
                file,
                line,
            };
            if breaks {
                change.declared = new.compatibility.declares(&old.compatibility, &change);
            }
            change
        })
        .collect();
    changes.sort_by(|a, b| {
        (
            a.verdict,
            a.declared.is_some(),
            &a.file,
            a.line,
            a.rule,
            &a.location,
        )
            .cmp(&(
                b.verdict,
                b.declared.is_some(),
                &b.file,
                b.line,
                b.rule,
                &b.location,
            ))
    });
    changes.dedup_by(|a, b| {
        a.rule == b.rule
            && a.location == b.location
            && a.direction == b.direction
            && a.change == b.change
    });
    SetReport {
        schema: new.set.label.clone(),
        against: against.to_owned(),
        old_version: old.compatibility.version.clone(),
        new_version: new.compatibility.version.clone(),
        changes,
    }
}

/// Loads the set in `dir` and the older version `against` names (a folder, or a git revision
/// of the repository `dir` is in), and compares them. `None` when the revision holds no version
/// of the set.
pub fn check(dir: &Path, label: &str, against: &str) -> Result<Option<SetReport>, Error> {
    let new = Side::load(dir, label)?;
    let Some(baseline) = load_baseline(dir, against)? else {
        return Ok(None);
    };
    let old = Side::load(baseline.dir(), &baseline.label)?;
    Ok(Some(compare(&old, &new, &baseline.label)))
}

/// The human table: verdict, rule, direction, where, change.
pub fn render_table(reports: &[SetReport]) -> String {
    let mut out = String::new();
    for report in reports {
        let _ = writeln!(
            out,
            "{} (version {}) against {} (version {}): {} change(s), {} breaking and undeclared",
            report.schema,
            report.new_version,
            report.against,
            report.old_version,
            report.changes.len(),
            report.failures()
        );
        if report.changes.is_empty() {
            out.push('\n');
            continue;
        }
        let rows: Vec<[String; 5]> = report
            .changes
            .iter()
            .map(|c| {
                let verdict = match (c.verdict, &c.declared) {
                    (Verdict::Breaking, None) => "BREAKING".to_owned(),
                    (Verdict::Breaking, Some(why)) => format!("breaking, declared ({why})"),
                    (Verdict::Compatible, _) => "compatible".to_owned(),
                };
                [
                    verdict,
                    c.rule.to_owned(),
                    c.direction.as_str().to_owned(),
                    format!("{} ({}:{})", c.location, c.file, c.line),
                    c.change.clone(),
                ]
            })
            .collect();
        let header = ["verdict", "rule", "direction", "where", "change"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    s.push_str(cell);
                } else {
                    let _ = write!(s, "{cell:<w$}  ", w = widths[i]);
                }
            }
            s.trim_end().to_owned()
        };
        let _ = writeln!(out, "{}", line(&header.map(str::to_owned)));
        for row in &rows {
            let _ = writeln!(out, "{}", line(row));
        }
        out.push('\n');
    }
    out
}

/// GitHub Actions workflow commands: an error per undeclared breaking change, a notice for
/// every other change.
pub fn render_github(reports: &[SetReport]) -> String {
    let mut out = String::new();
    for report in reports {
        for c in &report.changes {
            let level = if c.fails() { "error" } else { "notice" };
            let declared = c
                .declared
                .as_ref()
                .map(|why| format!(" (declared: {why})"))
                .unwrap_or_default();
            let verdict = match c.verdict {
                Verdict::Breaking => "breaking",
                Verdict::Compatible => "compatible",
            };
            let message = format!(
                "{verdict} {} change at {}: {}{declared}",
                c.direction.as_str(),
                c.location,
                c.change
            );
            let _ = writeln!(
                out,
                "::{level} file={},line={},title={}::{}",
                escape_property(&c.file),
                c.line,
                c.rule,
                escape_data(&message)
            );
        }
    }
    out
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}
