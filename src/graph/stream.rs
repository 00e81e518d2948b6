//! Row streaming: a graph whose layers keep or multiply the image size (stride-1 convolutions
//! padded to the same size, element-wise adds, concatenations, pixel shuffles and nearest
//! upsampling) run down the image a band of rows at a time.
//! Each value lives in a window of a few rows; a layer computes its next rows as soon as the rows
//! it reads exist, and a window forgets the rows its readers have passed. Every row of every layer
//! is computed exactly once, whatever the image's height, in memory that grows with the width and
//! the depth of the graph but not with the height: tiles of a deep network recompute their
//! receptive field's worth of context on every side, streamed bands recompute nothing.
//!
//! A band's rows are computed by the same kernels as a whole image, on views of the windows whose
//! borders hold the real neighbouring rows (or the zero padding at the image's top and bottom).
//! Direct convolutions give the same bits as on the whole image; Winograd layers anchor their tile
//! grid at each band's first row, which changes the rounding only.

use super::exec::run_node;
use super::ir::{Graph, Node, ValueId};
use super::profile;
use crate::error::Result;
use crate::tensor::{AlignedVec, Layout};

/// Which input rows a node's output rows read: output rows `a..b` read input rows
/// `a / up - extra .. ceil(b / up) + extra` (`extra`: a convolution's padding; `up`: the
/// upscaling of a pixel shuffle or nearest upsampling, fused or not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reach {
    up: usize,
    extra: usize,
}

const SAME: Reach = Reach { up: 1, extra: 0 };

/// The inputs of a streamable node and how far it reads into each, or `None` for a node that
/// cannot be streamed (it strides or shrinks, or needs the whole image, as squeeze-and-
/// excitation's pooling does).
fn reads(n: &Node) -> Option<Vec<(ValueId, Reach)>> {
    let list = match n {
        Node::Conv { x, conv, res, res2, shuffle, .. } => {
            let s = conv.spec();
            if s.stride != 1 || s.kh != 2 * s.pad + 1 || s.kw != 2 * s.pad + 1 {
                return None;
            }
            std::iter::once((*x, Reach { up: *shuffle, extra: s.pad }))
                .chain(res.iter().chain(res2.iter()).map(|&(r, _)| (r, SAME)))
                .collect()
        }
        Node::Shuffle { x, skip, r, .. } => {
            std::iter::once(*x).chain(*skip).map(|v| (v, Reach { up: *r, extra: 0 })).collect()
        }
        Node::Upsample { x, r, .. } => vec![(*x, Reach { up: *r, extra: 0 })],
        Node::Add { a, b, .. } => vec![(*a, SAME), (*b, SAME)],
        Node::Concat { xs, .. } => xs.iter().map(|&v| (v, SAME)).collect(),
        _ => return None,
    };
    // A value read twice must be read the same way: a node sees one view of each value.
    let consistent = list.iter().all(|&(v, r)| list.iter().all(|&(u, q)| u != v || q == r));
    consistent.then_some(list)
}

/// What the walk calls for each step: the step, each window's first row, and the rows each value
/// has so far.
type OnStep<'a> = dyn FnMut(&Step, &[usize], &[usize]) -> Result<()> + 'a;

/// `fill(y0, buf, l)`: write input rows `y0..y0 + l.h` into the interior of `l`.
pub type FillRows<'a> = dyn FnMut(usize, &mut [f32], &Layout) -> Result<()> + 'a;

/// `emit(y0, buf, l)`: output rows `y0..y0 + l.h`, the interior of `l`.
pub type EmitRows<'a> = dyn FnMut(usize, &[f32], &Layout) -> Result<()> + 'a;

/// What the walk over the bands asks the executor to do.
enum Step {
    /// Slide root `root`'s window so that it starts at row `to` (from `from`), keeping rows
    /// `to..top`.
    Slide { root: ValueId, from: usize, to: usize, top: usize },
    /// Write input rows `a..b`.
    Fill { a: usize, b: usize },
    /// Run node `i` for output rows `a..b`.
    Node { i: usize, a: usize, b: usize },
    /// Output rows `a..b` are complete.
    Emit { a: usize, b: usize },
}

