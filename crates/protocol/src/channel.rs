//! Channel patterns and the permissions built on them (FERRY-CHANNEL-1, FERRY-CHANNEL-3,
//! FERRY-SECURITY-2).
//!
//! A [`ChannelName`] is one to eight segments separated by `:`; a [`ChannelPattern`] is the
//! same with two wildcards (FERRY-CHANNEL-3):
//!
//! | pattern segment | matches |
//! | --- | --- |
//! | `*` | exactly one segment |
//! | `**`, as the last segment | one or more remaining segments |
//! | anything else | only itself |
//!
//! So `project:alpha:*` matches `project:alpha:tasks` but neither `project:alpha` nor
//! `project:alpha:tasks:archive`; `agent:**` matches `agent:reviewer` and
//! `agent:reviewer:activity` but not `agent`; `**` matches every channel. (The schema only
//! allows `**` as the last segment; a `**` anywhere else could only match a segment spelled
//! `**`, which no channel name has, so it matches nothing.)
//!
//! A [`Permission`] grants read (subscribe, replay, history) and/or write (publish) on the
//! channels its pattern matches; [`permits`] says whether any of a session's permissions
//! grants an [`Access`] (FERRY-CHANNEL-1). Server namespaces are channel patterns too
//! (FERRY-CHANNEL-5). RPC method names share the channel grammar, and a permission that
//! carries `call` lets its holder call the methods its pattern matches ([`permits_call`]).

use crate::types::{ChannelName, ChannelPattern, MethodName, Permission};

/// The right a request needs on a channel (FERRY-CHANNEL-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Subscribe to the channel, replay it, read its history.
    Read,
    /// Publish to the channel.
    Write,
}

impl ChannelPattern {
    /// Whether this pattern matches `channel` (FERRY-CHANNEL-3): `*` matches exactly one
    /// segment, a final `**` one or more remaining segments, any other segment only itself.
    pub fn matches(&self, channel: &ChannelName) -> bool {
        segments_match(self, channel)
    }

    /// Whether this pattern matches an RPC method's name, which shares the channel grammar
    /// (FERRY-RPC-1).
    pub fn matches_method(&self, method: &MethodName) -> bool {
        segments_match(self, method)
    }
}

impl Permission {
    /// Whether this permission grants `access` on `channel`: its pattern matches the channel
    /// and it carries the right (`read` or `write`).
    pub fn grants(&self, channel: &ChannelName, access: Access) -> bool {
        let right = match access {
            Access::Read => self.read,
            Access::Write => self.write,
        };
        right && self.pattern.matches(channel)
    }

    /// Whether this permission lets its holder call `method` (FERRY-RPC-1): it carries `call`
    /// and its pattern matches the method's name, which shares the channel grammar.
    pub fn grants_call(&self, method: &MethodName) -> bool {
        self.call == Some(true) && self.pattern.matches_method(method)
    }
}

/// Whether any of `permissions` lets its holder call `method` (FERRY-RPC-1, FERRY-SECURITY-2).
pub fn permits_call(permissions: &[Permission], method: &MethodName) -> bool {
    permissions
        .iter()
        .any(|permission| permission.grants_call(method))
}

/// Whether any of `permissions` grants `access` on `channel` (FERRY-CHANNEL-1). No permission
/// grants nothing.
pub fn permits(permissions: &[Permission], channel: &ChannelName, access: Access) -> bool {
    permissions
        .iter()
        .any(|permission| permission.grants(channel, access))
}

