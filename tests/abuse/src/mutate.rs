//! Seeded mutations of bytes and of JSON values, so that a run is repeated exactly by its seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// A random source for `seed`.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Tokens that parsers disagree on or that break a schema's types.
const TOKENS: [&str; 14] = [
    "null",
    "true",
    "-0",
    "1e400",
    "-1e400",
    "18446744073709551616",
    "9007199254740993",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "[]",
    "{}",
    "\"\"",
    "0.0000000000000000000000001",
    "\"\u{10ffff}\"",
];

/// One to four byte-level mutations of `bytes`: bit flips, insertions, deletions, truncation,
/// a duplicated run, a JSON token spliced in.
pub fn bytes(rng: &mut StdRng, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if out.is_empty() {
            out.push(b'{');
        }
        let at = rng.random_range(0..out.len());
        match rng.random_range(0..7) {
            0 => out[at] ^= 1 << rng.random_range(0..8),
            1 => out.insert(at, rng.random()),
            2 => {
                out.remove(at);
            }
            3 => out.truncate(at),
            4 => {
                let end = (at + rng.random_range(1..16)).min(out.len());
                let run = out[at..end].to_vec();
                out.splice(at..at, run);
            }
            5 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                out.splice(at..at, token.bytes());
            }
            _ => out[at] = b"{}[]\":,\\"[rng.random_range(0..8)],
        }
    }
    out
}

/// One structural mutation of a JSON value: a field removed, added, retyped or replaced by a
/// hostile token, a string grown long, a number pushed to an edge.
pub fn value(rng: &mut StdRng, value: &Value) -> Value {
    let mut out = value.clone();
    mutate_in(rng, &mut out, 0);
    out
}

fn hostile(rng: &mut StdRng) -> Value {
    match rng.random_range(0..10) {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(1e308),
        3 => json!(u64::MAX),
        4 => json!("x".repeat(rng.random_range(1..70_000))),
        5 => json!([]),
        6 => json!({}),
        7 => json!(true),
        8 => json!("\u{0}\u{7f}\u{fffd}"),
        _ => json!(0.5),
    }
}

fn mutate_in(rng: &mut StdRng, value: &mut Value, depth: u32) {
    match value {
        Value::Object(map) if !map.is_empty() && depth < 4 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[rng.random_range(0..keys.len())];
            match rng.random_range(0..4) {
                0 => {
                    map.remove(key);
                }
                1 => {
                    map.insert(format!("extra_{}", rng.random::<u16>()), hostile(rng));
                }
                2 => {
                    map.insert(key.clone(), hostile(rng));
                }
                _ => {
                    if let Some(inner) = map.get_mut(key) {
                        mutate_in(rng, inner, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() && depth < 4 => {
            let at = rng.random_range(0..items.len());
            mutate_in(rng, &mut items[at], depth + 1);
        }
        _ => *value = hostile(rng),
    }
}

/// Text that is not valid UTF-8: a JSON frame with one of the classic bad sequences (a lone
/// continuation byte, an overlong encoding, a surrogate, a code point past U+10FFFF, a
/// truncated sequence, a byte that never appears) at a random place.
pub fn invalid_utf8(rng: &mut StdRng) -> Vec<u8> {
    const BAD: [&[u8]; 8] = [
        &[0x80],
        &[0xc0, 0xaf],
        &[0xe0, 0x80, 0xaf],
        &[0xed, 0xa0, 0x80],
        &[0xf4, 0x90, 0x80, 0x80],
        &[0xe2, 0x82],
        &[0xff],
        &[0xfe, 0xfe],
    ];
    let mut text = br#"{"type":"subscribe","id":"u","channel":"project:alpha:tasks"}"#.to_vec();
    let bad = BAD[rng.random_range(0..BAD.len())];
    let at = rng.random_range(0..=text.len());
    text.splice(at..at, bad.iter().copied());
    if rng.random_bool(0.5) {
        text.extend_from_slice(bad);
    }
    debug_assert!(std::str::from_utf8(&text).is_err());
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_never_valid_and_the_same_seed_gives_the_same_bytes() {
        for seed in 0..2000 {
            let text = invalid_utf8(&mut rng(seed));
            assert!(std::str::from_utf8(&text).is_err(), "seed {seed}: {text:?}");
            assert_eq!(text, invalid_utf8(&mut rng(seed)));
        }
        let base = br#"{"type":"pong","nonce":"n"}"#;
        assert_eq!(bytes(&mut rng(7), base), bytes(&mut rng(7), base));
    }
}
