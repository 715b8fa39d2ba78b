//! The protocol reference agrees with the code that implements it.

use std::time::Duration;

use ferry_protocol::BackoffPolicy;

/// The rows of the backoff table in `generated/docs/PROTOCOL.md`: (retry, nominal, shortest,
/// longest) in milliseconds.
fn backoff_rows() -> Vec<(u32, u64, u64, u64)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../generated/docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(path).expect("the protocol reference exists");
    let section = doc
        .split("## Reconnect and backoff")
        .nth(1)
        .expect("a backoff section");
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            match cells.as_slice() {
                [retry, nominal, shortest, longest] => Some((
                    retry.parse().ok()?,
                    nominal.parse().ok()?,
                    shortest.parse().ok()?,
                    longest.parse().ok()?,
                )),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn the_documented_backoff_table_is_what_backoff_policy_computes() {
    let rows = backoff_rows();
    assert!(rows.len() >= 5, "the table has {} rows", rows.len());
    let policy = BackoffPolicy::default();
    for (retry, nominal, shortest, longest) in rows {
        let ms = Duration::from_millis;
        assert_eq!(policy.nominal(retry), ms(nominal), "retry {retry}: nominal");
        assert_eq!(
            policy.bounds(retry),
            (ms(shortest), ms(longest)),
            "retry {retry}: bounds"
        );
    }
}
