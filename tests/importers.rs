//! Importers on damaged files: truncated or corrupt ncnn `.param`/`.bin` and PyTorch checkpoints
//! give errors that name the file and the layer or tensor, never a panic; wrong shapes are caught.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use superres::models::Model;
use superres::CpuLevel;

const NCNN: &[&str] = &["srvgg_x4_ncnn", "rrdb_x4_ncnn", "upconv7_ncnn", "cunet_x2_ncnn"];

fn model_dir() -> PathBuf {
    fixtures().join("models")
}

/// Write `param` and `bin` as `m.param` / `m.bin` in a fresh directory and open them.
fn open_pair(dir: &Path, param: &[u8], bin: &[u8]) -> superres::Result<Model> {
    std::fs::write(dir.join("m.param"), param).unwrap();
    std::fs::write(dir.join("m.bin"), bin).unwrap();
    let m = Model::open(&dir.join("m.param"))?;
    // Building reads and checks every tensor.
    m.build(CpuLevel::Portable, None)?;
    Ok(m)
}

#[test]
fn every_ncnn_fixture_opens_by_either_file() {
    for name in NCNN {
        let p = model_dir().join(format!("{name}.param"));
        let a = Model::open(&p).unwrap();
        let b = Model::open(&p.with_extension("bin")).unwrap();
        assert_eq!(a.arch(), b.arch());
        assert_eq!(a.info().layout.as_deref(), Some("ncnn"));
        assert!(a.notes().iter().any(|n| n.contains("imported from ncnn")));
    }
}

#[test]
fn truncated_bins_are_errors_naming_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    for name in NCNN {
        let param = std::fs::read(model_dir().join(format!("{name}.param"))).unwrap();
        let bin = std::fs::read(model_dir().join(format!("{name}.bin"))).unwrap();
        let step = (bin.len() / 97).max(1);
        for cut in (0..bin.len()).step_by(step).chain([bin.len() - 1]) {
            let e = open_pair(dir.path(), &param, &bin[..cut])
                .err()
                .unwrap_or_else(|| panic!("{name}: cut {cut}"));
            let msg = e.to_string();
            assert!(
                msg.contains("m.bin") && msg.contains("ends inside") && msg.contains("(line "),
                "{name}: {msg}"
            );
        }
        let mut long = bin.clone();
        long.extend_from_slice(&[1, 2, 3, 4]);
        let msg = open_pair(dir.path(), &param, &long).err().unwrap().to_string();
        assert!(msg.contains("4 bytes left"), "{msg}");
    }
}

#[test]
fn corrupt_params_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    for name in NCNN {
        let param = std::fs::read_to_string(model_dir().join(format!("{name}.param"))).unwrap();
        let bin = std::fs::read(model_dir().join(format!("{name}.bin"))).unwrap();
        let lines: Vec<&str> = param.lines().collect();
        // Drop each line in turn: always an error (the counts or the weights no longer match).
        for i in 0..lines.len() {
            let mut l = lines.clone();
            l.remove(i);
            let r = open_pair(dir.path(), l.join("\n").as_bytes(), &bin);
            assert!(r.is_err(), "{name}: dropping line {} was accepted", i + 1);
        }
        // Change each number in turn: an error or (rarely) a still-consistent model; never a panic.
        for (i, line) in lines.iter().enumerate().skip(2) {
            for (j, tok) in line.split_whitespace().enumerate().skip(4) {
                for new in ["0", "-1", "99999999999"] {
                    let Some((k, _)) = tok.split_once('=') else { continue };
                    let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
                    let mut toks: Vec<String> = l[i].split_whitespace().map(String::from).collect();
                    toks[j] = format!("{k}={new}");
                    l[i] = toks.join(" ");
                    let _ = open_pair(dir.path(), l.join("\n").as_bytes(), &bin);
                }
            }
        }
        // Unknown layer types are named: one the reader cannot walk the .bin past, and a known
        // weightless one the importer does not map.
        let bad = param.replacen("Convolution ", "Convolution3D ", 1);
        let msg = open_pair(dir.path(), bad.as_bytes(), &bin).err().unwrap().to_string();
        assert!(msg.contains("m.param") && msg.contains("unknown ncnn layer type 'Convolution3D'"), "{msg}");
        assert!(msg.contains("(line "), "{msg}");
        let first = lines[2].split_whitespace().next().unwrap();
        let bad = param.replacen(&format!("{first} "), "Softmax ", 1);
        let msg = open_pair(dir.path(), bad.as_bytes(), &bin).err().unwrap().to_string();
        assert!(msg.contains("'Softmax' is not supported"), "{msg}");
        // Random byte flips anywhere: never a panic.
        let mut x = 0x2545F4914F6CDD1Du64;
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (mut p, mut b) = (param.clone().into_bytes(), bin.clone());
            if x & 1 == 0 {
                let i = (x >> 8) as usize % p.len();
                p[i] = (x >> 32) as u8;
            } else {
                let i = (x >> 8) as usize % b.len();
                b[i] ^= (x >> 32) as u8 | 1;
            }
            let _ = open_pair(dir.path(), &p, &b);
        }
    }
}