/// The windows of a streamed run of an `h x w` image in bands of `band` input rows.
///
/// A node that may write over an input in place on a whole image (a residual) writes into that
/// input's window where the walk shows it safe: every row it overwrites has been read for the
/// last time by every other reader. Chains of residual blocks then share one window instead of
/// one each.
#[derive(Clone, Debug)]
pub struct StreamPlan {
    pub h: usize,
    pub w: usize,
    pub band: usize,
    input: ValueId,
    output: ValueId,
    /// Per node: the value it writes; the values it reads, with the rows beyond its own that it
    /// reads of each.
    outputs: Vec<ValueId>,
    reads: Vec<Vec<(ValueId, Reach)>>,
    /// Rows and columns of every value (at its own resolution).
    hv: Vec<usize>,
    wv: Vec<usize>,
    /// Per value read: the values written into its channels (a row of it exists once all of them
    /// have written that row), and the values written later over the same channels of its window
    /// (a row of it is gone once one of them has written that row).
    sources: Vec<Vec<ValueId>>,
    later: Vec<Vec<ValueId>>,
    /// Root of each value, and the window that holds it (named by a root).
    root: Vec<ValueId>,
    win: Vec<ValueId>,
    /// Per window: the values written into it, and the nodes reading it (with how).
    writers: Vec<Vec<ValueId>>,
    readers: Vec<Vec<(usize, Reach)>>,
    offset_of: Vec<usize>,
    channels: Vec<usize>,
    /// Per window: rows (and columns) of border around it, the widest padding read from it; and
    /// the image rows it holds (0: not a window).
    pad: Vec<usize>,
    cap: Vec<usize>,
}

impl StreamPlan {
    /// Plan `g` over an `h x w` input in bands of `band` rows; `None` when some node cannot be
    /// streamed, the graph has several inputs or outputs, or a size is 0.
    pub fn new(g: &Graph, h: usize, w: usize, band: usize) -> Option<StreamPlan> {
        if g.inputs().len() != 1 || g.outputs().len() != 1 || h == 0 || w == 0 || band == 0 {
            return None;
        }
        let root = |v: ValueId| g.root_of(v).0;
        let sizes = g.sizes(h, w)?;
        // Candidate shared windows, as on a whole image (see `Plan`): an output over an input of
        // the same layout and position that no other input of the node shares a buffer with.
        let mut aliases: Vec<(ValueId, ValueId)> = Vec::new();
        let mut first_write = vec![true; g.num_values()];
        for n in g.nodes() {
            let y = n.output();
            let ry = root(y);
            if std::mem::replace(&mut first_write[ry], false) {
                let ins = n.inputs();
                let pick = n.in_place_candidates().into_iter().find(|&c| {
                    let rc = root(c);
                    rc != g.input()
                        && g.channels(rc) == g.channels(ry)
                        && g.channels(c) == g.channels(y)
                        && sizes[rc] == sizes[ry]
                        && g.root_of(c).1 == g.root_of(y).1
                        && ins.iter().all(|&o| o == c || root(o) != rc)
                });
                if let Some(c) = pick {
                    aliases.push((ry, root(c)));
                }
            }
        }
        loop {
            let mut plan = Self::with_aliases(g, h, w, band, &aliases)?;
            match plan.walk_checked() {
                Ok(cap) => {
                    plan.cap = cap;
                    return Some(plan);
                }
                // The window of this root would overwrite rows still to be read: its own.
                Err(r) => aliases.retain(|&(ry, _)| ry != r),
            }
        }
    }

