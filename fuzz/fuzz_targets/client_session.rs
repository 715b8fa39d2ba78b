//! Fuzz target `client_session`: see [`ferry_fuzz::client_session`]. Under `cargo fuzz run client_session` libFuzzer drives it;
//! built as a plain binary (stable Rust), it runs the function over the files and folders named
//! on its command line, by default its seed corpus in `corpus/client_session`.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::client_session(data));

#[cfg(not(fuzzing))]
fn main() {
    ferry_fuzz::replay_main("client_session", ferry_fuzz::client_session);
}
