//! The tiled image pipeline: tiles reproduce the whole-image result exactly for finite-field
//! models, output does not depend on the thread count, and gray/alpha/bit-depth are handled.

mod common;

use common::*;
use superres::io::image::{ImageView, Samples, SamplesRef};
use superres::models::{ConvAlgo, Model, OpenOptions};
use superres::pipeline::upscale::{MAX_BAND_PIXELS, STREAM_BAND};
use superres::pipeline::{AlphaMode, Schedule, Staging, UpscaleOptions, Upscaler};
use superres::CpuLevel;

fn fixture_model(ckpt: &str, params: &[(&str, &str)]) -> Model {
    let path = match std::env::var_os("SUPERRES_FIXTURE_CKPT_DIR") {
        Some(d) => std::path::Path::new(&d).join(std::path::Path::new(ckpt).with_extension("safetensors")),
        None => fixtures().join("models").join(ckpt),
    };
    let opts = OpenOptions {
        arch: None,
        params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    Model::open_with(&path, &opts).unwrap()
}

fn run(model: &Model, scale: Option<usize>, img: &ImageView, opts: UpscaleOptions) -> Samples {
    let net = model.build(CpuLevel::effective(), scale).unwrap();
    Upscaler::new(net, opts).upscale(img).unwrap().samples
}

#[test]
fn tiled_output_equals_untiled_output() {
    let mut models = [
        (fixture_model("srvgg_x4.pth", &[]), None),
        (fixture_model("edsr_basicsr_x4.pth", &[]), None),
        (fixture_model("mdsr.pt", &[]), Some(3)),
        // Pixel-unshuffle input: tiles must keep to the 2- and 4-pixel grid; odd sizes reflect.
        (fixture_model("rrdb_x2.pth", &[]), None),
        (fixture_model("rrdb_x1.pth", &[]), None),
    ];
    let (w, h) = (37, 29);
    let px = noise_u16(w * h * 3, 5);
    let img = ImageView { width: w as u32, height: h as u32, channels: 3, samples: SamplesRef::U16(&px) };
    for (m, scale) in &mut models {
        // Direct convolutions (and `auto`, which these few-channel fixtures run the same way)
        // are exact; Winograd rounds each pixel by its place in its tile's 4x4 grid, so tiles
        // agree with the whole image to that rounding: at most one 16-bit code.
        for algo in [ConvAlgo::Direct, ConvAlgo::Auto, ConvAlgo::Winograd] {
            m.set_conv_algo(algo);
            let whole = run(m, *scale, &img, UpscaleOptions::default());
            for tile in [7, 13, 16] {
                let tiled = run(m, *scale, &img, UpscaleOptions { tile, ..UpscaleOptions::default() });
                if algo == ConvAlgo::Winograd {
                    let d = max_code_diff(&tiled, &whole);
                    assert!(d <= 1, "{} (winograd): tile {tile} differs by {d} codes", m.arch());
                } else {
                    assert!(
                        tiled == whole,
                        "{} ({algo}): tile {tile} differs from the whole-image result",
                        m.arch()
                    );
                }
            }
            // Too little context is allowed but must actually change something near tile edges,
            // which shows the overlap is what makes the tiles exact.
            let short = run(
                m,
                *scale,
                &img,
                UpscaleOptions { tile: 8, tile_pad: Some(1), ..UpscaleOptions::default() },
            );
            assert!(
                max_code_diff(&short, &whole) > 1,
                "{}: a 1-pixel tile pad should not be exact",
                m.arch()
            );
        }
    }
}

/// Fixture models with a body at the input's resolution and an upscaling tail, with the scale to
/// build them at.
fn tail_models() -> Vec<(Model, Option<usize>)> {
    vec![
        (fixture_model("edsr_basicsr_x4.pth", &[]), None),
        (fixture_model("mdsr.pt", &[]), Some(3)),
        (fixture_model("rrdb_x4.pth", &[]), None),
        (fixture_model("rdn_x3_shuffle.keras.safetensors", &[]), None),
        (fixture_model("rrdn_x4.keras.safetensors", &[]), None),
    ]
}

fn view16(px: &[u16], w: usize, h: usize, channels: u8) -> ImageView<'_> {
    ImageView { width: w as u32, height: h as u32, channels, samples: SamplesRef::U16(px) }
}

