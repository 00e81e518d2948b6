//! A restricted unpickler for the pickles `torch.save` writes.
//!
//! Nothing named in the file is ever imported or called. The few callables a checkpoint needs
//! (`torch._utils._rebuild_tensor_v2`, `collections.OrderedDict`, ...) are recognised by name
//! and interpreted here; any other global becomes an inert [`Value::Global`], and calling or
//! instantiating it yields an inert [`Value::Object`] that just records its class, arguments
//! and state.
//!
//! Containers live in an arena ([`Heap`]) and values refer to them by index. Pickle has
//! reference semantics: a dict is memoised while still empty and filled afterwards, and a
//! later `BINGET` must see the filled dict. Indices give that for free, make `BINGET` O(1)
//! whatever the size of the referenced value (so a file cannot blow up memory by
//! re-referencing a big container many times), and make cycles harmless.
//!
//! Every length read from the file is checked against the bytes that remain, and the stack,
//! the memo and the heap are capped, so a hostile file gets an error, never a panic or an
//! unbounded allocation.

use std::collections::HashMap;
use std::rc::Rc;

use crate::weights::DType;

/// Largest number of values on the stack at once.
const MAX_STACK: usize = 1 << 20;
/// Largest number of memo entries.
const MAX_MEMO: usize = 1 << 22;
/// Largest number of containers and objects one pickle may create.
const MAX_NODES: usize = 1 << 22;
/// Most values stored in containers altogether (a real state dict of 100k tensors needs a few
/// million): without it a pickle of repeated DUP/APPENDS grows ~30 bytes of memory per byte.
const MAX_ITEMS: usize = 1 << 24;
/// Most dimensions a tensor may have.
const MAX_DIMS: usize = 64;
/// Longest module or class name a GLOBAL opcode may carry.
const MAX_GLOBAL_LINE: usize = 1024;

/// Index of a container in the [`Heap`].
pub type NodeId = usize;

/// One unpickled value. Scalars are inline; containers are indices into the [`Heap`].
#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// A LONG1/LONG4 integer too wide for i64, as little-endian two's-complement bytes (the
    /// legacy format's magic number is one).
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    /// A module-level name the pickle referred to; never resolved.
    Global(Rc<Global>),
    List(NodeId),
    Tuple(NodeId),
    Dict(NodeId),
    Set(NodeId),
    /// Anything built by REDUCE/NEWOBJ that we do not interpret.
    Object(NodeId),
    /// A persistent storage reference (tensor data kept outside the pickle).
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Global {
    pub module: String,
    pub name: String,
}

impl Global {
    fn is(&self, module: &str, name: &str) -> bool {
        self.module == module && self.name == name
    }
}

/// An object we did not interpret: `class(*args)` followed by `BUILD(state)`, plus whatever
/// APPEND/SETITEM pushed into it (list and dict subclasses).
#[derive(Debug)]
pub struct Object {
    pub class: Value,
    /// Kept so a debug print shows what was constructed; nothing interprets it.
    #[allow(dead_code)]
    pub args: Value,
    pub state: Value,
    pub items: Vec<Value>,
    pub pairs: Vec<(Value, Value)>,
}

#[derive(Debug)]
pub enum Node {
    /// List, tuple or set.
    Items(Vec<Value>),
    /// Dict, in insertion order; a repeated key is resolved by readers (last one wins).
    Pairs(Vec<(Value, Value)>),
    Object(Object),
}

/// Tensor data outside the pickle: a zip entry `data/<key>`, or a blob of the legacy format.
#[derive(Debug)]
pub struct StorageRef {
    pub key: String,
    /// The storage type as named in the file (`FloatStorage`, `UntypedStorage`, `float32`).
    pub type_name: String,
    /// `None` for types we cannot represent (complex, quantized).
    pub dtype: Option<DType>,
    pub elem_size: usize,
    /// Elements of this storage, as the file declares.
    pub numel: usize,
    /// Legacy storage views: (offset, numel) in elements into the storage called `key`.
    pub view: Option<(usize, usize)>,
}

