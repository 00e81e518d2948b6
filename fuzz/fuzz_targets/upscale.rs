#![no_main]
//! Untrusted image bytes all the way through: decode (small pixel limit), then upscale with a
//! tiny committed model (SRVGG x2, a few channels), tiled so tile edges are exercised too.
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use superres::io::image::{decode_bytes, DecodeLimits};
use superres::models::Model;
use superres::pipeline::{UpscaleOptions, Upscaler};

fn upscaler() -> &'static Mutex<Upscaler> {
    static UP: OnceLock<Mutex<Upscaler>> = OnceLock::new();
    UP.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/srvgg_x2.pth");
        let model = Model::open(&path).expect("tiny fixture model");
        let net = model.build(superres::CpuLevel::effective(), None).expect("builds");
        Mutex::new(Upscaler::new(net, UpscaleOptions { tile: 24, ..Default::default() }))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(img) = decode_bytes(data, Path::new("fuzz"), &DecodeLimits { max_pixels: 1 << 14 }) else { return };
    let mut up = upscaler().lock().unwrap_or_else(|p| p.into_inner());
    let out = up.upscale(&img.view()).expect("a decoded image always upscales");
    assert_eq!((out.width, out.height), (img.width * 2, img.height * 2));
});
