//! The token buckets per caller on the HTTP endpoints that make the server hold state:
//! tickets (`POST /v1/tickets`) and backend publishes (`POST /v1/publish`), FERRY-RATE-4.
//!
//! A caller is the user its credential names, so the tokens of one user are shared by every
//! credential that names it and never by another user. The buckets are
//! [`CallerBuckets`] of the protocol core, the same arithmetic that meters a session's frames
//! (FERRY-RATE-1). They live in this node's memory, with every broker: with several nodes
//! behind a balancer, a caller gets each node's rate.

use std::time::Duration;

use ferry_protocol::{CallerBuckets, Timestamp, UserId};
use parking_lot::Mutex;

use crate::config::{CallerRate, Config};

/// An endpoint metered per caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metered {
    /// `POST /v1/tickets`.
    IssueTicket,
    /// `POST /v1/publish`.
    Publish,
}

impl Metered {
    /// The endpoint's name in `endpoints.json`, as the metrics label it.
    pub fn name(self) -> &'static str {
        match self {
            Self::IssueTicket => "issue_ticket",
            Self::Publish => "publish",
        }
    }
}

/// Every caller's buckets, one set per metered endpoint.
#[derive(Debug)]
pub(crate) struct CallerLimits {
    tickets: Mutex<CallerBuckets<UserId>>,
    publishes: Mutex<CallerBuckets<UserId>>,
}

impl CallerLimits {
    /// Buckets at the configured rates, no caller yet.
    pub(crate) fn new(config: &Config) -> Self {
        let buckets =
            |rate: CallerRate| Mutex::new(CallerBuckets::new(rate.per_second, rate.burst));
        Self {
            tickets: buckets(config.ticket_rate),
            publishes: buckets(config.publish_rate),
        }
    }

    /// Takes one of `caller`'s tokens on `endpoint` at `now`; the error is how long until its
    /// bucket holds one again.
    pub(crate) fn take(
        &self,
        endpoint: Metered,
        caller: &UserId,
        now: Timestamp,
    ) -> Result<(), Duration> {
        let buckets = match endpoint {
            Metered::IssueTicket => &self.tickets,
            Metered::Publish => &self.publishes,
        };
        buckets.lock().try_take(caller, now)
    }
}