#[test]
fn two_stage_tiles_equal_the_whole_image() {
    // Networks with a body at the input's resolution and an upscaling tail; the tail reads only
    // the body's output, so both stages tile apart.
    let mut models = tail_models();
    let (w, h) = (37, 29);
    let (px, rgba) = (noise_u16(w * h * 3, 21), noise_u16(w * h * 4, 22));
    let (img, img4) = (view16(&px, w, h, 3), view16(&rgba, w, h, 4));
    for (m, scale) in &mut models {
        for algo in [ConvAlgo::Direct, ConvAlgo::Winograd] {
            m.set_conv_algo(algo);
            let plain = UpscaleOptions { staging: Staging::Off, ..UpscaleOptions::default() };
            let whole = run(m, *scale, &img, plain.clone());
            let whole4 = run(m, *scale, &img4, UpscaleOptions { alpha: AlphaMode::Model, ..plain });
            // Body tiles (0: the whole image) and tail tiles of several sizes, down to one pixel.
            for (tile, tail) in [(0, 5), (7, 3), (13, 16), (16, 1), (9, 40)] {
                let opts =
                    UpscaleOptions { tile, staging: Staging::TailTile(tail), ..UpscaleOptions::default() };
                let up = Upscaler::new(m.build(CpuLevel::effective(), *scale).unwrap(), opts.clone());
                assert!(
                    matches!(up.schedule(h, w), Schedule::Staged(_)),
                    "{}: expected a staged schedule, got {:?}",
                    m.arch(),
                    up.schedule(h, w)
                );
                let staged = run(m, *scale, &img, opts.clone());
                let what = format!("{} ({algo}), body tile {tile}, tail tile {tail}", m.arch());
                if algo == ConvAlgo::Winograd {
                    // One 16-bit code of Winograd rounding, two where MDSR's 5x5 layers run
                    // F(4x4, 5x5), whose whole-image output is itself two codes from the
                    // direct sum in places.
                    let d = max_code_diff(&staged, &whole);
                    assert!(d <= 2, "{what}: differs by {d} codes");
                } else {
                    assert!(staged == whole, "{what}: differs from the whole-image result");
                }
                if tail == 3 && algo == ConvAlgo::Direct {
                    let staged4 = run(m, *scale, &img4, UpscaleOptions { alpha: AlphaMode::Model, ..opts });
                    assert!(staged4 == whole4, "{what}: RGBA with a model-upscaled alpha differs");
                }
            }
        }
    }
}