    fn with_aliases(
        g: &Graph,
        h: usize,
        w: usize,
        band: usize,
        aliases: &[(ValueId, ValueId)],
    ) -> Option<StreamPlan> {
        let reads = g.nodes().iter().map(reads).collect::<Option<Vec<_>>>()?;
        let nv = g.num_values();
        let sizes = g.sizes(h, w)?;
        let (hv, wv): (Vec<usize>, Vec<usize>) = sizes.into_iter().unzip();
        let root: Vec<ValueId> = (0..nv).map(|v| g.root_of(v).0).collect();
        let offset_of: Vec<usize> = (0..nv).map(|v| g.root_of(v).1).collect();
        let channels: Vec<usize> = (0..nv).map(|v| g.channels(v)).collect();
        let outputs: Vec<ValueId> = g.nodes().iter().map(|n| n.output()).collect();
        let written: Vec<ValueId> = std::iter::once(g.input()).chain(outputs.iter().copied()).collect();
        // Aliases are in node order, so a chain resolves front to back.
        let mut win_of_root: Vec<ValueId> = (0..nv).collect();
        for &(ry, rc) in aliases {
            win_of_root[ry] = win_of_root[rc];
        }
        let win: Vec<ValueId> = (0..nv).map(|v| win_of_root[root[v]]).collect();
        let channels_overlap = |a: ValueId, b: ValueId| {
            offset_of[a] < offset_of[b] + channels[b] && offset_of[b] < offset_of[a] + channels[a]
        };
        let mut sources = vec![Vec::new(); nv];
        let mut later = vec![Vec::new(); nv];
        let mut writers = vec![Vec::new(); nv];
        let mut readers = vec![Vec::new(); nv];
        let mut pad = vec![0usize; nv];
        for &v in &written {
            writers[win[v]].push(v);
        }
        for (i, rs) in reads.iter().enumerate() {
            for &(v, reach) in rs {
                sources[v] = written
                    .iter()
                    .copied()
                    .filter(|&s| root[s] == root[v] && channels_overlap(s, v))
                    .collect();
                let last = written.iter().rposition(|s| sources[v].contains(s))?;
                later[v] = written[last + 1..]
                    .iter()
                    .copied()
                    .filter(|&s| win[s] == win[v] && root[s] != root[v] && channels_overlap(s, v))
                    .collect();
                readers[win[v]].push((i, reach));
                pad[win[v]] = pad[win[v]].max(reach.extra);
            }
        }
        Some(StreamPlan {
            h,
            w,
            band,
            input: g.input(),
            output: g.output(),
            outputs,
            reads,
            hv,
            wv,
            sources,
            later,
            root,
            win,
            writers,
            readers,
            offset_of,
            channels,
            pad,
            cap: vec![0; nv],
        })
    }

    /// The walk without windows: the rows each window needs, or a root whose shared window
    /// would lose rows still to be read.
    fn walk_checked(&self) -> std::result::Result<Vec<usize>, ValueId> {
        let mut lost = None;
        let walked = self.walk(None, &mut |step, _, produced| {
            if let Step::Node { i, a, .. } = *step {
                for &(v, r) in &self.reads[i] {
                    let lo = (a / r.up).saturating_sub(r.extra);
                    if let Some(&s) = self.later[v].iter().find(|&&s| produced[s] > lo) {
                        lost = Some(self.root_of(s));
                        return Err(crate::error::Error::Model("stream window reused too early".into()));
                    }
                }
            }
            Ok(())
        });
        match (walked, lost) {
            (Ok(cap), _) => Ok(cap),
            (Err(_), Some(r)) => Err(r),
            (Err(e), None) => panic!("a dry stream walk failed: {e}"),
        }
    }

    fn root_of(&self, v: ValueId) -> ValueId {
        self.root[v]
    }

    /// Bytes of all the windows.
    pub fn bytes(&self) -> usize {
        (0..self.cap.len()).filter_map(|r| self.window(r)).map(|l| l.len() * 4).sum()
    }

    /// Bytes of the same windows over an image `w` pixels wide.
    pub fn bytes_for_width(&self, w: usize) -> usize {
        (0..self.cap.len())
            .filter_map(|r| self.window(r).map(|l| (r, l)))
            .map(|(r, l)| Layout { w: self.wv[r] / self.w * w, ..l }.len().saturating_mul(4))
            .sum()
    }

    /// Number of windows (roots that share one count once).
    pub fn windows(&self) -> usize {
        self.cap.iter().filter(|&&c| c > 0).count()
    }

    /// Rows of root `r`'s window (0 for a value that is not a used root).
    pub fn window_rows(&self, r: ValueId) -> usize {
        self.cap[r]
    }

