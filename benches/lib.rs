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

/// The `p` quantile (0 to 1) of `samples`, which it sorts.
pub fn percentile(samples: &mut [std::time::Duration], p: f64) -> std::time::Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

/// A duration in microseconds with one decimal, for a table cell.
pub fn micros(duration: std::time::Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1e6)
}

/// A Markdown table row: `what`, then the median and p99 of `samples` in microseconds.
pub fn row(what: &str, samples: &mut [std::time::Duration]) -> String {
    let p50 = percentile(samples, 0.5);
    let p99 = percentile(samples, 0.99);
    format!("| {what} | {} | {} |", micros(p50), micros(p99))
}

/// The Redis a benchmark uses: `FERRY_BENCH_REDIS_URL`, or the one on 127.0.0.1:6379.
pub fn redis_url() -> String {
    std::env::var("FERRY_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}