#[test]
fn weight_count_mismatches_name_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let param = std::fs::read_to_string(model_dir().join("upconv7_ncnn.param")).unwrap();
    let bin = std::fs::read(model_dir().join("upconv7_ncnn.bin")).unwrap();
    // Claim one more output channel on the first conv: the .bin no longer lines up.
    let bad = param.replacen("0=4 1=3", "0=5 1=3", 1);
    let msg = open_pair(dir.path(), bad.as_bytes(), &bin).err().unwrap().to_string();
    assert!(msg.contains("(line ") && msg.contains("m.bin"), "{msg}");
    // A kernel the architecture does not have is named with the canonical layer it maps to.
    let bad = param.replacen("3=1 4=0", "3=1 4=1", 1);
    let msg = open_pair(dir.path(), bad.as_bytes(), &bin).err().unwrap().to_string();
    assert!(msg.contains("padding") && msg.contains("net.0"), "{msg}");
    // A missing .bin is an I/O error naming it.
    std::fs::remove_file(dir.path().join("m.bin")).unwrap();
    let msg = Model::open(&dir.path().join("m.param")).err().unwrap().to_string();
    assert!(msg.contains("m.bin"), "{msg}");
}

#[test]
fn truncated_and_misshapen_checkpoints_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["rrdb_x4.pth", "upconv7.pth", "cunet_x1.pth"] {
        let bytes = std::fs::read(model_dir().join(name)).unwrap();
        let p = dir.path().join(name);
        for cut in (0..bytes.len()).step_by((bytes.len() / 41).max(1)) {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            assert!(
                Model::open(&p).and_then(|m| m.build(CpuLevel::Portable, None).map(|_| ())).is_err(),
                "{name} cut at {cut}"
            );
        }
    }
    // A CUNet whose skip and up-convolution disagree on channels is an error naming the tensor.
    let m = Model::open(&model_dir().join("cunet_x1.pth")).unwrap();
    let out = dir.path().join("cunet.safetensors");
    let mut buf = Vec::new();
    m.write_safetensors(&mut buf).unwrap();
    std::fs::write(&out, &buf).unwrap();
    let st = superres::weights::safetensors::SafeTensors::open(&out).unwrap();
    let mut sd = st.to_state_dict();
    for (n, t) in sd.tensors.iter_mut() {
        if n == "unet1.conv3.weight" {
            // [8, 8, 3, 3] -> [4, 16, 3, 3]: same element count, different shape.
            t.shape = vec![4, 16, 3, 3];
        }
    }
    let r = Model::from_state_dict(Path::new("edited"), sd, &Default::default())
        .and_then(|m| m.build(CpuLevel::Portable, None).map(|_| ()));
    let msg = r.err().unwrap().to_string();
    assert!(msg.contains("unet1.conv3.weight") || msg.contains("unet1.conv_bottom"), "{msg}");
}