/// Matches a pattern against a channel segment by segment, in one pass over both.
fn segments_match(pattern: &str, channel: &str) -> bool {
    let mut channel = channel.split(':');
    let mut pattern = pattern.split(':').peekable();
    while let Some(segment) = pattern.next() {
        if segment == "**" && pattern.peek().is_none() {
            // One or more remaining segments.
            return channel.next().is_some();
        }
        match channel.next() {
            Some(name) if segment == "*" || segment == name => {}
            _ => return false,
        }
    }
    channel.next().is_none()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn channel(name: &str) -> ChannelName {
        name.parse().expect("a valid channel name")
    }

    fn pattern(text: &str) -> ChannelPattern {
        text.parse().expect("a valid channel pattern")
    }

    fn permission(text: &str, read: bool, write: bool) -> Permission {
        Permission {
            pattern: pattern(text),
            read,
            write,
            call: None,
        }
    }

    #[test]
    fn a_call_needs_call_on_a_pattern_that_matches_the_method() {
        let method = |name: &str| -> MethodName { name.parse().expect("a valid method name") };
        let mut tasks = permission("tasks:*", true, true);
        assert!(
            !permits_call(std::slice::from_ref(&tasks), &method("tasks:start")),
            "read and write do not grant call"
        );
        tasks.call = Some(false);
        assert!(!permits_call(
            std::slice::from_ref(&tasks),
            &method("tasks:start")
        ));
        tasks.call = Some(true);
        let granted = [tasks, permission("**", true, true)];
        assert!(permits_call(&granted, &method("tasks:start")));
        assert!(!permits_call(&granted, &method("tasks")));
        assert!(!permits_call(&granted, &method("tasks:start:now")));
        assert!(!permits_call(&granted, &method("approvals:resolve")));
        assert!(!permits_call(&[], &method("tasks:start")));
    }

    #[test]
    fn star_matches_exactly_one_segment() {
        let tasks = pattern("project:alpha:*");
        assert!(tasks.matches(&channel("project:alpha:tasks")));
        assert!(tasks.matches(&channel("project:alpha:approvals")));
        assert!(!tasks.matches(&channel("project:alpha")));
        assert!(!tasks.matches(&channel("project:alpha:tasks:archive")));
        assert!(!tasks.matches(&channel("project:beta:tasks")));
        let middle = pattern("project:*:tasks");
        assert!(middle.matches(&channel("project:beta:tasks")));
        assert!(!middle.matches(&channel("project:beta:approvals")));
        assert!(pattern("*").matches(&channel("alpha")));
        assert!(!pattern("*").matches(&channel("alpha:beta")));
    }

    #[test]
    fn final_double_star_matches_one_or_more_remaining_segments() {
        let agents = pattern("agent:**");
        assert!(agents.matches(&channel("agent:reviewer")));
        assert!(agents.matches(&channel("agent:reviewer:activity")));
        assert!(agents.matches(&channel("agent:a:b:c:d:e:f:g")));
        assert!(!agents.matches(&channel("agent")));
        assert!(!agents.matches(&channel("agents:reviewer")));
        let everything = pattern("**");
        for name in ["a", "project:alpha:tasks", "a:b:c:d:e:f:g:h"] {
            assert!(everything.matches(&channel(name)), "{name}");
        }
        let after_star = pattern("*:x:**");
        assert!(after_star.matches(&channel("a:x:y")));
        assert!(!after_star.matches(&channel("a:x")));
    }

    #[test]
    fn a_literal_segment_matches_only_itself() {
        let exact = pattern("daemon:ws-42:output");
        assert!(exact.matches(&channel("daemon:ws-42:output")));
        assert!(!exact.matches(&channel("daemon:ws-43:output")));
        assert!(!exact.matches(&channel("daemon:ws-42")));
        assert!(!exact.matches(&channel("daemon:ws-42:output:x")));
        // A prefix of a segment is not the segment.
        assert!(!pattern("daemon:ws").matches(&channel("daemon:ws-42")));
    }

    #[test]
    fn permits_needs_the_right_access_on_a_matching_pattern() {
        let permissions = [
            permission("project:alpha:*", true, true),
            permission("agent:**", true, false),
            permission("audit:*", false, true),
        ];
        let tasks = channel("project:alpha:tasks");
        assert!(permits(&permissions, &tasks, Access::Read));
        assert!(permits(&permissions, &tasks, Access::Write));
        let activity = channel("agent:reviewer:activity");
        assert!(permits(&permissions, &activity, Access::Read));
        assert!(!permits(&permissions, &activity, Access::Write));
        let audit = channel("audit:logins");
        assert!(!permits(&permissions, &audit, Access::Read));
        assert!(permits(&permissions, &audit, Access::Write));
        let other = channel("project:beta:tasks");
        assert!(!permits(&permissions, &other, Access::Read));
        assert!(!permits(&[], &tasks, Access::Read));
    }

    fn segment() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9_-]{0,5}"
    }

    /// A channel, and a pattern made from it: each segment kept or replaced by `*`, and
    /// optionally a tail of one or more segments replaced by a final `**`.
    fn channel_and_pattern() -> impl Strategy<Value = (Vec<String>, Vec<bool>, Option<usize>)> {
        proptest::collection::vec(segment(), 1..=8).prop_flat_map(|segments| {
            let len = segments.len();
            (
                Just(segments),
                proptest::collection::vec(any::<bool>(), len),
                proptest::option::of(0..len),
            )
        })
    }

    fn build_pattern(segments: &[String], starred: &[bool], tail: Option<usize>) -> String {
        let kept = tail.unwrap_or(segments.len());
        let mut parts: Vec<&str> = segments[..kept]
            .iter()
            .zip(starred)
            .map(|(segment, &star)| if star { "*" } else { segment.as_str() })
            .collect();
        if tail.is_some() {
            parts.push("**");
        }
        parts.join(":")
    }

    /// The pattern as a regular expression, written independently of `segments_match`.
    fn oracle(pattern: &str) -> regex::Regex {
        let segments: Vec<&str> = pattern.split(':').collect();
        let mut parts = Vec::new();
        for (index, segment) in segments.iter().enumerate() {
            parts.push(match *segment {
                "**" if index + 1 == segments.len() => "[^:]+(:[^:]+)*".to_owned(),
                "*" => "[^:]+".to_owned(),
                literal => regex::escape(literal),
            });
        }
        regex::Regex::new(&format!("^{}$", parts.join(":"))).expect("a valid regex")
    }

    proptest! {
        #[test]
        fn a_pattern_made_from_a_channel_by_wildcards_matches_it(
            (segments, starred, tail) in channel_and_pattern(),
        ) {
            let name = channel(&segments.join(":"));
            let text = build_pattern(&segments, &starred, tail);
            prop_assert!(pattern(&text).matches(&name), "{} should match {}", text, *name);
        }

        #[test]
        fn changing_a_literal_segment_of_the_channel_breaks_the_match(
            (segments, starred, tail) in channel_and_pattern(),
            pick in any::<prop::sample::Index>(),
            replacement in segment(),
        ) {
            let text = build_pattern(&segments, &starred, tail);
            let kept = tail.unwrap_or(segments.len());
            let literals: Vec<usize> = (0..kept).filter(|&index| !starred[index]).collect();
            // A pattern of wildcards only has no literal to change: nothing to check.
            if literals.is_empty() {
                return Ok(());
            }
            let index = literals[pick.index(literals.len())];
            let mut changed = segments.clone();
            // A replacement equal to the original is made different by one character.
            changed[index] = if replacement == segments[index] { format!("{replacement}x") } else { replacement };
            let name = channel(&changed.join(":"));
            prop_assert!(!pattern(&text).matches(&name), "{} should not match {}", text, *name);
        }

        #[test]
        fn matching_agrees_with_a_regular_expression(
            pattern_segments in proptest::collection::vec(
                prop_oneof![Just("a"), Just("b"), Just("*")], 1..=5),
            double_star in any::<bool>(),
            channel_segments in proptest::collection::vec(
                prop_oneof![Just("a"), Just("b")], 1..=7),
        ) {
            let mut parts = pattern_segments;
            if double_star {
                parts.push("**");
            }
            let text = parts.join(":");
            let name = channel(&channel_segments.join(":"));
            prop_assert_eq!(
                pattern(&text).matches(&name),
                oracle(&text).is_match(&name),
                "{} against {}", text, *name
            );
        }
    }
}