#[test]
fn streamed_networks_equal_the_whole_image() {
    // The network streamed down stripes in bands of rows: the same result as the whole image
    // (bit for bit with direct convolutions).
    let mut models = tail_models();
    models.push((fixture_model("srvgg_x4.pth", &[]), None));
    let (w, h) = (37, 29);
    let (px, rgba) = (noise_u16(w * h * 3, 23), noise_u16(w * h * 4, 24));
    let (img, img4) = (view16(&px, w, h, 3), view16(&rgba, w, h, 4));
    for (m, scale) in &mut models {
        for algo in [ConvAlgo::Direct, ConvAlgo::Winograd] {
            m.set_conv_algo(algo);
            let plain = UpscaleOptions { staging: Staging::Off, ..UpscaleOptions::default() };
            let whole = run(m, *scale, &img, plain.clone());
            let whole4 = run(m, *scale, &img4, UpscaleOptions { alpha: AlphaMode::Model, ..plain });
            // Stripes: the whole width, narrower than the receptive field, and 16 pixels, the
            // narrowest the budget may choose; bands of 12 rows, chosen (the image's height
            // rounded up to whole bands of 12: the budget has room), and 5.
            for (stripe, band) in [(0, 12), (7, 0), (16, 5)] {
                let opts = UpscaleOptions {
                    tile: stripe,
                    staging: Staging::Stream,
                    stream_band: band,
                    ..UpscaleOptions::default()
                };
                let up = Upscaler::new(m.build(CpuLevel::effective(), *scale).unwrap(), opts.clone());
                let want = Schedule::Streamed { stripe, band: if band > 0 { band } else { 36 } };
                assert_eq!(up.schedule(h, w), want, "{}", m.arch());
                let streamed = run(m, *scale, &img, opts.clone());
                let what = format!("{} ({algo}), stripes of {stripe}, bands of {band}", m.arch());
                if algo == ConvAlgo::Winograd {
                    // Each band anchors its Winograd tiles at its first row: rounding only.
                    let d = max_code_diff(&streamed, &whole);
                    assert!(d <= 2, "{what}: differs by {d} codes");
                } else {
                    assert!(streamed == whole, "{what}: differs from the whole-image result");
                }
                if stripe == 7 && algo == ConvAlgo::Direct {
                    let streamed4 = run(m, *scale, &img4, UpscaleOptions { alpha: AlphaMode::Model, ..opts });
                    assert!(streamed4 == whole4, "{what}: RGBA with a model-upscaled alpha differs");
                }
            }
        }
    }
}

#[test]
fn streaming_is_chosen_where_tiles_recompute_more() {
    let m = fixture_model("edsr_basicsr_x4.pth", &[]);
    let net = || m.build(CpuLevel::effective(), None).unwrap();
    let (h, w) = (300, 400);
    let budget = 3 << 20;
    let up = |staging| {
        Upscaler::new(
            net(),
            UpscaleOptions { max_working_bytes: budget, staging, ..UpscaleOptions::default() },
        )
    };
    let (auto, staged) = (up(Staging::Auto), up(Staging::TailTile(16)));
    let Schedule::Streamed { stripe, band } = auto.schedule(h, w) else {
        panic!("expected a streamed schedule: {:?}", auto.schedule(h, w))
    };
    assert!(stripe > 0 && stripe < w, "{stripe}");
    assert!(auto.working_bytes(h, w) <= budget, "{} > {budget}", auto.working_bytes(h, w));
    assert_eq!(band % STREAM_BAND, 0, "{band}");
    // The bands are the tallest that fit the budget with these stripes, up to MAX_BAND_PIXELS;
    // with more room, taller (and the whole width).
    let with = |budget, stripe, band| {
        let opts = UpscaleOptions {
            max_working_bytes: budget,
            staging: Staging::Stream,
            tile: stripe,
            stream_band: band,
            ..UpscaleOptions::default()
        };
        Upscaler::new(net(), opts)
    };
    let padded = (stripe + 2 * auto.tile_pad()).min(w);
    for (budget, stripe, band) in [(budget, stripe, band), (4 * budget, 0, 0)] {
        let up = with(budget, stripe, band);
        let band = match up.schedule(h, w) {
            Schedule::Streamed { band, .. } if band > 0 => band,
            s => panic!("{s:?}"),
        };
        let bytes = up.working_bytes(h, w);
        assert!(bytes <= budget, "bands of {band}: {bytes} > {budget}");
        assert_eq!(with(budget, stripe, band).working_bytes(h, w), bytes);
        // Stripes set (the whole width as one stripe of `w`), as a set band alone would let the
        // budget narrow them.
        let (set, pw) = if stripe == 0 { (w, w) } else { (stripe, padded) };
        let taller = band + STREAM_BAND;
        assert!(
            with(budget, set, taller).working_bytes(h, w) > budget || taller * pw > MAX_BAND_PIXELS,
            "bands of {taller} rows would fit"
        );
    }
    // Stripes recompute their side context only; tiles recompute it on all four sides.
    let untiled = net().graph().macs(h, w);
    let (a, s) = (auto.macs(h, w), staged.macs(h, w));
    assert!(a < s && a > untiled, "streamed {a} MACs, two-stage tiles {s}, untiled {untiled}");
    // A taller image costs the same memory.
    assert_eq!(auto.working_bytes(4 * h, w), auto.working_bytes(h, w));
    // Networks that are not streamed: waifu2x's valid convolutions, CUNet's strides.
    for name in ["upconv7.pth", "cunet_x2.pth"] {
        let net = fixture_model(name, &[]).build(CpuLevel::effective(), None).unwrap();
        let opts = UpscaleOptions {
            max_working_bytes: 1 << 20,
            staging: Staging::Stream,
            ..UpscaleOptions::default()
        };
        let up = Upscaler::new(net, opts);
        assert!(matches!(up.schedule(h, w), Schedule::Tiles(_)), "{name}: {:?}", up.schedule(h, w));
    }
}

