//! Cutting an upscaling network into a *body* that keeps the input's resolution and a *tail* that
//! upscales. Tiling the two apart pays off: the body has the large receptive field (so tiles need
//! wide context) but few bytes per pixel, the tail the reverse (an x4 tail's activations hold 16
//! times the pixels at 64 channels, with a receptive field of a few pixels). Running the body over
//! large tiles and the tail over small tiles of the body's output needs a fraction of the memory
//! of whole-network tiles of the same size, so under a memory budget far less is recomputed.

use super::ir::{Graph, ValueId};

/// Where a graph splits: after node `last`, whose output `at` is the only value that later nodes
/// read (the image input among the values that are not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    pub last: usize,
    pub at: ValueId,
}

/// A cut at which the graph still runs at its input's resolution with no pre-padding, after
/// which something changes the resolution, through the narrowest such value; `None` for graphs with several inputs or
/// outputs, graphs that read the input again later (a global skip from the image, as SRVGG's),
/// and graphs whose cut value is a channel view.
pub fn tail_cut(g: &Graph) -> Option<Cut> {
    if g.inputs().len() != 1 || g.outputs().len() != 1 {
        return None;
    }
    const PROBE: usize = 48;
    let sizes = g.sizes(PROBE, PROBE)?;
    let nodes = g.nodes();
    let nv = g.num_values();
    let root = |v: ValueId| g.root_of(v).0;
    let mut first_write = vec![usize::MAX; nv];
    let mut last_read = vec![None; nv];
    for (i, n) in nodes.iter().enumerate() {
        let r = root(n.output());
        first_write[r] = first_write[r].min(i);
        for v in n.inputs() {
            last_read[root(v)] = Some(i);
        }
    }
    first_write[g.input()] = 0;
    let upscales_after = |i: usize| nodes[i + 1..].iter().any(|n| sizes[n.output()] != (PROBE, PROBE));
    let mut cuts = Vec::new();
    for last in (0..nodes.len().saturating_sub(1)).rev() {
        let at = nodes[last].output();
        if g.view_of(at).is_some() || sizes[at] != (PROBE, PROBE) || !upscales_after(last) {
            continue;
        }
        // Every root alive across the cut (written up to `last`, read after it) must be `at`,
        // and no later node may touch `at` through a view or write it again.
        let crossing = (0..nv)
            .filter(|&r| root(r) == r)
            .any(|r| r != at && first_write[r] <= last && last_read[r].is_some_and(|l| l > last));
        let reuse = nodes[last + 1..]
            .iter()
            .any(|n| root(n.output()) == at || n.inputs().iter().any(|&v| root(v) == at && v != at));
        if !crossing && !reuse {
            cuts.push(Cut { last, at });
        }
    }
    // The narrowest value (the feature buffer holds it), latest first among equals (the smaller
    // the tail's receptive field, the less its tiles overlap): after EDSR's body rather than
    // after an unfused 64->256 convolution ahead of its pixel shuffle.
    cuts.into_iter().min_by_key(|c| g.channels(c.at))
}

/// The graph cut at `cut` into the body (input to the cut value) and the tail (cut value to the
/// output).
pub fn split(g: &Graph, cut: Cut) -> (Graph, Graph) {
    g.cut_after(cut.last, cut.at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Plan;
    use crate::kernels::conv::{Conv2d, ConvSpec};
    use crate::kernels::gemm::Activation;

    fn c3(cin: usize, cout: usize) -> Conv2d {
        Conv2d::shape_only(ConvSpec::same(cin, cout, 3), Activation::None)
    }

    /// EDSR's shape: head, residual body with a global skip, x2 shuffle tail.
    fn edsr_like() -> (Graph, ValueId) {
        let mut g = Graph::new(3);
        let head = g.conv(g.input(), c3(3, 4));
        let b1 = g.conv(head, c3(4, 4));
        let body = g.conv_residual(b1, c3(4, 4), head, 1.0);
        let up = g.conv(body, c3(4, 16));
        let hr = g.pixel_shuffle(up, 2);
        g.conv(hr, c3(4, 3));
        (g, body)
    }

    #[test]
    fn finds_the_last_low_resolution_value_and_splits_there() {
        let (g, body) = edsr_like();
        let cut = tail_cut(&g).expect("an EDSR-like graph splits");
        assert_eq!(cut, Cut { last: 2, at: body });
        let (head, tail) = split(&g, cut);
        assert_eq!(head.geometry().map(|x| (x.scale, x.margin)), Some((1, 0)));
        assert_eq!(tail.geometry().map(|x| (x.scale, x.margin)), Some((2, 0)));
        assert_eq!(head.receptive_field(), 3);
        // conv 3x3, shuffle, conv 3x3: one low-resolution pixel and the neighbour the last
        // conv reaches through the shuffle.
        assert_eq!(tail.receptive_field(), 2);
        assert_eq!(g.macs(20, 20), head.macs(20, 20) + tail.macs(20, 20));
        let (ph, pt) = (Plan::new(&head, 20, 20).unwrap(), Plan::new(&tail, 20, 20).unwrap());
        assert_eq!(pt.output_layout(&tail).h, 40);
        assert_eq!(ph.output_layout(&head).c, 4);
    }

    #[test]
    fn no_cut_where_the_input_is_read_again_or_nothing_upscales() {
        // SRVGG's shape: the image itself is added back after the shuffle.
        let mut g = Graph::new(3);
        let f = g.conv(g.input(), c3(3, 4));
        let up = g.conv(f, c3(4, 12));
        g.shuffle_add_nearest(up, g.input(), 2);
        assert_eq!(tail_cut(&g), None);
        // Same resolution throughout (a denoiser).
        let mut g = Graph::new(3);
        let f = g.conv(g.input(), c3(3, 4));
        g.conv(f, c3(4, 3));
        assert_eq!(tail_cut(&g), None);
        // A value alive across the only low-resolution cut: the skip is read after the tail
        // started, so the cut moves back to where only one value crosses.
        let mut g = Graph::new(3);
        let a = g.conv(g.input(), c3(3, 4));
        let b = g.conv(a, c3(4, 4));
        let up = g.conv(b, c3(4, 16));
        let hr = g.pixel_shuffle(up, 2);
        let skip = g.upsample_nearest(a, 2);
        g.add(hr, skip);
        assert_eq!(tail_cut(&g), Some(Cut { last: 0, at: a }));
    }
}
