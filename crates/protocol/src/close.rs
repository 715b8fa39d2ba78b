//! What a client does when its session closes: the close-code table, read as a classifier
//! (FERRY-RECONNECT-1).
//!
//! The table itself is generated from `schema/close-codes.json` into
//! [`tables::CLOSE_CODES`](crate::tables::CLOSE_CODES); this module only reads it, so the
//! action of a code is written in one place. A code missing from the table is treated as
//! [`ClientAction::Backoff`].

use crate::tables::{CLOSE_CODES, ClientAction, CloseCodeInfo};

/// The action the close-code table gives for `code`, or [`ClientAction::Backoff`] for a code
/// the table does not list (FERRY-RECONNECT-1).
pub fn action_for(code: u16) -> ClientAction {
    lookup(code).map_or(ClientAction::Backoff, |info| info.action)
}

/// The close-code table's row for `code`, if the table lists it.
pub fn lookup(code: u16) -> Option<&'static CloseCodeInfo> {
    CLOSE_CODES.iter().find(|info| info.code == code)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;
    use crate::tables::close_code;

    #[test]
    fn every_listed_code_maps_to_its_documented_action() {
        use ClientAction::{Backoff, RenewTicket, RetryAfterHint, Stop};
        // The table of PROTOCOL.md, "Close codes".
        let documented = [
            (1000, Stop),
            (1001, Backoff),
            (1002, Stop),
            (1003, Stop),
            (1005, Backoff),
            (1006, Backoff),
            (1007, Stop),
            (1008, Stop),
            (1009, Stop),
            (1011, Backoff),
            (1012, RetryAfterHint),
            (1013, RetryAfterHint),
            (4401, RenewTicket),
            (4403, Stop),
            (4408, Backoff),
            (4409, Backoff),
            (4410, RenewTicket),
            (4411, Stop),
            (4412, Stop),
            (4429, Backoff),
        ];
        for (code, action) in documented {
            assert_eq!(action_for(code), action, "close code {code}");
        }
        assert_eq!(CLOSE_CODES.len(), documented.len());
    }

    #[test]
    fn every_row_of_the_table_is_found_with_its_own_action() {
        for row in CLOSE_CODES {
            assert_eq!(lookup(row.code), Some(row), "close code {}", row.code);
            assert_eq!(action_for(row.code), row.action, "close code {}", row.code);
        }
        let distinct: HashSet<u16> = CLOSE_CODES.iter().map(|row| row.code).collect();
        assert_eq!(
            distinct.len(),
            CLOSE_CODES.len(),
            "a close code is listed twice"
        );
    }

    #[test]
    fn named_codes_classify_as_the_spec_says() {
        assert_eq!(action_for(close_code::NORMAL_CLOSURE), ClientAction::Stop);
        assert_eq!(
            action_for(close_code::TICKET_REJECTED),
            ClientAction::RenewTicket
        );
        assert_eq!(
            action_for(close_code::SERVICE_RESTART),
            ClientAction::RetryAfterHint
        );
        assert_eq!(
            action_for(close_code::HEARTBEAT_TIMEOUT),
            ClientAction::Backoff
        );
        assert_eq!(action_for(close_code::MESSAGE_TOO_BIG), ClientAction::Stop);
    }

    #[test]
    fn unknown_close_codes_back_off() {
        for code in [
            0,
            999,
            1004,
            1010,
            1014,
            1015,
            3000,
            4000,
            4400,
            4999,
            u16::MAX,
        ] {
            assert_eq!(lookup(code), None, "close code {code}");
            assert_eq!(action_for(code), ClientAction::Backoff, "close code {code}");
        }
    }

    proptest! {
        #[test]
        fn any_code_missing_from_the_table_backs_off(code in any::<u16>()) {
            prop_assume!(CLOSE_CODES.iter().all(|row| row.code != code));
            prop_assert_eq!(action_for(code), ClientAction::Backoff);
        }
    }
}
