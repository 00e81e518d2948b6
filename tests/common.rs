//! Shared helpers for integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use superres::weights::safetensors::SafeTensors;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    repo().join("tests/fixtures")
}

/// `../shared` next to the checkout, or `None` with a printed skip message.
pub fn shared(what: &str) -> Option<PathBuf> {
    let p = repo().join("../shared");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("SKIP {what}: ../shared is not present (it exists only on developer machines)");
        None
    }
}

/// A fixture tensor stored NCHW (batch 1), returned as dense HWC with its (h, w, c).
pub fn nchw_to_hwc(st: &SafeTensors, name: &str) -> (Vec<f32>, usize, usize, usize) {
    let t = st.header().get(name).unwrap_or_else(|| panic!("fixture lacks '{name}'")).clone();
    assert_eq!(t.shape.len(), 4);
    let (c, h, w) = (t.shape[1], t.shape[2], t.shape[3]);
    let v = st.f32(name).unwrap();
    let mut out = vec![0.0; h * w * c];
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                out[(y * w + x) * c + ch] = v[(ch * h + y) * w + x];
            }
        }
    }
    (out, h, w, c)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

pub fn open_fixture(name: &str) -> SafeTensors {
    SafeTensors::open(&fixtures().join("models").join(name)).unwrap()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Deterministic pseudo-random 16-bit samples (xorshift).
pub fn noise_u16(n: usize, seed: u32) -> Vec<u16> {
    let mut x = seed.wrapping_mul(2654435761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 16) as u16
        })
        .collect()
}

/// The `superres` binary of this build, with the environment that changes its behaviour
/// (`SUPERRES_CPU`, `SUPERRES_CONV`) removed. A cross-built binary runs through an emulator
/// (`tools/arm-test.sh` sets `SUPERRES_TEST_RUNNER=qemu-aarch64`): cargo applies its target
/// runner to test binaries only, not to the programs they start.
pub fn superres_command() -> std::process::Command {
    let exe = env!("CARGO_BIN_EXE_superres");
    let mut c = match std::env::var_os("SUPERRES_TEST_RUNNER").filter(|r| !r.is_empty()) {
        Some(runner) => {
            let mut c = std::process::Command::new(runner);
            c.arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    c.env_remove("SUPERRES_CPU").env_remove("SUPERRES_CONV");
    c
}