#[test]
fn two_stage_is_chosen_where_it_recomputes_less() {
    let m = fixture_model("edsr_basicsr_x4.pth", &[]);
    let (h, w) = (300, 400);
    let up = |staging, budget| {
        let net = m.build(CpuLevel::effective(), None).unwrap();
        Upscaler::new(net, UpscaleOptions { max_working_bytes: budget, staging, ..UpscaleOptions::default() })
    };
    let budget = 3 << 20;
    // Two stages with 16-pixel tail tiles (`auto` streams this network here, see
    // `streaming_is_chosen_where_tiles_recompute_more`).
    let (staged, off) = (up(Staging::TailTile(16), budget), up(Staging::Off, budget));
    assert!(matches!(off.schedule(h, w), Schedule::Tiles(t) if t > 0));
    let Schedule::Staged(st) = staged.schedule(h, w) else {
        panic!("expected two stages: {:?}", staged.schedule(h, w))
    };
    assert!(st.body > 0 && st.tail == 16, "{st:?}");
    assert!(staged.working_bytes(h, w) <= budget, "{} > {budget}", staged.working_bytes(h, w));
    let whole = m.build(CpuLevel::effective(), None).unwrap().graph().macs(h, w);
    let (a, o) = (staged.macs(h, w), off.macs(h, w));
    assert!(a < o && a >= whole, "staged {a} MACs, whole-network tiles {o}, untiled {whole}");
    // An image that fits runs whole, in one stage.
    let auto = up(Staging::Auto, budget);
    assert_eq!(auto.schedule(20, 20), Schedule::Tiles(0));
    // A model without an upscaling tail of its own (SRVGG adds the image back at the end).
    let srvgg = fixture_model("srvgg_x4.pth", &[]);
    let net = srvgg.build(CpuLevel::effective(), None).unwrap();
    let up = Upscaler::new(net, UpscaleOptions { max_working_bytes: 1 << 20, ..UpscaleOptions::default() });
    assert!(!matches!(up.schedule(h, w), Schedule::Staged(_)), "{:?}", up.schedule(h, w));
}

fn max_code_diff(a: &Samples, b: &Samples) -> i32 {
    let (Samples::U16(a), Samples::U16(b)) = (a, b) else { panic!("16-bit outputs expected") };
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (*x as i32 - *y as i32).abs()).max().unwrap_or(0)
}

