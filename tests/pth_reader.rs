//! The PyTorch checkpoint reader against files written by real torch
//! (`tools/make_pth_fixtures.py`, which also writes the expected contents), and against
//! corrupted copies of them: every corruption must be an error or a clean read, never a panic.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use superres::weights::pth::{is_pth, read_pth, read_pth_bytes};
use superres::weights::{DType, TensorData};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth")
}

fn expected() -> Json {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every element of an integer or bool tensor, as f64 (exact for the fixtures' values).
fn values(t: &TensorData) -> Vec<f64> {
    let b = &t.bytes;
    match t.dtype {
        DType::F32 | DType::F16 | DType::BF16 | DType::F64 => unreachable!("floats are compared as floats"),
        DType::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        DType::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        DType::I16 => b.chunks_exact(2).map(|c| i16::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        DType::I8 => b.iter().map(|&x| x as i8 as f64).collect(),
        DType::U8 | DType::Bool => b.iter().map(|&x| x as f64).collect(),
    }
}

fn check_fixture(name: &str, want: &Json) {
    let f = read_pth(&fixtures().join(name)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.source_key.as_deref(), want["source_key"].as_str(), "{name}: source key");
    let tensors = want["tensors"].as_array().unwrap();
    let names: Vec<&str> = f.state.names().collect();
    let want_names: Vec<&str> = tensors.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, want_names, "{name}: tensor names");
    for (t, w) in f.state.tensors.iter().map(|(_, t)| t).zip(tensors) {
        let what = format!("{name}: {}", w["name"]);
        assert_eq!(t.dtype.name(), w["dtype"].as_str().unwrap(), "{what}: dtype");
        let shape: Vec<usize> =
            w["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(t.shape, shape, "{what}: shape");
        assert_eq!(t.bytes.len(), t.numel() * t.dtype.size(), "{what}: byte length");
        let want_values: Vec<f64> =
            w["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        // serde_json's default float parsing can be off by an ulp of f64, so compare f32 data
        // after rounding the expectation to f32 (exact), and f64 data within a few ulps.
        if t.dtype == DType::F64 {
            let raw: Vec<f64> =
                t.bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
            assert_eq!(raw.len(), want_values.len(), "{what}: values");
            for (g, e) in raw.iter().zip(&want_values) {
                assert!((g - e).abs() <= e.abs() * 1e-15, "{what}: {g} vs {e}");
            }
        } else if t.dtype.is_float() {
            let want32: Vec<f32> = want_values.iter().map(|&v| v as f32).collect();
            assert_eq!(t.to_f32().unwrap(), want32, "{what}: values");
        } else {
            assert_eq!(values(t), want_values, "{what}: values");
        }
    }
    let extras: Vec<(String, String)> = want["extras"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let got: Vec<(String, String)> = f.state.extras.clone().into_iter().collect();
    assert_eq!(got, extras, "{name}: extras");
}

#[test]
fn fixtures_match_torch() {
    let exp = expected();
    let files = exp["files"].as_object().unwrap();
    // The cases the reader must cover; a regenerated fixture set must keep them.
    for required in [
        "zip_plain.pth",
        "legacy_plain.pth",
        "params.pth",
        "params_ema.pth",
        "state_dict_extras.pth",
        "dataparallel.pth",
        "dtypes.pth",
        "dtypes_legacy.pth",
        "views.pth",
        "views_legacy.pth",
        "module.pth",
        "module_legacy.pth",
        "module_under_model.pth",
        "deflate.pth",
    ] {
        assert!(files.contains_key(required), "expected.json lacks {required}");
    }
    for (name, want) in files {
        check_fixture(name, want);
        assert!(is_pth(&fixture(name)), "{name}: not sniffed as a checkpoint");
    }
}

#[test]
fn rejected_fixtures_say_why() {
    for (name, why) in expected()["errors"].as_object().unwrap() {
        let err = read_pth_bytes(&fixture(name)).expect_err(name);
        assert!(err.contains(why.as_str().unwrap()), "{name}: {err}");
    }
}

#[test]
fn module_walk_skips_what_state_dict_skips() {
    let f = read_pth(&fixtures().join("module.pth")).unwrap();
    let names: Vec<&str> = f.state.names().collect();
    // Conv2d(bias=False), the None submodule, the None parameter and the non-persistent
    // buffer are absent; the BatchNorm step counter is an int64 buffer.
    assert!(names.contains(&"head.weight") && !names.contains(&"head.bias"));
    assert!(!names.iter().any(|n| n.starts_with("missing") || *n == "scratch" || *n == "unused"));
    assert_eq!(f.state.get("body.0.bn.num_batches_tracked").unwrap().dtype, DType::I64);
    assert_eq!(f.state.get("body.1.weight").unwrap().shape, [4]);
}

#[test]
fn every_truncation_is_an_error() {
    for name in ["zip_plain.pth", "legacy_plain.pth", "views_legacy.pth", "deflate.pth"] {
        let bytes = fixture(name);
        for n in 0..bytes.len() {
            assert!(read_pth_bytes(&bytes[..n]).is_err(), "{name}: prefix of {n} bytes read fine");
        }
    }
}

/// xorshift64*: deterministic mutations without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn flipped_bytes_never_panic() {
    // Every single-byte corruption of the pickle-heavy files; the outcome may be a clean read
    // (a flip inside tensor data is undetectable) but must not be a panic.
    for name in ["legacy_plain.pth", "views.pth"] {
        let bytes = fixture(name);
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                let _ = read_pth_bytes(&b);
            }
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    // PTH_MUTATIONS=1000000 for a longer soak.
    let rounds = std::env::var("PTH_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let names =
        ["zip_plain.pth", "legacy_plain.pth", "module.pth", "module_legacy.pth", "views.pth", "dtypes.pth"];
    let originals: Vec<Vec<u8>> = names.iter().map(|n| fixture(n)).collect();
    for _ in 0..rounds {
        let mut b = originals[rng.below(originals.len())].clone();
        for _ in 0..1 + rng.below(8) {
            let i = rng.below(b.len());
            match rng.below(4) {
                0 => b[i] = rng.next() as u8,
                1 => b[i] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)],
                2 => {
                    // Overwrite with a boundary 32-bit value (lengths, sizes, offsets).
                    let v: u32 = [0, 1, 0xffff_ffff, 0x7fff_ffff, 0x8000_0000][rng.below(5)];
                    let end = (i + 4).min(b.len());
                    b[i..end].copy_from_slice(&v.to_le_bytes()[..end - i]);
                }
                _ => {
                    let n = rng.below(16).min(b.len() - i);
                    b.drain(i..i + n);
                    if b.is_empty() {
                        b.push(0);
                    }
                }
            }
        }
        let _ = read_pth_bytes(&b);
    }
}

#[test]
fn real_esrgan_animevideov3() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/weights/realesrgan/realesr-animevideov3.pth");
    if !path.exists() {
        eprintln!("skipping: {} not present", path.display());
        return;
    }
    let f = read_pth(&path).unwrap();
    assert_eq!(f.source_key.as_deref(), Some("params"));
    assert_eq!(f.state.tensors.len(), 53);
    assert_eq!(f.state.tensors.iter().map(|(_, t)| t.numel()).sum::<usize>(), 621_424);
    assert_eq!(f.state.get("body.0.weight").unwrap().shape, [64, 3, 3, 3]);
    assert_eq!(f.state.get("body.34.weight").unwrap().shape, [48, 64, 3, 3]);
    assert!(f.state.tensors.iter().all(|(_, t)| t.dtype == DType::F32));
    // Values from torch.load of the same file.
    let first = |name: &str, n: usize| -> Vec<f64> {
        f.state.get(name).unwrap().to_f32().unwrap()[..n].iter().map(|&x| f64::from(x)).collect()
    };
    assert_eq!(first("body.0.weight", 3), [-0.04737050086259842, -0.04728248715400696, 0.5571998953819275]);
    assert_eq!(first("body.34.bias", 2), [0.016226815059781075, 0.016215115785598755]);
    let sum: f64 =
        f.state.get("body.34.weight").unwrap().to_f32().unwrap().iter().map(|&x| f64::from(x)).sum();
    assert!((sum - -0.46008762748533627).abs() < 1e-9, "{sum}");
}

/// `PTH_FILE=/path/to/ckpt.pth cargo test --test pth_reader external -- --nocapture` reads
/// any checkpoint and prints a summary; without the variable it does nothing.
#[test]
fn external_file_from_env() {
    let Some(path) = std::env::var_os("PTH_FILE") else { return };
    let start = std::time::Instant::now();
    let f = read_pth(Path::new(&path)).unwrap_or_else(|e| panic!("{e}"));
    let params: usize = f.state.tensors.iter().map(|(_, t)| t.numel()).sum();
    eprintln!(
        "{}: {} tensors, {params} elements, key {:?}, extras {:?}, read in {:?}",
        Path::new(&path).display(),
        f.state.tensors.len(),
        f.source_key,
        f.state.extras,
        start.elapsed()
    );
}
