//! Structural comparison of two versions of a schema: every difference in what they accept, as
//! an [`Effect`] under a compatibility rule.
//!
//! Definitions are resolved through `$ref`; a definition reached under the same name on both
//! sides is compared once per direction, at its own location, however many messages use it.
//! Tagged unions are compared variant by variant, matched by their `type` tag.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::rules::{Effect, Judgement, rule};
use super::{Direction, Found, Location};
use crate::lint::nullable_inner;
use crate::set::{SchemaSet, ref_name, type_tag};

/// Compares the schemas reachable from message roots of two schema sets.
pub(super) struct Comparer<'a> {
    old: &'a SchemaSet,
    new: &'a SchemaSet,
    visited: BTreeSet<(String, String, Direction)>,
    /// What was found, in discovery order.
    pub(super) found: Vec<Found>,
}

impl<'a> Comparer<'a> {
    pub(super) fn new(old: &'a SchemaSet, new: &'a SchemaSet) -> Self {
        Self {
            old,
            new,
            visited: BTreeSet::new(),
            found: Vec::new(),
        }
    }

    /// Compares the definitions `old_def` and `new_def`, read in `direction`.
    pub(super) fn definition(&mut self, old_def: &str, new_def: &str, direction: Direction) {
        if !self
            .visited
            .insert((old_def.to_owned(), new_def.to_owned(), direction))
        {
            return;
        }
        let (Some(old), Some(new)) = (self.old.def(old_def), self.new.def(new_def)) else {
            return;
        };
        let at = Location::def(new_def);
        self.schema(old, new, &at, direction);
    }

    fn push(
        &mut self,
        id: &'static str,
        effect: Effect,
        at: &Location,
        dir: Direction,
        detail: String,
    ) {
        self.found.push(Found {
            rule: id,
            effect: Some(effect),
            direction: dir,
            at: at.clone(),
            detail,
        });
    }

    fn schema_rule(&mut self, id: &'static str, at: &Location, dir: Direction, detail: String) {
        let Judgement::Schema(effect) = rule(id).judgement else {
            unreachable!("{id} is judged by its schema effect");
        };
        self.push(id, effect, at, dir, detail);
    }

    fn schema(&mut self, old: &Value, new: &Value, at: &Location, dir: Direction) {
        // Both sides name definitions: same name, compare it once at its own place; another
        // name, compare the two structurally here.
        let (old_ref, new_ref) = (ref_of(old), ref_of(new));
        if let (Some(o), Some(n)) = (old_ref, new_ref) {
            if o == n {
                self.definition(o, n, dir);
                return;
            }
            if !self.visited.insert((o.to_owned(), n.to_owned(), dir)) {
                return;
            }
        }
        let old = self.resolve(old, true);
        let new = self.resolve(new, false);

        let (old_inner, old_null) = split_nullable(old);
        let (new_inner, new_null) = split_nullable(new);
        if old_null || new_null {
            if !old_null {
                self.schema_rule("became-nullable", at, dir, "now accepts null".into());
            } else if !new_null {
                self.schema_rule(
                    "became-non-nullable",
                    at,
                    dir,
                    "no longer accepts null".into(),
                );
            }
            self.schema(old_inner, new_inner, at, dir);
            return;
        }

        if let (Some(old_union), Some(new_union)) =
            (self.tagged(old, true), self.tagged(new, false))
        {
            self.union(&old_union, &new_union, at, dir);
            return;
        }

        if !self.types(old, new, at, dir) {
            return;
        }
        self.constants(old, new, at, dir);
        self.bounds(old, new, at, dir);
        if old.get("properties").is_some() || new.get("properties").is_some() {
            self.object(old, new, at, dir);
        }
        if let (Some(o), Some(n)) = (old.get("items"), new.get("items")) {
            self.schema(o, n, &at.item(), dir);
        }
    }

