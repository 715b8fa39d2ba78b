//! Criterion benchmarks of Ferry's hot paths; each sits beside its floor in the same run. The
//! benchmarks live in `benches/benches/`; figures and how to reproduce them are in
//! `BENCHMARKS.md` at the repository root.

/// A key prefix no other run uses, for a benchmark's Redis keys.
pub fn fresh_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let salt = u64::from(nanos) ^ (u64::from(std::process::id()) << 32);
    format!("ferry-bench-{salt:016x}:")
}

/// Deletes every key under `prefix` in the Redis at `url`, after a benchmark.
pub async fn forget_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}
