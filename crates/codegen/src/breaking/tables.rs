//! Comparison of the tables (close codes, error codes, defaults, rules), the endpoints and the
//! channel namespaces of two schema sets.

use super::rules::{Judgement, rule};
use super::schema::Comparer;
use super::{Direction, Found, Location};
use crate::set::SchemaSet;

/// The definition every HTTP error answers with.
const ERROR_BODY: &str = "ErrorBody";

/// Appends what changed between the tables of `old` and `new` to `found`.
pub(super) fn compare(old: &SchemaSet, new: &SchemaSet, found: &mut Vec<Found>) {
    let mut push = |id: &'static str, dir: Direction, at: Location, detail: String| {
        let effect = match rule(id).judgement {
            Judgement::Schema(effect) => Some(effect),
            _ => None,
        };
        found.push(Found {
            rule: id,
            effect,
            direction: dir,
            at,
            detail,
        });
    };

    if let (Some(o), Some(n)) = (&old.close_codes, &new.close_codes) {
        let file = "close-codes.json";
        for code in &n.codes {
            let at = Location::row(
                file,
                &format!("\"code\": {}", code.code),
                format!("close code {}", code.code),
            );
            match o.codes.iter().find(|c| c.code == code.code) {
                None => match o.codes.iter().find(|c| c.name == code.name) {
                    Some(was) => push(
                        "close-code-renumbered",
                        Direction::ServerToClient,
                        at,
                        format!("{} was {}, is now {}", code.name, was.code, code.code),
                    ),
                    None => push(
                        "close-code-added",
                        Direction::ServerToClient,
                        at,
                        format!(
                            "{} {} ({}); old clients treat it as backoff",
                            code.code,
                            code.name,
                            code.action.as_str()
                        ),
                    ),
                },
                Some(was) if was.action != code.action => push(
                    "close-code-action-changed",
                    Direction::ServerToClient,
                    at,
                    format!(
                        "{} {}: {} -> {}",
                        code.code,
                        code.name,
                        was.action.as_str(),
                        code.action.as_str()
                    ),
                ),
                Some(_) => {}
            }
        }
        for code in &o.codes {
            let gone = !n
                .codes
                .iter()
                .any(|c| c.code == code.code || c.name == code.name);
            if gone {
                let at = Location::row(file, "\"codes\"", format!("close code {}", code.code));
                push(
                    "close-code-removed",
                    Direction::ServerToClient,
                    at,
                    format!("{} {} removed", code.code, code.name),
                );
            }
        }
    }

    if let (Some(o), Some(n)) = (&old.error_codes, &new.error_codes) {
        let file = "error-codes.json";
        for code in &n.codes {
            let at = Location::row(
                file,
                &format!("\"code\": \"{}\"", code.code),
                format!("error code {}", code.code),
            );
            match o.codes.iter().find(|c| c.code == code.code) {
                None => push(
                    "error-code-added",
                    Direction::ServerToClient,
                    at,
                    format!("{} added (HTTP {})", code.code, code.http_status),
                ),
                Some(was)
                    if was.http_status != code.http_status || was.retryable != code.retryable =>
                {
                    push(
                        "error-code-changed",
                        Direction::ServerToClient,
                        at,
                        format!(
                            "{}: HTTP {} retryable {} -> HTTP {} retryable {}",
                            code.code,
                            was.http_status,
                            was.retryable,
                            code.http_status,
                            code.retryable
                        ),
                    )
                }
                Some(_) => {}
            }
        }
        for code in o
            .codes
            .iter()
            .filter(|c| !n.codes.iter().any(|x| x.code == c.code))
        {
            let at = Location::row(file, "\"codes\"", format!("error code {}", code.code));
            push(
                "error-code-removed",
                Direction::ServerToClient,
                at,
                format!("{} removed", code.code),
            );
        }
    }

    if let (Some(o), Some(n)) = (&old.defaults, &new.defaults) {
        let file = "defaults.json";
        for value in &n.values {
            let at = Location::row(
                file,
                &format!("\"name\": \"{}\"", value.name),
                format!("default {}", value.name),
            );
            match o.values.iter().find(|v| v.name == value.name) {
                None => push(
                    "default-changed",
                    Direction::None,
                    at,
                    format!("{} = {} {} added", value.name, value.value, value.unit),
                ),
                Some(was)
                    if was.value != value.value
                        || was.advertised != value.advertised
                        || was.unit != value.unit =>
                {
                    push(
                        "default-changed",
                        Direction::None,
                        at,
                        format!(
                            "{}: {} {} -> {} {}{}",
                            value.name,
                            was.value,
                            was.unit,
                            value.value,
                            value.unit,
                            if was.advertised != value.advertised {
                                format!(", advertised {} -> {}", was.advertised, value.advertised)
                            } else {
                                String::new()
                            }
                        ),
                    )
                }
                Some(_) => {}
            }
        }
        for value in o
            .values
            .iter()
            .filter(|v| !n.values.iter().any(|x| x.name == v.name))
        {
            let at = Location::row(file, "\"values\"", format!("default {}", value.name));
            push(
                "default-changed",
                Direction::None,
                at,
                format!("{} removed", value.name),
            );
        }
    }

    if let (Some(o), Some(n)) = (&old.rules, &new.rules) {
        let file = "rules.json";
        let all = |c: &crate::tables::RuleCatalogue| {
            c.sections
                .iter()
                .flat_map(|s| s.rules.clone())
                .collect::<Vec<_>>()
        };
        let (o, n) = (all(o), all(n));
        for r in &n {
            let at = Location::row(file, &format!("\"id\": \"{}\"", r.id), r.id.clone());
            match o.iter().find(|x| x.id == r.id) {
                None => push(
                    "rule-changed",
                    Direction::None,
                    at,
                    format!("{} added ({})", r.id, r.level.as_str()),
                ),
                Some(was) if was.level != r.level => push(
                    "rule-changed",
                    Direction::None,
                    at,
                    format!("{}: {} -> {}", r.id, was.level.as_str(), r.level.as_str()),
                ),
                Some(_) => {}
            }
        }
        for r in o.iter().filter(|r| !n.iter().any(|x| x.id == r.id)) {
            push(
                "rule-changed",
                Direction::None,
                Location::row(file, "\"sections\"", r.id.clone()),
                format!("{} removed", r.id),
            );
        }
    }

    if let Some(n) = &new.channels {
        let file = "channels.json";
        let old_namespaces = old
            .channels
            .as_ref()
            .map(|c| c.namespaces.as_slice())
            .unwrap_or_default();
        for ns in &n.namespaces {
            let at = Location::row(
                file,
                &format!("\"pattern\": \"{}\"", ns.pattern),
                format!("channel {}", ns.pattern),
            );
            if !old_namespaces.iter().any(|o| o.pattern == ns.pattern) {
                push(
                    "namespace-added",
                    Direction::Both,
                    at,
                    format!("{} ({})", ns.pattern, ns.payload),
                );
            }
        }
        for ns in old_namespaces
            .iter()
            .filter(|o| !n.namespaces.iter().any(|x| x.pattern == o.pattern))
        {
            let at = Location::row(file, "\"namespaces\"", format!("channel {}", ns.pattern));
            push(
                "namespace-removed",
                Direction::Both,
                at,
                format!("{} removed", ns.pattern),
            );
        }
    }

    if let (Some(o), Some(n)) = (&old.endpoints, &new.endpoints) {
        let file = "endpoints.json";
        for e in &n.endpoints {
            let at = Location::row(
                file,
                &format!("\"name\": \"{}\"", e.name),
                format!("{} {}", e.method, e.path),
            );
            let Some(was) = o.endpoints.iter().find(|x| x.name == e.name) else {
                push(
                    "endpoint-added",
                    Direction::None,
                    at,
                    format!("{} {} {}", e.name, e.method, e.path),
                );
                continue;
            };
            if was.method != e.method || was.path != e.path {
                push(
                    "endpoint-moved",
                    Direction::Request,
                    at.clone(),
                    format!("{} {} -> {} {}", was.method, was.path, e.method, e.path),
                );
            }
            if was.auth != e.auth {
                let id = if e.auth == "none" {
                    "endpoint-auth-removed"
                } else {
                    "endpoint-auth-changed"
                };
                push(
                    id,
                    Direction::Request,
                    at.clone(),
                    format!("auth {} -> {}", was.auth, e.auth),
                );
            }
            if was.success_status != e.success_status
                || was.response_content_type != e.response_content_type
            {
                push(
                    "endpoint-success-status-changed",
                    Direction::Response,
                    at.clone(),
                    format!(
                        "{} {} -> {} {}",
                        was.success_status,
                        was.response_content_type,
                        e.success_status,
                        e.response_content_type
                    ),
                );
            }
            let statuses = |x: &crate::tables::Endpoint| {
                x.errors
                    .iter()
                    .map(|r| r.status)
                    .collect::<std::collections::BTreeSet<_>>()
            };
            let (os, ns) = (statuses(was), statuses(e));
            for s in ns.difference(&os) {
                push(
                    "endpoint-error-status-changed",
                    Direction::Response,
                    at.clone(),
                    format!("error status {s} added"),
                );
            }
            for s in os.difference(&ns) {
                push(
                    "endpoint-error-status-changed",
                    Direction::Response,
                    at.clone(),
                    format!("error status {s} removed"),
                );
            }
            let bodies = [
                ("request body", &was.request, &e.request, Direction::Request),
                ("query", &was.query, &e.query, Direction::Request),
                (
                    "response body",
                    &was.response,
                    &e.response,
                    Direction::Response,
                ),
            ];
            for (what, o, n, dir) in bodies {
                match (o, n) {
                    (None, Some(n)) => push(
                        "endpoint-body-added",
                        dir,
                        at.clone(),
                        format!("{what} {n} added"),
                    ),
                    (Some(o), None) => push(
                        "endpoint-body-removed",
                        dir,
                        at.clone(),
                        format!("{what} {o} removed"),
                    ),
                    _ => {}
                }
            }
        }
        for e in o
            .endpoints
            .iter()
            .filter(|x| !n.endpoints.iter().any(|y| y.name == x.name))
        {
            let at = Location::row(file, "\"endpoints\"", format!("{} {}", e.method, e.path));
            push(
                "endpoint-removed",
                Direction::Request,
                at,
                format!("{} {} {} removed", e.name, e.method, e.path),
            );
        }
    }
}