#[test]
fn output_is_identical_for_any_thread_count() {
    let mut m = fixture_model("edsr_basicsr_x3.pth", &[("res_scale", "0.1")]);
    // Tiles of 9 with the 8-pixel receptive field split both axes of this size.
    let (w, h) = (41, 29);
    let px = noise_u16(w * h * 3, 9);
    let img = ImageView { width: w as u32, height: h as u32, channels: 3, samples: SamplesRef::U16(&px) };
    for algo in [ConvAlgo::Direct, ConvAlgo::Winograd] {
        m.set_conv_algo(algo);
        let mut outs = Vec::new();
        for t in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            outs.push(
                pool.install(|| run(&m, None, &img, UpscaleOptions { tile: 9, ..UpscaleOptions::default() })),
            );
        }
        assert!(outs.windows(2).all(|w| w[0] == w[1]), "{algo}: outputs differ between thread counts");
    }
}

#[test]
fn gray_alpha_and_depth() {
    let m = fixture_model("srvgg_x2.pth", &[]);
    let (w, h) = (6, 5);
    // Gray + alpha, 8-bit: gray stays one channel, alpha stays and is upscaled.
    let ga: Vec<u8> = noise_u16(w * h * 2, 3).iter().map(|v| (v >> 8) as u8).collect();
    let img = ImageView { width: w as u32, height: h as u32, channels: 2, samples: SamplesRef::U8(&ga) };
    let net = m.build(CpuLevel::effective(), None).unwrap();
    let out = Upscaler::new(net, UpscaleOptions::default()).upscale(&img).unwrap();
    assert_eq!((out.width, out.height, out.channels), (12, 10, 2));
    let Samples::U8(o) = &out.samples else { panic!("8-bit input gives 8-bit output by default") };
    // Bicubic alpha of a constant plane is that constant; check the corner pixel follows its source.
    assert!(o.len() == 12 * 10 * 2);

    // A fully opaque alpha plane stays fully opaque under both alpha modes.
    let rgba: Vec<u8> = noise_u16(w * h * 4, 4)
        .iter()
        .enumerate()
        .map(|(i, v)| if i % 4 == 3 { 255 } else { (v >> 8) as u8 })
        .collect();
    let img = ImageView { width: w as u32, height: h as u32, channels: 4, samples: SamplesRef::U8(&rgba) };
    for alpha in [AlphaMode::Bicubic, AlphaMode::Model] {
        let net = m.build(CpuLevel::effective(), None).unwrap();
        let out = Upscaler::new(net, UpscaleOptions { alpha, depth: Some(16), ..UpscaleOptions::default() })
            .upscale(&img)
            .unwrap();
        let Samples::U16(o) = &out.samples else { panic!("--depth 16 gives 16-bit output") };
        if alpha == AlphaMode::Bicubic {
            assert!(o.chunks(4).all(|p| p[3] == 65535), "{alpha:?}: opaque alpha must stay opaque");
        }
        // RGB must not depend on the alpha mode.
        let net = m.build(CpuLevel::effective(), None).unwrap();
        let rgb_in: Vec<u8> = rgba.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
        let rgb = Upscaler::new(net, UpscaleOptions { depth: Some(16), ..UpscaleOptions::default() })
            .upscale(&ImageView {
                width: w as u32,
                height: h as u32,
                channels: 3,
                samples: SamplesRef::U8(&rgb_in),
            })
            .unwrap();
        let Samples::U16(r) = &rgb.samples else { unreachable!() };
        assert!(o.chunks(4).zip(r.chunks(3)).all(|(a, b)| a[..3] == b[..]), "{alpha:?}: colour changed");
    }

    // Gray input is the luma of the model run on the replicated gray image.
    let g: Vec<u8> = noise_u16(w * h, 8).iter().map(|v| (v >> 8) as u8).collect();
    let gray = run(
        &m,
        None,
        &ImageView { width: w as u32, height: h as u32, channels: 1, samples: SamplesRef::U8(&g) },
        UpscaleOptions::default(),
    );
    let rep: Vec<u8> = g.iter().flat_map(|&v| [v, v, v]).collect();
    let color = run(
        &m,
        None,
        &ImageView { width: w as u32, height: h as u32, channels: 3, samples: SamplesRef::U8(&rep) },
        UpscaleOptions::default(),
    );
    let (Samples::U8(gray), Samples::U8(color)) = (gray, color) else { unreachable!() };
    for (gv, c) in gray.iter().zip(color.chunks(3)) {
        let l = 0.299 * c[0] as f32 + 0.587 * c[1] as f32 + 0.114 * c[2] as f32;
        assert!((*gv as f32 - l).abs() <= 1.0, "gray {gv} vs luma {l}");
    }
}

