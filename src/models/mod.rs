//! Models: architectures, detection from checkpoints, and building a prepared [`Network`].

pub mod arch;
mod build;
pub mod detect;
mod edsr;
mod edvr;
mod mdsr;
mod ncnn;
mod network;
mod rdn;
pub mod registry;
mod rrdb;
pub mod source;
mod srvgg;
mod tdan;
pub mod video;
mod waifu2x;

pub use arch::{
    Arch, Cunet, Edsr, Edvr, Layout, Mdsr, MeanShift, Rdn, RdnUpsampler, Rrdb, Rrdn, Srvgg, SrvggAct, Tdan,
    UpConv7,
};
pub use network::{EdgeMode, Network};
pub use video::{EdgePolicy, VideoNetwork};

use crate::cpu::CpuLevel;
use crate::error::{Error, Result};
pub use crate::kernels::conv::ConvAlgo;
use crate::weights::safetensors::{self, SafeTensors};
use crate::weights::StateDict;
use source::{Store, TensorSource};
use std::collections::BTreeMap;
use std::path::Path;

/// How to interpret a weight file.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Force an architecture instead of detecting it (`--arch`).
    pub arch: Option<String>,
    /// Hyper-parameter overrides (`--param key=value`).
    pub params: Vec<(String, String)>,
    /// Most and largest tensors the file may declare (`--max-tensors`, `--max-tensor-mib`).
    pub limits: crate::weights::WeightLimits,
}

/// Summary of a model for `superres info`.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub arch: String,
    pub description: String,
    pub layout: Option<String>,
    pub scales: Vec<usize>,
    pub parameters: u64,
    /// Receptive-field radius in input pixels, per scale.
    /// `None` for an unbounded field (deformable convolutions).
    pub receptive_field: Vec<(usize, Option<usize>)>,
    pub hyper_parameters: BTreeMap<String, String>,
    pub notes: Vec<String>,
}

/// An opened model: its architecture and where its tensors are. Opening a safetensors file reads
/// only the header; weights are read when [`Model::build`] prepares a network.
pub struct Model {
    src: TensorSource,
    arch: Arch,
    layout: Option<Layout>,
    notes: Vec<String>,
    conv: ConvAlgo,
}

impl Model {
    /// Open a model file (our safetensors, a foreign safetensors state dict, or a PyTorch
    /// checkpoint converted in memory).
    pub fn open(path: &Path) -> Result<Model> {
        Model::open_with(path, &OpenOptions::default())
    }

