//! What a server operator relies on (issue 7): batches killed at any moment resume without
//! redoing or corrupting anything and leave no temporary file, `--fail-fast`, `--shard` whose
//! shards together are the single-machine run byte for byte (images and video frames), the same
//! output for any thread count and tile size, and limits that name the flag raising them.
//! Everything here uses tiny committed fixtures or the shipped default model on small inputs.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};
use superres::io::color::{Siting, Subsampling, YuvFrame};
use superres::io::image::{write_image_atomic, EncodeOptions, ImageView, OutFormat, SamplesRef};
use superres::io::y4m::{Y4mHeader, Y4mWriter};

fn bin() -> Command {
    let mut c = superres_command();
    for v in ["SUPERRES_SHARD_INDEX", "SUPERRES_SHARD_COUNT", "JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"] {
        c.env_remove(v);
    }
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run superres")
}

fn ok(o: &Output) {
    assert!(o.status.success(), "status {:?}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn small_model() -> String {
    fixtures().join("models/srvgg_x2.pth").to_string_lossy().into_owned()
}

fn video_model() -> String {
    fixtures().join("video/edvr_tsa.pth").to_string_lossy().into_owned()
}

/// Every file under `dir` (relative path -> bytes).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                go(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    go(dir, dir, &mut out);
    out
}

fn is_temp(p: &Path) -> bool {
    let n = p.file_name().unwrap().to_string_lossy();
    n.starts_with('.') && n.ends_with(".tmp")
}

/// (mtime, inode) of every finished output, to tell a skipped file from a rewritten one.
fn stamps(dir: &Path) -> BTreeMap<PathBuf, (SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    snapshot(dir)
        .into_keys()
        .filter(|p| !is_temp(p))
        .map(|p| {
            let m = std::fs::metadata(dir.join(&p)).unwrap();
            (p, (m.modified().unwrap(), m.ino()))
        })
        .collect()
}

fn write_png(path: &Path, w: u32, h: u32, channels: u8, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let px: Vec<u8> =
        noise_u16((w * h) as usize * channels as usize, seed).iter().map(|v| (v >> 8) as u8).collect();
    let view = ImageView { width: w, height: h, channels, samples: SamplesRef::U8(&px) };
    write_image_atomic(path, &view, &EncodeOptions::new(OutFormat::Png)).unwrap();
}

/// A tree of small images: RGB and gray, in nested folders, in an order where path order matters.
fn image_tree(dir: &Path, n: usize, side: u32) {
    for i in 0..n {
        let sub = if i % 3 == 0 {
            "b/"
        } else if i % 3 == 1 {
            "a/deeper/"
        } else {
            ""
        };
        let (w, h) = (side + (i as u32 % 5), side - (i as u32 % 3));
        write_png(
            &dir.join(format!("{sub}img{i:03}.png")),
            w,
            h,
            if i % 4 == 0 { 1 } else { 3 },
            i as u32 + 1,
        );
    }
}

