//! Fuzz target `server_session`: see [`ferry_fuzz::server_session`]. Under `cargo fuzz run server_session` libFuzzer drives it;
//! built as a plain binary (stable Rust), it runs the function over the files and folders named
//! on its command line, by default its seed corpus in `corpus/server_session`.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::server_session(data));

#[cfg(not(fuzzing))]
fn main() {
    ferry_fuzz::replay_main("server_session", ferry_fuzz::server_session);
}
