//! Official Demucs checkpoints (`<signature>-<sha8>.th`).
//!
//! A checkpoint is a `torch.save` zip file: `<archive>/data.pkl` holds a pickled dict written by
//! `demucs.states.serialize_model` — `klass` (a reference to the model class), `args`, `kwargs`
//! (the constructor's hyperparameters: lists, numbers, booleans, strings, `None` and a
//! `fractions.Fraction` segment), `state` (a flat state dict whose tensors point into
//! `<archive>/data/<key>` entries, fp16 in published files) and `training_args`.
//!
//! Nothing here executes the pickle: it is read by a bounded interpreter ([`pickle`]) into
//! candle's object tree, and only the expected shapes of data are accepted. Tensor data are read
//! lazily, each one checked against the shape the network expects before anything is
//! allocated, so a hostile file yields an error, not a panic or a huge allocation.

mod pickle;

use crate::htdemucs::{Config, HTDemucs};
use crate::{ModelInfo, Network, SeparateError};
use candle_core::pickle::Object;
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

/// Largest `data.pkl` accepted. The published htdemucs pickle is about 1 MB (mostly the
/// names and shapes of its ~600 tensors).
const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// Hyperparameters as the checkpoint stores them (`kwargs`, with `args` mapped to names).
pub type Kwargs = BTreeMap<String, Object>;

/// What the pickle of a checkpoint holds, weights not read yet.
pub(crate) struct Package {
    /// `module.Class` of `klass`.
    pub module: String,
    pub class: String,
    pub kwargs: Kwargs,
    /// The state dict: tensor name → where its data are.
    pub state: HashMap<String, TensorRef>,
    /// The zip directory holding `data.pkl` (`archive` for files written by torch ≥ 1.6).
    pub prefix: String,
}

/// One tensor of the state dict as the pickle describes it.
#[derive(Debug, Clone)]
pub(crate) struct TensorRef {
    pub dtype: DType,
    /// Storage key: the data are in `<prefix>/data/<key>`.
    pub key: String,
    /// Elements in the storage.
    pub storage_len: usize,
    /// Offset of the first element in the storage (elements).
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

fn bad(msg: impl std::fmt::Display) -> SeparateError {
    SeparateError::Checkpoint(msg.to_string())
}

/// Reads the class and hyperparameters of a checkpoint (no weights).
pub fn inspect_checkpoint(path: &Path) -> Result<ModelInfo, SeparateError> {
    let mut zip = open_zip(path)?;
    let package = read_package(&mut zip, path)?;
    model_info(&package)
}

/// Loads a checkpoint of the supported family (`HTDemucs`, see [`crate::htdemucs`]) onto
/// `device`: every expected tensor must be present with its shape, and no other.
pub fn load_network(path: &Path, device: &Device) -> Result<Arc<dyn Network>, SeparateError> {
    Ok(Arc::new(load_htdemucs(path, device)?))
}

/// [`load_network`] with the concrete type.
pub fn load_htdemucs(path: &Path, device: &Device) -> Result<HTDemucs, SeparateError> {
    let mut zip = open_zip(path)?;
    let package = read_package(&mut zip, path)?;
    let info = model_info(&package)?;
    if package.module != "demucs.htdemucs" || package.class != "HTDemucs" {
        return Err(SeparateError::Unsupported(format!(
            "model class {}.{} (only demucs.htdemucs.HTDemucs is implemented)",
            package.module, package.class
        )));
    }
    let config = Config::from_kwargs(&package.kwargs)?;
    let file_len = std::fs::metadata(path)?.len();
    let mut weights = Weights {
        zip,
        prefix: package.prefix.clone(),
        state: package.state,
        used: HashSet::new(),
        device: device.clone(),
        file_len,
    };
    let network = HTDemucs::load(config, info, &mut weights)?;
    weights.finish()?;
    Ok(network)
}

type Zip = zip::ZipArchive<BufReader<File>>;

fn open_zip(path: &Path) -> Result<Zip, SeparateError> {
    let file = File::open(path)?;
    zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        bad(format!(
            "{}: not a PyTorch checkpoint (zip): {e}",
            path.display()
        ))
    })
}

