//! Element-wise pieces of attention modules (EDVR's TSA fusion) and channel concatenation.

use super::deform::sigmoid;
use super::gemm::{Activation, SendPtr};
use crate::tensor::Layout;
use rayon::prelude::*;

/// Copy the channels of several inputs side by side into `y` (torch.cat along channels).
///
/// # Safety
/// Every input valid for its layout, `y` valid for `yl` and not overlapping any input; all share
/// the spatial size and `yl.c` is the sum of the inputs' channels.
pub(crate) unsafe fn concat_raw(xs: &[(*const f32, Layout)], y: *mut f32, yl: &Layout) {
    assert_eq!(xs.iter().map(|(_, l)| l.c).sum::<usize>(), yl.c, "concat channels");
    assert!(xs.iter().all(|(_, l)| (l.h, l.w) == (yl.h, yl.w)), "concat sizes");
    let xs: Vec<(SendPtr<f32>, Layout)> = xs.iter().map(|(p, l)| (SendPtr(*p as *mut f32), *l)).collect();
    let yp = SendPtr(y);
    (0..yl.h).into_par_iter().for_each(|yy| {
        let yp = yp;
        for x in 0..yl.w {
            let mut d = yp.0.offset(yl.offset(yy as isize, x as isize));
            for (p, l) in &xs {
                std::ptr::copy_nonoverlapping(p.0.offset(l.offset(yy as isize, x as isize)), d, l.c);
                d = d.add(l.c);
            }
        }
    });
}

/// TSA temporal attention: for each frame t, `corr_t = sigmoid(Σ_c emb_t[c]·ref[c])` per pixel,
/// and `y = cat_t(feat_t · corr_t)`.
///
/// # Safety
/// As [`concat_raw`]; `embs` and `feats` have one entry per frame, `ref_` the embeddings' layout.
pub(crate) unsafe fn temporal_attention_raw(
    embs: &[(*const f32, Layout)],
    ref_: (*const f32, Layout),
    feats: &[(*const f32, Layout)],
    y: *mut f32,
    yl: &Layout,
) {
    assert_eq!(embs.len(), feats.len());
    let c = ref_.1.c;
    assert!(embs.iter().all(|(_, l)| l.c == c));
    assert_eq!(feats.iter().map(|(_, l)| l.c).sum::<usize>(), yl.c);
    let embs: Vec<(SendPtr<f32>, Layout)> = embs.iter().map(|(p, l)| (SendPtr(*p as *mut f32), *l)).collect();
    let feats: Vec<(SendPtr<f32>, Layout)> =
        feats.iter().map(|(p, l)| (SendPtr(*p as *mut f32), *l)).collect();
    let rp = (SendPtr(ref_.0 as *mut f32), ref_.1);
    let yp = SendPtr(y);
    (0..yl.h).into_par_iter().for_each(|yy| {
        let (yp, (rptr, rl)) = (yp, rp);
        for x in 0..yl.w {
            let r = rptr.0.offset(rl.offset(yy as isize, x as isize));
            let mut d = yp.0.offset(yl.offset(yy as isize, x as isize));
            for ((ep, el), (fp, fl)) in embs.iter().zip(&feats) {
                let e = ep.0.offset(el.offset(yy as isize, x as isize));
                // Sequential channel sum, like a CPU reduction over a contiguous axis.
                let mut s = 0.0f32;
                for ch in 0..c {
                    s += *e.add(ch) * *r.add(ch);
                }
                let prob = sigmoid(s);
                let f = fp.0.offset(fl.offset(yy as isize, x as isize));
                for ch in 0..fl.c {
                    *d.add(ch) = *f.add(ch) * prob;
                }
                d = d.add(fl.c);
            }
        }
    });
}

/// TSA output: `y = feat · sigmoid(attn) · 2 + add`.
///
/// # Safety
/// As [`concat_raw`], all four with the same geometry (channels included).
pub(crate) unsafe fn tsa_combine_raw(
    feat: (*const f32, Layout),
    attn: (*const f32, Layout),
    add: (*const f32, Layout),
    y: *mut f32,
    yl: &Layout,
) {
    for (_, l) in [feat, attn, add] {
        assert_eq!((l.h, l.w, l.c), (yl.h, yl.w, yl.c), "tsa geometry");
    }
    let ps = [feat, attn, add].map(|(p, l)| (SendPtr(p as *mut f32), l));
    let yp = SendPtr(y);
    (0..yl.h).into_par_iter().for_each(|yy| {
        let yp = yp;
        for x in 0..yl.w {
            let [f, a, b] = ps.map(|(p, l)| p.0.offset(l.offset(yy as isize, x as isize)) as *const f32);
            let d = yp.0.offset(yl.offset(yy as isize, x as isize));
            for ch in 0..yl.c {
                *d.add(ch) = *f.add(ch) * sigmoid(*a.add(ch)) * 2.0 + *b.add(ch);
            }
        }
    });
}

/// `y = act(a + b)`, element-wise (`PRelu` is not supported).
///
/// # Safety
/// As [`concat_raw`], all three with the same geometry.
pub(crate) unsafe fn add_raw(
    a: (*const f32, Layout),
    b: (*const f32, Layout),
    y: *mut f32,
    yl: &Layout,
    act: Activation,
) {
    let slope = match act {
        Activation::None => 1.0,
        Activation::Relu => 0.0,
        Activation::LeakyRelu(s) => s,
        Activation::PRelu => panic!("add with PReLU"),
    };
    for (_, l) in [a, b] {
        assert_eq!((l.h, l.w, l.c), (yl.h, yl.w, yl.c), "add geometry");
    }
    let ps = [a, b].map(|(p, l)| (SendPtr(p as *mut f32), l));
    let yp = SendPtr(y);
    (0..yl.h).into_par_iter().for_each(|yy| {
        let yp = yp;
        for x in 0..yl.w {
            let [pa, pb] = ps.map(|(p, l)| p.0.offset(l.offset(yy as isize, x as isize)) as *const f32);
            let d = yp.0.offset(yl.offset(yy as isize, x as isize));
            for ch in 0..yl.c {
                let v = *pa.add(ch) + *pb.add(ch);
                *d.add(ch) = if v > 0.0 { v } else { slope * v };
            }
        }
    });
}
