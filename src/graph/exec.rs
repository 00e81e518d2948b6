//! Runs a planned graph over reusable buffers.

use super::ir::{Graph, Node};
use super::plan::Plan;
use crate::kernels::shuffle;
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
    /// Run the graph: `fill` writes the input value's interior (its border is already zero),
    /// `read` receives the output value.
    pub fn run<R>(
        &self,
        plan: &Plan,
        arena: &mut Arena,
        fill: impl FnOnce(&mut [f32], &Layout),
        read: impl FnOnce(&[f32], &Layout) -> R,
    ) -> R {
        arena.prepare(plan);
        let ptrs: Vec<*mut f32> = arena.slots.iter_mut().map(|s| s.as_mut_ptr()).collect();
        let view = |v: usize| (ptrs[plan.slot_of[v]], plan.layouts[v]);
        {
            let (p, l) = view(self.input());
            // SAFETY: the slot holds at least l.len() floats (Arena::prepare) and no other
            // reference to it is alive.
            let buf = unsafe { std::slice::from_raw_parts_mut(p, l.len()) };
            clear_border(buf, &l);
            fill(buf, &l);
        }
        for node in self.nodes() {
            let (yp, yl) = view(node.output());
            // SAFETY: as above; the plan never gives a node's output the slot of a value the node
            // reads, except a residual with an identical layout, which the conv kernel supports.
            unsafe { clear_border(std::slice::from_raw_parts_mut(yp, yl.len()), &yl) };
            match node {
                Node::Conv { x, conv, res, .. } => {
                    let (xp, xl) = view(*x);
                    let res = res.map(|(r, s)| {
                        let (rp, rl) = view(r);
                        (rp as *const f32, rl, s)
                    });
                    // SAFETY: pointers address slots sized by the plan for these layouts; the
                    // plan gives x a border at least the conv's padding.
                    unsafe { conv.run_raw(xp, &xl, yp, &yl, res.as_ref().map(|(p, l, s)| (*p, l, *s))) };
                }
                Node::Shuffle { x, skip, r, .. } => {
                    let (xp, xl) = view(*x);
                    let skip = skip.map(|s| view(s));
                    // SAFETY: as above; the output slot is distinct from both inputs.
                    unsafe {
                        shuffle::run_raw(
                            xp,
                            &xl,
                            skip.as_ref().map(|(p, l)| (*p as *const f32, l)),
                            yp,
                            &yl,
                            *r,
                        )
                    };
                }
            }
        }
        let (p, l) = view(self.output());
        // SAFETY: the output slot holds l.len() floats; no mutable reference is alive.
        read(unsafe { std::slice::from_raw_parts(p, l.len()) }, &l)
    }
}
