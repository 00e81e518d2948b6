//! Mapping command-line inputs and an output to a list of jobs: files, directory trees mirrored
//! into an output directory, or stdin/stdout. Order is deterministic (sorted by path).

use crate::error::{Error, Result};
use crate::io::image::OutFormat;
use std::path::{Path, PathBuf};

/// File extensions collected from input directories.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Stdin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    File(PathBuf),
    Stdout,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub source: Source,
    pub sink: Sink,
    pub format: OutFormat,
}

impl Source {
    pub fn display(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Stdin => "<stdin>".into(),
        }
    }
}

impl Sink {
    pub fn display(&self) -> String {
        match self {
            Sink::File(p) => p.display().to_string(),
            Sink::Stdout => "<stdout>".into(),
        }
    }
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Image files under `dir`, recursively, sorted; hidden files (including our temp files) skipped.
pub fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for e in rd {
            let e = e.map_err(|e| Error::io(&d, e))?;
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let ft = e.file_type().map_err(|e| Error::io(&p, e))?;
            if ft.is_dir() {
                stack.push(p);
            } else if is_image(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn format_for(path: &Path, forced: Option<OutFormat>) -> Result<OutFormat> {
    forced.or_else(|| OutFormat::from_extension(path)).ok_or_else(|| {
        Error::Usage(format!(
            "cannot tell the output format of '{}' from its extension: pass -f png|jpg|webp|bmp|tiff",
            path.display()
        ))
    })
}

/// The usual file extension of a format.
pub fn extension(f: OutFormat) -> &'static str {
    match f {
        OutFormat::Png => "png",
        OutFormat::Jpeg => "jpg",
        OutFormat::Webp => "webp",
        OutFormat::Bmp => "bmp",
        OutFormat::Tiff => "tiff",
    }
}

fn with_format_ext(p: &Path, forced: Option<OutFormat>) -> PathBuf {
    match forced {
        Some(f) => p.with_extension(extension(f)),
        None => p.to_path_buf(),
    }
}

/// Build the job list. `forced` is `-f`; without it the output format follows the output file's
/// extension, or in directory mode the input file's.
pub fn plan(inputs: &[String], output: &str, forced: Option<OutFormat>) -> Result<Vec<Job>> {
    if inputs.is_empty() {
        return Err(Error::Usage("no input given".into()));
    }
    if inputs.iter().any(|i| i == "-") {
        if inputs.len() != 1 {
            return Err(Error::Usage("'-' (stdin) must be the only input".into()));
        }
        let (sink, format) = if output == "-" {
            (Sink::Stdout, forced.unwrap_or(OutFormat::Png))
        } else {
            let p = PathBuf::from(output);
            let f = format_for(&p, forced)?;
            (Sink::File(p), f)
        };
        return Ok(vec![Job { source: Source::Stdin, sink, format }]);
    }
    // (input file, path relative to the output directory)
    let mut files: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut any_dir = false;
    for i in inputs {
        let p = PathBuf::from(i);
        let md = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?;
        if md.is_dir() {
            any_dir = true;
            for f in walk(&p)? {
                let rel = f.strip_prefix(&p).expect("walk stays under its root").to_path_buf();
                files.push((f, rel));
            }
        } else {
            let name = p.file_name().ok_or_else(|| Error::Usage(format!("'{i}' has no file name")))?;
            files.push((p.clone(), PathBuf::from(name)));
        }
    }
    if output == "-" {
        if any_dir || files.len() != 1 {
            return Err(Error::Usage("'-o -' (stdout) takes exactly one input image".into()));
        }
        let (src, _) = files.pop().expect("one file");
        return Ok(vec![Job {
            source: Source::File(src),
            sink: Sink::Stdout,
            format: forced.unwrap_or(OutFormat::Png),
        }]);
    }
    let out = PathBuf::from(output);
    let dir_mode = any_dir || files.len() > 1 || out.is_dir();
    if !dir_mode {
        let (src, _) = files.pop().expect("one file");
        let f = format_for(&out, forced)?;
        return Ok(vec![Job { source: Source::File(src), sink: Sink::File(out), format: f }]);
    }
    if out.exists() && !out.is_dir() {
        return Err(Error::Usage(format!(
            "output '{}' must be a directory for several inputs",
            out.display()
        )));
    }
    let mut jobs: Vec<Job> = Vec::with_capacity(files.len());
    for (src, rel) in files {
        let dst = with_format_ext(&out.join(rel), forced);
        let format = format_for(&dst, forced)?;
        if let Some(prev) = jobs.iter().find(|j| j.sink == Sink::File(dst.clone())) {
            return Err(Error::Usage(format!(
                "'{}' and '{}' would both be written to '{}'",
                prev.source.display(),
                src.display(),
                dst.display()
            )));
        }
        jobs.push(Job { source: Source::File(src), sink: Sink::File(dst), format });
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_directory_trees_in_sorted_order() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("in");
        std::fs::create_dir_all(input.join("sub/deeper")).unwrap();
        for f in ["b.png", "a.jpg", "sub/c.webp", "sub/deeper/d.PNG", "notes.txt", ".hidden.png"] {
            std::fs::write(input.join(f), b"x").unwrap();
        }
        let out = d.path().join("out");
        let jobs = plan(&[input.to_string_lossy().into()], &out.to_string_lossy(), None).unwrap();
        let got: Vec<(String, String)> = jobs
            .iter()
            .map(|j| match (&j.source, &j.sink) {
                (Source::File(s), Sink::File(o)) => (
                    s.strip_prefix(&input).unwrap().display().to_string(),
                    o.strip_prefix(&out).unwrap().display().to_string(),
                ),
                _ => unreachable!(),
            })
            .collect();
        let want = [
            ("a.jpg", "a.jpg"),
            ("b.png", "b.png"),
            ("sub/c.webp", "sub/c.webp"),
            ("sub/deeper/d.PNG", "sub/deeper/d.PNG"),
        ];
        assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
        let forced =
            plan(&[input.to_string_lossy().into()], &out.to_string_lossy(), Some(OutFormat::Png)).unwrap();
        assert!(forced.iter().all(|j| matches!(&j.sink, Sink::File(p) if p.extension().unwrap() == "png")));
    }

    #[test]
    fn usage_errors() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("x/a.png");
        let b = d.path().join("y/a.png");
        for p in [&a, &b] {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let s = |p: &Path| p.to_string_lossy().to_string();
        assert!(plan(&[s(&a), s(&b)], &s(&d.path().join("o")), None).is_err(), "name collision");
        assert!(plan(&[s(&a), s(&b)], "-", None).is_err());
        assert!(plan(&["-".into(), s(&a)], "o.png", None).is_err());
        assert!(plan(&[s(&a)], &s(&d.path().join("noext")), None).is_err());
        assert!(matches!(plan(&[s(&d.path().join("missing.png"))], "o.png", None), Err(Error::Io { .. })));
        let one = plan(&[s(&a)], &s(&d.path().join("o.jpg")), None).unwrap();
        assert_eq!(one[0].format, OutFormat::Jpeg);
        let into_dir = plan(&[s(&a)], &s(d.path()), None).unwrap();
        assert_eq!(into_dir[0].sink, Sink::File(d.path().join("a.png")));
    }
}
