//! Criterion benchmarks of Ferry's hot paths; each sits beside its floor in the same run. The
//! benchmarks live in `benches/benches/`; figures and how to reproduce them are in
//! `BENCHMARKS.md` at the repository root.
