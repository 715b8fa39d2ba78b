//! Every fuzz target over its seed corpus, on stable Rust, with no panic, and over
//! [`MUTANTS`] seeded mutations of each seed (byte flips, cuts, splices and inserted bytes that
//! JSON and UTF-8 care about): a few thousand inputs per target, the same on every run. The
//! corpus must not be empty, so the run checks something. Longer runs are libFuzzer's
//! (`cargo fuzz run NAME`, see the README).

use std::path::Path;

/// Mutations run per seed.
const MUTANTS: usize = 40;

/// Bytes worth inserting: JSON structure, quotes and escapes, digits, a NUL, bytes that are
/// never UTF-8, the start of a multi-byte sequence and the frame separator of the session
/// targets.
const INTERESTING: &[u8] = b"{}[]\":,\\0-9eE+.\0\n#\xff\xc3\xe2";

/// A small deterministic generator (xorshift64*), so every run mutates the same way.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(seed: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.truncate(at),
            2 => data.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            3 => {
                let from = rng.below(other.len() + 1);
                let piece = &other[from..(from + rng.below(64)).min(other.len())];
                data.splice(at..at, piece.iter().copied());
            }
            _ => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
        }
    }
    data
}

fn corpus(name: &str, target: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let count = ferry_fuzz::replay(&dir, target);
    assert!(
        count >= 10,
        "{name}: only {count} seeds in {}",
        dir.display()
    );
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("the corpus folder")
        .map(|entry| std::fs::read(entry.expect("an entry").path()).expect("a seed"))
        .collect();
    seeds.sort();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (i, seed) in seeds.iter().enumerate() {
        let other = &seeds[(i + 1) % seeds.len()];
        for _ in 0..MUTANTS {
            let input = mutate(seed, other, &mut rng);
            let outcome = std::panic::catch_unwind(|| target(&input));
            assert!(
                outcome.is_ok(),
                "{name} panicked on {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

#[test]
fn codec_decode_over_its_corpus() {
    corpus("codec_decode", ferry_fuzz::codec_decode);
}

#[test]
fn server_session_over_its_corpus() {
    corpus("server_session", ferry_fuzz::server_session);
}

#[test]
fn client_session_over_its_corpus() {
    corpus("client_session", ferry_fuzz::client_session);
}

#[test]
fn http_bodies_over_its_corpus() {
    corpus("http_bodies", ferry_fuzz::http_bodies);
}
