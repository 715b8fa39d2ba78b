//! Channel patterns as a server enforces them (FERRY-CHANNEL-3): the restricted credential
//! reads exactly the channels its welcome's patterns match, segment by segment.
//!
//! The runner does not know the server's namespaces, so it builds probe channels from the
//! restricted session's read patterns (each pattern filled in, and near misses of it: a `*`
//! given two segments, a final `**` given none, a literal segment lengthened or shortened, a
//! segment added or taken away) and keeps those `--token` may subscribe to: channels inside
//! the server's namespaces, where only the pattern decides. The welcome's patterns say what
//! the credential holds; the server's answers must agree with them as FERRY-CHANNEL-3 reads
//! them.

use ferry_protocol::{Access, ChannelName, ErrorCode, Permission, ServerMessage, permits};
use serde_json::json;

use super::cite;
use super::presence::unsubscribe;
use crate::case::{CaseResult, Finding};
use crate::server::checks::a;
use crate::server::ctx::{Ctx, REPLY_WAIT, Who};
use crate::server::driver::Session;

/// The most probe channels one run tries.
const MAX_PROBES: usize = 32;

/// A probe channel and whether the listed patterns grant reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Probe {
    channel: String,
    granted: bool,
}

/// What a subscribe was answered with.
enum Answer {
    Subscribed,
    Refused(ErrorCode),
    Other(String),
}

