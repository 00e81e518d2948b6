//! Runs a planned graph over reusable buffers.

use super::ir::{Graph, Node, ValueId};
use super::plan::Plan;
use super::profile;
use crate::kernels::{attention, elementwise, sample, shuffle};
use crate::tensor::{clear_border, AlignedVec, Layout};

/// Activation buffers and scratch, grown on demand and kept across runs so steady-state
/// inference allocates nothing.
#[derive(Default, Debug)]
pub struct Arena {
    slots: Vec<AlignedVec>,
    scratch: AlignedVec,
}

impl Arena {
    pub fn new() -> Self {
        Arena::default()
    }

    fn prepare(&mut self, plan: &Plan) {
        if self.slots.len() < plan.slot_len.len() {
            self.slots.resize_with(plan.slot_len.len(), AlignedVec::default);
        }
        for (s, &len) in self.slots.iter_mut().zip(&plan.slot_len) {
            s.ensure_len(len);
        }
        self.scratch.ensure_len(plan.scratch_len);
    }

    /// Bytes currently reserved.
    pub fn bytes(&self) -> usize {
        self.slots.iter().map(|s| s.bytes()).sum::<usize>() + self.scratch.bytes()
    }
}

impl Graph {
    /// Run a single-input graph: `fill` writes the input value's interior (its border is already
    /// zero), `read` receives the (first) output value.
    pub fn run<R>(
        &self,
        plan: &Plan,
        arena: &mut Arena,
        fill: impl FnOnce(&mut [f32], &Layout),
        read: impl FnOnce(&[f32], &Layout) -> R,
    ) -> R {
        let mut fill = Some(fill);
        let mut read = Some(read);
        let mut out = None;
        self.run_multi(
            plan,
            arena,
            &mut |i, buf, l| {
                if i == 0 {
                    (fill.take().expect("one input"))(buf, l)
                }
            },
            &mut |o, buf, l| {
                if o == 0 {
                    out = Some((read.take().expect("one output"))(buf, l));
                }
            },
        );
        out.expect("the graph has an output")
    }

    /// Run a graph with several inputs and outputs: `fill(i, ..)` writes input `i`, `read(o, ..)`
    /// receives output `o` (in the order of [`Graph::inputs`] / [`Graph::outputs`]).
    pub fn run_multi(
        &self,
        plan: &Plan,
        arena: &mut Arena,
        fill: &mut dyn FnMut(usize, &mut [f32], &Layout),
        read: &mut dyn FnMut(usize, &[f32], &Layout),
    ) {
        super::on_pool(|| self.run_multi_here(plan, arena, fill, read))
    }

    fn run_multi_here(
        &self,
        plan: &Plan,
        arena: &mut Arena,
        fill: &mut dyn FnMut(usize, &mut [f32], &Layout),
        read: &mut dyn FnMut(usize, &[f32], &Layout),
    ) {
        arena.prepare(plan);
        let ptrs: Vec<*mut f32> = arena.slots.iter_mut().map(|s| s.as_mut_ptr()).collect();
        let scratch = arena.scratch.as_mut_ptr();
        // SAFETY (for every `add` below): offsets are channel offsets inside the root's pixel,
        // and the slot holds the root's whole layout.
        let view = |v: usize| (unsafe { ptrs[plan.slot_of[v]].add(plan.offset_of[v]) }, plan.layouts[v]);
        let root_layout = |v: usize| Layout { c: self.channels(v), ..plan.layouts[v] };
        for (i, &v) in self.inputs().iter().enumerate() {
            let (p, l) = view(v);
            // SAFETY: the slot holds at least l.len() floats (Arena::prepare); inputs have
            // distinct slots and no other reference to them is alive.
            let buf = unsafe { std::slice::from_raw_parts_mut(p, l.len()) };
            clear_border(buf, &l);
            fill(i, buf, &l);
        }
        for (i, node) in self.nodes().iter().enumerate() {
            for &r in &plan.clear_before[i] {
                let l = root_layout(r);
                // SAFETY: `r` is a root: its slot holds its whole layout, and no node is running.
                unsafe { clear_border(std::slice::from_raw_parts_mut(ptrs[plan.slot_of[r]], l.len()), &l) };
            }
            let (yp, yl) = view(node.output());
            let started = profile::enabled().then(std::time::Instant::now);
            // SAFETY: pointers address views inside slots sized by the plan for these layouts; the
            // plan never gives a node's output the buffer of a value the node reads, except an
            // in-place candidate with an identical layout and position; convolution inputs have
            // zero borders at least their padding.
            unsafe { run_node(node, &view, yp, &yl, scratch) };
            if let Some(t) = started {
                let x = node.inputs().first().map(|&v| plan.layouts[v]).unwrap_or(yl);
                profile::record(node, &x, &yl, t.elapsed());
            }
        }
        for (o, v) in self.outputs().into_iter().enumerate() {
            let (p, l) = view(v);
            // SAFETY: an output slot holds l.len() floats from p (a root: offset 0); no mutable
            // reference is alive.
            read(o, unsafe { std::slice::from_raw_parts(p, l.len()) }, &l);
        }
    }
}

