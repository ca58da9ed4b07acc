#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| daemons_fuzz::wdmd_request(data));