impl StorageRef {
    /// The byte range of the blob this storage covers.
    pub fn byte_range(&self) -> Option<(usize, usize)> {
        let (start, numel) = self.view.unwrap_or((0, self.numel));
        Some((start.checked_mul(self.elem_size)?, numel.checked_mul(self.elem_size)?))
    }
}

/// A strided view into a storage, as `torch._utils._rebuild_tensor*` describes it. Offset and
/// strides are in elements of the tensor's dtype.
#[derive(Debug)]
pub struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub dtype: Option<DType>,
    pub dtype_name: String,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

/// The containers of one pickle.
#[derive(Debug, Default)]
pub struct Heap {
    nodes: Vec<Node>,
}

impl Heap {
    fn alloc(&mut self, node: Node) -> Result<NodeId, String> {
        if self.nodes.len() >= MAX_NODES {
            return Err(format!("more than {MAX_NODES} containers"));
        }
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    /// Elements of a list, tuple or set.
    pub fn items(&self, v: &Value) -> Option<&[Value]> {
        match v {
            Value::List(id) | Value::Tuple(id) | Value::Set(id) => match self.nodes.get(*id) {
                Some(Node::Items(items)) => Some(items),
                _ => None,
            },
            _ => None,
        }
    }

    /// Entries of a dict.
    pub fn pairs(&self, v: &Value) -> Option<&[(Value, Value)]> {
        match v {
            Value::Dict(id) => match self.nodes.get(*id) {
                Some(Node::Pairs(pairs)) => Some(pairs),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn object(&self, v: &Value) -> Option<&Object> {
        match v {
            Value::Object(id) => match self.nodes.get(*id) {
                Some(Node::Object(o)) => Some(o),
                _ => None,
            },
            _ => None,
        }
    }

    /// The value under string key `key` of a dict (the last one if repeated).
    pub fn get<'h>(&'h self, dict: &Value, key: &str) -> Option<&'h Value> {
        self.pairs(dict)?
            .iter()
            .rev()
            .find(|(k, _)| matches!(k, Value::Str(s) if &**s == key))
            .map(|(_, v)| v)
    }

    fn node_mut(&mut self, v: &Value) -> Option<&mut Node> {
        match v {
            Value::List(id) | Value::Tuple(id) | Value::Set(id) | Value::Dict(id) | Value::Object(id) => {
                self.nodes.get_mut(*id)
            }
            _ => None,
        }
    }
}

/// A short description of a value for error messages.
pub fn describe(heap: &Heap, v: &Value) -> String {
    match v {
        Value::None => "None".into(),
        Value::Bool(_) => "a bool".into(),
        Value::Int(_) | Value::BigInt(_) => "an int".into(),
        Value::Float(_) => "a float".into(),
        Value::Str(_) => "a string".into(),
        Value::Bytes(_) => "bytes".into(),
        Value::Global(g) => format!("the global {}.{}", g.module, g.name),
        Value::List(_) => "a list".into(),
        Value::Tuple(_) => "a tuple".into(),
        Value::Dict(_) => "a dict".into(),
        Value::Set(_) => "a set".into(),
        Value::Object(_) => match heap.object(v).map(|o| &o.class) {
            Some(Value::Global(g)) => format!("a {}.{} object", g.module, g.name),
            _ => "an object".into(),
        },
        Value::Storage(_) => "a storage".into(),
        Value::Tensor(_) => "a tensor".into(),
    }
}

/// The result of unpickling: the root value, its heap, and where the pickle ended (the legacy
/// format concatenates several pickles and raw data).
#[derive(Debug)]
pub struct Pickle {
    pub root: Value,
    pub heap: Heap,
    /// Every storage the pickle referenced, in order (the legacy reader needs their element
    /// sizes to walk the data that follows).
    pub storages: Vec<Rc<StorageRef>>,
    pub end: usize,
}

/// Unpickle one pickle starting at `data[start]`.
pub fn load(data: &[u8], start: usize) -> Result<Pickle, String> {
    let mut u = Unpickler {
        data,
        pos: start,
        heap: Heap::default(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages: Vec::new(),
        items: 0,
    };
    match u.run() {
        Ok(root) => Ok(Pickle { root, heap: u.heap, storages: u.storages, end: u.pos }),
        Err(e) => Err(format!("pickle: {e} (at byte {})", u.pos)),
    }
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    heap: Heap,
    stack: Vec<Value>,
    /// Stack lengths at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    storages: Vec<Rc<StorageRef>>,
    /// Values stored in containers so far, against MAX_ITEMS.
    items: usize,
}

impl<'a> Unpickler<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or("truncated")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A length prefix of `N` bytes (little-endian).
    fn len<const N: usize>(&mut self) -> Result<usize, String> {
        let mut a = [0u8; 8];
        a[..N].copy_from_slice(&self.array::<N>()?);
        usize::try_from(u64::from_le_bytes(a)).map_err(|_| "length overflows".into())
    }

    /// A signed 4-byte length (BINSTRING, LONG4): negative is corrupt.
    fn len_i32(&mut self) -> Result<usize, String> {
        usize::try_from(i32::from_le_bytes(self.array()?)).map_err(|_| "negative length".into())
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let n =
            rest.iter().take(MAX_GLOBAL_LINE).position(|&b| b == b'\n').ok_or("unterminated GLOBAL name")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "GLOBAL name is not UTF-8")?.to_string();
        self.pos += n + 1;
        Ok(s)
    }

    fn push(&mut self, v: Value) -> Result<(), String> {
        if self.stack.len() >= MAX_STACK {
            return Err(format!("stack deeper than {MAX_STACK}"));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, String> {
        // A value below the innermost MARK belongs to an enclosing frame.
        if self.marks.last().is_some_and(|&m| self.stack.len() <= m) {
            return Err("stack underflow (pop across a MARK)".into());
        }
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }

    fn top(&self) -> Result<&Value, String> {
        if self.marks.last().is_some_and(|&m| self.stack.len() <= m) {
            return Err("stack underflow (top across a MARK)".into());
        }
        self.stack.last().ok_or_else(|| "stack underflow".into())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let m = self.marks.pop().ok_or("no MARK")?;
        // Marks are pushed at the stack length of the time and only popped values lie above.
        if m > self.stack.len() {
            return Err("MARK above the stack".into());
        }
        Ok(self.stack.split_off(m))
    }

    fn alloc(&mut self, node: Node) -> Result<NodeId, String> {
        self.heap.alloc(node)
    }

    fn count_items(&mut self, n: usize) -> Result<(), String> {
        self.items += n;
        if self.items > MAX_ITEMS {
            return Err(format!("more than {MAX_ITEMS} values in containers"));
        }
        Ok(())
    }

    fn new_items(&mut self, items: Vec<Value>, wrap: fn(NodeId) -> Value) -> Result<Value, String> {
        self.count_items(items.len())?;
        Ok(wrap(self.alloc(Node::Items(items))?))
    }

    fn new_dict(&mut self, pairs: Vec<(Value, Value)>) -> Result<Value, String> {
        self.count_items(2 * pairs.len())?;
        Ok(Value::Dict(self.alloc(Node::Pairs(pairs))?))
    }

    fn memo_put(&mut self, index: u32) -> Result<(), String> {
        let v = self.top()?.clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&index) {
            return Err(format!("more than {MAX_MEMO} memo entries"));
        }
        self.memo.insert(index, v);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<Value, String> {
        self.memo.get(&index).cloned().ok_or_else(|| format!("memo entry {index} is missing"))
    }

    /// A UTF-8 string with an `N`-byte length prefix.
    fn string<const N: usize>(&mut self) -> Result<Value, String> {
        let n = self.len::<N>()?;
        Ok(Value::Str(std::str::from_utf8(self.take(n)?).map_err(|_| "string is not UTF-8")?.into()))
    }

    /// Bytes with an `N`-byte length prefix.
    fn bytes<const N: usize>(&mut self) -> Result<Value, String> {
        let n = self.len::<N>()?;
        Ok(Value::Bytes(self.take(n)?.into()))
    }

    fn long(&mut self, n: usize) -> Result<Value, String> {
        let b = self.take(n)?;
        if b.len() > 8 {
            return Ok(Value::BigInt(b.into()));
        }
        // Sign-extend the little-endian two's-complement bytes.
        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 };
        let mut a = [fill; 8];
        a[..b.len()].copy_from_slice(b);
        Ok(Value::Int(i64::from_le_bytes(a)))
    }

    fn run(&mut self) -> Result<Value, String> {
        loop {
            let op = self.u8()?;
            // Each arm yields the value the opcode pushes, if any.
            let pushed = match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(format!("pickle protocol {proto} is not supported"));
                    }
                    None
                }
                // FRAME: a length hint for buffered readers; the opcodes follow inline.
                0x95 => self.take(8).map(|_| None)?,
                b'.' => return self.pop(),
                b'(' => {
                    if self.marks.len() >= MAX_STACK {
                        return Err("too many MARKs".into());
                    }
                    self.marks.push(self.stack.len());
                    None
                }
                b'0' => self.pop().map(|_| None)?,
                b'1' => self.pop_mark().map(|_| None)?,
                b'2' => Some(self.top()?.clone()),
                b'N' => Some(Value::None),
                0x88 => Some(Value::Bool(true)),
                0x89 => Some(Value::Bool(false)),
                b'J' => Some(Value::Int(i32::from_le_bytes(self.array()?).into())),
                b'K' => Some(Value::Int(self.u8()?.into())),
                b'M' => Some(Value::Int(u16::from_le_bytes(self.array()?).into())),
                0x8a => {
                    let n = self.len::<1>()?;
                    Some(self.long(n)?)
                }
                0x8b => {
                    let n = self.len_i32()?;
                    Some(self.long(n)?)
                }
                b'G' => Some(Value::Float(f64::from_be_bytes(self.array()?))),
                // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8.
                b'X' => Some(self.string::<4>()?),
                0x8c => Some(self.string::<1>()?),
                0x8d => Some(self.string::<8>()?),
                // Python 2 str (BINSTRING, SHORT_BINSTRING) in old legacy checkpoints: text if
                // it is UTF-8, else the raw bytes it often was.
                b'T' | b'U' => {
                    let n = if op == b'T' { self.len_i32()? } else { self.len::<1>()? };
                    let b = self.take(n)?;
                    Some(
                        std::str::from_utf8(b)
                            .map_or_else(|_| Value::Bytes(b.into()), |s| Value::Str(s.into())),
                    )
                }
                // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8.
                b'B' => Some(self.bytes::<4>()?),
                b'C' => Some(self.bytes::<1>()?),
                0x8e | 0x96 => Some(self.bytes::<8>()?),
                b']' => Some(self.new_items(Vec::new(), Value::List)?),
                b')' => Some(self.new_items(Vec::new(), Value::Tuple)?),
                0x8f => Some(self.new_items(Vec::new(), Value::Set)?),
                b'}' => Some(self.new_dict(Vec::new())?),
                b't' => {
                    let items = self.pop_mark()?;
                    Some(self.new_items(items, Value::Tuple)?)
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    Some(self.new_items(items, Value::List)?)
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    Some(self.new_items(items, Value::Set)?)
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    Some(self.new_items(items, Value::Tuple)?)
                }
                b'd' => {
                    let pairs = pairs(self.pop_mark()?)?;
                    Some(self.new_dict(pairs)?)
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend(vec![v]).map(|_| None)?
                }
                // APPENDS, ADDITEMS
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.extend(items).map(|_| None)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![(k, v)]).map(|_| None)?
                }
                b'u' => {
                    let pairs = pairs(self.pop_mark()?)?;
                    self.set_items(pairs).map(|_| None)?
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(i.into()).map(|_| None)?
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i).map(|_| None)?
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| "memo overflow")?;
                    self.memo_put(i).map(|_| None)?
                }
                b'h' => {
                    let i = self.u8()?;
                    Some(self.memo_get(i.into())?)
                }
                b'j' => {
                    let i = self.u32()?;
                    Some(self.memo_get(i)?)
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    Some(Value::Global(Rc::new(Global { module, name })))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err("STACK_GLOBAL needs two strings".into());
                    };
                    Some(Value::Global(Rc::new(Global {
                        module: module.to_string(),
                        name: name.to_string(),
                    })))
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    Some(self.call(f, args, 0)?)
                }
                // NEWOBJ cls args / NEWOBJ_EX cls args kwargs: kwargs carry nothing we use.
                0x81 | 0x92 => {
                    if op == 0x92 {
                        self.pop()?;
                    }
                    let args = self.pop()?;
                    let class = self.pop()?;
                    Some(match &class {
                        Value::Global(g) if g.is("collections", "OrderedDict") => self.new_dict(Vec::new())?,
                        _ => self.new_object(class, args)?,
                    })
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?.clone();
                    // Only inert objects keep their state: an OrderedDict's state is the
                    // `_metadata` attribute of a state_dict(), a tensor's would be a
                    // subclass's attributes; neither matters for the weights.
                    if let Some(Node::Object(o)) = self.heap.node_mut(&target) {
                        o.state = state;
                    }
                    None
                }
                b'Q' => {
                    let pid = self.pop()?;
                    Some(self.persistent(pid)?)
                }
                _ => return Err(format!("unsupported pickle opcode 0x{op:02x}")),
            };
            if let Some(v) = pushed {
                self.push(v)?;
            }
        }
    }

    fn new_object(&mut self, class: Value, args: Value) -> Result<Value, String> {
        let o = Object { class, args, state: Value::None, items: Vec::new(), pairs: Vec::new() };
        Ok(Value::Object(self.alloc(Node::Object(o))?))
    }

    /// APPEND(S)/ADDITEMS into the list, set or object on top of the stack.
    fn extend(&mut self, items: Vec<Value>) -> Result<(), String> {
        self.count_items(items.len())?;
        let target = self.top()?.clone();
        match (&target, self.heap.node_mut(&target)) {
            (Value::List(_) | Value::Set(_), Some(Node::Items(v))) => v.extend(items),
            (_, Some(Node::Object(o))) => o.items.extend(items),
            _ => return Err("APPEND to something that is not a list".into()),
        }
        Ok(())
    }

    /// SETITEM(S) into the dict or object on top of the stack.
    fn set_items(&mut self, pairs: Vec<(Value, Value)>) -> Result<(), String> {
        self.count_items(2 * pairs.len())?;
        let target = self.top()?.clone();
        match self.heap.node_mut(&target) {
            Some(Node::Pairs(v)) => v.extend(pairs),
            Some(Node::Object(o)) => o.pairs.extend(pairs),
            _ => return Err("SETITEM on something that is not a dict".into()),
        }
        Ok(())
    }

    /// REDUCE: interpret the few callables a checkpoint needs; anything else is inert.
    fn call(&mut self, f: Value, args: Value, depth: u32) -> Result<Value, String> {
        let Value::Global(g) = &f else {
            return self.new_object(f, args);
        };
        let argv: Vec<Value> = match self.heap.items(&args) {
            Some(a) => a.to_vec(),
            None => return self.new_object(f, args),
        };
        match (g.module.as_str(), g.name.as_str()) {
            ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => self.tensor(&argv, false),
            ("torch._utils", "_rebuild_tensor_v3") => self.tensor(&argv, true),
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                argv.into_iter().next().ok_or_else(|| "Parameter without data".into())
            }
            // Tensor subclasses: (func, type, args, state); rebuild the plain tensor. One level
            // only, so a nested chain cannot recurse deeply.
            ("torch._tensor", "_rebuild_from_type_v2") if depth == 0 && argv.len() >= 3 => {
                self.call(argv[0].clone(), argv[2].clone(), depth + 1)
            }
            ("collections", "OrderedDict") => {
                let mut pairs = Vec::new();
                if let Some(items) = argv.first().and_then(|a| self.heap.items(a)) {
                    for item in items {
                        match self.heap.items(item) {
                            Some([k, v]) => pairs.push((k.clone(), v.clone())),
                            _ => return Err("OrderedDict item is not a pair".into()),
                        }
                    }
                }
                self.new_dict(pairs)
            }
            ("builtins" | "__builtin__", "set" | "frozenset") => {
                let items = argv.first().and_then(|a| self.heap.items(a)).map(<[Value]>::to_vec);
                self.new_items(items.unwrap_or_default(), Value::Set)
            }
            ("torch", "Size") => {
                let items = argv.first().and_then(|a| self.heap.items(a)).map(<[Value]>::to_vec);
                self.new_items(items.ok_or("torch.Size of a non-sequence")?, Value::Tuple)
            }
            _ => self.new_object(f, args),
        }
    }

    /// `torch._utils._rebuild_tensor*(storage, storage_offset, size, stride, ...)`: v2 goes on
    /// with `requires_grad, hooks[, metadata]`, v3 with `requires_grad, hooks, dtype[, metadata]`.
    fn tensor(&mut self, argv: &[Value], v3: bool) -> Result<Value, String> {
        let [storage, offset, size, stride, ..] = argv else {
            return Err("_rebuild_tensor with fewer than 4 arguments".into());
        };
        let Value::Storage(storage) = storage else {
            return Err(format!("tensor storage is {}", describe(&self.heap, storage)));
        };
        let offset = to_usize(offset).ok_or("tensor storage offset is not a non-negative int")?;
        let size = self.dims(size).ok_or("tensor size is not a tuple of non-negative ints")?;
        let stride = self.dims(stride).ok_or("tensor stride is not a tuple of non-negative ints")?;
        if size.len() != stride.len() {
            return Err(format!("tensor size has {} dims but stride {}", size.len(), stride.len()));
        }
        let (dtype, dtype_name) = match (v3, argv.get(6)) {
            (false, _) => (storage.dtype, storage.type_name.clone()),
            (true, Some(Value::Global(g))) => (storage_type(&g.name).and_then(|t| t.0), g.name.clone()),
            (true, v) => {
                return Err(format!(
                    "tensor dtype is {}",
                    v.map_or("missing".into(), |v| describe(&self.heap, v))
                ))
            }
        };
        // The optional metadata dict of v2/v3 records conj/neg bits. Conjugating a real tensor
        // is a no-op; a pending negation would change the values, so refuse it.
        let metadata = argv.get(if v3 { 7 } else { 6 });
        if let Some(Value::Bool(true)) = metadata.and_then(|m| self.heap.get(m, "neg")) {
            return Err("tensor with a pending negation bit is not supported".into());
        }
        Ok(Value::Tensor(Rc::new(TensorRef {
            storage: storage.clone(),
            dtype,
            dtype_name,
            offset,
            size,
            stride,
        })))
    }

    fn dims(&self, v: &Value) -> Option<Vec<usize>> {
        let items = self.heap.items(v)?;
        if items.len() > MAX_DIMS {
            return None;
        }
        items.iter().map(to_usize).collect()
    }

    /// BINPERSID: torch's persistent ids are tuples, `('storage', type, key, location, numel)`
    /// (the legacy format adds view metadata) or, for legacy whole-module saves,
    /// `('module', class, source_file, source)`.
    fn persistent(&mut self, pid: Value) -> Result<Value, String> {
        let Some(items) = self.heap.items(&pid).filter(|_| matches!(pid, Value::Tuple(_))) else {
            return Err(format!("persistent id is {}", describe(&self.heap, &pid)));
        };
        let tag = match items.first() {
            Some(Value::Str(s)) => s.to_string(),
            Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        match (tag.as_str(), items) {
            ("module", [_, class, ..]) => Ok(class.clone()),
            ("storage", [_, stype, key, _location, numel, view @ ..]) => {
                let Value::Global(stype) = stype else {
                    return Err(format!("storage type is {}", describe(&self.heap, stype)));
                };
                let (dtype, elem_size) = storage_type(&stype.name)
                    .ok_or_else(|| format!("unknown storage type {}.{}", stype.module, stype.name))?;
                let key = match key {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    v => return Err(format!("storage key is {}", describe(&self.heap, v))),
                };
                let numel = to_usize(numel).ok_or("storage size is not a non-negative int")?;
                let view = match view.first() {
                    None | Some(Value::None) => None,
                    Some(v) => match self.heap.items(v) {
                        Some([_, offset, len]) => Some((
                            to_usize(offset).ok_or("bad storage view offset")?,
                            to_usize(len).ok_or("bad storage view size")?,
                        )),
                        _ => return Err("storage view metadata is not (key, offset, size)".into()),
                    },
                };
                let type_name = stype.name.clone();
                let s = Rc::new(StorageRef { key, type_name, dtype, elem_size, numel, view });
                self.storages.push(s.clone());
                Ok(Value::Storage(s))
            }
            _ => Err(format!("unsupported persistent id '{tag}'")),
        }
    }
}