/// Run one node: `view(v)` gives a value's channel-0 pointer and layout, `(y, yl)` the output's.
///
/// # Safety
/// The pointers address views inside buffers sized for these layouts; a node's output never
/// shares memory with a value it reads, except an in-place candidate with an identical layout
/// and position, which the kernels support; convolution inputs have borders at least their
/// padding, and whatever lies in them (zeros, or real rows of a larger map) is what the
/// convolution should see there; `scratch` holds the transposed convolution's columns.
pub(super) unsafe fn run_node(
    node: &Node,
    view: &dyn Fn(ValueId) -> (*mut f32, Layout),
    yp: *mut f32,
    yl: &Layout,
    scratch: *mut f32,
) {
    let yl = *yl;
    // SAFETY (all arms): this function's contract is each kernel's.
    match node {
        Node::Conv { x, conv, shuffle, .. } if *shuffle > 1 => {
            let (xp, xl) = view(*x);
            unsafe { conv.run_raw_shuffled(xp, &xl, yp, &yl, *shuffle) };
        }
        Node::Conv { x, conv, res, res2, .. } => {
            let (xp, xl) = view(*x);
            let res = res.map(|(r, s)| {
                let (rp, rl) = view(r);
                (rp as *const f32, rl, s)
            });
            let res2 = res2.map(|(r, s)| {
                let (rp, rl) = view(r);
                (rp as *const f32, rl, s)
            });
            unsafe {
                conv.run_raw(
                    xp,
                    &xl,
                    yp,
                    &yl,
                    res.as_ref().map(|(p, l, s)| (*p, l, *s)),
                    res2.as_ref().map(|(p, l, s)| (*p, l, *s)),
                )
            };
        }
        Node::Shuffle { x, skip, r, order, .. } => {
            let (xp, xl) = view(*x);
            let skip = skip.map(&view);
            unsafe {
                shuffle::run_raw(
                    xp,
                    &xl,
                    skip.as_ref().map(|(p, l)| (*p as *const f32, l)),
                    yp,
                    &yl,
                    *r,
                    *order,
                )
            };
        }
        Node::Unshuffle { x, r, .. } => {
            let (xp, xl) = view(*x);
            unsafe { shuffle::unshuffle_raw(xp, &xl, yp, &yl, *r) };
        }
        Node::Upsample { x, r, .. } => {
            let (xp, xl) = view(*x);
            unsafe { shuffle::upsample_nearest_raw(xp, &xl, yp, &yl, *r) };
        }
        Node::Deconv { x, deconv, .. } => {
            let (xp, xl) = view(*x);
            unsafe { deconv.run_raw(xp, &xl, yp, &yl, scratch) };
        }
        Node::CropAdd { a, top, left, b, .. } => {
            let (ap, al) = view(*a);
            let b = b.map(&view);
            unsafe {
                elementwise::crop_add_raw(
                    ap,
                    &al,
                    *top,
                    *left,
                    b.as_ref().map(|(p, l)| (*p as *const f32, l)),
                    yp,
                    &yl,
                )
            };
        }
        Node::Se { x, se, .. } => {
            let (xp, xl) = view(*x);
            unsafe { se.run_raw(xp, &xl, yp, &yl) };
        }
        Node::DeformConv { x, off, conv, res, .. } => {
            let (xp, xl) = view(*x);
            let (op, ol) = view(*off);
            let res = res.map(|(r, s)| {
                let (rp, rl) = view(r);
                (rp as *const f32, rl, s)
            });
            unsafe { conv.run_raw(xp, &xl, op, &ol, yp, &yl, res.as_ref().map(|(p, l, s)| (*p, l, *s))) };
        }
        Node::Bilinear { x, factor, mult, .. } => {
            let (xp, xl) = view(*x);
            unsafe { sample::bilinear_raw(xp, &xl, yp, &yl, *factor, *mult) };
        }
        Node::Pool { x, kind, k, stride, pad, .. } => {
            let (xp, xl) = view(*x);
            unsafe { sample::pool_raw(xp, &xl, yp, &yl, *kind, *k, *stride, *pad) };
        }
        Node::Concat { xs, .. } => {
            let xs: Vec<_> = xs
                .iter()
                .map(|&v| {
                    let (p, l) = view(v);
                    (p as *const f32, l)
                })
                .collect();
            unsafe { attention::concat_raw(&xs, yp, &yl) };
        }
        Node::TemporalAttention { embs, reference, feats, .. } => {
            let c = |v: usize| {
                let (p, l) = view(v);
                (p as *const f32, l)
            };
            let embs: Vec<_> = embs.iter().map(|&v| c(v)).collect();
            let feats: Vec<_> = feats.iter().map(|&v| c(v)).collect();
            unsafe { attention::temporal_attention_raw(&embs, c(*reference), &feats, yp, &yl) };
        }
        Node::TsaCombine { feat, attn, add, .. } => {
            let c = |v: usize| {
                let (p, l) = view(v);
                (p as *const f32, l)
            };
            unsafe { attention::tsa_combine_raw(c(*feat), c(*attn), c(*add), yp, &yl) };
        }
        Node::Add { a, b, act, .. } => {
            let c = |v: usize| {
                let (p, l) = view(v);
                (p as *const f32, l)
            };
            unsafe { attention::add_raw(c(*a), c(*b), yp, &yl, *act) };
        }
    }
}
