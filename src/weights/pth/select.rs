//! Finding the state dict inside whatever object a checkpoint holds.
//!
//! Checkpoints come as a bare state dict; as a training dict with the weights under a
//! conventional key (BasicSR's `params_ema`/`params`, Lightning's `state_dict`, `model`, ...)
//! next to bookkeeping such as `iter` or `optimizer`; or as a whole pickled `nn.Module`
//! (`torch.save(model)`). Modules are walked through their `_parameters`, `_buffers` and
//! `_modules` attributes exactly as `state_dict()` would, without knowing their classes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use super::pickle::{describe, Heap, TensorRef, Value};

/// Keys tried in order when the top-level dict is not itself a state dict. Real-ESRGAN and
/// BasicSR store both `params` and `params_ema`; inference uses the EMA weights.
const KEYS: [&str; 6] = ["params_ema", "params", "state_dict", "model", "net", "generator"];
/// Deepest module nesting we follow.
const MAX_DEPTH: usize = 128;
/// Most modules visited and tensors collected: shared submodules are walked once per name, as
/// state_dict() does, so a hostile DAG of modules could otherwise take exponential time.
const MAX_MODULES: usize = 1 << 18;
const MAX_TENSORS: usize = 1 << 20;
/// Longest tensor name.
const MAX_NAME: usize = 4096;

#[derive(Default)]
pub struct Selected {
    pub tensors: Vec<(String, Rc<TensorRef>)>,
    pub extras: BTreeMap<String, String>,
    pub source_key: Option<String>,
    index: HashMap<String, usize>,
    modules: usize,
}

impl Selected {
    /// Add a tensor; a repeated name replaces the earlier tensor in place.
    fn push(&mut self, name: String, t: &Rc<TensorRef>) -> Result<(), String> {
        if self.tensors.len() >= MAX_TENSORS || name.len() > MAX_NAME {
            return Err("too many tensors, or a tensor name too long".into());
        }
        match self.index.get(&name) {
            Some(&i) => self.tensors[i].1 = t.clone(),
            None => {
                self.index.insert(name.clone(), self.tensors.len());
                self.tensors.push((name, t.clone()));
            }
        }
        Ok(())
    }
}

pub fn select(heap: &Heap, root: &Value) -> Result<Selected, String> {
    let mut sel = Selected::default();
    if heap.pairs(root).is_some() && !has_tensors(heap, root) {
        let pairs = heap.pairs(root).unwrap_or_default();
        let by_key =
            KEYS.iter().find_map(|&k| heap.get(root, k).filter(|v| is_weights(heap, v)).map(|v| (k, v)));
        // Failing the conventional keys, a dict with exactly one entry holding weights.
        let only = || {
            let mut found = pairs.iter().filter(|(k, v)| key_name(k).is_some() && is_weights(heap, v));
            match (found.next(), found.next()) {
                (Some((k, v)), None) => key_name(k).map(|k| (k, v)),
                _ => None,
            }
        };
        let (key, value) = match by_key.map(|(k, v)| (k.to_string(), v)).or_else(only) {
            Some(kv) => kv,
            None => {
                let keys: Vec<String> = pairs.iter().filter_map(|(k, _)| key_name(k)).take(20).collect();
                return Err(format!("no state dict found: the top-level dict has keys {keys:?}"));
            }
        };
        scalars(heap, root, &mut sel.extras);
        take(heap, value, &mut sel)?;
        sel.source_key = Some(key);
    } else if heap.pairs(root).is_some() || is_module(heap, root) {
        take(heap, root, &mut sel)?;
    } else {
        return Err(format!(
            "the checkpoint holds {}, not a state dict or an nn.Module",
            describe(heap, root)
        ));
    }
    strip_data_parallel(&mut sel.tensors);
    Ok(sel)
}

fn take(heap: &Heap, v: &Value, sel: &mut Selected) -> Result<(), String> {
    if is_module(heap, v) {
        return walk_module(heap, v, "", 0, sel);
    }
    for (k, v) in heap.pairs(v).unwrap_or_default() {
        let Some(name) = key_name(k) else { continue };
        match v {
            Value::Tensor(t) => sel.push(name, t)?,
            other => {
                unsupported_tensor(heap, &name, other)?;
                if let Some(s) = scalar(other) {
                    sel.extras.insert(name, s);
                }
            }
        }
    }
    Ok(())
}

