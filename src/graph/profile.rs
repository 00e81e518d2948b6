//! Opt-in per-node timing (`superres bench --profile`, or `SUPERRES_PROFILE=1` for any verb): the
//! executor times each node and adds it to a process-wide table keyed by what the node is, so a
//! run shows which layers its time goes to. Off by default: the check is one relaxed load per node.

use super::ir::Node;
use crate::tensor::Layout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

static ENABLED: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<Vec<Row>> = Mutex::new(Vec::new());

/// Time spent in one kind of node (same operation and shape).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub label: String,
    pub calls: u64,
    pub seconds: f64,
    /// Multiply-accumulates of the calls (0 for data movement).
    pub macs: u64,
}

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Forget what was recorded (e.g. the warm-up runs).
pub fn reset() {
    TABLE.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// What was recorded, most time first.
pub fn rows() -> Vec<Row> {
    let mut v = TABLE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    v.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    v
}

pub(crate) fn record(node: &Node, x: &Layout, out: &Layout, took: Duration) {
    let (label, macs) = describe(node, x, out);
    let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    match t.iter_mut().find(|r| r.label == label) {
        Some(r) => {
            r.calls += 1;
            r.seconds += took.as_secs_f64();
            r.macs += macs;
        }
        None => t.push(Row { label, calls: 1, seconds: took.as_secs_f64(), macs }),
    }
}

fn describe(node: &Node, x: &Layout, y: &Layout) -> (String, u64) {
    let size = format!("{}x{}", y.w, y.h);
    match node {
        Node::Conv { conv, res, res2, shuffle, .. } => {
            let s = conv.spec();
            let algo = if conv.is_winograd() {
                "winograd"
            } else if conv.is_thin() {
                "thin"
            } else if conv.is_bf16() {
                "bf16-amx"
            } else {
                "direct"
            };
            let extra = match (res.is_some(), res2.is_some(), *shuffle > 1) {
                (_, _, true) => format!(" +shuffle x{shuffle}"),
                (false, false, _) => String::new(),
                (true, false, _) => " +res".into(),
                _ => " +res+res".into(),
            };
            let (h, w) = (y.h / shuffle, y.w / shuffle);
            (
                format!("conv {}x{}/{} {}->{} {algo}{extra} @{w}x{h}", s.kh, s.kw, s.stride, s.cin, s.cout),
                s.macs(h, w),
            )
        }
        Node::DeformConv { conv, .. } => {
            let s = conv.spec();
            let kind = if conv.modulated() { "dcnv2" } else { "dcnv1" };
            (
                format!("{kind} {}x{} {}->{} g{} @{size}", s.kh, s.kw, s.cin, s.cout, conv.groups()),
                s.macs(y.h, y.w),
            )
        }
        Node::Deconv { deconv, .. } => {
            let s = deconv.spec();
            (format!("deconv {}x{}/{} {}->{} @{size}", s.k, s.k, s.stride, s.cin, s.cout), s.macs(x.h, x.w))
        }
        Node::Shuffle { r, .. } => (format!("pixel shuffle x{r} @{size}"), 0),
        Node::Unshuffle { r, .. } => (format!("pixel unshuffle /{r} @{size}"), 0),
        Node::Upsample { r, .. } => (format!("nearest x{r} @{size}"), 0),
        Node::CropAdd { .. } => (format!("crop/add @{size}"), 0),
        Node::Se { .. } => (format!("squeeze-excite @{size}"), 0),
        Node::Bilinear { factor, .. } => (format!("bilinear x{factor} @{size}"), 0),
        Node::Pool { k, stride, .. } => (format!("pool {k}/{stride} @{size}"), 0),
        Node::Concat { .. } => (format!("concat ->{} @{size}", y.c), 0),
        Node::TemporalAttention { .. } => (format!("temporal attention @{size}"), 0),
        Node::TsaCombine { .. } => (format!("tsa combine @{size}"), 0),
        Node::Add { .. } => (format!("add @{size}"), 0),
    }
}
