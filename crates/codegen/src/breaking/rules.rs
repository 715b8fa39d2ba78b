//! The compatibility rules: every kind of change the breaking-change check recognises, each
//! with a stable id and how it is judged.
//!
//! A schema change is judged by its effect on the set of values a schema accepts
//! ([`Effect`]), and the effect is judged by who reads the message ([`Reader`]):
//!
//! - a message read by the **new** side (client-to-server frames, HTTP request bodies and
//!   queries: servers are deployed first) must still accept every value the old schema
//!   accepted, so a change that narrows the schema breaks;
//! - a message read by the **old** side (server-to-client frames, HTTP response bodies: clients
//!   already deployed keep running) must only produce values the old schema accepted, so a
//!   change that widens the schema breaks;
//! - a channel payload is written by publishers and read by subscribers of either version, so
//!   any change of what it accepts breaks.
//!
//! Table, endpoint and channel changes have a fixed verdict. The table here is the one place
//! these judgements are written; `schema/README.md` and `PROTOCOL.md` show it as
//! [`markdown_table`] renders it.

use serde::Serialize;

/// How a schema change moves the set of values the schema accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The new schema accepts everything the old one did, and more.
    Widens,
    /// The new schema accepts a subset of what the old one did.
    Narrows,
    /// Each schema accepts values the other refuses.
    Incompatible,
}

/// Which version of a message's schema its reader was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reader {
    /// The reader is upgraded first (a server reading client frames or HTTP requests).
    New,
    /// The reader may still be the old one (a deployed client reading server frames or HTTP
    /// responses).
    Old,
    /// Readers and writers of both versions meet (channel payloads).
    Both,
}

impl Effect {
    /// Whether a change with this effect breaks a reader of the given kind.
    pub fn breaks(self, reader: Reader) -> bool {
        match (self, reader) {
            (Self::Incompatible, _) | (_, Reader::Both) => true,
            (Self::Narrows, Reader::New) | (Self::Widens, Reader::Old) => true,
            (Self::Narrows, Reader::Old) | (Self::Widens, Reader::New) => false,
        }
    }
}

/// How a rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// A schema change with this effect, judged by the reader of the message.
    Schema(Effect),
    /// A schema change whose effect depends on whether the object is closed
    /// (`additionalProperties: false`): the first effect when it is, the second when it is not.
    Closedness(Effect, Effect),
    /// Always breaking.
    Breaking,
    /// Never breaking; reported so that a reviewer sees it.
    Reported,
}

/// One compatibility rule.
#[derive(Debug, Clone, Copy)]
pub struct CompatRule {
    /// The stable id, cited by the check's output and by an allow-list entry.
    pub id: &'static str,
    /// What changed (old to new).
    pub change: &'static str,
    /// How the rule decides.
    pub judgement: Judgement,
    /// Why, in one sentence.
    pub why: &'static str,
}

use Effect::{Incompatible, Narrows, Widens};
use Judgement::{Breaking, Closedness, Reported, Schema};