fn to_usize(v: &Value) -> Option<usize> {
    match v {
        Value::Int(i) => usize::try_from(*i).ok(),
        Value::Bool(b) => Some(usize::from(*b)),
        _ => None,
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("odd number of items for a dict".into());
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// Element type and size for a storage class name (`FloatStorage`, also under `torch.cuda`)
/// or a dtype name (`float32`, the form newer code pairs with `UntypedStorage`). Types we
/// cannot represent still have a size, so the legacy reader can skip their data.
pub fn storage_type(name: &str) -> Option<(Option<DType>, usize)> {
    let base = name.strip_suffix("Storage").unwrap_or(name);
    Some(match base {
        "Float" | "float32" | "float" => (Some(DType::F32), 4),
        "Half" | "float16" | "half" => (Some(DType::F16), 2),
        "BFloat16" | "bfloat16" => (Some(DType::BF16), 2),
        "Double" | "float64" | "double" => (Some(DType::F64), 8),
        "Long" | "int64" | "long" => (Some(DType::I64), 8),
        "Int" | "int32" | "int" => (Some(DType::I32), 4),
        "Short" | "int16" | "short" => (Some(DType::I16), 2),
        "Char" | "int8" => (Some(DType::I8), 1),
        "Byte" | "uint8" | "Untyped" => (Some(DType::U8), 1),
        "Bool" | "bool" => (Some(DType::Bool), 1),
        "ComplexFloat" | "complex64" | "cfloat" => (None, 8),
        "ComplexDouble" | "complex128" | "cdouble" => (None, 16),
        "ComplexHalf" | "complex32" | "chalf" => (None, 4),
        "QInt32" | "qint32" => (None, 4),
        "QInt8" | "QUInt8" | "QUInt4x2" | "QUInt2x4" | "qint8" | "quint8" | "quint4x2" | "quint2x4" => {
            (None, 1)
        }
        "Float8_e5m2" | "Float8_e4m3fn" | "Float8_e5m2fnuz" | "Float8_e4m3fnuz" | "float8_e5m2"
        | "float8_e4m3fn" | "float8_e5m2fnuz" | "float8_e4m3fnuz" => (None, 1),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_all(bytes: &[u8]) -> Result<Pickle, String> {
        load(bytes, 0)
    }

    #[test]
    fn scalars_and_containers() {
        // pickle.dumps({'a': [1, -2, 70000, 2**40, 1.5, None, True, b'x'], 'b': (1,)}, 2)
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0, 0, 0, b'a', b']', b'q', 1, b'('];
        p.extend([b'K', 1, b'J', 0xfe, 0xff, 0xff, 0xff, b'J', 0x70, 0x11, 1, 0]);
        p.extend([0x8a, 6, 0, 0, 0, 0, 0, 1]); // 2**40
        p.extend([b'G', 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, b'N', 0x88, b'C', 1, b'x', b'e']);
        p.extend([b'X', 1, 0, 0, 0, b'b', b'K', 1, 0x85, b'u', b'.']);
        let pk = load_all(&p).unwrap();
        let a = pk.heap.get(&pk.root, "a").unwrap();
        let items = pk.heap.items(a).unwrap();
        assert!(matches!(items[0], Value::Int(1)));
        assert!(matches!(items[1], Value::Int(-2)));
        assert!(matches!(items[2], Value::Int(70000)));
        assert!(matches!(items[3], Value::Int(1_099_511_627_776)));
        assert!(matches!(items[4], Value::Float(f) if f == 1.5));
        assert!(matches!(items[5], Value::None));
        assert!(matches!(items[6], Value::Bool(true)));
        assert!(matches!(&items[7], Value::Bytes(b) if &**b == b"x"));
        let b = pk.heap.get(&pk.root, "b").unwrap();
        assert!(matches!(b, Value::Tuple(_)));
        assert_eq!(pk.end, p.len());
    }

    #[test]
    fn memo_has_reference_semantics() {
        // d = {}; memoise d, then fill it, then fetch it again: [d, d] with d = {'k': 1}
        let p =
            [0x80, 2, b']', b'(', b'}', b'q', 7, b'X', 1, 0, 0, 0, b'k', b'K', 1, b's', b'h', 7, b'e', b'.'];
        let pk = load_all(&p).unwrap();
        let items = pk.heap.items(&pk.root).unwrap();
        assert_eq!(items.len(), 2);
        assert!(matches!(pk.heap.get(&items[1], "k"), Some(Value::Int(1))));
    }

    #[test]
    fn unknown_globals_are_inert() {
        // os.system('rm -rf /') must only produce an inert object.
        let mut p = vec![0x80, 2, b'c'];
        p.extend(b"os\nsystem\n");
        p.extend([b'X', 8, 0, 0, 0]);
        p.extend(b"rm -rf /");
        p.extend([0x85, b'R', b'.']);
        let pk = load_all(&p).unwrap();
        let o = pk.heap.object(&pk.root).unwrap();
        assert!(matches!(&o.class, Value::Global(g) if g.is("os", "system")));
    }

    #[test]
    fn container_growth_is_capped() {
        // A list, then rounds of MARK, None, DUP x (2^19 - 1), APPENDS.
        let mut p = vec![0x80, 2, b']'];
        for _ in 0..(MAX_ITEMS >> 19) + 1 {
            p.extend(b"(N");
            p.extend(std::iter::repeat_n(b'2', (1 << 19) - 1));
            p.push(b'e');
        }
        p.push(b'.');
        let err = load_all(&p).unwrap_err();
        assert!(err.contains("values in containers"), "{err}");
    }

    #[test]
    fn big_long_is_kept_as_bytes() {
        let magic = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
        let mut p = vec![0x80, 2, 0x8a, 10];
        p.extend(magic);
        p.push(b'.');
        assert!(matches!(load_all(&p).unwrap().root, Value::BigInt(b) if *b == magic));
    }

    #[test]
    fn malformed_pickles_are_errors() {
        let cases: &[&[u8]] = &[
            b"",
            &[0x80, 2],                      // no STOP
            &[0x80, 9, b'N', b'.'],          // protocol 9
            &[0x80, 2, 0xff],                // unknown opcode
            b".",                            // STOP on an empty stack
            &[b'h', 3, b'.'],                // missing memo entry
            b"(.",                           // STOP across a MARK
            b"N(0.",                         // POP across a MARK
            &[b'X', 0xff, 0xff, 0xff, 0x7f], // length past the end
            b"Na.",                          // APPEND to None
            b"(Nd.",                         // odd dict
            b"NQ.",                          // persistent id that is not a tuple
            &[0x8b, 0xff, 0xff, 0xff, 0xff], // negative LONG4 length
            b"cos",                          // unterminated GLOBAL
        ];
        for c in cases {
            assert!(load_all(c).is_err(), "{c:?}");
        }
    }
}
