//! The case catalogue: every case's stable id, the rules it checks, its level and what it
//! checks, read from `cases/server.toml` and `cases/client.toml` (embedded at build time).
//!
//! A case's body is Rust code registered under the same id in its mode's module; data that a
//! case body reads (frames to send, expected answers) sits beside it in `params`, so a family
//! of similar cases is one body and several entries.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use ferry_protocol::tables::{RULES, Rule, RuleLevel};
use serde::{Deserialize, Serialize};

const SERVER_CASES: &str = include_str!("../cases/server.toml");
const CLIENT_CASES: &str = include_str!("../cases/client.toml");
const UNCOVERED: &str = include_str!("../cases/uncovered.toml");

/// The deadline of a case that names none.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Which implementation a case drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A server under test, driven over its HTTP endpoints and raw WebSocket frames.
    Server,
    /// A client under test, driven through its adapter against the runner's scripted server.
    Client,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Server => "server",
            Self::Client => "client",
        })
    }
}

/// How binding a case is (RFC 2119).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    /// A failure breaks conformance: the run fails.
    #[serde(rename = "MUST")]
    Must,
    /// A failure is reported; the run fails only with `--strict`.
    #[serde(rename = "SHOULD")]
    Should,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Must => "MUST",
            Self::Should => "SHOULD",
        })
    }
}

/// One case of the catalogue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseInfo {
    /// The stable id, `<mode>.<family>.<name>`; never reused for another check.
    pub id: String,
    /// The mode, filled in from the file the case is listed in.
    #[serde(default = "placeholder_mode", skip_deserializing)]
    pub mode: Mode,
    /// The rule ids (`FERRY-TICKET-4`) the case checks.
    pub rules: Vec<String>,
    /// MUST or SHOULD.
    pub level: Level,
    /// What the case checks, in one sentence.
    pub title: String,
    /// How long the case may run before it is stopped and reported as an error.
    #[serde(default, with = "millis")]
    pub deadline_ms: Option<Duration>,
    /// Runs after every other case, alone (for example a case that stops the server).
    #[serde(default)]
    pub last: bool,
    /// What the implementation under test must offer (client features from the adapter's
    /// ready report, or server-mode options); without it the case is skipped.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Data the case's body reads.
    #[serde(default)]
    pub params: toml::Table,
}

fn placeholder_mode() -> Mode {
    Mode::Server
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => serializer.serialize_some(&(d.as_millis() as u64)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_millis))
    }
}

impl CaseInfo {
    /// How long the case may run.
    pub fn deadline(&self) -> Duration {
        self.deadline_ms.unwrap_or(DEFAULT_DEADLINE)
    }

    /// The sentences of the rules the case checks, from the rule catalogue.
    pub fn rule_texts(&self) -> Vec<&'static str> {
        self.rules
            .iter()
            .filter_map(|id| RULES.iter().find(|r| r.id == id).map(|r| r.text))
            .collect()
    }

    /// A string parameter.
    pub fn param_str(&self, name: &str) -> Option<&str> {
        self.params.get(name).and_then(toml::Value::as_str)
    }

    /// An integer parameter.
    pub fn param_u64(&self, name: &str) -> Option<u64> {
        self.params
            .get(name)
            .and_then(toml::Value::as_integer)
            .and_then(|v| u64::try_from(v).ok())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    case: Vec<CaseInfo>,
}

/// Every case of both modes, server cases first, each in catalogue order.
pub fn all() -> &'static [CaseInfo] {
    static ALL: OnceLock<Vec<CaseInfo>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut cases = Vec::new();
        for (mode, source) in [(Mode::Server, SERVER_CASES), (Mode::Client, CLIENT_CASES)] {
            let file: CaseFile = toml::from_str(source)
                .unwrap_or_else(|e| panic!("cases/{mode}.toml is not a valid catalogue: {e}"));
            cases.extend(file.case.into_iter().map(|mut case| {
                case.mode = mode;
                case
            }));
        }
        cases
    })
}

/// The cases of one mode.
pub fn of_mode(mode: Mode) -> impl Iterator<Item = &'static CaseInfo> {
    all().iter().filter(move |c| c.mode == mode)
}

/// The cases of `mode` whose id matches one of `patterns` (globs such as `server.ticket.*`);
/// every case of the mode when `patterns` is empty. Fails on a pattern that is not a valid glob
/// or that matches no case of the mode.
pub fn select(mode: Mode, patterns: &[String]) -> Result<Vec<&'static CaseInfo>, String> {
    if patterns.is_empty() {
        return Ok(of_mode(mode).collect());
    }
    let mut matchers = Vec::with_capacity(patterns.len());
    for pattern in patterns {
        let matcher = globset::Glob::new(pattern)
            .map_err(|e| format!("--case {pattern:?} is not a valid glob: {e}"))?
            .compile_matcher();
        if !of_mode(mode).any(|c| matcher.is_match(&c.id)) {
            return Err(format!(
                "--case {pattern:?} matches no {mode} case; `ferry-conformance list` shows them"
            ));
        }
        matchers.push(matcher);
    }
    Ok(of_mode(mode)
        .filter(|c| matchers.iter().any(|m| m.is_match(&c.id)))
        .collect())
}

