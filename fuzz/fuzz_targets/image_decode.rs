#![no_main]
//! Image decoding with a small pixel limit, as the CLI does for untrusted inputs.
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use superres::io::image::{decode_bytes, DecodeLimits};

fuzz_target!(|data: &[u8]| {
    let _ = decode_bytes(data, Path::new("fuzz"), &DecodeLimits { max_pixels: 1 << 20 });
});
