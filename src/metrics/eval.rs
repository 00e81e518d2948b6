//! Evaluating a benchmark folder: pair SR (or LR) images with their ground truth by name, make the
//! SR images (read them, upscale with MATLAB bicubic, or run a network, keeping them in memory),
//! crop the ground truth to a multiple of the scale (modcrop), and score each pair.
//!
//! A folder of images is averaged over images; a folder of clips (each a folder of frames) is
//! averaged over the frames of each clip and then over clips, as the video papers do.

use super::{score, Channels, Score};
use crate::error::{Error, Result};
use crate::io::image::{decode_file, DecodeLimits, DecodedImage};
use crate::kernels::imresize::{crop, imresize};
use crate::pipeline::{batch, OutputImage, Upscaler};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How many offenders an error lists before summarising the rest.
const MAX_LISTED: usize = 20;

/// Whether a folder holds images or clips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Images,
    Clips,
}

/// A ground-truth image and its counterpart, matched by their path without the extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// Relative path without extension, `/`-separated: `baby`, or `calendar/Frame 001`.
    pub name: String,
    /// The clip (first path component) in a folder of clips.
    pub clip: Option<String>,
    pub input: PathBuf,
    pub hr: PathBuf,
}

/// Paired folders.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub kind: Kind,
    pub pairs: Vec<Pair>,
}

fn key_of(root: &Path, file: &Path) -> (String, usize) {
    let rel = file.strip_prefix(root).expect("walk stays under its root");
    let depth = rel.components().count();
    let mut parts: Vec<String> =
        rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if let Some(last) = parts.last_mut() {
        if let Some(stem) = Path::new(last.as_str()).file_stem() {
            *last = stem.to_string_lossy().into_owned();
        }
    }
    (parts.join("/"), depth)
}

fn listing(what: &str, items: &[String]) -> String {
    let mut s = format!("{what}:");
    for i in items.iter().take(MAX_LISTED) {
        s.push_str("\n  ");
        s.push_str(i);
    }
    if items.len() > MAX_LISTED {
        s.push_str(&format!("\n  ... and {} more", items.len() - MAX_LISTED));
    }
    s
}

/// Images under `dir` keyed by relative path without extension; an error for an empty folder or
/// two files that differ only in extension.
fn index(dir: &Path, role: &str) -> Result<BTreeMap<String, (PathBuf, usize)>> {
    let md = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !md.is_dir() {
        return Err(Error::Usage(format!("{role} '{}' is not a directory", dir.display())));
    }
    let files = batch::walk(dir)?;
    if files.is_empty() {
        return Err(Error::input(dir, format!("the {role} folder has no images")));
    }
    let mut map = BTreeMap::new();
    let mut dups = Vec::new();
    for f in files {
        let (k, depth) = key_of(dir, &f);
        if let Some((prev, _)) = map.insert(k, (f.clone(), depth)) {
            dups.push(format!("{} and {}", prev.display(), f.display()));
        }
    }
    if !dups.is_empty() {
        return Err(Error::input(
            dir,
            listing("files that differ only in extension (ambiguous pairing)", &dups),
        ));
    }
    Ok(map)
}