/// The restricted session may subscribe to exactly those probe channels inside the server's
/// namespaces that its welcome's read patterns match (FERRY-CHANNEL-3, FERRY-CHANNEL-1).
pub(super) async fn pattern_segments(ctx: Ctx) -> CaseResult {
    let mut restricted = ctx.session(Who::Restricted).await?;
    let permissions = restricted.welcome().permissions.clone();
    let pool = segment_pool(&ctx.options().channel_template, &ctx.unique_segment(0));
    let probes = probes(&permissions, &pool);
    ctx.t.note(
        "runner",
        format!(
            "{} probe channels built from the restricted session's read patterns {}",
            probes.len(),
            serde_json::to_string(&permissions).unwrap_or_default()
        ),
    );
    let mut main = ctx.session(Who::Main).await?;
    let mut decisive = Vec::new();
    for probe in probes {
        // Only a channel --token may read is inside the namespaces, where the pattern decides.
        if matches!(answer(&mut main, &probe.channel).await?, Answer::Subscribed) {
            decisive.push(probe);
        }
    }
    let near_misses = decisive.iter().filter(|p| !p.granted).count();
    if near_misses == 0 {
        return Err(Finding::skip(format!(
            "none of the channels built from the restricted credential's read patterns that they do not match is one --token may subscribe to (permissions {}, --channel-template {}): pass a --restricted-token whose welcome lists a read pattern with a literal segment or a wildcard on channels of the server's namespaces, such as project:alpha:* beside project:*:tasks",
            serde_json::to_string(&permissions).unwrap_or_default(),
            ctx.options().channel_template
        )));
    }
    let mut wrong = Vec::new();
    for probe in &decisive {
        let got = answer(&mut restricted, &probe.channel).await?;
        let agrees = match &got {
            Answer::Subscribed => probe.granted,
            Answer::Refused(ErrorCode::Forbidden) => !probe.granted,
            _ => false,
        };
        if !agrees {
            wrong.push(format!(
                "{} ({} by the listed patterns): {}",
                probe.channel,
                if probe.granted {
                    "matched"
                } else {
                    "not matched"
                },
                match got {
                    Answer::Subscribed => "subscribed".to_owned(),
                    Answer::Refused(code) => format!("refused with {code}"),
                    Answer::Other(what) => what,
                }
            ));
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    let listed: Vec<&str> = decisive.iter().map(|p| p.channel.as_str()).collect();
    Err(Finding::fail(
        format!(
            "of the channels {} (all of which --token may subscribe to), the restricted session subscribes to those its welcome's read patterns match, and is refused the others with forbidden: '*' matches exactly one segment, a final '**' one or more, any other segment only itself ({})",
            listed.join(", "),
            cite(&ctx)
        ),
        wrong.join("; "),
    ))
}

/// Subscribes `session` to `channel` and unsubscribes again when it was subscribed, so that
/// probes never reach the subscription limit.
async fn answer(session: &mut Session, channel: &str) -> Result<Answer, Finding> {
    let id = session.id("probe");
    let expected = format!("an answer to subscribe {id} on {channel}");
    let request = json!({ "type": "subscribe", "id": id, "channel": channel });
    match session.request(&request, REPLY_WAIT, &expected).await? {
        ServerMessage::Subscribed(_) => {
            unsubscribe(session, channel).await?;
            Ok(Answer::Subscribed)
        }
        ServerMessage::Error(e) if e.id.as_deref().map(String::as_str) == Some(id.as_str()) => {
            Ok(Answer::Refused(e.error.code))
        }
        other => Ok(Answer::Other(a(&other))),
    }
}

/// The segments probes are filled in with: the template's literal segments, which a
/// namespace is likely to declare, then `unique`, which it is not.
fn segment_pool(template: &str, unique: &str) -> Vec<String> {
    let mut pool: Vec<String> = template
        .split(':')
        .filter(|s| !s.contains("{}") && is_segment(s))
        .map(str::to_owned)
        .collect();
    pool.push(unique.to_owned());
    pool
}

/// Probe channels for every read pattern of `permissions`: each pattern filled in with each
/// segment of `pool`, and its near misses; whether the permissions grant reading each one
/// is decided by FERRY-CHANNEL-3 as the protocol core implements it.
fn probes(permissions: &[Permission], pool: &[String]) -> Vec<Probe> {
    let mut channels: Vec<String> = Vec::new();
    for permission in permissions.iter().filter(|p| p.read) {
        let pattern: Vec<&str> = permission.pattern.as_str().split(':').collect();
        for fill in pool {
            let filled = fill_in(&pattern, fill);
            channels.extend(near_misses(&pattern, &filled, fill));
            channels.push(filled.join(":"));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    channels
        .into_iter()
        .filter(|c| seen.insert(c.clone()))
        .filter_map(|channel| {
            let name = ChannelName::try_from(channel.as_str()).ok()?;
            let granted = permits(permissions, &name, Access::Read);
            Some(Probe { channel, granted })
        })
        .take(MAX_PROBES)
        .collect()
}

/// `pattern` with every `*` and a final `**` replaced by `fill`.
fn fill_in(pattern: &[&str], fill: &str) -> Vec<String> {
    pattern
        .iter()
        .map(|s| match *s {
            "*" | "**" => fill.to_owned(),
            literal => literal.to_owned(),
        })
        .collect()
}

/// Channels one step away from `filled` (`pattern` filled in with `fill`) that the pattern
/// must not match: a `*` given two segments, a final `**` given none, a literal segment
/// lengthened by one character or shortened by one, a segment more or one fewer.
fn near_misses(pattern: &[&str], filled: &[String], fill: &str) -> Vec<String> {
    let mut misses = Vec::new();
    let with = |i: usize, replacement: Option<String>| {
        let mut segments = filled.to_vec();
        match replacement {
            Some(r) => segments[i] = r,
            None => {
                segments.remove(i);
            }
        }
        segments.join(":")
    };
    for (i, segment) in pattern.iter().enumerate() {
        match *segment {
            "*" => misses.push(with(i, Some(format!("{fill}:{fill}")))),
            "**" => misses.push(with(i, None)),
            literal => {
                misses.push(with(i, Some(format!("{literal}x"))));
                if literal.len() > 1 {
                    misses.push(with(i, Some(literal[..literal.len() - 1].to_owned())));
                }
            }
        }
    }
    if pattern.last() != Some(&"**") {
        misses.push(format!("{}:{fill}", filled.join(":")));
        if filled.len() > 1 {
            misses.push(filled[..filled.len() - 1].join(":"));
        }
    }
    misses
}

/// Whether `s` is one segment of the channel grammar.
fn is_segment(s: &str) -> bool {
    ChannelName::try_from(s).is_ok() && !s.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permission(pattern: &str, read: bool) -> Permission {
        serde_json::from_value(json!({ "pattern": pattern, "read": read, "write": !read }))
            .expect("a permission")
    }

    fn read(pattern: &str) -> Permission {
        permission(pattern, true)
    }

    fn probe_set(permissions: &[Permission], pool: &[&str]) -> Vec<(String, bool)> {
        let pool: Vec<String> = pool.iter().map(|s| (*s).to_owned()).collect();
        probes(permissions, &pool)
            .into_iter()
            .map(|p| (p.channel, p.granted))
            .collect()
    }

    /// Asserts that `got` holds each of `wanted` (a channel, and whether it is granted).
    fn assert_holds(got: &[(String, bool)], wanted: &[(&str, bool)]) {
        for (channel, granted) in wanted {
            assert!(
                got.contains(&((*channel).to_owned(), *granted)),
                "{channel} granted {granted} is missing from {got:?}"
            );
        }
    }

    #[test]
    fn a_literal_and_a_star_give_matches_and_one_step_misses() {
        let got = probe_set(&[read("project:alpha:*")], &["tasks"]);
        let expected: Vec<(String, bool)> = [
            ("projectx:alpha:tasks", false),
            ("projec:alpha:tasks", false),
            ("project:alphax:tasks", false),
            ("project:alph:tasks", false),
            ("project:alpha:tasks:tasks", false),
            ("project:alpha", false),
            ("project:alpha:tasks", true),
        ]
        .iter()
        .map(|(c, g)| ((*c).to_owned(), *g))
        .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_final_double_star_is_probed_with_no_segment_and_with_one() {
        let got = probe_set(&[read("agent:**")], &["reviewer"]);
        assert_holds(
            &got,
            &[
                ("agent", false),
                ("agent:reviewer", true),
                ("agentx:reviewer", false),
            ],
        );
    }

    #[test]
    fn a_near_miss_another_pattern_grants_counts_as_granted() {
        let got = probe_set(
            &[read("project:alpha:*"), read("project:alphax:*")],
            &["tasks"],
        );
        assert_holds(
            &got,
            &[
                ("project:alphax:tasks", true),
                ("project:alph:tasks", false),
            ],
        );
    }

    #[test]
    fn write_only_patterns_give_no_probes() {
        let write = permission("project:alpha:*", false);
        assert!(probe_set(&[write], &["tasks"]).is_empty());
    }

    #[test]
    fn the_pool_holds_the_template_literals_then_the_unique_segment() {
        assert_eq!(
            segment_pool("project:{}:tasks", "c7-0"),
            vec!["project".to_owned(), "tasks".to_owned(), "c7-0".to_owned()]
        );
    }
}