/// Compares the schemas of every message root: the tagged unions by the reader their name
/// implies, the bodies of every endpoint both sets have, and the payload of every channel
/// namespace both sets have.
pub(super) fn compare_roots(comparer: &mut Comparer<'_>, old: &SchemaSet, new: &SchemaSet) {
    for union in &new.unions {
        if old.unions.iter().any(|u| u.name == union.name) {
            comparer.definition(&union.name, &union.name, Direction::of_union(&union.name));
        }
    }
    if let (Some(o), Some(n)) = (&old.endpoints, &new.endpoints) {
        for e in &n.endpoints {
            let Some(was) = o.endpoints.iter().find(|x| x.name == e.name) else {
                continue;
            };
            if e.response_content_type == "websocket" {
                // The session's frames are compared through the unions.
                continue;
            }
            let pairs = [
                (&was.request, &e.request, Direction::Request),
                (&was.query, &e.query, Direction::Request),
                (&was.response, &e.response, Direction::Response),
            ];
            for (o, n, dir) in pairs {
                if let (Some(o), Some(n)) = (o, n) {
                    comparer.definition(o, n, dir);
                }
            }
        }
    }
    // Every error status of every endpoint answers with the shared error body.
    let answers_errors = |set: &SchemaSet| {
        set.endpoints
            .iter()
            .flat_map(|t| &t.endpoints)
            .any(|e| !e.errors.is_empty())
    };
    if answers_errors(old) && answers_errors(new) {
        comparer.definition(ERROR_BODY, ERROR_BODY, Direction::Response);
    }
    if let (Some(o), Some(n)) = (&old.channels, &new.channels) {
        for ns in &n.namespaces {
            if let Some(was) = o.namespaces.iter().find(|x| x.pattern == ns.pattern) {
                comparer.definition(&was.payload, &ns.payload, Direction::Both);
            }
        }
    }
}