/// A tiny deterministic generator for kill moments (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Names of the files under `dir` (cheap enough to poll).
fn names(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(names(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Start `args` and SIGKILL it once `target` outputs are finished under `out`, plus `extra`
/// (so the kill lands anywhere: between files, mid-computation, mid-write). True if it was
/// killed before it exited on its own.
fn kill_at(args: &[&str], out: &Path, target: usize, extra: Duration) -> bool {
    let mut child = bin().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if names(out).iter().filter(|p| !is_temp(p)).count() >= target {
            break;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    std::thread::sleep(extra);
    let killed = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL: no handler runs, as for a lost node or the OOM killer
    child.wait().unwrap();
    killed
}

/// The finished files under `out` are byte-identical to the reference's; temporaries aside,
/// nothing else is there.
fn assert_consistent(out: &Path, reference: &BTreeMap<PathBuf, Vec<u8>>) -> usize {
    let mut finished = 0;
    for (p, bytes) in snapshot(out) {
        if is_temp(&p) {
            continue;
        }
        let want = reference.get(&p).unwrap_or_else(|| panic!("unexpected output {}", p.display()));
        assert!(&bytes == want, "{} differs from the uninterrupted run (partial or corrupt)", p.display());
        finished += 1;
    }
    finished
}

/// Kill a batch at several moments, checking after each kill that every finished output is
/// complete and correct; then rerun to the end: the result equals an uninterrupted run byte for
/// byte, outputs finished before the rerun are not rewritten, and no temporary file is left.
/// Returns the number of runs killed before they finished and the outputs done before the
/// final rerun.
fn kill_and_resume(args_for: &dyn Fn(&Path) -> Vec<String>, out_root: &Path, seed: u64) -> (usize, usize) {
    let reference_dir = out_root.join("reference");
    let argv = |o: &Path| args_for(o);
    let t0 = Instant::now();
    let o = bin().args(argv(&reference_dir)).output().unwrap();
    ok(&o);
    let full = t0.elapsed();
    let reference = snapshot(&reference_dir);
    assert!(reference.keys().all(|p| !is_temp(p)));
    // A rerun over finished outputs skips them all and changes nothing.
    ok(&bin().args(argv(&reference_dir)).output().unwrap());
    assert!(snapshot(&reference_dir) == reference);
    assert!(reference.len() >= 4, "too few outputs to kill a run between them");

    let out = out_root.join("killed");
    let total = reference.len();
    let mut rng = Lcg(seed);
    let (mut kills, mut temps_seen) = (0, 0);
    for round in 0..12 {
        let done = names(&out).iter().filter(|p| !is_temp(p)).count();
        if done + 2 >= total {
            break; // leave some work to the final rerun
        }
        // A random point of the remaining progress, and a random moment after it.
        let target = done + 1 + (rng.unit() * (total - done - 2) as f64 / 3.0) as usize;
        let extra = full.mul_f64(rng.unit() / total as f64);
        let args = argv(&out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kills += kill_at(&args, &out, target, extra) as usize;
        temps_seen += names(&out).iter().filter(|p| is_temp(p)).count();
        let finished = assert_consistent(&out, &reference);
        eprintln!(
            "round {round}: killed at {target} outputs + {extra:?}; {finished} of {total} outputs finished"
        );
    }
    // A temporary file as a kill between create and rename leaves it, for a file not yet done.
    // (and for a finished one, as a killed --overwrite run leaves it).
    let pending = reference.keys().find(|p| !out.join(p).exists()).cloned();
    for p in pending.iter().chain(reference.keys().find(|p| out.join(p).exists())) {
        let name = format!(".{}.superres-4194300-0.tmp", p.file_name().unwrap().to_string_lossy());
        let dir = out.join(p.parent().unwrap());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), b"half a PNG").unwrap();
    }
    let before = stamps(&out);
    std::thread::sleep(Duration::from_millis(20)); // so a rewrite would show in the mtime
    let o = bin().args(argv(&out)).output().unwrap();
    ok(&o);
    let after = snapshot(&out);
    let temps: Vec<_> = after.keys().filter(|p| is_temp(p)).collect();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
    assert!(after == reference, "resumed run differs from the uninterrupted run");
    let now = stamps(&out);
    for (p, st) in &before {
        assert_eq!(now.get(p), Some(st), "{} was redone by the rerun", p.display());
    }
    eprintln!(
        "{kills} kills, {temps_seen} temporary files seen after kills, {} of {} outputs done before the final rerun",
        before.len(),
        reference.len()
    );
    (kills, before.len())
}

#[test]
fn image_batch_killed_at_random_moments_resumes_exactly() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    image_tree(&input, 24, 96);
    let model = small_model();
    let args = |out: &Path| -> Vec<String> {
        ["upscale", "-m", &model, s(&input), "-o", s(out), "-j", "1", "-q"].map(String::from).to_vec()
    };
    let (kills, _) = kill_and_resume(&args, d.path(), 7);
    assert!(kills >= 3, "only {kills} runs were killed before they finished");
}

fn frames_dir(dir: &Path, n: usize, w: u32, h: u32) {
    for i in 0..n {
        write_png(&dir.join(format!("f{i:04}.png")), w, h, 3, 100 + i as u32);
    }
}

#[test]
fn video_frames_directory_killed_at_random_moments_resumes_exactly() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("frames");
    frames_dir(&input, 14, 24, 16);
    let model = video_model();
    let args = |out: &Path| -> Vec<String> {
        ["video", "-m", &model, s(&input), "-o", s(out), "-j", "1", "-q"].map(String::from).to_vec()
    };
    let (kills, _) = kill_and_resume(&args, d.path(), 11);
    assert!(kills >= 2, "only {kills} runs were killed before they finished");
}

#[test]
fn video_from_y4m_into_frames_killed_at_random_moments_resumes_exactly() {
    // Numbered output frames (frame_000001.png, ...): the clip length is not known in advance, so
    // temporaries are recognised by the numbering pattern.
    let d = tempfile::tempdir().unwrap();
    let clip = d.path().join("clip.y4m");
    y4m_file(&clip, 60, 96, 64);
    let model = small_model();
    let args = |out: &Path| -> Vec<String> {
        ["video", "-m", &model, s(&clip), "-o", s(out), "-j", "1", "-q"].map(String::from).to_vec()
    };
    let (kills, _) = kill_and_resume(&args, d.path(), 5);
    assert!(kills >= 2, "only {kills} runs were killed before they finished");
}

#[test]
fn y4m_output_rerun_removes_a_killed_runs_temporary() {
    let d = tempfile::tempdir().unwrap();
    let clip = d.path().join("clip.y4m");
    y4m_file(&clip, 3, 16, 8);
    let out = d.path().join("out.y4m");
    let stale = d.path().join(".out.y4m.superres-4194300-0.tmp");
    let other = d.path().join(".clip.y4m.superres-4194300-0.tmp"); // not this run's output
    std::fs::write(&stale, b"YUV4MPEG2 W32").unwrap();
    std::fs::write(&other, b"x").unwrap();
    ok(&run(&["video", "-m", &small_model(), s(&clip), "-o", s(&out), "-q"]));
    assert!(!stale.exists() && other.exists() && out.exists());
}

#[test]
fn fail_fast_stops_at_the_first_failure() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    image_tree(&input, 4, 16);
    // First in path order ("0..." sorts before the "a/", "b/" and "img..." entries).
    std::fs::write(input.join("0corrupt.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let model = small_model();
    let (o1, o2) = (d.path().join("o1"), d.path().join("o2"));
    let go = |out: &Path, extra: &[&str]| {
        let mut a = vec!["upscale", "-m", &model, s(&input), "-o", s(out), "-q"];
        a.extend_from_slice(extra);
        run(&a)
    };
    let carry_on = go(&o1, &[]);
    assert!(!carry_on.status.success());
    assert_eq!(snapshot(&o1).len(), 4, "the batch carries on past a bad file by default");
    let fast = go(&o2, &["--fail-fast"]);
    assert_eq!(fast.status.code(), Some(3), "{}", String::from_utf8_lossy(&fast.stderr));
    assert!(String::from_utf8_lossy(&fast.stderr).contains("0corrupt.png"));
    assert!(snapshot(&o2).is_empty(), "nothing after the first (bad) input in path order is processed");
}

/// Outputs are written on a thread of their own while the next image computes: a write that fails
/// (here a directory where an output file must go, with `--overwrite` so it is not skipped) is
/// reported for its own input, the batch carries on past it, and `--fail-fast` writes nothing
/// after it.
#[test]
fn a_failed_write_is_its_own_inputs_failure() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    // In path order: a/deeper/img001, b/img000, b/img003, img002.
    image_tree(&input, 4, 16);
    let model = small_model();
    let go = |out: &Path, extra: &[&str]| {
        std::fs::create_dir_all(out.join("b/img000.png")).unwrap();
        std::fs::write(out.join("b/img000.png/in the way"), b"x").unwrap();
        let mut a = vec!["upscale", "-m", &model, s(&input), "-o", s(out), "-q", "--overwrite"];
        a.extend_from_slice(extra);
        run(&a)
    };
    let names =
        |out: &Path| snapshot(out).into_keys().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>();
    let o1 = d.path().join("o1");
    let carry_on = go(&o1, &[]);
    assert!(!carry_on.status.success());
    let err = String::from_utf8_lossy(&carry_on.stderr);
    assert!(err.contains("1 of 4 inputs failed") && err.contains("img000.png"), "{err}");
    let written = ["a/deeper/img001.png", "b/img000.png/in the way", "b/img003.png", "img002.png"];
    assert_eq!(names(&o1), written, "{err}");
    let o2 = d.path().join("o2");
    let fast = go(&o2, &["--fail-fast"]);
    assert!(!fast.status.success());
    assert!(String::from_utf8_lossy(&fast.stderr).contains("first failure"));
    assert_eq!(names(&o2), written[..2], "nothing is written after the failed write");
}

/// The union of `n` shards run as `n` concurrent processes into one directory.
fn run_shards(n: usize, args_for: &dyn Fn(usize) -> Vec<String>) {
    let children: Vec<_> = (0..n)
        .map(|i| bin().args(args_for(i)).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for c in children {
        ok(&c.wait_with_output().unwrap());
    }
}

#[test]
fn image_shards_union_equals_the_single_run() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    image_tree(&input, 17, 20);
    let model = small_model();
    let single = d.path().join("single");
    ok(&run(&["upscale", "-m", &model, s(&input), "-o", s(&single), "-q"]));
    let want = snapshot(&single);
    assert_eq!(want.len(), 17);
    for n in [1, 3, 4, 20] {
        // Concurrent processes sharing one output directory, as a cluster on shared storage.
        let shared_out = d.path().join(format!("shared{n}"));
        run_shards(n, &|i| {
            ["upscale", "-m", &model, s(&input), "-o", s(&shared_out), "-q", "--shard", &format!("{i}/{n}")]
                .map(String::from)
                .to_vec()
        });
        assert!(snapshot(&shared_out) == want, "{n} shards into one directory differ from the single run");
        // Separate directories: the shards are disjoint and contiguous in path order.
        let mut union = BTreeMap::new();
        let mut order = Vec::new();
        for i in 0..n {
            let o = d.path().join(format!("sep{n}_{i}"));
            ok(&run(&[
                "upscale",
                "-m",
                &model,
                s(&input),
                "-o",
                s(&o),
                "-q",
                "--shard",
                &format!("{i}/{n}"),
            ]));
            let part = snapshot(&o);
            assert!(
                part.len() == 17 / n || part.len() == 17 / n + 1,
                "shard {i}/{n} has {} files",
                part.len()
            );
            for (p, b) in part {
                order.push(p.clone());
                assert!(union.insert(p, b).is_none(), "two shards wrote one output");
            }
        }
        assert!(union == want);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "shards take contiguous runs of the path order");
    }
    // The scheduler's variables: a Kubernetes Indexed Job and a Slurm array (numbered from 1).
    let k8s = d.path().join("k8s");
    for i in 0..3 {
        let o = bin()
            .args(["upscale", "-m", &model, s(&input), "-o", s(&k8s), "-q", "--shard-from-env"])
            .env("JOB_COMPLETION_INDEX", i.to_string())
            .env("SUPERRES_SHARD_COUNT", "3")
            .output()
            .unwrap();
        ok(&o);
    }
    assert!(snapshot(&k8s) == want);
    let slurm = d.path().join("slurm");
    for id in 1..=2 {
        let o = bin()
            .args(["upscale", "-m", &model, s(&input), "-o", s(&slurm), "-q", "--shard-from-env"])
            .env("SLURM_ARRAY_TASK_ID", id.to_string())
            .env("SLURM_ARRAY_TASK_MIN", "1")
            .env("SLURM_ARRAY_TASK_COUNT", "2")
            .output()
            .unwrap();
        ok(&o);
    }
    assert!(snapshot(&slurm) == want);
    let bad = run(&["upscale", "-m", &model, s(&input), "-o", s(&k8s), "--shard", "3/3"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("0 to 2"));
    let no_env = run(&["upscale", "-m", &model, s(&input), "-o", s(&k8s), "--shard-from-env"]);
    assert_eq!(no_env.status.code(), Some(2));
}

fn y4m_file(path: &Path, n: usize, w: usize, h: usize) {
    let header = Y4mHeader {
        width: w,
        height: h,
        fps: (25, 1),
        aspect: (1, 1),
        interlace: Some('p'),
        colorspace_tag: None,
        subsampling: Subsampling::S420,
        siting: Siting::Center,
        bits: 8,
        extensions: Vec::new(),
    };
    let mut wr = Y4mWriter::new(Vec::new(), header).unwrap();
    for i in 0..n {
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let noise = |len: usize, seed: u32, lo: u16, span: u16| -> Vec<u16> {
            noise_u16(len, seed).iter().map(|v| lo + v % span).collect()
        };
        wr.write_frame(&YuvFrame {
            width: w,
            height: h,
            y: noise(w * h, 3 * i as u32 + 1, 16, 220),
            u: noise(cw * ch, 3 * i as u32 + 2, 16, 225),
            v: noise(cw * ch, 3 * i as u32 + 3, 16, 225),
        })
        .unwrap();
    }
    std::fs::write(path, wr.into_inner()).unwrap();
}

#[test]
fn video_shards_union_equals_the_single_run() {
    let d = tempfile::tempdir().unwrap();
    let frames = d.path().join("frames");
    frames_dir(&frames, 11, 16, 12);
    let clip = d.path().join("clip.y4m");
    y4m_file(&clip, 9, 16, 8);
    // A window model (EDVR, 5 frames: windows reach 2 frames either side, and 4 for the edge
    // reflections) and a single-image model frame by frame.
    for (model, edges) in
        [(video_model(), vec!["reflection_circle", "replicate", "reflection"]), (small_model(), vec![""])]
    {
        for edge in edges {
            for input in [&frames, &clip] {
                let base = |out: &Path| {
                    let mut a: Vec<String> =
                        ["video", "-m", &model, s(input), "-o", s(out), "-q"].map(String::from).to_vec();
                    if !edge.is_empty() {
                        a.extend(["--edge".into(), edge.into()]);
                    }
                    a
                };
                let single = d.path().join("single");
                let _ = std::fs::remove_dir_all(&single);
                ok(&bin().args(base(&single)).output().unwrap());
                let want = snapshot(&single);
                for n in [2, 3, 5, 12] {
                    let out = d.path().join(format!("shards{n}"));
                    let _ = std::fs::remove_dir_all(&out);
                    run_shards(n, &|i| {
                        let mut a = base(&out);
                        a.extend(["--shard".into(), format!("{i}/{n}")]);
                        a
                    });
                    let got = snapshot(&out);
                    assert!(
                        got.len() == want.len() && got == want,
                        "{n} shards of {} ({edge}) differ",
                        s(input)
                    );
                }
            }
        }
    }
    let o =
        run(&["video", "-m", &small_model(), s(&clip), "-o", s(&d.path().join("x.y4m")), "--shard", "0/2"]);
    assert_eq!(o.status.code(), Some(2), "a Y4M output cannot be sharded");
}

#[test]
fn output_is_identical_for_any_thread_count_and_tile_size() {
    // The shipped default model (SRVGG, receptive field of 18 input pixels) with the default
    // --tile-pad, so every tile sees its whole receptive field.
    // - Any thread count gives the same bytes, with either convolution algorithm: the work split
    //   over threads never changes the arithmetic.
    // - With `--conv direct` any tile size gives the whole image's bytes: every output is summed
    //   in one fixed order. Winograd (the default) rounds a pixel by its place in its tile's 4x4
    //   grid, so tile sizes agree to one code of an 8-bit output (README, "How it works").
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in.png");
    write_png(&input, 61, 43, 3, 5);
    let go = |name: &str, extra: &[&str]| -> Vec<u8> {
        let out = d.path().join(name);
        let mut a = vec!["upscale", s(&input), "-o", s(&out), "-q"];
        a.extend_from_slice(extra);
        ok(&run(&a));
        std::fs::read(&out).unwrap()
    };
    let tilings: [(&str, &[&str]); 7] = [
        ("whole_j1", &["-j", "1", "-t", "0"]),
        ("whole_j2", &["-j", "2", "-t", "0"]),
        ("whole_j3", &["-j", "3"]),
        ("t7_j2", &["-j", "2", "-t", "7"]),
        ("t16_j1", &["-j", "1", "-t", "16"]),
        ("t24_j2", &["-j", "2", "-t", "24"]),
        ("t5_j2", &["-j", "2", "-t", "5"]),
    ];
    for conv in ["direct", "auto"] {
        fn with<'a>(conv: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
            [&["--conv", conv][..], extra].concat()
        }
        let reference = go(&format!("{conv}_whole_j1.png"), &with(conv, tilings[0].1));
        for (name, extra) in &tilings[1..] {
            let got = go(&format!("{conv}_{name}.png"), &with(conv, extra));
            if conv == "direct" || name.starts_with("whole") {
                assert!(got == reference, "{conv} {name} differs from the whole image on one thread");
            } else {
                let (a, b) = (decode_png_bytes(&got), decode_png_bytes(&reference));
                let diff = a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
                assert!(a.len() == b.len() && diff <= 1, "{conv} {name}: {diff} codes from the whole image");
            }
        }
        // Threads with a fixed tiling: identical bytes with either algorithm.
        let t7 = go(&format!("{conv}_t7_j1.png"), &with(conv, &["-j", "1", "-t", "7"]));
        assert!(
            go(&format!("{conv}_t7_j3.png"), &with(conv, &["-j", "3", "-t", "7"])) == t7,
            "{conv}: threads"
        );
    }
}

