//! Fuzz target `codec_decode`: see [`ferry_fuzz::codec_decode`]. Under `cargo fuzz run codec_decode` libFuzzer drives it;
//! built as a plain binary (stable Rust), it runs the function over the files and folders named
//! on its command line, by default its seed corpus in `corpus/codec_decode`.

#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::codec_decode(data));

#[cfg(not(fuzzing))]
fn main() {
    ferry_fuzz::replay_main("codec_decode", ferry_fuzz::codec_decode);
}