    pub fn open_with(path: &Path, opts: &OpenOptions) -> Result<Model> {
        let is_ncnn_name = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("param"))
            || (path.extension().is_some_and(|e| e.eq_ignore_ascii_case("bin"))
                && path.with_extension("param").is_file());
        if is_ncnn_name {
            return Model::open_ncnn(path, opts);
        }
        let mut head = Vec::with_capacity(512);
        {
            use std::io::Read;
            let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            f.take(512).read_to_end(&mut head).map_err(|e| Error::io(path, e))?;
            if head.len() < 8 {
                return Err(Error::format(path, "file too short to be a model"));
            }
        }
        if crate::weights::ncnn::looks_like_param(&head) {
            return Model::open_ncnn(path, opts);
        }
        if crate::weights::pth::looks_like_pth(&head) {
            let pth = crate::weights::pth::read_pth_with(path, &opts.limits)?;
            let mut m = Model::from_state_dict(path, pth.state, opts)?;
            if let Some(k) = pth.source_key {
                m.notes.insert(0, format!("state dict read from key '{k}'"));
            }
            return Ok(m);
        }
        let st = SafeTensors::open_with(path, &opts.limits)?;
        let stored = Arch::from_metadata(st.metadata()).map_err(|r| Error::format(path, r))?;
        let layout = st.metadata().get("layout").and_then(|l| arch::parse_layout(l));
        let src = TensorSource::new(path, Store::Mapped(st));
        match stored {
            Some(arch) if opts.arch.as_deref().is_none_or(|a| a == arch.name()) => {
                let mut m = Model { src, arch, layout, notes: Vec::new(), conv: ConvAlgo::default() };
                m.apply_params(&opts.params)?;
                Ok(m)
            }
            _ => Model::detect(src, opts),
        }
    }

    /// An ncnn `.param` + `.bin` pair (given either file), mapped onto our architectures.
    fn open_ncnn(path: &Path, opts: &OpenOptions) -> Result<Model> {
        Model::from_ncnn(&crate::weights::ncnn::read(path)?, opts)
    }

    /// A model from an ncnn graph already read (see [`crate::weights::ncnn`]).
    pub fn from_ncnn(nm: &crate::weights::ncnn::Model, opts: &OpenOptions) -> Result<Model> {
        let imp = ncnn::import(nm)?;
        opts.limits.check_state_dict(&nm.param_path, &imp.state)?;
        let mut o = opts.clone();
        o.params = imp.params.iter().cloned().chain(opts.params.iter().cloned()).collect();
        let mut m = Model::from_state_dict(&nm.param_path, imp.state, &o)?;
        m.layout = Some(Layout::Ncnn);
        m.notes.splice(0..0, imp.notes);
        Ok(m)
    }

    /// Build from tensors already in memory (a checkpoint read by an importer).
    pub fn from_state_dict(path: &Path, sd: StateDict, opts: &OpenOptions) -> Result<Model> {
        Model::detect(TensorSource::new(path, Store::Memory(sd)), opts)
    }

    fn detect(mut src: TensorSource, opts: &OpenOptions) -> Result<Model> {
        if let Some(a) = &opts.arch {
            Arch::check_name(a)?;
        }
        let d = detect::detect(&src, opts.arch.as_deref())
            .map_err(|reason| Error::UnknownArch { path: src.path().to_path_buf(), reason })?;
        src.set_rename(d.rename);
        let mut m =
            Model { src, arch: d.arch, layout: Some(d.layout), notes: d.notes, conv: ConvAlgo::default() };
        m.apply_params(&opts.params)?;
        Ok(m)
    }

    fn apply_params(&mut self, params: &[(String, String)]) -> Result<()> {
        for (k, v) in params {
            self.arch.set_param(k, v)?;
            self.notes.push(format!("{k} set to {v} by --param"));
        }
        detect::validate(&self.arch).map_err(|r| Error::format(self.src.path(), r))
    }

    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// How the networks built from now on compute their 3x3 convolutions (default
    /// [`ConvAlgo::Auto`]; [`ConvAlgo::Direct`] makes tiled output bit-identical to untiled).
    pub fn set_conv_algo(&mut self, algo: ConvAlgo) {
        self.conv = algo;
    }

    pub fn conv_algo(&self) -> ConvAlgo {
        self.conv
    }

    pub fn path(&self) -> &Path {
        self.src.path()
    }

    /// Assumptions made while reading the file.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Prepare a network for `level` at `scale` (the model's only scale when `None`): reads and
    /// checks every tensor, packs the weights, builds the graph.
    pub fn build(&self, level: CpuLevel, scale: Option<usize>) -> Result<Network> {
        Ok(self.build_inner(level, scale)?.0)
    }

    fn build_inner(&self, level: CpuLevel, scale: Option<usize>) -> Result<(Network, Vec<String>)> {
        let scale = self.arch.resolve_scale(scale)?;
        let mut b = build::Builder::new(&self.src, level, 3);
        b.algo = self.conv;
        self.build_graph(&mut b, scale)?;
        let identity = vec![(1.0, 0.0); 3];
        let (in_affine, out_affine) = match &self.arch {
            Arch::Edsr(Edsr { norm, .. }) | Arch::Mdsr(Mdsr { norm, .. }) => {
                (norm.input_affine(), norm.output_affine())
            }
            _ => (identity.clone(), identity),
        };
        let edge = match &self.arch {
            // Real-ESRGAN pads to a multiple of the unshuffle factor by reflection.
            Arch::Rrdb(_) => EdgeMode::Reflect,
            _ => EdgeMode::Replicate,
        };
        let used = b.used;
        Ok((Network::new(b.graph, scale, level, in_affine, out_affine, edge)?, used))
    }

    fn build_graph(&self, b: &mut build::Builder, scale: usize) -> Result<()> {
        match &self.arch {
            Arch::Srvgg(a) => srvgg::build(b, a),
            Arch::Edsr(a) => edsr::build(b, a),
            Arch::Mdsr(a) => mdsr::build(b, a, scale),
            Arch::Rrdb(a) => rrdb::build(b, a),
            Arch::UpConv7(a) => waifu2x::build_upconv7(b, a),
            Arch::Cunet(a) => waifu2x::build_cunet(b, a),
            Arch::Rdn(a) => rdn::build_rdn(b, a),
            Arch::Rrdn(a) => rdn::build_rrdn(b, a),
            Arch::Edvr(_) | Arch::Tdan(_) => Err(Error::Model(format!(
                "{} is a video model (it needs a window of {} frames): run it with `superres video`",
                self.arch.name().to_uppercase(),
                self.arch.num_frames()
            ))),
        }
    }

    /// Prepare a video network (EDVR, TDAN) for `level`.
    pub fn build_video(&self, level: CpuLevel) -> Result<VideoNetwork> {
        Ok(self.build_video_inner(level, false)?.0)
    }

    fn build_video_inner(&self, level: CpuLevel, shape_only: bool) -> Result<(VideoNetwork, Vec<String>)> {
        let mut fb = build::Builder::new(&self.src, level, 3);
        fb.algo = self.conv;
        fb.shape_only = shape_only;
        let scale = self.arch.scales()[0];
        let (mut wb, in_affine, out_affine, multiple, edge) = match &self.arch {
            Arch::Edvr(a) => {
                edvr::build_frame(&mut fb, a)?;
                let mut wb = build::Builder::new(&self.src, level, a.num_feat);
                wb.algo = self.conv;
                wb.shape_only = shape_only;
                edvr::build_window(&mut wb, a)?;
                let m = if a.hr_in { 16 } else { 4 };
                (wb, vec![(1.0, 0.0); 3], vec![(1.0, 0.0); 3], m, EdgePolicy::ReflectionCircle)
            }
            Arch::Tdan(a) => {
                tdan::build_frame(&mut fb, a)?;
                let mut wb = build::Builder::new(&self.src, level, a.num_feat);
                wb.algo = self.conv;
                wb.shape_only = shape_only;
                tdan::build_window(&mut wb, a)?;
                (wb, vec![(1.0, -0.5); 3], vec![(1.0, 0.5); 3], 1, EdgePolicy::Tdan)
            }
            _ => {
                return Err(Error::Model(format!(
                    "{} is a single-image model, not a video model",
                    self.arch.name()
                )))
            }
        };
        let mut used = std::mem::take(&mut fb.used);
        used.append(&mut wb.used);
        let net = VideoNetwork {
            frame: fb.graph,
            window: wb.graph,
            num_frames: self.arch.num_frames(),
            scale,
            level,
            in_affine,
            out_affine,
            multiple,
            default_edge: edge,
        };
        Ok((net, used))
    }

    /// The video network with shapes but no weights (for memory figures); it cannot be run.
    pub fn shape_video(&self) -> Result<VideoNetwork> {
        Ok(self.build_video_inner(CpuLevel::Portable, true)?.0)
    }

    /// The graph with shapes but no weights: for memory plans, receptive field and cost without
    /// reading tensor data. It cannot be run.
    pub fn shape_graph(&self, scale: Option<usize>) -> Result<crate::graph::Graph> {
        let scale = self.arch.resolve_scale(scale)?;
        let mut b = build::Builder::new(&self.src, CpuLevel::Portable, 3);
        b.shape_only = true;
        self.build_graph(&mut b, scale)?;
        Ok(b.graph)
    }

    /// Summary from the header (shapes) only.
    pub fn info(&self) -> ModelInfo {
        let parameters = self.src.entries().iter().map(|(_, s, _)| s.iter().product::<usize>() as u64).sum();
        let mut hp = self.arch.to_metadata();
        hp.retain(|k, _| !matches!(k.as_str(), "format" | "format_version" | "arch"));
        ModelInfo {
            arch: self.arch.name().to_string(),
            description: self.arch.to_string(),
            layout: self.layout.map(|l| l.name().to_string()),
            scales: self.arch.scales(),
            parameters,
            receptive_field: self
                .arch
                .scales()
                .into_iter()
                .map(|s| (s, self.arch.receptive_field(s)))
                .collect(),
            hyper_parameters: hp,
            notes: self.notes.clone(),
        }
    }

    /// [`Model::info`] with extra notes (e.g. those of the checkpoint this file was made from).
    pub fn info_with_notes(&self, notes: &[String]) -> ModelInfo {
        let mut i = self.info();
        i.notes = notes.to_vec();
        i
    }

    /// Write the model as our safetensors file: canonical tensor names, original dtypes, and the
    /// architecture in `__metadata__`. Only tensors the architecture uses are kept.
    pub fn write_safetensors(&self, out: &mut impl std::io::Write) -> Result<()> {
        let mut names: Vec<String> = Vec::new();
        let mut keep = |used: Vec<String>| {
            for n in used {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        };
        if self.arch.is_video() {
            keep(self.build_video_inner(CpuLevel::Portable, false)?.1);
        } else {
            for s in self.arch.scales() {
                // Building on the portable level checks every tensor; the packing is discarded.
                keep(self.build_inner(CpuLevel::Portable, Some(s))?.1);
            }
        }
        let tensors = self.src.canonical_tensors(&names)?;
        let mut meta = self.arch.to_metadata();
        if let Some(l) = self.layout {
            meta.insert("layout".into(), l.name().into());
        }
        if let Some(name) = self.src.path().file_name() {
            meta.insert("source".into(), name.to_string_lossy().into_owned());
        }
        safetensors::write(out, &tensors, &meta).map_err(|e| Error::io("<output>", e))
    }
}
