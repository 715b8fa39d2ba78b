//! What one case saw and did, in order, for the report of a failure.
//!
//! Credentials (bearer tokens, tickets) registered with [`Transcript::secret`] never appear
//! whole in an entry or a case's findings: each is shown as its first four characters and an
//! ellipsis, enough to tell two apart, unless [`reveal_credentials`] was called (the runner's
//! `--reveal-credentials`, for local debugging).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

/// The longest text an entry keeps; longer frames are cut and their size noted.
const MAX_ENTRY_CHARS: usize = 400;

/// How many leading characters of a credential a masked one keeps.
const SHOWN_CHARS: usize = 4;

static REVEAL: AtomicBool = AtomicBool::new(false);

/// Shows credentials whole in every transcript and finding from now on (for local
/// debugging: reports then hold live credentials).
pub fn reveal_credentials(reveal: bool) {
    REVEAL.store(reveal, Ordering::SeqCst);
}

/// A credential as reports show it: its first characters and an ellipsis (whole when
/// credentials are revealed).
pub fn mask(credential: &str) -> String {
    if REVEAL.load(Ordering::SeqCst) {
        return credential.to_owned();
    }
    let head: String = credential.chars().take(SHOWN_CHARS).collect();
    format!("{head}…")
}

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
    secrets: Arc<Mutex<Vec<String>>>,
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
            secrets: Arc::default(),
        }
    }

    /// Registers a credential of the case (a token, a ticket): from now on it is masked
    /// wherever it appears in an entry, and in the case's findings.
    pub fn secret(&self, credential: &str) {
        if credential.chars().count() <= SHOWN_CHARS {
            return;
        }
        let mut secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        if !secrets.iter().any(|s| s == credential) {
            secrets.push(credential.to_owned());
            // The longest first, so that a credential inside another is not masked half.
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Registers every credential `other` holds, so that what this transcript's case reports
    /// of `other`'s exchanges (a run shared by several cases) is masked too.
    pub fn adopt_secrets(&self, other: &Transcript) {
        let theirs = other
            .secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for secret in &theirs {
            self.secret(secret);
        }
    }

    /// `text` with every registered credential masked.
    pub fn masked(&self, text: &str) -> String {
        if REVEAL.load(Ordering::SeqCst) {
            return text.to_owned();
        }
        let secrets = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
        secrets.iter().fold(text.to_owned(), |text, secret| {
            if text.contains(secret.as_str()) {
                text.replace(secret.as_str(), &mask(secret))
            } else {
                text
            }
        })
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
            text: shorten(&self.masked(text)),
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

    #[test]
    fn registered_credentials_are_masked_in_entries_and_findings() {
        let transcript = Transcript::new();
        let ticket = "7d1137e250f826cb0d724295fdb0b647";
        transcript.secret(ticket);
        transcript.secret("abc");
        transcript.sent("http", format!("201 {{\"ticket\":\"{ticket}\"}}"));
        transcript.received("ws#1", format!("GET /v1/ws?ticket={ticket} and abc"));
        let entries = transcript.entries();
        assert_eq!(entries[0].text, "201 {\"ticket\":\"7d11…\"}");
        assert!(!entries[1].text.contains(ticket), "{}", entries[1].text);
        assert!(
            entries[1].text.ends_with("and abc"),
            "too short to be a credential"
        );
        assert_eq!(
            transcript.masked(&format!("presented {ticket:?}")),
            "presented \"7d11…\""
        );
    }
}