/// Walk a module as `state_dict()` does: own parameters, own persistent buffers, then
/// submodules in order, skipping `None` entries.
fn walk_module(
    heap: &Heap,
    module: &Value,
    prefix: &str,
    depth: usize,
    sel: &mut Selected,
) -> Result<(), String> {
    sel.modules += 1;
    if depth > MAX_DEPTH || sel.modules > MAX_MODULES || prefix.len() > MAX_NAME {
        return Err("module tree too deep or too large".into());
    }
    let Some(state) = heap.object(module).map(|o| &o.state) else { return Ok(()) };
    let non_persistent: HashSet<String> = heap
        .get(state, "_non_persistent_buffers_set")
        .and_then(|s| heap.items(s))
        .unwrap_or_default()
        .iter()
        .filter_map(key_name)
        .collect();
    for field in ["_parameters", "_buffers"] {
        for (k, v) in heap.get(state, field).and_then(|d| heap.pairs(d)).unwrap_or_default() {
            let Some(name) = key_name(k) else { continue };
            if field == "_buffers" && non_persistent.contains(&name) {
                continue;
            }
            let full = format!("{prefix}{name}");
            match v {
                Value::Tensor(t) => sel.push(full, t)?,
                other => unsupported_tensor(heap, &full, other)?,
            }
        }
    }
    for (k, v) in heap.get(state, "_modules").and_then(|d| heap.pairs(d)).unwrap_or_default() {
        if let (Some(name), true) = (key_name(k), is_module(heap, v)) {
            walk_module(heap, v, &format!("{prefix}{name}."), depth + 1, sel)?;
        }
    }
    Ok(())
}

/// An inert object built by a torch tensor constructor we do not interpret (quantized,
/// sparse, nested, meta tensors) where a weight belongs: say so rather than drop it.
fn unsupported_tensor(heap: &Heap, name: &str, v: &Value) -> Result<(), String> {
    match heap.object(v).map(|o| &o.class) {
        Some(Value::Global(g)) if g.module.starts_with("torch") && g.name.starts_with("_rebuild") => {
            Err(format!("tensor '{name}' is built by {}.{}, which is not supported", g.module, g.name))
        }
        _ => Ok(()),
    }
}

/// A dict with at least one tensor value directly in it.
fn has_tensors(heap: &Heap, v: &Value) -> bool {
    heap.pairs(v).is_some_and(|p| p.iter().any(|(_, v)| matches!(v, Value::Tensor(_))))
}

/// A pickled `nn.Module`: an object whose state has the module bookkeeping attributes.
fn is_module(heap: &Heap, v: &Value) -> bool {
    heap.object(v).is_some_and(|o| {
        heap.get(&o.state, "_parameters").is_some() || heap.get(&o.state, "_modules").is_some()
    })
}

fn is_weights(heap: &Heap, v: &Value) -> bool {
    has_tensors(heap, v) || is_module(heap, v)
}

fn key_name(k: &Value) -> Option<String> {
    match k {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(i) => Some(i.to_string()),
        Value::Bytes(b) => std::str::from_utf8(b).ok().map(str::to_string),
        _ => None,
    }
}

/// Scalars as strings: ints in decimal, floats as Rust prints them, bools as `true`/`false`
/// (so `str::parse` reads them back).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => Some(b.to_string()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(format!("{f:?}")),
        Value::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

fn scalars(heap: &Heap, dict: &Value, extras: &mut BTreeMap<String, String>) {
    for (k, v) in heap.pairs(dict).unwrap_or_default() {
        if let (Some(k), Some(v)) = (key_name(k), scalar(v)) {
            extras.insert(k, v);
        }
    }
}

/// `nn.DataParallel` saves every name with a `module.` prefix; drop it when all have it.
fn strip_data_parallel(tensors: &mut [(String, Rc<TensorRef>)]) {
    if !tensors.is_empty() && tensors.iter().all(|(n, _)| n.starts_with("module.")) {
        for (n, _) in tensors {
            n.drain(.."module.".len());
        }
    }
}