/// Every rule, in the order the reference lists them.
pub const RULES: &[CompatRule] = &[
    CompatRule {
        id: "member-added-required",
        change: "a required member is added to an object",
        judgement: Closedness(Incompatible, Narrows),
        why: "old writers do not send it, and an old closed reader refuses it",
    },
    CompatRule {
        id: "member-added-optional",
        change: "an optional member is added to an object",
        judgement: Closedness(Widens, Narrows),
        why: "an old closed reader refuses the unknown member; in an open object an old writer may already send that name with another type",
    },
    CompatRule {
        id: "member-removed-required",
        change: "a required member is removed",
        judgement: Closedness(Incompatible, Widens),
        why: "old readers still require it, and a new closed reader refuses it from old writers",
    },
    CompatRule {
        id: "member-removed-optional",
        change: "an optional member is removed",
        judgement: Closedness(Narrows, Widens),
        why: "a new closed reader refuses it from old writers",
    },
    CompatRule {
        id: "member-became-required",
        change: "an optional member becomes required",
        judgement: Schema(Narrows),
        why: "old writers may leave it out",
    },
    CompatRule {
        id: "member-became-optional",
        change: "a required member becomes optional",
        judgement: Schema(Widens),
        why: "old readers still require it",
    },
    CompatRule {
        id: "enum-value-added",
        change: "a value is added to an enum",
        judgement: Schema(Widens),
        why: "old readers refuse the new value; the spec defines no fallback for unknown values",
    },
    CompatRule {
        id: "enum-value-removed",
        change: "a value is removed from an enum",
        judgement: Schema(Narrows),
        why: "old writers still send it",
    },
    CompatRule {
        id: "type-widened",
        change: "a type is added to a member's types, or integer becomes number",
        judgement: Schema(Widens),
        why: "old readers refuse values of the new type",
    },
    CompatRule {
        id: "type-narrowed",
        change: "a type is removed from a member's types, or number becomes integer",
        judgement: Schema(Narrows),
        why: "old writers still send values of the removed type",
    },
    CompatRule {
        id: "type-changed",
        change: "a member's type is replaced by an unrelated one",
        judgement: Schema(Incompatible),
        why: "neither side reads the other's values",
    },
    CompatRule {
        id: "became-nullable",
        change: "a member becomes nullable (`anyOf [T, null]`)",
        judgement: Schema(Widens),
        why: "old readers refuse null",
    },
    CompatRule {
        id: "became-non-nullable",
        change: "a nullable member loses its null",
        judgement: Schema(Narrows),
        why: "old writers still send null",
    },
    CompatRule {
        id: "bound-tightened",
        change: "`minimum`, `minLength`, `minItems` raised, `maximum`, `maxLength`, `maxItems` lowered, or a bound, `pattern`, `enum` or `const` added",
        judgement: Schema(Narrows),
        why: "old writers may send values outside the new bound",
    },
    CompatRule {
        id: "bound-relaxed",
        change: "the inverse: a bound loosened or removed",
        judgement: Schema(Widens),
        why: "old readers refuse values outside the old bound",
    },
    CompatRule {
        id: "pattern-changed",
        change: "a `pattern` is replaced by another",
        judgement: Schema(Incompatible),
        why: "whether one regular expression accepts a subset of the other is not computed, so the change is judged both ways",
    },
    CompatRule {
        id: "const-changed",
        change: "a `const` takes another value",
        judgement: Schema(Incompatible),
        why: "each side refuses the other's value",
    },
    CompatRule {
        id: "object-closed",
        change: "an object becomes closed (`additionalProperties: false`)",
        judgement: Schema(Narrows),
        why: "old writers may send members it now refuses",
    },
    CompatRule {
        id: "object-opened",
        change: "a closed object accepts unknown members",
        judgement: Schema(Widens),
        why: "old closed readers refuse the members new writers may add",
    },
    CompatRule {
        id: "variant-added",
        change: "a message type (a tag of a `oneOf` union) is added",
        judgement: Schema(Widens),
        why: "an old reader answers an unknown type as a malformed frame (FERRY-TRANSPORT-5) and does not skip it",
    },
    CompatRule {
        id: "variant-removed",
        change: "a message type is removed from a union",
        judgement: Schema(Narrows),
        why: "old writers still send it",
    },
    CompatRule {
        id: "close-code-added",
        change: "a close code is added",
        judgement: Reported,
        why: "the close-code table defines it: a client treats a code missing from its table as backoff",
    },
    CompatRule {
        id: "close-code-removed",
        change: "a close code is removed",
        judgement: Breaking,
        why: "implementations built on the old table still send or expect it",
    },
    CompatRule {
        id: "close-code-renumbered",
        change: "a close code keeps its name under another number",
        judgement: Breaking,
        why: "old clients apply the old number's action",
    },
    CompatRule {
        id: "close-code-action-changed",
        change: "a close code's client action changes",
        judgement: Breaking,
        why: "old clients keep the old action, so clients of two versions react differently",
    },
    CompatRule {
        id: "error-code-added",
        change: "an error code is added",
        judgement: Reported,
        why: "the wire effect is judged on the `ErrorCode` enum (enum-value-added)",
    },
    CompatRule {
        id: "error-code-removed",
        change: "an error code is removed",
        judgement: Breaking,
        why: "implementations built on the old table still send or expect it",
    },
    CompatRule {
        id: "error-code-changed",
        change: "an error code's HTTP status or retryable flag changes",
        judgement: Breaking,
        why: "old clients branch on the old status and retry decision",
    },
    CompatRule {
        id: "default-changed",
        change: "a default or limit is added, removed, changes value or stops or starts being advertised",
        judgement: Reported,
        why: "advertised values reach clients in the welcome, so clients obey the server's; a reviewer should still see it",
    },
    CompatRule {
        id: "rule-changed",
        change: "a protocol rule is added, removed, or changes level",
        judgement: Reported,
        why: "rules bind behaviour, not the wire; a reviewer should see it",
    },
    CompatRule {
        id: "endpoint-added",
        change: "an endpoint is added",
        judgement: Reported,
        why: "no old caller uses it",
    },
    CompatRule {
        id: "endpoint-removed",
        change: "an endpoint is removed",
        judgement: Breaking,
        why: "old callers still call it",
    },
    CompatRule {
        id: "endpoint-moved",
        change: "an endpoint's method or path changes",
        judgement: Breaking,
        why: "old callers still call the old method and path",
    },
    CompatRule {
        id: "endpoint-auth-changed",
        change: "an endpoint's authentication changes (to anything but none)",
        judgement: Breaking,
        why: "old callers do not present the new credential",
    },
    CompatRule {
        id: "endpoint-auth-removed",
        change: "an endpoint stops requiring authentication",
        judgement: Reported,
        why: "old callers' credentials are ignored",
    },
    CompatRule {
        id: "endpoint-success-status-changed",
        change: "an endpoint's success status or content type changes",
        judgement: Breaking,
        why: "old callers check for the old status and content type",
    },
    CompatRule {
        id: "endpoint-error-status-changed",
        change: "an error status is added to or removed from an endpoint",
        judgement: Reported,
        why: "every error status answers with the shared ErrorBody, which old callers read",
    },
    CompatRule {
        id: "endpoint-body-added",
        change: "an endpoint gains a request body, query or response body",
        judgement: Schema(Narrows),
        why: "old callers send no request body; old callers ignore a new response body",
    },
    CompatRule {
        id: "endpoint-body-removed",
        change: "an endpoint loses a request body, query or response body",
        judgement: Schema(Widens),
        why: "old callers still read the response body; the server ignores a request body it no longer needs",
    },
    CompatRule {
        id: "namespace-added",
        change: "a channel namespace is added",
        judgement: Reported,
        why: "no old publisher or subscriber uses it",
    },
    CompatRule {
        id: "namespace-removed",
        change: "a channel namespace is removed",
        judgement: Breaking,
        why: "old publishers and subscribers get unknown_channel",
    },
];

