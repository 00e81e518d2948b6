//! Hand-made checkpoints for the paths torch itself never writes (corrupt and hostile
//! files). The fixtures written by real torch are checked in `tests/pth_reader.rs`.

use super::zip::tests::write_zip;
use super::*;
use crate::weights::DType;

fn s(out: &mut Vec<u8>, text: &str) {
    out.push(b'X');
    out.extend((text.len() as u32).to_le_bytes());
    out.extend(text.as_bytes());
}

fn int(out: &mut Vec<u8>, i: i32) {
    out.push(b'J');
    out.extend(i.to_le_bytes());
}

fn global(out: &mut Vec<u8>, module: &str, name: &str) {
    out.push(b'c');
    out.extend(format!("{module}\n{name}\n").as_bytes());
}

fn tuple(out: &mut Vec<u8>, items: &[i64]) {
    out.push(b'(');
    for &i in items {
        int(out, i as i32);
    }
    out.push(b't');
}

/// `{'w': tensor}` with the tensor a view (offset, size, stride) of FloatStorage '0' of
/// `numel` elements, pickled as torch does.
fn state_pickle(numel: i32, offset: i32, size: &[i64], stride: &[i64]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}'];
    s(&mut p, "w");
    global(&mut p, "torch._utils", "_rebuild_tensor_v2");
    p.extend(b"((");
    s(&mut p, "storage");
    global(&mut p, "torch", "FloatStorage");
    s(&mut p, "0");
    s(&mut p, "cpu");
    int(&mut p, numel);
    p.extend(b"tQ");
    int(&mut p, offset);
    tuple(&mut p, size);
    tuple(&mut p, stride);
    p.push(0x89);
    global(&mut p, "collections", "OrderedDict");
    p.extend(b")Rt");
    p.extend(b"Rs.");
    p
}

fn floats(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn checkpoint(pickle: &[u8], data: &[u8]) -> Vec<u8> {
    write_zip(
        &[("archive/data.pkl", pickle), ("archive/byteorder", b"little"), ("archive/data/0", data)],
        false,
        0,
    )
}

#[test]
fn strided_view_is_materialised() {
    let data = floats(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    // Offset 1, shape [2, 2], stride [1, 2]: the transpose of [[1, 2], [3, 4]].
    let f = read_pth_bytes(&checkpoint(&state_pickle(6, 1, &[2, 2], &[1, 2]), &data)).unwrap();
    let t = f.state.get("w").unwrap();
    assert_eq!((t.dtype, t.shape.clone()), (DType::F32, vec![2, 2]));
    assert_eq!(t.to_f32().unwrap(), [1.0, 3.0, 2.0, 4.0]);
    assert_eq!(f.source_key, None);
}

#[test]
fn zip64_archives_are_read() {
    let data = floats(&[7.0, 8.0]);
    let z = write_zip(&[("a/data.pkl", &state_pickle(2, 0, &[2], &[1])), ("a/data/0", &data)], true, 0);
    assert_eq!(read_pth_bytes(&z).unwrap().state.get("w").unwrap().to_f32().unwrap(), [7.0, 8.0]);
}

#[test]
fn views_outside_their_storage_are_errors() {
    let data = floats(&[0.0; 6]);
    let cases: &[(i32, i32, &[i64], &[i64])] = &[
        (6, 5, &[2], &[1]),                   // runs one past the end
        (6, 0, &[3, 3], &[3, 1]),             // 9 elements in 6
        (6, 0, &[2, 2], &[1, 5]),             // stride jumps past the end
        (8, 0, &[8], &[1]),                   // storage declares more than its data
        (6, 0, &[1 << 30, 1 << 30], &[0, 0]), // broadcast to 2^60 elements
        (6, i32::MAX, &[1], &[1]),
    ];
    for &(numel, offset, size, stride) in cases {
        let r = read_pth_bytes(&checkpoint(&state_pickle(numel, offset, size, stride), &data));
        assert!(r.is_err(), "{numel} {offset} {size:?} {stride:?}");
    }
    // Zero-size views touch nothing, wherever they point.
    let f = read_pth_bytes(&checkpoint(&state_pickle(6, 100, &[0, 4], &[4, 1]), &data)).unwrap();
    assert_eq!(f.state.get("w").unwrap().bytes.len(), 0);
}

#[test]
fn broadcasts_are_bounded_by_the_data() {
    // A stride-0 view is legitimate (expand), but may not inflate a few bytes into gigabytes.
    let data = floats(&[1.0]);
    let ok = read_pth_bytes(&checkpoint(&state_pickle(1, 0, &[4, 3], &[0, 0]), &data)).unwrap();
    assert_eq!(ok.state.get("w").unwrap().to_f32().unwrap(), [1.0; 12]);
    let err =
        read_pth_bytes(&checkpoint(&state_pickle(1, 0, &[1 << 20, 1 << 10], &[0, 0]), &data)).unwrap_err();
    assert!(err.contains("memory"), "{err}");
}

#[test]
fn bad_pickles_and_containers_are_errors() {
    let data = floats(&[0.0; 2]);
    let mut bad_op = state_pickle(2, 0, &[2], &[1]);
    bad_op[2] = 0xfe;
    let err = read_pth_bytes(&checkpoint(&bad_op, &data)).unwrap_err();
    assert!(err.contains("opcode 0xfe"), "{err}");

    let big =
        write_zip(&[("a/data.pkl", &state_pickle(2, 0, &[2], &[1])), ("a/byteorder", b"big")], false, 0);
    assert!(read_pth_bytes(&big).unwrap_err().contains("byte order"));

    let script = write_zip(&[("m/data.pkl", b"\x80\x02N."), ("m/code/__torch__.py", b"")], false, 0);
    assert!(read_pth_bytes(&script).unwrap_err().contains("TorchScript"));

    let no_pkl = write_zip(&[("a/other", b"x")], false, 0);
    assert!(read_pth_bytes(&no_pkl).unwrap_err().contains("data.pkl"));

    let missing = write_zip(&[("a/data.pkl", &state_pickle(2, 0, &[2], &[1]))], false, 0);
    assert!(read_pth_bytes(&missing).unwrap_err().contains("missing"));

    let list = write_zip(&[("a/data.pkl", b"\x80\x02]."), ("a/data/0", b"")], false, 0);
    assert!(read_pth_bytes(&list).unwrap_err().contains("a list"));

    let mut tar = vec![0u8; 1024];
    tar[257..262].copy_from_slice(b"ustar");
    assert!(read_pth_bytes(&tar).unwrap_err().contains("tar"));
    assert!(read_pth_bytes(b"hello world").unwrap_err().contains("not a PyTorch checkpoint"));
    assert!(read_pth_bytes(b"").is_err());
}

#[test]
fn sniffing() {
    let data = floats(&[0.0; 2]);
    assert!(is_pth(&checkpoint(&state_pickle(2, 0, &[2], &[1]), &data)));
    assert!(!is_pth(&write_zip(&[("a/b.txt", b"x")], false, 0)));
    assert!(!is_pth(b"\x89PNG\r\n\x1a\n"));
    assert!(!is_pth(b""));
}

#[test]
fn contiguity() {
    assert!(is_contiguous(&[2, 3], &[3, 1]));
    assert!(is_contiguous(&[1, 3], &[99, 1]));
    assert!(is_contiguous(&[], &[]));
    assert!(!is_contiguous(&[2, 3], &[1, 2]));
    assert!(!is_contiguous(&[3], &[0]));
}
