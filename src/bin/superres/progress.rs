//! Progress reporting on stderr: a live line with an ETA when stderr is a terminal, JSON lines on
//! request (`--json`), silence otherwise. stdout stays clean for image data.

use std::io::{IsTerminal, Write};
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Quiet,
    Terminal,
    Json,
}

pub struct Progress {
    mode: Mode,
    start: Instant,
    total: usize,
    /// Files finished (done, skipped or failed), and the time spent on those actually processed.
    finished: usize,
    processed: usize,
    processed_secs: f64,
    line_open: bool,
    /// Past participle for the summary line ("upscaled", "downscaled").
    verb: &'static str,
}

impl Progress {
    pub fn new(json: bool, quiet: bool, total: usize) -> Self {
        let mode = if json {
            Mode::Json
        } else if !quiet && std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Quiet
        };
        let p = Progress {
            mode,
            start: Instant::now(),
            total,
            finished: 0,
            processed: 0,
            processed_secs: 0.0,
            line_open: false,
            verb: "upscaled",
        };
        p.json(serde_json::json!({"event": "start", "files": total}));
        p
    }

    /// Word used for finished files in the summary line.
    pub fn set_verb(&mut self, verb: &'static str) {
        self.verb = verb;
    }

    fn json(&self, v: serde_json::Value) {
        if self.mode == Mode::Json {
            let mut e = std::io::stderr().lock();
            let _ = writeln!(e, "{v}");
        }
    }

    fn eta(&self, extra_fraction: f64) -> Option<f64> {
        if self.processed == 0 && extra_fraction <= 0.0 {
            return None;
        }
        let per = if self.processed > 0 { self.processed_secs / self.processed as f64 } else { 0.0 };
        let remaining = (self.total - self.finished) as f64 - extra_fraction;
        (per > 0.0).then(|| per * remaining.max(0.0))
    }

    /// Tile progress within the current file.
    pub fn tiles(&mut self, file: &str, done: usize, total: usize, file_start: Instant) {
        match self.mode {
            Mode::Json => self.json(serde_json::json!({
                "event": "tile", "file": file, "done": done, "total": total,
            })),
            Mode::Terminal => {
                let frac = done as f64 / total.max(1) as f64;
                let elapsed = file_start.elapsed().as_secs_f64();
                let eta_file = if frac > 0.0 { elapsed / frac * (1.0 - frac) } else { 0.0 };
                let eta = self.eta(frac).map_or(eta_file, |e| e.max(eta_file));
                let mut e = std::io::stderr().lock();
                let _ = write!(
                    e,
                    "\r\x1b[K[{}/{}] {file}: {:.0}%  ETA {}",
                    self.finished + 1,
                    self.total,
                    frac * 100.0,
                    fmt_secs(eta)
                );
                let _ = e.flush();
                self.line_open = true;
            }
            Mode::Quiet => {}
        }
    }

    /// A file finished: `status` is "done", "skipped" or "failed".
    pub fn file(&mut self, input: &str, output: &str, status: &str, secs: f64, error: Option<&str>) {
        self.finished += 1;
        if status == "done" {
            self.processed += 1;
            self.processed_secs += secs;
        }
        match self.mode {
            Mode::Json => self.json(serde_json::json!({
                "event": "file", "index": self.finished, "total": self.total, "input": input,
                "output": output, "status": status, "seconds": secs, "error": error,
            })),
            Mode::Terminal => {
                let mut e = std::io::stderr().lock();
                if self.line_open {
                    let _ = write!(e, "\r\x1b[K");
                    self.line_open = false;
                }
                let eta = self.eta(0.0).map(|s| format!("  ETA {}", fmt_secs(s))).unwrap_or_default();
                let _ = match error {
                    Some(err) => writeln!(e, "[{}/{}] {input}: failed: {err}", self.finished, self.total),
                    None => writeln!(
                        e,
                        "[{}/{}] {input} -> {output}: {status} ({secs:.2}s){eta}",
                        self.finished, self.total
                    ),
                };
            }
            Mode::Quiet => {}
        }
    }

    pub fn summary(&self, done: usize, skipped: usize, failed: usize) {
        let secs = self.start.elapsed().as_secs_f64();
        self.json(serde_json::json!({
            "event": "summary", "done": done, "skipped": skipped, "failed": failed, "seconds": secs,
        }));
        if self.mode == Mode::Terminal && self.total > 1 {
            eprintln!(
                "{done} {}, {skipped} skipped (already present), {failed} failed in {}",
                self.verb,
                fmt_secs(secs)
            );
        }
    }
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