/// The rule with the given id.
///
/// # Panics
///
/// When no rule has that id: ids are written in this crate, so that is a bug here.
pub fn rule(id: &str) -> &'static CompatRule {
    RULES
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no compatibility rule {id}"))
}

impl CompatRule {
    /// The verdict for a message read by `reader`, in words, for the rule table.
    fn verdict_text(&self, reader: Reader) -> &'static str {
        let word = |effect: Effect| {
            if effect.breaks(reader) {
                "breaking"
            } else {
                "compatible"
            }
        };
        match self.judgement {
            Schema(effect) => word(effect),
            Closedness(closed, open) => match (word(closed), word(open)) {
                ("breaking", "breaking") => "breaking",
                ("compatible", "compatible") => "compatible",
                ("breaking", _) => "breaking if closed, else compatible",
                _ => "compatible if closed, else breaking",
            },
            Breaking => "breaking",
            Reported => "compatible (reported)",
        }
    }
}

/// The rule table in Markdown: id, change, the verdict for each kind of reader, and why.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| rule | change (old to new) | client to server, HTTP request | server to client, HTTP response | channel payload | why |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for rule in RULES {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            rule.id,
            rule.change,
            rule.verdict_text(Reader::New),
            rule.verdict_text(Reader::Old),
            rule.verdict_text(Reader::Both),
            rule.why
        ));
    }
    out.push_str(
        "\n\"Closed\" means `additionalProperties: false`: on the old object when a member is added, on the new object when one is removed.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique() {
        for (i, rule) in RULES.iter().enumerate() {
            assert!(
                RULES[i + 1..].iter().all(|r| r.id != rule.id),
                "{} twice",
                rule.id
            );
        }
    }

    #[test]
    fn narrowing_breaks_new_readers_and_widening_breaks_old_readers() {
        assert!(Narrows.breaks(Reader::New));
        assert!(!Narrows.breaks(Reader::Old));
        assert!(Widens.breaks(Reader::Old));
        assert!(!Widens.breaks(Reader::New));
        assert!(Incompatible.breaks(Reader::New) && Incompatible.breaks(Reader::Old));
        assert!(Widens.breaks(Reader::Both) && Narrows.breaks(Reader::Both));
    }
}
