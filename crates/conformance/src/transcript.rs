//! What one case saw and did, in order, for the report of a failure.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

/// The longest text an entry keeps; longer frames are cut and their size noted.
const MAX_ENTRY_CHARS: usize = 400;

/// Which way an entry went, from the runner's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The runner sent it to the implementation under test.
    Sent,
    /// The runner received it from the implementation under test.
    Received,
    /// Something the runner did or noticed (a connection opened, a timer started).
    Note,
}

/// One line of a transcript.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Milliseconds since the case started.
    pub at_ms: u64,
    /// Which way it went.
    pub direction: Direction,
    /// Where: `ws#2`, `http`, `adapter`, ...
    pub link: String,
    /// The frame, request or note, cut to a readable length.
    pub text: String,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arrow = match self.direction {
            Direction::Sent => "->",
            Direction::Received => "<-",
            Direction::Note => "..",
        };
        write!(
            f,
            "{:>6} ms {arrow} {:<9} {}",
            self.at_ms, self.link, self.text
        )
    }
}

/// A case's transcript: cheap to clone, shared by every part of the case.
#[derive(Debug, Clone)]
pub struct Transcript {
    start: Instant,
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Default for Transcript {
    fn default() -> Self {
        Self::new()
    }
}

impl Transcript {
    /// An empty transcript whose clock starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            entries: Arc::default(),
        }
    }

    /// Records something the runner sent on `link`.
    pub fn sent(&self, link: impl Into<String>, text: impl AsRef<str>) {
        self.push(Direction::Sent, link.into(), text.as_ref());
    }

    /// Records something the runner received on `link`.
    pub fn received(&self, link: impl Into<String>, text: impl AsRef<str>) {
        self.push(Direction::Received, link.into(), text.as_ref());
    }

    /// Records something the runner did or noticed.
    pub fn note(&self, link: impl Into<String>, text: impl AsRef<str>) {
        self.push(Direction::Note, link.into(), text.as_ref());
    }

    /// Milliseconds since the case started.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Every entry so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn push(&self, direction: Direction, link: String, text: &str) {
        let entry = Entry {
            at_ms: self.elapsed_ms(),
            direction,
            link,
            text: shorten(text),
        };
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(entry);
    }
}

/// Cuts `text` to [`MAX_ENTRY_CHARS`] characters, noting how long it was.
fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_ENTRY_CHARS {
        return text.to_owned();
    }
    let head: String = text.chars().take(MAX_ENTRY_CHARS).collect();
    format!("{head}... ({} bytes in all)", text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_frames_are_cut_and_their_size_noted() {
        let transcript = Transcript::new();
        transcript.sent("ws#1", "x".repeat(10_000));
        transcript.note("runner", "short");
        let entries = transcript.entries();
        assert_eq!(entries.len(), 2);
        assert!(entries[0].text.ends_with("... (10000 bytes in all)"));
        assert!(entries[0].text.len() < 500);
        assert_eq!(entries[1].text, "short");
        assert_eq!(entries[0].direction, Direction::Sent);
    }
}
