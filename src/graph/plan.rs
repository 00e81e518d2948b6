//! Memory plan for a concrete input size: each value's NHWC layout (with the zero border its
//! consumers need) and the buffer ("slot") it lives in. Slots are reused as soon as a value is
//! dead, and a node whose output may overwrite one of its inputs (a residual convolution, an
//! element-wise add, a channel scaling) writes in place over that input when it dies there, so
//! peak memory is a small multiple of the largest activation.
//!
//! Views share their root's slot and layout (`cs` is the root's channel count) at a channel
//! offset. Liveness is tracked per root: a root lives from the first node that writes any of its
//! views to the last node that reads any of them, so a view keeps its whole buffer alive. A root's
//! border is zeroed once, before the node that first writes it; nodes write interiors only, so it
//! stays zero while the root lives.

use super::ir::{Graph, Node, ValueId};
use crate::tensor::Layout;

#[derive(Clone, Debug)]
pub struct Plan {
    /// Size of the first input.
    pub h: usize,
    pub w: usize,
    /// Size of each graph input.
    pub input_sizes: Vec<(usize, usize)>,
    /// Layout of each value (a view: its channels, with its root's `cs`, size and border).
    pub layouts: Vec<Layout>,
    /// Slot of each value (a view: its root's slot).
    pub slot_of: Vec<usize>,
    /// Float offset of each value's channel 0 from the start of its root's pixel (0 for roots).
    pub offset_of: Vec<usize>,
    /// Floats each slot must hold.
    pub slot_len: Vec<usize>,
    /// Per node: roots whose border must be zeroed before the node runs.
    pub clear_before: Vec<Vec<ValueId>>,
    /// Floats of scratch memory the largest node needs (transposed-convolution columns).
    pub scratch_len: usize,
}

impl Plan {
    /// Plan an `h x w` input (every input that size); `None` if the input is too small for some
    /// kernel.
    pub fn new(g: &Graph, h: usize, w: usize) -> Option<Plan> {
        Plan::with_inputs(g, &vec![(h, w); g.inputs().len()])
    }

    /// Plan for the given input sizes (one per graph input).
    pub fn with_inputs(g: &Graph, input_sizes: &[(usize, usize)]) -> Option<Plan> {
        let outputs = g.outputs();
        assert!(
            outputs.iter().all(|&o| g.view_of(o).is_none()),
            "a graph's outputs must be roots, not views"
        );
        let sizes = g.sizes_with(input_sizes)?;
        let (h, w) = input_sizes[0];
        let nv = g.num_values();
        let root = |v: ValueId| g.root_of(v).0;
        let mut pad = vec![0usize; nv];
        let mut scratch_len = 0;
        for n in g.nodes() {
            match n {
                Node::Conv { x, conv, .. } => pad[root(*x)] = pad[root(*x)].max(conv.spec().pad),
                Node::Deconv { x, deconv, .. } => {
                    scratch_len = scratch_len.max(deconv.spec().scratch_len(sizes[*x].0, sizes[*x].1))
                }
                _ => {}
            }
        }
        let layouts: Vec<Layout> = (0..nv)
            .map(|v| {
                let r = root(v);
                let l = Layout::new(sizes[r].0, sizes[r].1, g.channels(r), pad[r]);
                Layout { c: g.channels(v), ..l }
            })
            .collect();
        let offset_of: Vec<usize> = (0..nv).map(|v| g.root_of(v).1).collect();

        // Liveness per root.
        const NEVER: usize = usize::MAX;
        let mut first_write = vec![NEVER; nv];
        let mut last_use = vec![0usize; nv];
        for (i, n) in g.nodes().iter().enumerate() {
            let y = root(n.output());
            if first_write[y] == NEVER {
                first_write[y] = i;
            }
            last_use[y] = last_use[y].max(i);
            for v in n.inputs() {
                last_use[root(v)] = last_use[root(v)].max(i);
            }
        }
        for &o in &outputs {
            last_use[root(o)] = usize::MAX;
        }

        let mut slot_of = vec![usize::MAX; nv];
        let mut slot_len: Vec<usize> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let alloc = |len: usize, free: &mut Vec<usize>, slot_len: &mut Vec<usize>| -> usize {
            // Best fit among free slots; otherwise grow the largest free one; otherwise a new slot.
            let fit = free
                .iter()
                .enumerate()
                .filter(|(_, &s)| slot_len[s] >= len)
                .min_by_key(|(_, &s)| slot_len[s]);
            let pick =
                fit.or_else(|| free.iter().enumerate().max_by_key(|(_, &s)| slot_len[s])).map(|(i, _)| i);
            match pick {
                Some(i) => {
                    let s = free.swap_remove(i);
                    slot_len[s] = slot_len[s].max(len);
                    s
                }
                None => {
                    slot_len.push(len);
                    slot_len.len() - 1
                }
            }
        };
        let root_layout = |r: ValueId| Layout { c: g.channels(r), ..layouts[r] };
        let mut clear_before = vec![Vec::new(); g.nodes().len()];
        for &i in g.inputs() {
            slot_of[i] = alloc(layouts[i].len(), &mut free, &mut slot_len);
        }
        // An input nothing reads (possible in a multi-input graph) is free at once.
        for &i in g.inputs() {
            if !g.nodes().iter().any(|n| n.inputs().iter().any(|&v| root(v) == i)) && !outputs.contains(&i) {
                free.push(slot_of[i]);
            }
        }
        for (i, n) in g.nodes().iter().enumerate() {
            let y = n.output();
            let ry = root(y);
            if first_write[ry] == i {
                let inputs = n.inputs();
                let in_place = n.in_place_candidates().into_iter().find(|&c| {
                    let rc = root(c);
                    last_use[rc] == i
                        && !g.inputs().contains(&rc)
                        && layouts[c] == layouts[y]
                        && offset_of[c] == offset_of[y]
                        && root_layout(rc) == root_layout(ry)
                        // Any other input in the same buffer would be overwritten under it.
                        && inputs.iter().all(|&o| o == c || root(o) != rc)
                });
                slot_of[ry] = match in_place {
                    // Same layout, so the border is already zero.
                    Some(c) => slot_of[root(c)],
                    None => {
                        clear_before[i].push(ry);
                        alloc(root_layout(ry).len(), &mut free, &mut slot_len)
                    }
                };
            }
            for v in n.inputs() {
                let rv = root(v);
                if last_use[rv] == i && !free.contains(&slot_of[rv]) && slot_of[rv] != slot_of[ry] {
                    free.push(slot_of[rv]);
                }
            }
        }
        for v in 0..nv {
            slot_of[v] = slot_of[root(v)];
        }
        Some(Plan {
            h,
            w,
            input_sizes: input_sizes.to_vec(),
            layouts,
            slot_of,
            offset_of,
            slot_len,
            clear_before,
            scratch_len,
        })
    }

