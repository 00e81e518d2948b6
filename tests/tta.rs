//! Self-ensemble in the tiled pipeline: it equals the whole-image definition (transform, run,
//! transform back, average) bit for bit after quantisation, for any tiling and thread count.

mod common;

use common::*;
use superres::graph::Arena;
use superres::io::image::{ImageView, Samples, SamplesRef};
use superres::models::{Model, OpenOptions};
use superres::pipeline::{tta, AlphaMode, Ensemble, UpscaleOptions, Upscaler};
use superres::CpuLevel;

fn fixture_model(ckpt: &str) -> Model {
    Model::open_with(&fixtures().join("models").join(ckpt), &OpenOptions::default()).unwrap()
}

fn upscale(m: &Model, scale: Option<usize>, img: &ImageView, opts: UpscaleOptions) -> Samples {
    let net = m.build(CpuLevel::effective(), scale).unwrap();
    Upscaler::new(net, opts).upscale(img).unwrap().samples
}

/// The definition, on the whole image in f32, quantised to 16 bits as the pipeline quantises.
fn reference(m: &Model, scale: Option<usize>, px: &[u16], h: usize, w: usize, ens: &Ensemble) -> Vec<u16> {
    let net = m.build(CpuLevel::effective(), scale).unwrap();
    let x: Vec<f32> = px.iter().map(|&v| v as f32 * (1.0 / 65535.0)).collect();
    let y = tta::run_hwc(&net, &mut Arena::new(), &x, h, w, ens).unwrap();
    y.iter().map(|v| (v.clamp(0.0, 1.0) * 65535.0).round_ties_even() as u16).collect()
}

#[test]
fn tiled_self_ensemble_equals_the_whole_image_definition() {
    let models = [
        (fixture_model("srvgg_x4.pth"), None),
        (fixture_model("edsr_basicsr_x3.pth"), None),
        (fixture_model("mdsr.pt"), Some(2)),
    ];
    // Not square, so transposed tiles have other shapes than the plain ones.
    let (w, h) = (23, 17);
    let px = noise_u16(w * h * 3, 11);
    let img = ImageView { width: w as u32, height: h as u32, channels: 3, samples: SamplesRef::U16(&px) };
    for (m, scale) in &models {
        for ens in [Ensemble::x8(), Ensemble::flips()] {
            let want = reference(m, *scale, &px, h, w, &ens);
            for tile in [0, 7, 16] {
                let opts = UpscaleOptions { tile, tta: ens.clone(), ..UpscaleOptions::default() };
                let Samples::U16(got) = upscale(m, *scale, &img, opts) else { unreachable!() };
                assert!(
                    got == want,
                    "{}: {} transforms, tile {tile}: differs from the definition",
                    m.arch(),
                    ens.len()
                );
            }
        }
        // The ensemble actually changes the result of a network that is not symmetric.
        let plain = upscale(m, *scale, &img, UpscaleOptions::default());
        let tta =
            upscale(m, *scale, &img, UpscaleOptions { tta: Ensemble::x8(), ..UpscaleOptions::default() });
        assert!(plain != tta, "{}: self-ensemble left the output unchanged", m.arch());
    }
}

#[test]
fn self_ensemble_does_not_depend_on_the_thread_count() {
    let m = fixture_model("edsr_basicsr_x2.pth");
    // Tiles of 9 with the 8-pixel receptive field split both axes of this size.
    let (w, h) = (29, 26);
    let px = noise_u16(w * h * 3, 3);
    let img = ImageView { width: w as u32, height: h as u32, channels: 3, samples: SamplesRef::U16(&px) };
    let mut outs = Vec::new();
    for t in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
        let opts = UpscaleOptions { tile: 9, tta: Ensemble::x8(), ..UpscaleOptions::default() };
        outs.push(pool.install(|| upscale(&m, None, &img, opts)));
    }
    assert!(outs.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn gray_and_alpha_under_self_ensemble() {
    let m = fixture_model("srvgg_x2.pth");
    let (w, h) = (9, 7);
    // Gray: the luma of the ensemble of the replicated image.
    let g: Vec<u8> = noise_u16(w * h, 8).iter().map(|v| (v >> 8) as u8).collect();
    let opts = || UpscaleOptions { tta: Ensemble::x8(), ..UpscaleOptions::default() };
    let gray = ImageView { width: w as u32, height: h as u32, channels: 1, samples: SamplesRef::U8(&g) };
    let Samples::U8(gout) = upscale(&m, None, &gray, opts()) else { panic!("8-bit in, 8-bit out") };
    assert_eq!(gout.len(), w * 2 * h * 2);
    let rep: Vec<u8> = g.iter().flat_map(|&v| [v, v, v]).collect();
    let color = ImageView { width: w as u32, height: h as u32, channels: 3, samples: SamplesRef::U8(&rep) };
    let Samples::U8(cout) = upscale(&m, None, &color, opts()) else { unreachable!() };
    for (gv, c) in gout.iter().zip(cout.chunks(3)) {
        let l = 0.299 * c[0] as f32 + 0.587 * c[1] as f32 + 0.114 * c[2] as f32;
        assert!((*gv as f32 - l).abs() <= 1.0, "gray {gv} vs luma {l}");
    }
    // Alpha through the model gets the ensemble too; colour does not depend on the alpha mode.
    let ga: Vec<u8> = noise_u16(w * h * 2, 5).iter().map(|v| (v >> 8) as u8).collect();
    let img = ImageView { width: w as u32, height: h as u32, channels: 2, samples: SamplesRef::U8(&ga) };
    let a = upscale(&m, None, &img, UpscaleOptions { alpha: AlphaMode::Model, ..opts() });
    let b = upscale(&m, None, &img, UpscaleOptions { alpha: AlphaMode::Bicubic, ..opts() });
    let (Samples::U8(a), Samples::U8(b)) = (a, b) else { unreachable!() };
    assert!(a.chunks(2).zip(b.chunks(2)).all(|(p, q)| p[0] == q[0]));
    assert!(a.chunks(2).zip(b.chunks(2)).any(|(p, q)| p[1] != q[1]));
}

#[test]
fn memory_stays_that_of_a_tile() {
    let m = fixture_model("edsr_pt_x2.pt");
    let budget = 2 << 20;
    let net = m.build(CpuLevel::effective(), None).unwrap();
    let opts = UpscaleOptions { max_working_bytes: budget, tta: Ensemble::x8(), ..UpscaleOptions::default() };
    let up = Upscaler::new(net, opts);
    let (h, w) = (300, 400);
    assert!(up.tile_size(h, w) > 0);
    assert!(up.working_bytes(h, w) <= budget, "{} > {budget}", up.working_bytes(h, w));
}