/// A rule of the catalogue that no case checks, and why (`cases/uncovered.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uncovered {
    /// The rule id.
    pub id: String,
    /// Why no case checks it.
    pub why: String,
}

#[derive(Deserialize)]
struct UncoveredFile {
    rule: Vec<Uncovered>,
}

/// Every rule that no case checks, with its reason.
pub fn uncovered() -> &'static [Uncovered] {
    static UNCOVERED_RULES: OnceLock<Vec<Uncovered>> = OnceLock::new();
    UNCOVERED_RULES.get_or_init(|| {
        toml::from_str::<UncoveredFile>(UNCOVERED)
            .unwrap_or_else(|e| panic!("cases/uncovered.toml is not valid: {e}"))
            .rule
    })
}

/// One rule of the protocol and what checks it.
#[derive(Debug, Clone)]
pub struct Coverage {
    /// The rule.
    pub rule: &'static Rule,
    /// The cases that cite it, server cases first.
    pub cases: Vec<&'static CaseInfo>,
    /// Why no case checks it, when none does.
    pub why: Option<&'static str>,
}

/// Every rule of the protocol, in the catalogue's order, with the cases that check it.
pub fn coverage() -> Vec<Coverage> {
    RULES
        .iter()
        .map(|rule| Coverage {
            rule,
            cases: all()
                .iter()
                .filter(|case| case.rules.iter().any(|r| r == rule.id))
                .collect(),
            why: uncovered()
                .iter()
                .find(|u| u.id == rule.id)
                .map(|u| u.why.as_str()),
        })
        .collect()
}

/// The coverage as a Markdown table: rule, level, and its cases or why it has none.
pub fn coverage_markdown() -> String {
    let mut table = String::from("| rule | level | checked by |\n| --- | --- | --- |\n");
    for row in coverage() {
        let level = match row.rule.level {
            RuleLevel::Must => "MUST",
            RuleLevel::Should => "SHOULD",
        };
        let checked = if row.cases.is_empty() {
            format!("no case: {}", row.why.unwrap_or("(no reason given)"))
        } else {
            row.cases
                .iter()
                .map(|case| format!("`{}`", case.id))
                .collect::<Vec<_>>()
                .join(", ")
        };
        table.push_str(&format!("| {} | {level} | {checked} |\n", row.rule.id));
    }
    table
}

/// Checks the catalogue's own consistency: unique ids with the mode's prefix, known rules, a
/// level no stronger than the rules' strongest. Returns every problem found.
pub fn problems() -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for case in all() {
        if !seen.insert(case.id.as_str()) {
            problems.push(format!("{}: the id is used twice", case.id));
        }
        if !case.id.starts_with(&format!("{}.", case.mode)) {
            problems.push(format!(
                "{}: a {} case's id starts with '{}.'",
                case.id, case.mode, case.mode
            ));
        }
        if case.rules.is_empty() {
            problems.push(format!("{}: cites no rule", case.id));
        }
        let mut strongest = None;
        for rule in &case.rules {
            match RULES.iter().find(|r| r.id == rule) {
                None => problems.push(format!("{}: cites the unknown rule {rule}", case.id)),
                Some(r) => {
                    let level = match r.level {
                        RuleLevel::Must => Level::Must,
                        RuleLevel::Should => Level::Should,
                    };
                    strongest = Some(strongest.map_or(level, |s: Level| s.min(level)));
                }
            }
        }
        if case.level == Level::Must && strongest == Some(Level::Should) {
            problems.push(format!("{}: is MUST but only cites SHOULD rules", case.id));
        }
    }
    for u in uncovered() {
        if !RULES.iter().any(|r| r.id == u.id) {
            problems.push(format!("uncovered.toml: {} is no rule", u.id));
        }
    }
    for row in coverage() {
        match (row.cases.is_empty(), row.why) {
            (true, None) => problems.push(format!(
                "{}: no case checks it and uncovered.toml gives no reason",
                row.rule.id
            )),
            (false, Some(_)) => problems.push(format!(
                "{}: cases check it, so uncovered.toml must not list it",
                row.rule.id
            )),
            _ => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_consistent() {
        assert!(all().len() > 10, "the catalogue is nearly empty");
        assert_eq!(problems(), Vec::<String>::new());
    }

    #[test]
    fn the_readme_carries_the_current_coverage_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("the crate README");
        let (start, end) = ("<!-- coverage:start -->\n", "<!-- coverage:end -->");
        let table = readme
            .split_once(start)
            .and_then(|(_, rest)| rest.split_once(end))
            .map(|(table, _)| table)
            .expect("the README has a coverage section between its markers");
        assert!(
            table == coverage_markdown(),
            "the README's coverage table is stale: replace it with the output of `ferry-conformance list --coverage`"
        );
    }
}
