#![no_main]
//! The ncnn reader and importer must reject any .param/.bin pair without panicking. The input is
//! split at its first 0xFF byte: text before, weights after.
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use superres::models::{Model, OpenOptions};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0xFF).unwrap_or(data.len());
    let (param, bin) = (&data[..split], data.get(split + 1..).unwrap_or(&[]));
    if let Ok(nm) = superres::weights::ncnn::from_bytes(param, bin, Path::new("f.param"), Path::new("f.bin")) {
        if let Ok(m) = Model::from_ncnn(&nm, &OpenOptions::default()) {
            let _ = m.build(superres::CpuLevel::Portable, None);
        }
    }
});