#[test]
fn budget_grows_where_exact_tiles_would_recompute_too_much() {
    use superres::pipeline::upscale::MAX_RECOMPUTE;
    let mut m = fixture_model("rrdb_x4.pth", &[]);
    // Direct sums, so that any exact schedule gives the same bits (Winograd rounds by tile).
    m.set_conv_algo(ConvAlgo::Direct);
    let (h, w) = (120, 160);
    let up = |budget, grow_budget| {
        let net = m.build(CpuLevel::effective(), None).unwrap();
        Upscaler::new(
            net,
            UpscaleOptions { max_working_bytes: budget, grow_budget, ..UpscaleOptions::default() },
        )
    };
    let whole = up(usize::MAX, false).macs(h, w) as f64;
    let base = 256 << 10;
    // Under the budget as given, exact tiles need the whole receptive field around a few owned
    // pixels each.
    let held = up(base, false);
    assert_eq!(held.budget(h, w), base);
    let f = held.macs(h, w) as f64 / whole;
    assert!(
        f > MAX_RECOMPUTE,
        "the fixture should recompute more than {MAX_RECOMPUTE}x under {base} bytes: {f}"
    );
    // Grown: the smallest power of two whose schedule is within MAX_RECOMPUTE.
    let grown = up(base, true);
    let b = grown.budget(h, w);
    assert!(b > base && b.is_power_of_two(), "{b}");
    assert!(grown.macs(h, w) as f64 <= MAX_RECOMPUTE * whole, "{} against {whole}", grown.macs(h, w));
    assert!(grown.working_bytes(h, w) <= b, "{} > {b}", grown.working_bytes(h, w));
    assert!(up(b / 2, false).macs(h, w) as f64 > MAX_RECOMPUTE * whole, "half of {b} would do");
    assert_eq!(grown.schedule(h, w), up(b, false).schedule(h, w));
    // Output is the same either way (exact schedules), and a set tile is never overridden.
    let px = noise_u16(w * h * 3, 7);
    let img = view16(&px, w, h, 3);
    let r = |budget, grow_budget| {
        let opts = UpscaleOptions { max_working_bytes: budget, grow_budget, ..UpscaleOptions::default() };
        run(&m, None, &img, opts)
    };
    assert!(r(base, true) == r(base, false), "grown and held budgets give different output");
    let set = UpscaleOptions { tile: 8, ..grown.options().clone() };
    assert_eq!(Upscaler::new(m.build(CpuLevel::effective(), None).unwrap(), set).budget(h, w), base);
    // An image whose exact tiles fit keeps the budget.
    assert_eq!(up(base, true).budget(8, 8), base);
}

#[test]
fn auto_tile_respects_the_memory_budget() {
    let m = fixture_model("edsr_pt_x2.pt", &[]);
    let net = m.build(CpuLevel::effective(), None).unwrap();
    let budget = 2 << 20;
    let up = Upscaler::new(net, UpscaleOptions { max_working_bytes: budget, ..UpscaleOptions::default() });
    let (h, w) = (300, 400);
    let t = up.tile_size(h, w);
    assert!(t > 0, "a 400x300 image should not fit in 2 MiB of activations");
    assert!(up.working_bytes(h, w) <= budget, "{} > {budget}", up.working_bytes(h, w));
    assert_eq!(up.tile_size(20, 20), 0, "a small image runs whole");
}

