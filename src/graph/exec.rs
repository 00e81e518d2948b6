//! Runs a planned graph over reusable buffers.

use super::ir::{Graph, Node};
use super::plan::Plan;
use crate::kernels::{attention, sample, shuffle};
use crate::tensor::{clear_border, AlignedVec, Layout};

/// Activation buffers, grown on demand and kept across runs so steady-state inference allocates
/// nothing.
#[derive(Default, Debug)]
pub struct Arena {
    slots: Vec<AlignedVec>,
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
    }

    /// Bytes currently reserved.
    pub fn bytes(&self) -> usize {
        self.slots.iter().map(|s| s.bytes()).sum()
    }
}

impl Graph {
    /// Run a single-input graph: `fill` writes the input value's interior (its border is already
    /// zero), `read` receives the first output.
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
        arena.prepare(plan);
        let ptrs: Vec<*mut f32> = arena.slots.iter_mut().map(|s| s.as_mut_ptr()).collect();
        let view = |v: usize| (ptrs[plan.slot_of[v]], plan.layouts[v]);
        let cview = |v: usize| (ptrs[plan.slot_of[v]] as *const f32, plan.layouts[v]);
        for (i, &v) in self.inputs().iter().enumerate() {
            let (p, l) = view(v);
            // SAFETY: the slot holds at least l.len() floats (Arena::prepare); inputs have
            // distinct slots and no other reference to them is alive.
            let buf = unsafe { std::slice::from_raw_parts_mut(p, l.len()) };
            clear_border(buf, &l);
            fill(i, buf, &l);
        }
        for node in self.nodes() {
            let (yp, yl) = view(node.output());
            // SAFETY: as above; the plan never gives a node's output the slot of a value the node
            // reads, except a residual with an identical layout, which the conv kernels support.
            unsafe { clear_border(std::slice::from_raw_parts_mut(yp, yl.len()), &yl) };
            // SAFETY (all kernel calls below): pointers address slots sized by the plan for these
            // layouts, outputs do not overlap inputs (other than the in-place residual), and the
            // plan gives every conv input a border at least the conv's padding.
            unsafe {
                match node {
                    Node::Conv { x, conv, res, .. } => {
                        let (xp, xl) = cview(*x);
                        let res = res.map(|(r, s)| (cview(r), s));
                        conv.run_raw(xp, &xl, yp, &yl, res.as_ref().map(|((p, l), s)| (*p, l, *s)));
                    }
                    Node::DeformConv { x, off, conv, res, .. } => {
                        let (xp, xl) = cview(*x);
                        let (op, ol) = cview(*off);
                        let res = res.map(|(r, s)| (cview(r), s));
                        conv.run_raw(xp, &xl, op, &ol, yp, &yl, res.as_ref().map(|((p, l), s)| (*p, l, *s)));
                    }
                    Node::Shuffle { x, skip, r, .. } => {
                        let (xp, xl) = cview(*x);
                        let skip = skip.map(cview);
                        shuffle::run_raw(xp, &xl, skip.as_ref().map(|(p, l)| (*p, l)), yp, &yl, *r);
                    }
                    Node::Upsample { x, factor, mult, .. } => {
                        let (xp, xl) = cview(*x);
                        sample::bilinear_raw(xp, &xl, yp, &yl, *factor, *mult);
                    }
                    Node::Pool { x, kind, k, stride, pad, .. } => {
                        let (xp, xl) = cview(*x);
                        sample::pool_raw(xp, &xl, yp, &yl, *kind, *k, *stride, *pad);
                    }
                    Node::Concat { xs, .. } => {
                        let xs: Vec<_> = xs.iter().map(|&v| cview(v)).collect();
                        attention::concat_raw(&xs, yp, &yl);
                    }
                    Node::TemporalAttention { embs, reference, feats, .. } => {
                        let embs: Vec<_> = embs.iter().map(|&v| cview(v)).collect();
                        let feats: Vec<_> = feats.iter().map(|&v| cview(v)).collect();
                        attention::temporal_attention_raw(&embs, cview(*reference), &feats, yp, &yl);
                    }
                    Node::TsaCombine { feat, attn, add, .. } => {
                        attention::tsa_combine_raw(cview(*feat), cview(*attn), cview(*add), yp, &yl);
                    }
                    Node::Add { a, b, .. } => attention::add_raw(cview(*a), cview(*b), yp, &yl),
                }
            }
        }
        for (o, v) in self.outputs().into_iter().enumerate() {
            let (p, l) = cview(v);
            // SAFETY: the output slot holds l.len() floats; no mutable reference is alive.
            read(o, unsafe { std::slice::from_raw_parts(p, l.len()) }, &l);
        }
    }
}
