//! Fuzz target `http_bodies`: see [`ferry_fuzz::http_bodies`]. Under `cargo fuzz run http_bodies` libFuzzer drives it;
//! built as a plain binary (stable Rust), it runs the function over the files and folders named
//! on its command line, by default its seed corpus in `corpus/http_bodies`.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::http_bodies(data));

#[cfg(not(fuzzing))]
fn main() {
    ferry_fuzz::replay_main("http_bodies", ferry_fuzz::http_bodies);
}