#[test]
fn valid_convolution_models_tile_on_their_own_pre_padding() {
    let (w, h) = (27, 19);
    let px = noise_u16(w * h * 3, 11);
    let img = ImageView { width: w as u32, height: h as u32, channels: 3, samples: SamplesRef::U16(&px) };
    let x: Vec<f32> = px.iter().map(|&v| v as f32 * (1.0 / 65535.0)).collect();
    for (ckpt, local) in [("upconv7.pth", true), ("cunet_x2.pth", false), ("cunet_x1.pth", false)] {
        let m = fixture_model(ckpt, &[]);
        let net = m.build(CpuLevel::effective(), None).unwrap();
        let s = net.scale();
        assert_eq!(net.is_local(), local, "{ckpt}");
        // The whole-image pipeline is the padded network run, quantised.
        let direct = net.run_hwc(&x, h, w, &mut superres::graph::Arena::new()).unwrap();
        let whole = run(&m, None, &img, UpscaleOptions::default());
        let Samples::U16(wv) = &whole else { panic!("16-bit in, 16-bit out") };
        assert_eq!(wv.len(), w * s * h * s * 3);
        for (a, b) in wv.iter().zip(&direct) {
            assert_eq!(*a as f32, (b.clamp(0.0, 1.0) * 65535.0).round_ties_even(), "{ckpt}");
        }
        for tile in [4, 6, 16] {
            let tiled = run(&m, None, &img, UpscaleOptions { tile, ..UpscaleOptions::default() });
            if local {
                assert!(tiled == whole, "{ckpt}: tile {tile} differs from the whole-image result");
                // Valid convolutions through Winograd (a view one pixel inside the input).
                let mut mw = fixture_model(ckpt, &[]);
                mw.set_conv_algo(ConvAlgo::Winograd);
                let wt = run(&mw, None, &img, UpscaleOptions { tile, ..UpscaleOptions::default() });
                let d = max_code_diff(&wt, &whole);
                assert!(d <= 2, "{ckpt} (winograd): tile {tile} differs by {d} codes from direct");
            } else {
                // Squeeze-excitation pools each tile: close to, but not the same as, the whole image.
                let Samples::U16(tv) = &tiled else { unreachable!() };
                assert_eq!(tv.len(), wv.len());
            }
        }
    }
}

#[test]
fn chained_models_and_outscale() {
    use superres::pipeline::Chain;
    let a = fixture_model("srvgg_x2.pth", &[]);
    let b = fixture_model("upconv7.pth", &[]);
    let (w, h) = (13, 9);
    let px = noise_u16(w * h * 3, 21);
    let img = ImageView { width: w as u32, height: h as u32, channels: 3, samples: SamplesRef::U16(&px) };
    let up =
        |m: &Model| Upscaler::new(m.build(CpuLevel::effective(), None).unwrap(), UpscaleOptions::default());
    // A chain is the stages run one after the other at 16 bits.
    let mut chain = Chain::new(vec![up(&a), up(&b)], None, None).unwrap();
    let out = chain.upscale(&img).unwrap();
    let first = up(&a).upscale(&img).unwrap();
    let second = up(&b).upscale(&first.view()).unwrap();
    assert_eq!((out.width, out.height), (4 * w as u32, 4 * h as u32));
    assert!(out.samples == second.samples);
    // --outscale resamples the native result (kept at 16 bits) with Lanczos-3.
    let mut chain = Chain::new(vec![up(&a)], Some(1.5), Some(8)).unwrap();
    let out = chain.upscale(&img).unwrap();
    assert_eq!((out.width, out.height), (19, 13));
    let native = up(&a).upscale(&img).unwrap();
    let want =
        superres::kernels::resize::lanczos_resample(native.samples.as_ref(), 2 * w, 2 * h, 3, 19, 13, 8);
    assert!(out.samples == want);
    assert!(Chain::new(vec![up(&a)], Some(f64::NAN), None).is_err());
    assert!(Chain::new(Vec::new(), None, None).is_err());
}