fn read_package(zip: &mut Zip, path: &Path) -> Result<Package, SeparateError> {
    let mut pickles = Vec::new();
    for name in zip.file_names() {
        let name = name.map_err(|e| bad(format!("{}: zip entry name: {e}", path.display())))?;
        if name == "data.pkl" || name.ends_with("/data.pkl") {
            pickles.push(name.into_owned());
        }
    }
    let name = match pickles.as_slice() {
        [name] => name.clone(),
        [] => return Err(bad(format!("{}: no data.pkl in the zip", path.display()))),
        _ => {
            return Err(bad(format!(
                "{}: several data.pkl in the zip",
                path.display()
            )))
        }
    };
    let prefix = name
        .strip_suffix("data.pkl")
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    let mut entry = zip
        .by_name(&name)
        .map_err(|e| bad(format!("{}: {name}: {e}", path.display())))?;
    if entry.size() > MAX_PICKLE_BYTES {
        return Err(bad(format!(
            "{}: {name} is {} bytes, more than the {MAX_PICKLE_BYTES} accepted",
            path.display(),
            entry.size()
        )));
    }
    let mut data = Vec::with_capacity(entry.size() as usize);
    // `take` bounds the read even if the zip's size field lies; the zip reader checks the
    // CRC-32 at the end, so a corrupted pickle fails here.
    (&mut entry)
        .take(MAX_PICKLE_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|e| bad(format!("{}: reading {name}: {e}", path.display())))?;
    if data.len() as u64 > MAX_PICKLE_BYTES {
        return Err(bad(format!("{}: {name} is too large", path.display())));
    }
    drop(entry);
    let object = pickle::load(&data).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    parse_package(object, prefix).map_err(|e| match e {
        SeparateError::Checkpoint(m) => bad(format!("{}: {m}", path.display())),
        other => other,
    })
}

fn parse_package(object: Object, prefix: String) -> Result<Package, SeparateError> {
    let Object::Dict(entries) = object else {
        return Err(bad("the pickle is not a dict (not a Demucs checkpoint)"));
    };
    let mut klass = None;
    let mut args = None;
    let mut kwargs = None;
    let mut state = None;
    for (key, value) in entries {
        match key {
            Object::Unicode(k) if k == "klass" => klass = Some(value),
            Object::Unicode(k) if k == "args" => args = Some(value),
            Object::Unicode(k) if k == "kwargs" => kwargs = Some(value),
            Object::Unicode(k) if k == "state" => state = Some(value),
            _ => {}
        }
    }
    let (module, class) = match klass {
        Some(Object::Class {
            module_name,
            class_name,
        }) => (module_name, class_name),
        Some(_) => return Err(bad("`klass` is not a class reference")),
        None => return Err(bad("no `klass` (not a Demucs checkpoint)")),
    };
    let mut map = Kwargs::new();
    match kwargs {
        Some(Object::Dict(items)) => {
            for (k, v) in items {
                let Object::Unicode(k) = k else {
                    return Err(bad("a `kwargs` key is not a string"));
                };
                map.insert(k, v);
            }
        }
        Some(_) => return Err(bad("`kwargs` is not a dict")),
        None => return Err(bad("no `kwargs` (not a Demucs checkpoint)")),
    }
    match args {
        None => {}
        Some(Object::Tuple(a)) | Some(Object::List(a)) => {
            // Only `sources` (the first parameter of every Demucs model) is ever passed
            // positionally.
            let mut a = a.into_iter();
            if let Some(sources) = a.next() {
                if map.insert("sources".into(), sources).is_some() {
                    return Err(bad("`sources` given both in args and kwargs"));
                }
            }
            if a.next().is_some() {
                return Err(SeparateError::Unsupported(
                    "more than one positional argument in `args`".into(),
                ));
            }
        }
        Some(_) => return Err(bad("`args` is not a tuple")),
    }
    let state = match state {
        Some(Object::Dict(items)) => {
            // diffq-quantized models (`*_q`) mark their packed state with `__quantized`.
            if items
                .iter()
                .any(|(k, _)| matches!(k, Object::Unicode(k) if k == "__quantized"))
            {
                return Err(SeparateError::Unsupported(
                    "quantized (diffq) checkpoints: use the unquantized model".into(),
                ));
            }
            let mut out = HashMap::with_capacity(items.len());
            for (k, v) in items {
                let Object::Unicode(name) = k else {
                    return Err(bad("a state key is not a string"));
                };
                let tensor = tensor_ref(v).map_err(|e| bad(format!("state entry {name}: {e}")))?;
                if out.insert(name.clone(), tensor).is_some() {
                    return Err(bad(format!("state entry {name} appears twice")));
                }
            }
            out
        }
        Some(_) => return Err(bad("`state` is not a dict")),
        None => return Err(bad("no `state` (not a Demucs checkpoint)")),
    };
    Ok(Package {
        module,
        class,
        kwargs: map,
        state,
        prefix,
    })
}

