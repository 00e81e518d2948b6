#![no_main]
//! The PyTorch checkpoint reader (zip, legacy pickle, restricted unpickler) on arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = superres::weights::pth::read_pth_bytes(data);
});