/// Pair the images of `input_dir` (LR or SR, named by `role`) with those of `hr_dir` by relative
/// path without extension. Every image must have a counterpart; the error lists those that do
/// not. Ground-truth files directly in `hr_dir` make a folder of images, files one level down a
/// folder of clips; a mixture is an error.
pub fn pair_folders(input_dir: &Path, hr_dir: &Path, role: &str) -> Result<Dataset> {
    let hr = index(hr_dir, "HR")?;
    let inp = index(input_dir, role)?;
    let depths: Vec<usize> = hr.values().map(|(_, d)| *d).collect();
    let kind = if depths.iter().all(|&d| d == 1) {
        Kind::Images
    } else if depths.iter().all(|&d| d == 2) {
        Kind::Clips
    } else {
        let odd: Vec<String> = hr.iter().filter(|(_, (_, d))| *d > 2).map(|(k, _)| k.clone()).collect();
        let reason = if odd.is_empty() {
            "mixes images and clip folders; give a folder of images or a folder of clips (each a folder of frames)"
                .to_string()
        } else {
            listing("has images nested deeper than clip/frame", &odd)
        };
        return Err(Error::input(hr_dir, reason));
    };
    // In a folder of clips, a clip missing on one side is one offender, not one per frame.
    let clip_of = |k: &str| k.split('/').next().unwrap_or_default().to_string();
    let clips = |m: &BTreeMap<String, (PathBuf, usize)>| -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for k in m.keys() {
            *c.entry(clip_of(k)).or_insert(0) += 1;
        }
        c
    };
    let (hr_clips, in_clips) =
        if kind == Kind::Clips { (clips(&hr), clips(&inp)) } else { Default::default() };
    let mut offenders = Vec::new();
    for (c, n) in &hr_clips {
        if !in_clips.contains_key(c) {
            offenders
                .push(format!("{} ({n} frames, HR) has no {role} counterpart", hr_dir.join(c).display()));
        }
    }
    for (c, n) in &in_clips {
        if !hr_clips.contains_key(c) {
            offenders
                .push(format!("{} ({n} frames, {role}) has no HR counterpart", input_dir.join(c).display()));
        }
    }
    let whole_clip_missing = |k: &str| {
        kind == Kind::Clips && !(hr_clips.contains_key(&clip_of(k)) && in_clips.contains_key(&clip_of(k)))
    };
    for (k, (p, _)) in &hr {
        if !inp.contains_key(k) && !whole_clip_missing(k) {
            offenders.push(format!("{} (HR) has no {role} counterpart", p.display()));
        }
    }
    for (k, (p, _)) in &inp {
        if !hr.contains_key(k) && !whole_clip_missing(k) {
            offenders.push(format!("{} ({role}) has no HR counterpart", p.display()));
        }
    }
    if !offenders.is_empty() {
        return Err(Error::input(
            input_dir,
            listing(
                &format!("the {role} and HR folders do not pair up ({} offenders)", offenders.len()),
                &offenders,
            ),
        ));
    }
    let pairs = hr
        .into_iter()
        .map(|(name, (hr, _))| {
            let input = inp[&name].0.clone();
            let clip = (kind == Kind::Clips).then(|| name.split('/').next().unwrap_or_default().to_string());
            Pair { name, clip, input, hr }
        })
        .collect();
    Ok(Dataset { kind, pairs })
}

/// Where the SR images come from.
pub enum Method<'a> {
    /// `--sr DIR`: the inputs are SR images.
    Files,
    /// MATLAB-exact `imresize(lr, scale, 'bicubic')` of the LR inputs (8-bit rounding per pass).
    Bicubic,
    /// A network run on the LR inputs; its 8/16-bit output is scored as the papers score saved PNGs.
    Model(&'a mut Upscaler),
}

impl Method<'_> {
    fn role(&self) -> &'static str {
        match self {
            Method::Files => "SR",
            _ => "LR",
        }
    }
}

#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Upscaling factor: required for `Method::Files`, checked against a model's, inferred from
    /// the image sizes for bicubic when absent.
    pub scale: Option<usize>,
    /// Border pixels ignored on every side (default: the scale).
    pub crop: Option<usize>,
    pub channels: Channels,
    pub limits: DecodeLimits,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions { scale: None, crop: None, channels: Channels::Y, limits: DecodeLimits::default() }
    }
}

/// The score of one image.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageScore {
    pub name: String,
    pub clip: Option<String>,
    pub score: Score,
}

/// The mean over one clip's frames.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipScore {
    pub name: String,
    pub frames: usize,
    pub score: Score,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub kind: Kind,
    pub scale: usize,
    pub crop: usize,
    pub images: Vec<ImageScore>,
    /// Per-clip means (empty for a folder of images).
    pub clips: Vec<ClipScore>,
    /// Mean over images, or over clips.
    pub mean: Score,
}

fn decode(p: &Path, limits: &DecodeLimits) -> Result<DecodedImage> {
    decode_file(p, limits)
}