fn decode_png_bytes(png: &[u8]) -> Vec<u8> {
    let img = superres::io::image::decode_bytes(png, "out.png".as_ref(), &Default::default()).unwrap();
    match img.samples {
        superres::io::image::Samples::U8(v) => v,
        superres::io::image::Samples::U16(_) => panic!("8-bit output expected"),
    }
}

#[test]
fn limits_name_the_flag_that_raises_them() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in.png");
    write_png(&input, 30, 20, 3, 1);
    let model = small_model();
    let out = d.path().join("out.png");
    let check = |args: &[&str], flag: &str| {
        let o = run(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(5), "{err}");
        assert!(err.contains(flag), "{err}");
        assert!(!out.exists());
    };
    check(&["upscale", "-m", &model, s(&input), "-o", s(&out), "--max-pixels", "599"], "--max-pixels");
    check(&["upscale", "-m", &model, s(&input), "-o", s(&out), "--max-tensors", "3"], "--max-tensors");
    check(&["upscale", "-m", &model, s(&input), "-o", s(&out), "--max-tensor-mib", "0"], "--max-tensor-mib");
    let safetensors = fixtures().join("models/srvgg_x2.safetensors");
    if safetensors.exists() {
        check(
            &["upscale", "-m", s(&safetensors), s(&input), "-o", s(&out), "--max-tensors", "1"],
            "--max-tensors",
        );
    }
    ok(&run(&["upscale", "-m", &model, s(&input), "-o", s(&out), "--max-pixels", "600", "-q"]));
    let clip = d.path().join("c.y4m");
    y4m_file(&clip, 1, 16, 8);
    let o = run(&["video", "-m", &model, s(&clip), "-o", s(&d.path().join("f")), "--max-pixels", "127"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--max-pixels"));
}