fn usize_of(o: &Object) -> Option<usize> {
    match o {
        Object::Int(i) => usize::try_from(*i).ok(),
        Object::Long(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

fn usizes(o: &Object) -> Option<Vec<usize>> {
    match o {
        Object::Tuple(items) | Object::List(items) => items.iter().map(usize_of).collect(),
        _ => None,
    }
}

/// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`
/// with `storage` a persistent id `('storage', torch.HalfStorage, key, location, numel)`.
fn tensor_ref(value: Object) -> Result<TensorRef, String> {
    let Object::Reduce { callable, args } = value else {
        return Err("not a tensor".into());
    };
    match *callable {
        Object::Class {
            ref module_name,
            ref class_name,
        } if module_name == "torch._utils" && class_name == "_rebuild_tensor_v2" => {}
        _ => return Err("not a plain tensor (_rebuild_tensor_v2)".into()),
    }
    let Object::Tuple(args) = *args else {
        return Err("tensor arguments are not a tuple".into());
    };
    if args.len() < 4 {
        return Err("too few tensor arguments".into());
    }
    let Object::PersistentLoad(storage) = &args[0] else {
        return Err("tensor storage is not a persistent reference".into());
    };
    let Object::Tuple(storage) = storage.as_ref() else {
        return Err("tensor storage reference is not a tuple".into());
    };
    let [Object::Unicode(kind), Object::Class { class_name, .. }, Object::Unicode(key), _, numel] =
        storage.as_slice()
    else {
        return Err("tensor storage reference is malformed".into());
    };
    if kind != "storage" {
        return Err(format!("unknown persistent reference {kind:?}"));
    }
    let dtype = match class_name.as_str() {
        "HalfStorage" => DType::F16,
        "FloatStorage" => DType::F32,
        "BFloat16Storage" => DType::BF16,
        other => return Err(format!("storage type {other} is not supported")),
    };
    // A key names a zip entry: keep it to a plain file name.
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("storage key {key:?} is malformed"));
    }
    let storage_len = usize_of(numel).ok_or("storage size is not a count")?;
    let offset = usize_of(&args[1]).ok_or("storage offset is not a count")?;
    let shape = usizes(&args[2]).ok_or("tensor size is not a tuple of counts")?;
    let stride = usizes(&args[3]).ok_or("tensor stride is not a tuple of counts")?;
    if shape.len() != stride.len() || shape.len() > 8 {
        return Err("tensor size and stride disagree".into());
    }
    Ok(TensorRef {
        dtype,
        key: key.clone(),
        storage_len,
        offset,
        shape,
        stride,
    })
}

/// `ModelInfo` from the hyperparameters (any Demucs class: they share these names).
fn model_info(package: &Package) -> Result<ModelInfo, SeparateError> {
    let kw = &package.kwargs;
    let sources = match kw.get("sources") {
        Some(Object::List(items)) | Some(Object::Tuple(items)) => items
            .iter()
            .map(|s| match s {
                Object::Unicode(s) => Ok(s.clone()),
                _ => Err(bad("a source name is not a string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad("kwargs has no list of `sources`")),
    };
    if sources.is_empty() || sources.len() > 64 {
        return Err(bad(format!("{} sources", sources.len())));
    }
    // Defaults are those of the constructors (HTDemucs: 2 channels, 44.1 kHz, segment 10 s).
    let audio_channels = match kw.get("audio_channels") {
        None => 2,
        Some(o) => usize_of(o)
            .filter(|&c| (1..=64).contains(&c))
            .ok_or_else(|| bad("`audio_channels` is not a small positive integer"))?,
    };
    let samplerate = match kw.get("samplerate") {
        None => 44100,
        Some(o) => usize_of(o)
            .and_then(|r| u32::try_from(r).ok())
            .filter(|&r| (1..=1_000_000).contains(&r))
            .ok_or_else(|| bad("`samplerate` is not a sample rate"))?,
    };
    let segment = match kw.get("segment") {
        None => (10, 1),
        Some(o) => fraction(o).ok_or_else(|| bad("`segment` is not a positive number"))?,
    };
    if segment.0 == 0 || segment.0 / segment.1 > 3600 {
        return Err(bad(
            "`segment` is not a positive number of seconds under an hour",
        ));
    }
    Ok(ModelInfo {
        class: package.class.clone(),
        sources,
        samplerate,
        audio_channels,
        segment,
    })
}

/// A segment as stored: a `fractions.Fraction` (pickled as `Fraction(num, den)` by Python ≥
/// 3.11, `Fraction("num/den")` before), an integer, or a float that is an exact decimal.
pub(crate) fn fraction(o: &Object) -> Option<(u64, u64)> {
    let reduced = |n: u64, d: u64| -> Option<(u64, u64)> {
        if d == 0 {
            return None;
        }
        let (mut a, mut b) = (n, d);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        Some((n / a.max(1), d / a.max(1)))
    };
    match o {
        Object::Int(_) | Object::Long(_) => usize_of(o).map(|n| (n as u64, 1)),
        Object::Float(f) if f.is_finite() && *f > 0.0 && *f < 1e6 => {
            // Floats come from hand-made files only; accept the ones that are exactly a
            // fraction with a small denominator (7.8 is not, but 7.5 is).
            (1..=1000u64).find_map(|d| {
                let n = (f * d as f64).round();
                (n / d as f64 == *f).then(|| reduced(n as u64, d)).flatten()
            })
        }
        Object::Reduce { callable, args } => {
            match callable.as_ref() {
                Object::Class {
                    module_name,
                    class_name,
                } if module_name == "fractions" && class_name == "Fraction" => {}
                _ => return None,
            }
            let Object::Tuple(args) = args.as_ref() else {
                return None;
            };
            match args.as_slice() {
                [n, d] => reduced(usize_of(n)? as u64, usize_of(d)? as u64),
                [Object::Unicode(s)] => {
                    let (n, d) = s.split_once('/').unwrap_or((s.as_str(), "1"));
                    reduced(n.trim().parse().ok()?, d.trim().parse().ok()?)
                }
                [n] => usize_of(n).map(|n| (n as u64, 1)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The tensors of a checkpoint, handed out by name to the layers being built, each checked
/// against the shape the layer expects.
pub(crate) struct Weights {
    zip: Zip,
    prefix: String,
    state: HashMap<String, TensorRef>,
    used: HashSet<String>,
    device: Device,
    file_len: u64,
}

impl Weights {
    /// The device the tensors are put on.
    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// The tensor `name` as f32 on the target device; it must have exactly `shape`.
    pub(crate) fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, SeparateError> {
        let r = self
            .state
            .get(name)
            .ok_or_else(|| bad(format!("missing weight {name} (expected shape {shape:?})")))?
            .clone();
        if r.shape != shape {
            return Err(bad(format!(
                "weight {name} has shape {:?}, the model's hyperparameters need {shape:?}",
                r.shape
            )));
        }
        if !self.used.insert(name.to_owned()) {
            return Err(bad(format!("weight {name} requested twice")));
        }
        let numel: usize = shape.iter().product();
        // Contiguous (row-major) layout only; strides of size-1 dimensions do not matter.
        let mut expected = 1usize;
        for (&dim, &stride) in shape.iter().zip(&r.stride).rev() {
            if dim > 1 && stride != expected {
                return Err(bad(format!("weight {name} is not stored contiguously")));
            }
            expected = expected.saturating_mul(dim);
        }
        let elem = r.dtype.size_in_bytes();
        let end = r
            .offset
            .checked_add(numel)
            .filter(|&end| end <= r.storage_len)
            .ok_or_else(|| bad(format!("weight {name} lies outside its storage")))?;
        let storage_bytes = (r.storage_len as u64).saturating_mul(elem as u64);
        // No tensor can be larger than the file it comes from (torch stores entries
        // uncompressed): this bounds every allocation by the file size.
        if storage_bytes > self.file_len {
            return Err(bad(format!("weight {name}: storage larger than the file")));
        }
        let entry_name = if self.prefix.is_empty() {
            format!("data/{}", r.key)
        } else {
            format!("{}/data/{}", self.prefix, r.key)
        };
        let mut entry = self
            .zip
            .by_name(&entry_name)
            .map_err(|e| bad(format!("weight {name}: {entry_name}: {e}")))?;
        if entry.size() != storage_bytes {
            return Err(bad(format!(
                "weight {name}: {entry_name} holds {} bytes, its storage needs {storage_bytes}",
                entry.size()
            )));
        }
        let mut bytes = Vec::with_capacity(storage_bytes as usize);
        (&mut entry)
            .take(storage_bytes)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("weight {name}: reading {entry_name}: {e}")))?;
        if bytes.len() as u64 != storage_bytes {
            return Err(bad(format!("weight {name}: {entry_name} is truncated")));
        }
        let data = &bytes[r.offset * elem..end * elem];
        let tensor =
            Tensor::from_raw_buffer(data, r.dtype, shape, &Device::Cpu)?.to_dtype(DType::F32)?;
        let finite = tensor
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .all(|v| v.is_finite());
        if !finite {
            return Err(bad(format!("weight {name} holds NaN or infinite values")));
        }
        Ok(tensor.to_device(&self.device)?)
    }

    /// Every tensor of the checkpoint must have been used: anything left is a sign the
    /// hyperparameters do not describe these weights.
    fn finish(self) -> Result<(), SeparateError> {
        let mut unused: Vec<&String> = self
            .state
            .keys()
            .filter(|k| !self.used.contains(*k))
            .collect();
        if unused.is_empty() {
            return Ok(());
        }
        unused.sort();
        let shown: Vec<&str> = unused.iter().take(5).map(|s| s.as_str()).collect();
        Err(bad(format!(
            "{} unexpected weights in the state ({}{})",
            unused.len(),
            shown.join(", "),
            if unused.len() > 5 { ", …" } else { "" }
        )))
    }
}
