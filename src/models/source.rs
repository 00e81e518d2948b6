//! Where a model's tensors come from: a memory-mapped safetensors file or a state dict read into
//! memory (a converted .pth), addressed by canonical names through a rename map.

use crate::error::{Error, Result};
use crate::weights::safetensors::SafeTensors;
use crate::weights::{DType, StateDict};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(crate) enum Store {
    Mapped(SafeTensors),
    Memory(StateDict),
}

pub struct TensorSource {
    path: PathBuf,
    store: Store,
    /// Canonical name -> stored name, for names that differ.
    rename: BTreeMap<String, String>,
}

impl TensorSource {
    pub(crate) fn new(path: &Path, store: Store) -> Self {
        TensorSource { path: path.to_path_buf(), store, rename: BTreeMap::new() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn set_rename(&mut self, rename: BTreeMap<String, String>) {
        self.rename = rename;
    }

    fn stored<'a>(&'a self, name: &'a str) -> &'a str {
        self.rename.get(name).map_or(name, |s| s.as_str())
    }

    /// Stored names with their shapes and dtypes, in file order.
    pub fn entries(&self) -> Vec<(String, Vec<usize>, DType)> {
        match &self.store {
            Store::Mapped(st) => {
                st.header().tensors.iter().map(|t| (t.name.clone(), t.shape.clone(), t.dtype)).collect()
            }
            Store::Memory(sd) => {
                sd.tensors.iter().map(|(n, t)| (n.clone(), t.shape.clone(), t.dtype)).collect()
            }
        }
    }

    /// Shape of a tensor by canonical name.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let n = self.stored(name);
        match &self.store {
            Store::Mapped(st) => st.header().get(n).map(|t| t.shape.clone()),
            Store::Memory(sd) => sd.get(n).map(|t| t.shape.clone()),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.shape(name).is_some()
    }

    /// A tensor as f32 (borrowed from the mapping when possible), by canonical name.
    pub fn f32(&self, name: &str) -> Result<Cow<'_, [f32]>> {
        let n = self.stored(name);
        match &self.store {
            Store::Mapped(st) => st.f32(n),
            Store::Memory(sd) => {
                let t = sd.get(n).ok_or_else(|| Error::tensor(&self.path, name, "missing"))?;
                t.to_f32().map(Cow::Owned).map_err(|r| Error::tensor(&self.path, name, r))
            }
        }
    }

    /// Check that a tensor exists with the expected shape.
    pub fn expect_shape(&self, name: &str, shape: &[usize]) -> Result<()> {
        match self.shape(name) {
            None => Err(Error::tensor(&self.path, name, format!("missing (expected shape {shape:?})"))),
            Some(s) if s != shape => {
                Err(Error::tensor(&self.path, name, format!("has shape {s:?}, expected {shape:?}")))
            }
            Some(_) => Ok(()),
        }
    }

    /// A tensor by canonical name, checked against an expected shape.
    pub fn expect(&self, name: &str, shape: &[usize]) -> Result<Cow<'_, [f32]>> {
        self.expect_shape(name, shape)?;
        let v = self.f32(name)?;
        if let Some(bad) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::tensor(&self.path, name, format!("element {bad} is not finite ({})", v[bad])));
        }
        Ok(v)
    }

    /// Owned tensors under canonical names (for writing a converted model).
    pub fn canonical_tensors(&self, names: &[String]) -> Result<Vec<(String, crate::weights::TensorData)>> {
        let sd = match &self.store {
            Store::Mapped(st) => Cow::Owned(st.to_state_dict()),
            Store::Memory(sd) => Cow::Borrowed(sd),
        };
        names
            .iter()
            .map(|n| {
                let t = sd.get(self.stored(n)).ok_or_else(|| Error::tensor(&self.path, n, "missing"))?;
                Ok((n.clone(), t.clone()))
            })
            .collect()
    }
}