    fn resolve<'v>(&self, schema: &'v Value, old: bool) -> &'v Value
    where
        'a: 'v,
    {
        let set = if old { self.old } else { self.new };
        let mut schema = schema;
        for _ in 0..16 {
            match ref_of(schema).and_then(|name| set.def(name)) {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    /// The variants of a `oneOf` whose arms are all tagged messages: (tag, definition).
    fn tagged(&self, schema: &Value, old: bool) -> Option<Vec<(String, String)>> {
        let set = if old { self.old } else { self.new };
        schema
            .get("oneOf")?
            .as_array()?
            .iter()
            .map(|arm| {
                let def = ref_of(arm)?;
                let tag = type_tag(set.def(def)?)?;
                Some((tag.to_owned(), def.to_owned()))
            })
            .collect()
    }

    fn union(
        &mut self,
        old: &[(String, String)],
        new: &[(String, String)],
        at: &Location,
        dir: Direction,
    ) {
        for (tag, def) in new {
            if !old.iter().any(|(t, _)| t == tag) {
                self.schema_rule(
                    "variant-added",
                    &Location::def(def),
                    dir,
                    format!("new message type \"{tag}\" ({def})"),
                );
            }
        }
        for (tag, def) in old {
            match new.iter().find(|(t, _)| t == tag) {
                None => self.schema_rule(
                    "variant-removed",
                    at,
                    dir,
                    format!("message type \"{tag}\" ({def}) removed"),
                ),
                Some((_, new_def)) => self.definition(def, new_def, dir),
            }
        }
    }

    /// Compares `type`; returns false when the types are unrelated (nothing below compares).
    fn types(&mut self, old: &Value, new: &Value, at: &Location, dir: Direction) -> bool {
        let (o, n) = (type_set(old), type_set(new));
        match (&o, &n) {
            (None, None) => true,
            (Some(o), Some(n)) if o == n => true,
            (None, Some(n)) => {
                self.schema_rule("type-narrowed", at, dir, format!("any type -> {}", join(n)));
                true
            }
            (Some(o), None) => {
                self.schema_rule("type-widened", at, dir, format!("{} -> any type", join(o)));
                true
            }
            (Some(o), Some(n)) => {
                let detail = format!("{} -> {}", join(o), join(n));
                if covers(n, o) {
                    self.schema_rule("type-widened", at, dir, detail);
                    true
                } else if covers(o, n) {
                    self.schema_rule("type-narrowed", at, dir, detail);
                    true
                } else {
                    self.schema_rule("type-changed", at, dir, detail);
                    false
                }
            }
        }
    }

    fn constants(&mut self, old: &Value, new: &Value, at: &Location, dir: Direction) {
        match (old.get("const"), new.get("const")) {
            (Some(o), Some(n)) if o != n => {
                self.schema_rule("const-changed", at, dir, format!("const {o} -> {n}"))
            }
            (None, Some(n)) => {
                self.schema_rule("bound-tightened", at, dir, format!("const {n} added"))
            }
            (Some(o), None) => {
                self.schema_rule("bound-relaxed", at, dir, format!("const {o} removed"))
            }
            _ => {}
        }
        match (
            old.get("enum").and_then(Value::as_array),
            new.get("enum").and_then(Value::as_array),
        ) {
            (Some(o), Some(n)) => {
                for value in n.iter().filter(|v| !o.contains(v)) {
                    self.schema_rule(
                        "enum-value-added",
                        at,
                        dir,
                        format!("enum value {value} added"),
                    );
                }
                for value in o.iter().filter(|v| !n.contains(v)) {
                    self.schema_rule(
                        "enum-value-removed",
                        at,
                        dir,
                        format!("enum value {value} removed"),
                    );
                }
            }
            (None, Some(_)) => self.schema_rule("bound-tightened", at, dir, "enum added".into()),
            (Some(_), None) => self.schema_rule("bound-relaxed", at, dir, "enum removed".into()),
            (None, None) => {}
        }
        match (old.get("pattern"), new.get("pattern")) {
            (Some(o), Some(n)) if o != n => {
                self.schema_rule("pattern-changed", at, dir, format!("pattern {o} -> {n}"))
            }
            (None, Some(n)) => {
                self.schema_rule("bound-tightened", at, dir, format!("pattern {n} added"))
            }
            (Some(o), None) => {
                self.schema_rule("bound-relaxed", at, dir, format!("pattern {o} removed"))
            }
            _ => {}
        }
    }

    fn bounds(&mut self, old: &Value, new: &Value, at: &Location, dir: Direction) {
        const LOWER: &[&str] = &["minimum", "minLength", "minItems"];
        const UPPER: &[&str] = &["maximum", "maxLength", "maxItems"];
        for key in LOWER.iter().chain(UPPER) {
            let lower = LOWER.contains(key);
            let (o, n) = (
                old.get(*key).and_then(Value::as_f64),
                new.get(*key).and_then(Value::as_f64),
            );
            let tightened = match (o, n) {
                (Some(o), Some(n)) if o == n => continue,
                (Some(o), Some(n)) => (n > o) == lower,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (None, None) => continue,
            };
            let show = |v: Option<f64>| v.map_or("none".to_owned(), |v| v.to_string());
            let detail = format!("{key} {} -> {}", show(o), show(n));
            let id = if tightened {
                "bound-tightened"
            } else {
                "bound-relaxed"
            };
            self.schema_rule(id, at, dir, detail);
        }
    }

    fn object(&mut self, old: &Value, new: &Value, at: &Location, dir: Direction) {
        let empty = Map::new();
        let old_props = old
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let new_props = new
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let required = |s: &Value| -> BTreeSet<String> {
            s.get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        };
        let (old_req, new_req) = (required(old), required(new));
        let closed = |s: &Value| s.get("additionalProperties") == Some(&Value::Bool(false));
        let (old_closed, new_closed) = (closed(old), closed(new));
        if !old_closed && new_closed {
            self.schema_rule(
                "object-closed",
                at,
                dir,
                "additionalProperties: false added".into(),
            );
        } else if old_closed && !new_closed {
            self.schema_rule(
                "object-opened",
                at,
                dir,
                "unknown members now accepted".into(),
            );
        }
        let by_closedness = |id: &'static str, closed: bool| -> Effect {
            match rule(id).judgement {
                Judgement::Closedness(when_closed, when_open) => {
                    if closed {
                        when_closed
                    } else {
                        when_open
                    }
                }
                _ => unreachable!("{id} is judged by closedness"),
            }
        };
        for (name, new_schema) in new_props {
            let member = at.member(name);
            match old_props.get(name) {
                None => {
                    let id = if new_req.contains(name) {
                        "member-added-required"
                    } else {
                        "member-added-optional"
                    };
                    let effect = by_closedness(id, old_closed);
                    self.push(id, effect, &member, dir, format!("member {name} added"));
                }
                Some(old_schema) => {
                    match (old_req.contains(name), new_req.contains(name)) {
                        (false, true) => self.schema_rule(
                            "member-became-required",
                            &member,
                            dir,
                            format!("{name} is now required"),
                        ),
                        (true, false) => self.schema_rule(
                            "member-became-optional",
                            &member,
                            dir,
                            format!("{name} is now optional"),
                        ),
                        _ => {}
                    }
                    self.schema(old_schema, new_schema, &member, dir);
                }
            }
        }
        for name in old_props.keys().filter(|n| !new_props.contains_key(*n)) {
            let id = if old_req.contains(name) {
                "member-removed-required"
            } else {
                "member-removed-optional"
            };
            let effect = by_closedness(id, new_closed);
            self.push(
                id,
                effect,
                &at.member(name),
                dir,
                format!("member {name} removed"),
            );
        }
    }
}

fn ref_of(schema: &Value) -> Option<&str> {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(ref_name)
}

fn split_nullable(schema: &Value) -> (&Value, bool) {
    match nullable_inner(schema) {
        Some(inner)
            if schema
                .get("anyOf")
                .and_then(Value::as_array)
                .is_some_and(|a| a.len() == 2) =>
        {
            (inner, true)
        }
        _ => (schema, false),
    }
}

fn type_set(schema: &Value) -> Option<BTreeSet<String>> {
    match schema.get("type")? {
        Value::String(t) => Some(BTreeSet::from([t.clone()])),
        Value::Array(ts) => Some(
            ts.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

/// Whether every value of the types `inner` is a value of the types `outer` (an integer is a
/// number).
fn covers(outer: &BTreeSet<String>, inner: &BTreeSet<String>) -> bool {
    inner
        .iter()
        .all(|t| outer.contains(t) || (t == "integer" && outer.contains("number")))
}

fn join(types: &BTreeSet<String>) -> String {
    types.iter().cloned().collect::<Vec<_>>().join("|")
}
