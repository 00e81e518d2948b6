#![no_main]
//! The Y4M reader (header, frame headers, planes) and the YUV to RGB conversion of every frame it
//! accepts, with a small frame limit so the fuzzer explores structure rather than allocations.
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use superres::io::color::{yuv_to_rgb, Matrix, Range, YuvFormat};
use superres::io::y4m::Y4mReader;

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = Y4mReader::new(data, Path::new("fuzz.y4m"), 1 << 14) else { return };
    let h = r.header().clone();
    let range = if h.full_range() { Range::Full } else { Range::Limited };
    let fmt = YuvFormat { matrix: Matrix::Bt601, range, bits: h.bits, subsampling: h.subsampling, siting: h.siting };
    while let Ok(Some(f)) = r.read_frame() {
        let rgb = yuv_to_rgb(&f, &fmt);
        assert_eq!(rgb.len(), f.width * f.height * 3);
    }
});
