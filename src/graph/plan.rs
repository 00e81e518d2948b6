//! Memory plan for concrete input sizes: each value's NHWC layout (with the zero border its
//! consumers need) and the buffer ("slot") it lives in. Slots are reused as soon as a value is
//! dead, and a residual convolution writes in place over its residual input when that input dies
//! there, so peak memory is a small multiple of the largest activation.

use super::ir::{Graph, Node};
use crate::tensor::Layout;

#[derive(Clone, Debug)]
pub struct Plan {
    /// Size of each graph input.
    pub input_sizes: Vec<(usize, usize)>,
    pub layouts: Vec<Layout>,
    /// Slot of each value.
    pub slot_of: Vec<usize>,
    /// Floats each slot must hold.
    pub slot_len: Vec<usize>,
}

impl Plan {
    /// Plan an `h x w` input (every input that size); `None` if the input is too small for some
    /// kernel.
    pub fn new(g: &Graph, h: usize, w: usize) -> Option<Plan> {
        Plan::with_inputs(g, &vec![(h, w); g.inputs().len()])
    }

    /// Plan for the given input sizes (one per graph input).
    pub fn with_inputs(g: &Graph, input_sizes: &[(usize, usize)]) -> Option<Plan> {
        let sizes = g.sizes_with(input_sizes)?;
        let nv = g.num_values();
        let mut pad = vec![0usize; nv];
        for n in g.nodes() {
            if let Node::Conv { x, conv, .. } = n {
                pad[*x] = pad[*x].max(conv.spec().pad);
            }
        }
        let layouts: Vec<Layout> =
            (0..nv).map(|v| Layout::new(sizes[v].0, sizes[v].1, g.channels(v), pad[v])).collect();

        let mut last_use = vec![0usize; nv];
        for (i, n) in g.nodes().iter().enumerate() {
            for v in n.inputs() {
                last_use[v] = i;
            }
        }
        for o in g.outputs() {
            last_use[o] = usize::MAX;
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
        for &i in g.inputs() {
            slot_of[i] = alloc(layouts[i].len(), &mut free, &mut slot_len);
        }
        // An input that nothing reads (possible in a multi-input graph) is free at once.
        for &i in g.inputs() {
            if !g.nodes().iter().any(|n| n.inputs().contains(&i)) && !g.outputs().contains(&i) {
                free.push(slot_of[i]);
            }
        }
        for (i, n) in g.nodes().iter().enumerate() {
            let y = n.output();
            let ins = n.inputs();
            let in_place = n.residual().filter(|&r| {
                // The residual must die here, have the output's layout, and not be read by the
                // node for anything but the element-wise add.
                last_use[r] == i && layouts[r] == layouts[y] && ins.iter().filter(|&&v| v == r).count() == 1
            });
            slot_of[y] = match in_place {
                Some(r) => slot_of[r],
                None => alloc(layouts[y].len(), &mut free, &mut slot_len),
            };
            for v in ins {
                if last_use[v] == i
                    && Some(v) != in_place
                    && !free.contains(&slot_of[v])
                    && slot_of[v] != slot_of[y]
                {
                    free.push(slot_of[v]);
                }
            }
        }
        Some(Plan { input_sizes: input_sizes.to_vec(), layouts, slot_of, slot_len })
    }

    /// Bytes of activation memory this plan needs.
    pub fn arena_bytes(&self) -> usize {
        self.slot_len.iter().map(|l| l * 4).sum()
    }

    /// Bytes of the largest single activation.
    pub fn largest_value_bytes(&self) -> usize {
        self.layouts.iter().map(|l| l.len() * 4).max().unwrap_or(0)
    }

    pub fn output_layout(&self, g: &Graph) -> Layout {
        self.layouts[g.output()]
    }

    pub fn value_layout(&self, v: usize) -> Layout {
        self.layouts[v]
    }
}