    /// The layout of root `r`'s window (its `h` is the window's rows).
    fn window(&self, r: ValueId) -> Option<Layout> {
        (self.cap[r] > 0).then(|| Layout::new(self.cap[r], self.wv[r], self.channels[r], self.pad[r]))
    }

    /// First row of root `r` that is still needed: by a reader that is not done, by the output
    /// not yet handed on, or because a writer has not written it yet.
    fn keep_from(&self, r: ValueId, produced: &[usize], emitted: usize) -> usize {
        let mut k = self.writers[r].iter().map(|&v| produced[v]).min().unwrap_or(self.hv[r]);
        for &(i, reach) in &self.readers[r] {
            let y = self.outputs[i];
            if produced[y] < self.hv[y] {
                k = k.min((produced[y] / reach.up).saturating_sub(reach.extra));
            }
        }
        if r == self.win[self.output] {
            k = k.min(emitted);
        }
        k
    }

    /// Walk down the image: each round fills a band of input rows, runs every node over the rows
    /// it can now compute, and hands on the output rows that are complete. With `caps` (the
    /// window sizes) a window slides up to its first needed row when a write would run past its
    /// end; without, returns the window sizes this walk needs.
    fn walk(&self, caps: Option<&[usize]>, on: &mut OnStep) -> Result<Vec<usize>> {
        let nv = self.root.len();
        let mut produced = vec![0usize; nv];
        let mut base = vec![0usize; nv];
        let mut need = vec![0usize; nv];
        let mut emitted = 0;
        let mut room = |r: ValueId,
                        b: usize,
                        produced: &[usize],
                        emitted: usize,
                        base: &mut Vec<usize>,
                        on: &mut OnStep|
         -> Result<()> {
            let k = self.keep_from(r, produced, emitted);
            match caps {
                None => need[r] = need[r].max(b - k),
                Some(caps) if b - base[r] > caps[r] => {
                    assert!(b - k <= caps[r], "stream window of root {r} too small");
                    let top = self.writers[r].iter().map(|&v| produced[v]).max().unwrap_or(k);
                    on(&Step::Slide { root: r, from: base[r], to: k, top }, base, produced)?;
                    base[r] = k;
                }
                Some(_) => {}
            }
            Ok(())
        };
        let (hin, hout) = (self.hv[self.input], self.hv[self.output]);
        while emitted < hout {
            // Every node goes down the image at the input's pace: a band of input rows' worth per
            // round, so that where the input no longer holds the first layers back (at the end),
            // deep layers go no faster than higher-resolution layers after them can follow.
            let start = produced.clone();
            let mut moved = false;
            let a = produced[self.input];
            if a < hin {
                let b = (a + self.band).min(hin);
                room(self.win[self.input], b, &produced, emitted, &mut base, on)?;
                on(&Step::Fill { a, b }, &base, &produced)?;
                produced[self.input] = b;
                moved = true;
            }
            // Passes over the nodes until none can move: a node computes at most a band of its
            // own rows per call, so layers at a higher resolution than the input take several
            // passes to catch up with a band of input, and their windows stay a band tall.
            loop {
                let mut pass = false;
                for (i, rs) in self.reads.iter().enumerate() {
                    let y = self.outputs[i];
                    let mut end = self.hv[y];
                    let mut up = 1;
                    for &(v, r) in rs {
                        let avail = self.sources[v].iter().map(|&s| produced[s]).min().unwrap_or(0);
                        if avail < self.hv[v] {
                            end = end.min(avail.saturating_sub(r.extra) * r.up);
                        }
                        up = up.max(r.up);
                    }
                    // Whole input rows' worth of output rows per call (an upscaling node writes
                    // `up` rows per input row), at most a band per call and a band of input rows'
                    // worth per round.
                    let a = produced[y];
                    let pace = start[y] + self.band * self.hv[y] / hin;
                    let end = end.min(a + (self.band / up).max(1) * up).min(pace / up * up);
                    if end > a {
                        room(self.win[y], end, &produced, emitted, &mut base, on)?;
                        on(&Step::Node { i, a, b: end }, &base, &produced)?;
                        produced[y] = end;
                        pass = true;
                    }
                }
                let done = produced[self.output];
                if done > emitted {
                    on(&Step::Emit { a: emitted, b: done }, &base, &produced)?;
                    emitted = done;
                    pass = true;
                }
                if !pass {
                    break;
                }
                moved = true;
            }
            assert!(moved, "a streamed graph stopped short of its output");
        }
        Ok(need)
    }
}