    /// Bytes of activation memory this plan needs (scratch included).
    pub fn arena_bytes(&self) -> usize {
        (self.slot_len.iter().sum::<usize>() + self.scratch_len) * 4
    }

    /// Bytes of the largest single activation.
    pub fn largest_value_bytes(&self) -> usize {
        self.layouts.iter().map(|l| l.len() * 4).max().unwrap_or(0)
    }

    pub fn output_layout(&self, g: &Graph) -> Layout {
        self.layouts[g.output()]
    }

    pub fn value_layout(&self, v: ValueId) -> Layout {
        self.layouts[v]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::{Conv2d, ConvSpec};
    use crate::kernels::gemm::Activation;

    fn c3(cin: usize, cout: usize) -> Conv2d {
        Conv2d::shape_only(ConvSpec::same(cin, cout, 3), Activation::None)
    }

    #[test]
    fn views_keep_their_buffer_alive_and_dense_blocks_rotate() {
        // Two dense blocks: buffer k = [x | f], x of the next block written with a residual.
        let mut g = Graph::new(4);
        let b0 = g.buffer(8);
        let x0 = g.view(b0, 0, 4);
        g.conv_into(g.input(), c3(4, 4), None, None, Some(x0));
        let f0 = g.view(b0, 4, 4);
        g.conv_into(x0, c3(4, 4), None, None, Some(f0));
        let all0 = g.view(b0, 0, 8);
        let b1 = g.buffer(8);
        let x1 = g.view(b1, 0, 4);
        g.conv_into(all0, c3(8, 4), Some((x0, 0.2)), None, Some(x1));
        let f1 = g.view(b1, 4, 4);
        g.conv_into(x1, c3(4, 4), None, None, Some(f1));
        let all1 = g.view(b1, 0, 8);
        // The block output is written over the first buffer's x (res2), which dies here.
        let b2 = g.buffer(8);
        let x2 = g.view(b2, 0, 4);
        g.conv_into(all1, c3(8, 4), Some((x1, 0.2)), Some((x0, 0.2)), Some(x2));
        let out = g.conv(x2, c3(4, 3));
        let p = Plan::new(&g, 5, 6).unwrap();
        assert_eq!(p.slot_of[x0], p.slot_of[b0]);
        assert_eq!(p.offset_of[f0], 4);
        assert_eq!(p.layouts[f0].cs, 8);
        assert_eq!(p.layouts[f0].c, 4);
        // b0 stays alive until x0 is read as res2, so b1 has its own slot...
        assert_ne!(p.slot_of[b1], p.slot_of[b0]);
        // ...and b2 is written in place over b0 (x0 dies there, same layout and offset).
        assert_eq!(p.slot_of[b2], p.slot_of[b0]);
        assert!(p.clear_before[4].is_empty(), "in-place output keeps its zero border");
        assert_eq!(p.clear_before[0], vec![b0]);
        assert_ne!(p.slot_of[out], p.slot_of[b2]);
    }
}
