#![no_main]
//! The model-file header parser and tensor views must reject any byte string without panicking.
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(st) = superres::weights::safetensors::SafeTensors::from_bytes(data.to_vec(), Path::new("fuzz")) {
        for t in st.header().tensors.clone() {
            let _ = st.f32(&t.name);
        }
    }
});