/// The windows of streamed runs, kept between runs.
#[derive(Default, Debug)]
pub struct StreamArena {
    bufs: Vec<AlignedVec>,
}

impl StreamArena {
    pub fn new() -> Self {
        StreamArena::default()
    }

    /// Bytes currently reserved.
    pub fn bytes(&self) -> usize {
        self.bufs.iter().map(|b| b.bytes()).sum()
    }
}

impl Graph {
    /// Run a single-input graph down the image in bands (see [`StreamPlan`]): `fill(y0, buf, l)`
    /// writes input rows `y0..y0 + l.h` (the interior of `l`), `emit(y0, buf, l)` receives output
    /// rows `y0..y0 + l.h`, each row once, top to bottom. An error from either stops the run.
    pub fn stream(
        &self,
        plan: &StreamPlan,
        arena: &mut StreamArena,
        fill: &mut FillRows,
        emit: &mut EmitRows,
    ) -> Result<()> {
        super::on_pool(|| self.stream_here(plan, arena, fill, emit))
    }

    fn stream_here(
        &self,
        plan: &StreamPlan,
        arena: &mut StreamArena,
        fill: &mut FillRows,
        emit: &mut EmitRows,
    ) -> Result<()> {
        assert_eq!(plan.outputs.len(), self.nodes().len(), "a stream plan of another graph");
        let nv = plan.cap.len();
        if arena.bufs.len() < nv {
            arena.bufs.resize_with(nv, AlignedVec::default);
        }
        let mut ptrs = vec![std::ptr::null_mut::<f32>(); nv];
        for (r, p) in ptrs.iter_mut().enumerate() {
            if let Some(l) = plan.window(r) {
                let b = &mut arena.bufs[r];
                b.ensure_len(l.len());
                // Borders, and the rows past the image's bottom, must read as zero padding.
                b.as_mut_slice()[..l.len()].fill(0.0);
                *p = b.as_mut_ptr();
            }
        }
        // Value `v`'s rows a..b as a layout of their own, and the pointer to its channel 0.
        let rows = |v: ValueId, a: usize, b: usize, base: &[usize]| -> (*mut f32, Layout) {
            let r = plan.win[v];
            let win = plan.window(r).expect("a window for every value the walk touches");
            let l = Layout { h: b - a, c: plan.channels[v], ..win };
            // SAFETY: rows a..b lie in the window (the walk slides it so), and so do the `pad`
            // rows around them, the window having `pad` rows of border on each side.
            let p = unsafe { ptrs[r].add((a - base[r]) * win.row_stride() + plan.offset_of[v]) };
            (p, l)
        };
        let nodes = self.nodes();
        plan.walk(Some(&plan.cap), &mut |step, base, _| {
            match *step {
                Step::Slide { root, from, to, top } => {
                    let l = plan.window(root).expect("window");
                    let rs = l.row_stride();
                    // SAFETY: the window owns l.len() floats and no view of it is alive.
                    let buf = unsafe { std::slice::from_raw_parts_mut(ptrs[root], l.len()) };
                    let (src, dst) = ((to - from + l.pad) * rs, l.pad * rs);
                    buf.copy_within(src..src + (top - to) * rs, dst);
                    // Rows past the image's bottom that are now in the window read as padding.
                    let below = plan.hv[root] - to + l.pad;
                    let end = (below + l.pad).min(l.hp());
                    if below < end {
                        buf[below * rs..end * rs].fill(0.0);
                    }
                }
                Step::Fill { a, b } => {
                    let (p, l) = rows(plan.input, a, b, base);
                    // SAFETY: the input's window holds these rows and their border; nothing
                    // else refers to it now.
                    let buf = unsafe { std::slice::from_raw_parts_mut(p, l.len()) };
                    fill(a, buf, &l)?;
                }
                Step::Node { i, a, b } => {
                    let node = &nodes[i];
                    let started = profile::enabled().then(std::time::Instant::now);
                    // Inputs that are upscaled are seen over the rows these output rows come
                    // from; their neighbours above and below are in the border.
                    let view = |v: ValueId| match plan.reads[i].iter().find(|r| r.0 == v) {
                        Some(&(_, r)) => rows(v, a / r.up, b.div_ceil(r.up), base),
                        None => rows(v, a, b, base),
                    };
                    let (yp, yl) = view(node.output());
                    // SAFETY: each view covers rows a..b of a window that holds them and the
                    // rows of border the node reads; the border rows hold the neighbouring rows
                    // of the image, or zeros beyond its top and bottom, as on a whole image; a
                    // node writes a root or view no input of it shares channels with.
                    unsafe { run_node(node, &view, yp, &yl, std::ptr::null_mut()) };
                    if let Some(t) = started {
                        let x = node.inputs().first().map(|&v| view(v).1).unwrap_or(yl);
                        profile::record(node, &x, &yl, t.elapsed());
                    }
                }
                Step::Emit { a, b } => {
                    let (p, l) = rows(plan.output, a, b, base);
                    // SAFETY: the output's window holds these rows; no node is running.
                    emit(a, unsafe { std::slice::from_raw_parts(p, l.len()) }, &l)?;
                }
            }
            Ok(())
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuLevel;
    use crate::graph::{Arena, Plan};
    use crate::kernels::conv::{Conv2d, ConvAlgo, ConvSpec};
    use crate::kernels::gemm::Activation;
    use crate::kernels::testutil::rand_vec;

    /// Residual blocks, a dense block written through views (with a 5x5 and 1x1 layers and a
    /// residual of a residual), a concatenation and an activated add: every node kind a stream
    /// runs, and values read at several depths.
    fn graph(level: CpuLevel, algo: ConvAlgo) -> Graph {
        let mut seed = 0;
        let mut conv = |cin: usize, cout: usize, k: usize, act: Activation| {
            seed += 1;
            let spec = ConvSpec::same(cin, cout, k);
            let w = rand_vec(cout * cin * k * k, seed, 0.4 / (cin * k * k) as f32);
            let b = rand_vec(cout, seed + 100, 0.1);
            let algo = if k == 3 { algo } else { ConvAlgo::Direct };
            Conv2d::with_algo(level, spec, &w, Some(&b), act, None, algo)
        };
        let mut g = Graph::new(3);
        let h0 = g.conv(g.input(), conv(3, 8, 3, Activation::None));
        // Three residual blocks: the second and third write over their input's window, the
        // first may not (h0 is read again at the end).
        let mut x1 = h0;
        for _ in 0..3 {
            let t = g.conv(x1, conv(8, 8, 3, Activation::Relu));
            x1 = g.conv_residual(t, conv(8, 8, 3, Activation::None), x1, 0.5);
        }
        let buf = g.buffer(16);
        let x = g.view(buf, 0, 8);
        g.conv_into(x1, conv(8, 8, 1, Activation::None), None, None, Some(x));
        let f1 = g.view(buf, 8, 4);
        g.conv_into(x, conv(8, 4, 3, Activation::LeakyRelu(0.2)), None, None, Some(f1));
        let pre = g.view(buf, 0, 12);
        let f2 = g.view(buf, 12, 4);
        g.conv_into(pre, conv(12, 4, 5, Activation::LeakyRelu(0.2)), None, None, Some(f2));
        let all = g.view(buf, 0, 16);
        let out = g.conv_into(all, conv(16, 8, 1, Activation::None), Some((x, 0.2)), Some((h0, 1.0)), None);
        let cat = g.concat(&[out, x1]);
        let c = g.conv(cat, conv(16, 8, 3, Activation::None));
        let s = g.add_act(c, h0, Activation::Relu);
        g.conv(s, conv(8, 6, 3, Activation::None));
        g
    }

    /// An x4 network: a body, a fused conv + pixel shuffle where the level allows (else conv,
    /// then shuffle), nearest upsampling and a conv, and the image added back nearest-upsampled
    /// through a shuffle's skip (SRVGG's ending).
    fn upscaler(level: CpuLevel, algo: ConvAlgo) -> Graph {
        let mut seed = 50;
        let mut conv = |cin: usize, cout: usize, act: Activation, algo: ConvAlgo| {
            seed += 1;
            let spec = ConvSpec::same(cin, cout, 3);
            let w = rand_vec(cout * cin * 9, seed, 0.4 / (cin * 9) as f32);
            let b = rand_vec(cout, seed + 100, 0.1);
            Conv2d::with_algo(level, spec, &w, Some(&b), act, None, algo)
        };
        let lanes = crate::kernels::gemm::Shape::of(level).lanes;
        let f = 4 * lanes;
        let mut g = Graph::new(3);
        let h0 = g.conv(g.input(), conv(3, f, Activation::None, algo));
        let t = g.conv(h0, conv(f, f, Activation::Relu, algo));
        let x = g.conv_residual(t, conv(f, f, Activation::None, algo), h0, 1.0);
        let spec = ConvSpec::same(f, 4 * f, 3);
        let up = conv(f, 4 * f, Activation::LeakyRelu(0.1), algo);
        let x = if Conv2d::writes_shuffled(level, &spec, algo, 2) {
            g.conv_shuffled(x, up, 2)
        } else {
            let y = g.conv(x, up);
            g.shuffle(y, None, 2, crate::graph::ShuffleOrder::Grouped)
        };
        let up2 = g.upsample_nearest(x, 2);
        let u = g.conv(up2, conv(f, 3, Activation::LeakyRelu(0.2), algo));
        let y = g.conv(h0, conv(f, 48, Activation::None, algo));
        let b = g.shuffle(y, Some(g.input()), 4, crate::graph::ShuffleOrder::Torch);
        g.add(u, b);
        g
    }

    #[test]
    fn streamed_upscaling_equals_the_whole_image() {
        for level in CpuLevel::supported() {
            for algo in [ConvAlgo::Direct, ConvAlgo::Winograd] {
                let g = upscaler(level, algo);
                for (h, w) in [(1, 1), (3, 2), (17, 5), (30, 9)] {
                    let x = rand_vec(h * w * 3, (h * 7 + w) as u64, 1.0);
                    let want = whole(&g, &x, h, w);
                    for band in [1, 2, 5, 12, h + 1] {
                        let got = streamed(&g, &x, h, w, band);
                        assert_eq!(got.len(), want.len());
                        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                        // Winograd tiles start at each band's first row: rounding only.
                        let tol = if algo == ConvAlgo::Direct { 0.0 } else { 1e-5 };
                        assert!(worst <= tol, "{level} {algo:?} {h}x{w} band {band}: off by {worst}");
                    }
                }
            }
        }
    }

    fn whole(g: &Graph, x: &[f32], h: usize, w: usize) -> Vec<f32> {
        let plan = Plan::new(g, h, w).unwrap();
        g.run(
            &plan,
            &mut Arena::new(),
            |buf, l| {
                for y in 0..h {
                    for xx in 0..w {
                        let o = l.offset(y as isize, xx as isize) as usize;
                        buf[o..o + 3].copy_from_slice(&x[(y * w + xx) * 3..][..3]);
                    }
                }
            },
            |buf, l| {
                let mut out = Vec::new();
                for y in 0..l.h {
                    for xx in 0..l.w {
                        let o = l.offset(y as isize, xx as isize) as usize;
                        out.extend_from_slice(&buf[o..o + l.c]);
                    }
                }
                out
            },
        )
    }

    fn streamed(g: &Graph, x: &[f32], h: usize, w: usize, band: usize) -> Vec<f32> {
        let plan = StreamPlan::new(g, h, w, band).expect("streamable");
        let mut out = Vec::new();
        let mut next = 0;
        g.stream(
            &plan,
            &mut StreamArena::new(),
            &mut |y0, buf, l| {
                for y in 0..l.h {
                    for xx in 0..w {
                        let o = l.offset(y as isize, xx as isize) as usize;
                        buf[o..o + 3].copy_from_slice(&x[((y0 + y) * w + xx) * 3..][..3]);
                    }
                }
                Ok(())
            },
            &mut |y0, buf, l| {
                assert_eq!(y0, next, "rows in order, each once");
                next += l.h;
                for y in 0..l.h {
                    for xx in 0..l.w {
                        let o = l.offset(y as isize, xx as isize) as usize;
                        out.extend_from_slice(&buf[o..o + l.c]);
                    }
                }
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(next, g.sizes(h, w).unwrap()[g.output()].0);
        out
    }

    #[test]
    fn streamed_bands_equal_the_whole_image() {
        for level in CpuLevel::supported() {
            for algo in [ConvAlgo::Direct, ConvAlgo::Winograd] {
                let g = graph(level, algo);
                for (h, w) in [(1, 1), (2, 5), (9, 1), (23, 13), (40, 7)] {
                    let x = rand_vec(h * w * 3, (h * 31 + w) as u64, 1.0);
                    let want = whole(&g, &x, h, w);
                    for band in [1, 2, 3, 4, 7, 12, h, h + 5] {
                        let got = streamed(&g, &x, h, w, band);
                        assert_eq!(got.len(), want.len());
                        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                            // Winograd's tiles start at each band's first row: rounding only.
                            let tol = if algo == ConvAlgo::Direct { 0.0 } else { 1e-5 * (1.0 + b.abs()) };
                            assert!(
                                (a - b).abs() <= tol,
                                "{level} {algo:?} {h}x{w} band {band}: element {i}: {a} vs {b}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn windows_hold_a_band_and_the_rows_readers_lag_behind() {
        let g = graph(CpuLevel::Portable, ConvAlgo::Direct);
        let tall = StreamPlan::new(&g, 1000, 4, 8).unwrap();
        // Memory does not depend on the height.
        for h in [100, 5000, 5003] {
            assert_eq!(StreamPlan::new(&g, h, 4, 8).unwrap().bytes(), tall.bytes(), "{h} rows");
        }
        // A band, plus at most the rows between a writer and its slowest reader (12 layers).
        for r in 0..g.num_values() {
            assert!(tall.window_rows(r) <= 8 + 12, "root {r}: {} rows", tall.window_rows(r));
        }
        // The first conv's output is read by layers down to the end (a skip of depth 12): its
        // window keeps those rows.
        assert!(tall.window_rows(1) > 8 + 2);
        // Residual blocks 2 and 3 and the activated add write over their inputs' windows.
        let roots = std::iter::once(g.input()).chain(g.nodes().iter().map(|n| g.root_of(n.output()).0));
        let roots: std::collections::BTreeSet<_> = roots.collect();
        assert_eq!(tall.windows(), roots.len() - 3);
        // Wider images take proportionally more.
        let wide = StreamPlan::new(&g, 1000, 40, 8).unwrap();
        assert!(wide.bytes() > 5 * tall.bytes());
    }

    #[test]
    fn strided_shrinking_and_global_nodes_are_not_streamed() {
        let shape = |spec| Conv2d::shape_only(spec, Activation::None);
        let mut g = Graph::new(3);
        g.conv(g.input(), shape(ConvSpec { cin: 3, cout: 4, kh: 3, kw: 3, stride: 2, pad: 1 }));
        assert!(StreamPlan::new(&g, 10, 10, 4).is_none());
        let mut g = Graph::new(3);
        g.conv(g.input(), shape(ConvSpec { cin: 3, cout: 4, kh: 3, kw: 3, stride: 1, pad: 0 }));
        assert!(StreamPlan::new(&g, 10, 10, 4).is_none());
        let mut g = Graph::new(3);
        g.pool(g.input(), crate::kernels::sample::PoolKind::Max, 2, 2, 0);
        assert!(StreamPlan::new(&g, 10, 10, 4).is_none());
        // Upscaling is streamed.
        let mut g = Graph::new(3);
        let c = g.conv(g.input(), shape(ConvSpec::same(3, 12, 3)));
        g.pixel_shuffle(c, 2);
        assert!(StreamPlan::new(&g, 10, 10, 4).is_some());
    }
}