/// Read every pair once and check that sizes match: LR x scale (or SR) = the HR cropped to a
/// multiple of the scale. Returns the scale (inferred for bicubic when not given).
fn check_sizes(ds: &Dataset, method: &Method, opts: &EvalOptions) -> Result<usize> {
    let given = match method {
        Method::Model(up) => {
            let s = up.network().scale();
            if let Some(g) = opts.scale.filter(|&g| g != s) {
                return Err(Error::Usage(format!("the model upscales x{s}, not x{g}")));
            }
            Some(s)
        }
        Method::Files => Some(opts.scale.ok_or_else(|| {
            Error::Usage(
                "--scale is needed with --sr (it sets the modcrop and the default border crop)".into(),
            )
        })?),
        Method::Bicubic => opts.scale,
    };
    if given == Some(0) {
        return Err(Error::Usage("the scale must be at least 1".into()));
    }
    let mut dims = Vec::with_capacity(ds.pairs.len());
    for p in &ds.pairs {
        let a = decode(&p.input, &opts.limits)?;
        let b = decode(&p.hr, &opts.limits)?;
        dims.push(((a.width as usize, a.height as usize), (b.width as usize, b.height as usize)));
    }
    let scale = match given {
        Some(s) => s,
        None => {
            let ((lw, lh), (hw, hh)) = dims[0];
            let s = (hh / lh).min(hw / lw);
            if s == 0 {
                return Err(Error::input(&ds.pairs[0].input, "is larger than its HR image"));
            }
            s
        }
    };
    let files = matches!(method, Method::Files);
    let mut offenders = Vec::new();
    for (p, ((iw, ih), (hw, hh))) in ds.pairs.iter().zip(dims) {
        let (mw, mh) = (hw - hw % scale, hh - hh % scale);
        let (ew, eh) = if files { (iw, ih) } else { (iw * scale, ih * scale) };
        if (ew, eh) != (mw, mh) || mw == 0 || mh == 0 {
            let what = if files { format!("{iw}x{ih}") } else { format!("{iw}x{ih} (x{scale} = {ew}x{eh})") };
            offenders.push(format!(
                "{}: {} {what}, HR {hw}x{hh} (cropped to a multiple of {scale}: {mw}x{mh})",
                p.name,
                method.role()
            ));
        }
    }
    if !offenders.is_empty() {
        return Err(Error::Input {
            path: ds.pairs[0].input.parent().unwrap_or(Path::new("")).to_path_buf(),
            reason: listing(
                &format!("sizes do not match the scale x{scale} ({} offenders)", offenders.len()),
                &offenders,
            ),
        });
    }
    Ok(scale)
}

fn make_sr(method: &mut Method, lr: DecodedImage, scale: usize) -> Result<OutputImage> {
    let view = lr.view();
    match method {
        Method::Files => {
            Ok(OutputImage { width: lr.width, height: lr.height, channels: lr.channels, samples: lr.samples })
        }
        Method::Bicubic => imresize(&view, scale as f64),
        Method::Model(up) => up.upscale(&view),
    }
}

