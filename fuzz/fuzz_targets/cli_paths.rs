#![no_main]
//! What the CLI does with path arguments before any image is read: inputs and output mapped to
//! jobs (directory walks, mirroring, collisions, stdin/stdout), `--shard`, `-f`. Runs inside a
//! small scratch tree (relative paths are taken under it; the working directory is left alone, as
//! libFuzzer writes its corpus relative to it); absolute paths and `..` are kept out so the
//! fuzzer cannot walk the host.
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;
use superres::io::image::OutFormat;
use superres::pipeline::batch::{plan, Sink, Source};
use superres::pipeline::shard::Shard;

fn scratch() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("superres-fuzz-paths-{}", std::process::id()));
        for f in ["in/a.png", "in/b.JPG", "in/sub/c.webp", "in/.hidden.png", "in/notes.txt", "one.png", "out/x.png"] {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let root = scratch();
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let shard = parts.next().unwrap_or("");
    let format = parts.next().unwrap_or("");
    let output = parts.next().unwrap_or("out").to_string();
    let inputs: Vec<String> = parts.take(8).map(str::to_string).collect();
    let safe = |p: &str| !p.starts_with('/') && !p.contains("..") && !p.contains('~');
    if !safe(&output) || !inputs.iter().all(|i| safe(i)) {
        return;
    }
    let under = |p: &str| if p == "-" { p.to_string() } else { root.join(p).to_string_lossy().into_owned() };
    let (output, inputs) = (under(&output), inputs.iter().map(|i| under(i)).collect::<Vec<_>>());
    if let Ok(s) = Shard::parse(shard) {
        assert!(s.index < s.count);
    }
    let forced = format.parse::<OutFormat>().ok();
    if let Ok(jobs) = plan(&inputs, &output, forced) {
        let mut sinks: Vec<&Sink> = jobs.iter().map(|j| &j.sink).collect();
        sinks.sort_by_key(|s| s.display());
        sinks.dedup();
        assert_eq!(sinks.len(), jobs.len(), "two jobs write one output");
        assert!(jobs.iter().all(|j| j.source != Source::Stdin || jobs.len() == 1));
        for n in 1..4 {
            let all: usize = (0..n).map(|i| Shard { index: i, count: n }.select(jobs.clone()).len()).sum();
            assert_eq!(all, jobs.len());
        }
    }
});