/// Evaluate paired folders. `progress` sees each image's score as it is computed.
pub fn evaluate(
    input_dir: &Path,
    hr_dir: &Path,
    mut method: Method,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(&ImageScore),
) -> Result<Report> {
    let ds = pair_folders(input_dir, hr_dir, method.role())?;
    let scale = check_sizes(&ds, &method, opts)?;
    let crop_px = opts.crop.unwrap_or(scale);
    let mut images = Vec::with_capacity(ds.pairs.len());
    for p in &ds.pairs {
        crate::pipeline::cancel::check()?;
        let lr = decode(&p.input, &opts.limits)?;
        let sr = make_sr(&mut method, lr, scale)?;
        let hr = decode(&p.hr, &opts.limits)?;
        let hr = crop(&hr.view(), 0, 0, sr.width as usize, sr.height as usize)?;
        let s = score(&sr.view(), &hr.view(), crop_px, opts.channels).map_err(|e| match e {
            Error::Usage(m) => Error::input(&p.hr, m),
            e => e,
        })?;
        let is = ImageScore { name: p.name.clone(), clip: p.clip.clone(), score: s };
        progress(&is);
        images.push(is);
    }
    let mut clips = Vec::new();
    let mean = match ds.kind {
        Kind::Images => Score::mean(&images.iter().map(|i| i.score).collect::<Vec<_>>()),
        Kind::Clips => {
            let mut by_clip: BTreeMap<&str, Vec<Score>> = BTreeMap::new();
            for i in &images {
                by_clip.entry(i.clip.as_deref().unwrap_or_default()).or_default().push(i.score);
            }
            for (name, s) in by_clip {
                clips.push(ClipScore {
                    name: name.to_string(),
                    frames: s.len(),
                    score: Score::mean(&s).expect("a clip has frames"),
                });
            }
            Score::mean(&clips.iter().map(|c| c.score).collect::<Vec<_>>())
        }
    }
    .expect("pairing guarantees at least one image");
    Ok(Report { kind: ds.kind, scale, crop: crop_px, images, clips, mean })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, files: &[&str]) {
        for f in files {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
    }

    #[test]
    fn pairs_by_name_without_extension() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("hr"), &["b.png", "a.png"]);
        touch(&d.path().join("lr"), &["a.bmp", "b.png", "notes.txt"]);
        let ds = pair_folders(&d.path().join("lr"), &d.path().join("hr"), "LR").unwrap();
        assert_eq!(ds.kind, Kind::Images);
        let names: Vec<&str> = ds.pairs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(ds.pairs[0].input.ends_with("a.bmp"));
    }

    #[test]
    fn clips_are_detected() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("hr"), &["walk/1.png", "walk/2.png", "cal/1.png"]);
        touch(&d.path().join("lr"), &["walk/1.png", "walk/2.png", "cal/1.png"]);
        let ds = pair_folders(&d.path().join("lr"), &d.path().join("hr"), "LR").unwrap();
        assert_eq!(ds.kind, Kind::Clips);
        assert_eq!(ds.pairs[0].clip.as_deref(), Some("cal"));
        assert_eq!(ds.pairs[0].name, "cal/1");
        // A whole clip missing is reported once; a missing frame by name.
        touch(&d.path().join("lr"), &["city/1.png", "city/2.png"]);
        std::fs::remove_file(d.path().join("lr/walk/2.png")).unwrap();
        let e = pair_folders(&d.path().join("lr"), &d.path().join("hr"), "LR").unwrap_err().to_string();
        assert!(e.contains("city (2 frames, LR) has no HR counterpart"), "{e}");
        assert!(e.contains("walk/2.png (HR) has no LR counterpart"), "{e}");
        assert!(e.contains("2 offenders"), "{e}");
    }

    #[test]
    fn unpaired_mixed_empty_and_ambiguous_folders_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let (hr, lr) = (d.path().join("hr"), d.path().join("lr"));
        touch(&hr, &["a.png", "b.png", "c.png"]);
        touch(&lr, &["a.png", "z.png"]);
        let e = pair_folders(&lr, &hr, "LR").unwrap_err().to_string();
        assert!(e.contains("b.png (HR) has no LR counterpart"), "{e}");
        assert!(e.contains("c.png (HR) has no LR counterpart"), "{e}");
        assert!(e.contains("z.png (LR) has no HR counterpart"), "{e}");
        assert!(e.contains("3 offenders"), "{e}");

        let empty = d.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let e = pair_folders(&empty, &hr, "LR").unwrap_err().to_string();
        assert!(e.contains("has no images"), "{e}");
        let e = pair_folders(&lr, &empty, "LR").unwrap_err().to_string();
        assert!(e.contains("has no images"), "{e}");

        let mixed = d.path().join("mixed");
        touch(&mixed, &["a.png", "clip/1.png"]);
        assert!(pair_folders(&lr, &mixed, "LR").unwrap_err().to_string().contains("mixes"));

        let amb = d.path().join("amb");
        touch(&amb, &["a.png", "a.jpg"]);
        assert!(pair_folders(&amb, &hr, "LR").unwrap_err().to_string().contains("ambiguous"));
        assert!(matches!(pair_folders(&d.path().join("nope"), &hr, "LR"), Err(Error::Io { .. })));
    }
}
