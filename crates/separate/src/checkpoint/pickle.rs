//! A bounded pickle reader for untrusted checkpoint files.
//!
//! `candle_core::pickle::Stack` reads the opcodes `torch.save` writes, but it trusts its input:
//! a string length is allocated before it is read, `Vec::remove` on short tuples panics while
//! rebuilding tensors, and memo references are deep clones, so a few hundred bytes can ask for
//! exponential memory. This reader runs the same protocol-2 opcodes (plus the few protocol-4 ones
//! a re-saved file may use) over an in-memory buffer, shares memoized objects as Python does
//! (containers by reference), and only then converts the result to candle's [`Object`] tree
//! under a node budget and a depth limit. Every failure is an error message, never a panic.

use candle_core::pickle::Object;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Most nodes the converted object tree may hold. The published htdemucs pickle has about
/// 20,000; shared sub-trees count once per reference.
const MAX_NODES: usize = 4_000_000;

/// Deepest nesting accepted (a checkpoint nests about six levels).
const MAX_DEPTH: usize = 64;

/// A value on the virtual machine's stack. Containers are shared (`Rc`) so that a memo
/// reference costs nothing and sees later mutations, as in Python.
#[derive(Clone)]
enum Value {
    Mark,
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Global(Rc<(String, String)>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Reduce(Rc<(Value, Value)>),
    Build(Rc<(Value, Value)>),
    PersId(Rc<Value>),
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| format!("pickle truncated at byte {}", self.pos))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| "pickle truncated in a GLOBAL name".to_string())?;
        let line = std::str::from_utf8(&rest[..end])
            .map_err(|_| "a GLOBAL name is not UTF-8".to_string())?
            .to_owned();
        self.pos += end + 1;
        Ok(line)
    }

    fn string(&mut self, n: usize) -> Result<Rc<str>, String> {
        // The length is checked against the bytes actually present before anything is
        // allocated: a hostile length cannot reserve memory.
        let bytes = self.bytes(n)?;
        std::str::from_utf8(bytes)
            .map(Rc::from)
            .map_err(|_| "a pickled string is not UTF-8".to_string())
    }
}

struct Machine {
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl Machine {
    fn pop(&mut self) -> Result<Value, String> {
        match self.stack.pop() {
            Some(Value::Mark) | None => Err("pickle stack underflow".into()),
            Some(v) => Ok(v),
        }
    }

    fn pop_to_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| "pickle MARK missing".to_string())?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        match self.stack.last_mut() {
            Some(Value::Mark) | None => Err("pickle stack underflow".into()),
            Some(v) => Ok(v),
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), String> {
        match self.top()? {
            Value::List(list) => {
                list.borrow_mut().extend(items);
                Ok(())
            }
            _ => Err("APPEND to something that is not a list".into()),
        }
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), String> {
        if items.len() % 2 != 0 {
            return Err("SETITEMS with an odd number of items".into());
        }
        match self.top()? {
            Value::Dict(dict) => {
                let mut dict = dict.borrow_mut();
                let mut items = items.into_iter();
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    dict.push((k, v));
                }
                Ok(())
            }
            _ => Err("SETITEM on something that is not a dict".into()),
        }
    }

    fn memo_put(&mut self, id: u32) -> Result<(), String> {
        let top = self.top()?.clone();
        self.memo.insert(id, top);
        Ok(())
    }

    fn memo_get(&mut self, id: u32) -> Result<(), String> {
        let value = self
            .memo
            .get(&id)
            .cloned()
            .ok_or_else(|| format!("pickle memo entry {id} missing"))?;
        self.stack.push(value);
        Ok(())
    }
}

/// Runs a pickle and returns its result as candle's object tree.
pub(crate) fn load(data: &[u8]) -> Result<Object, String> {
    let mut r = Reader { data, pos: 0 };
    let mut m = Machine {
        stack: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                let proto = r.u8()?;
                if proto > 5 {
                    return Err(format!("pickle protocol {proto} is unknown"));
                }
            }
            // FRAME (protocol 4): a length prefix only.
            0x95 => {
                r.bytes(8)?;
            }
            b'.' => break,
            b'(' => m.stack.push(Value::Mark),
            b'N' => m.stack.push(Value::None),
            0x88 => m.stack.push(Value::Bool(true)),
            0x89 => m.stack.push(Value::Bool(false)),
            b'K' => m.stack.push(Value::Int(i64::from(r.u8()?))),
            b'M' => m
                .stack
                .push(Value::Int(i64::from(u16::from_le_bytes(r.array()?)))),
            b'J' => m
                .stack
                .push(Value::Int(i64::from(i32::from_le_bytes(r.array()?)))),
            0x8a => {
                let n = usize::from(r.u8()?);
                if n > 8 {
                    return Err("pickled integer wider than 64 bits".into());
                }
                let bytes = r.bytes(n)?;
                let mut v: i64 = 0;
                for (i, &b) in bytes.iter().enumerate() {
                    v |= i64::from(b) << (8 * i);
                }
                // Two's complement of an n-byte integer: sign-extend.
                if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                m.stack.push(Value::Int(v));
            }
            b'G' => m.stack.push(Value::Float(f64::from_be_bytes(r.array()?))),
            b'X' => {
                let n = u32::from_le_bytes(r.array()?) as usize;
                let s = r.string(n)?;
                m.stack.push(Value::Str(s));
            }
            0x8c => {
                let n = usize::from(r.u8()?);
                let s = r.string(n)?;
                m.stack.push(Value::Str(s));
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                m.stack.push(Value::Global(Rc::new((module, name))));
            }
            // STACK_GLOBAL (protocol 4).
            0x93 => {
                let name = m.pop()?;
                let module = m.pop()?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => m.stack.push(Value::Global(Rc::new(
                        (module.to_string(), name.to_string()),
                    ))),
                    _ => return Err("STACK_GLOBAL without two strings".into()),
                }
            }
            b')' => m.stack.push(Value::Tuple(Rc::new(Vec::new()))),
            b't' => {
                let items = m.pop_to_mark()?;
                m.stack.push(Value::Tuple(Rc::new(items)));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if m.stack.len() < n {
                    return Err("pickle stack underflow".into());
                }
                let items = m.stack.split_off(m.stack.len() - n);
                if items.iter().any(|v| matches!(v, Value::Mark)) {
                    return Err("pickle stack underflow".into());
                }
                m.stack.push(Value::Tuple(Rc::new(items)));
            }
            b']' => m.stack.push(Value::List(Rc::new(RefCell::new(Vec::new())))),
            b'l' => {
                let items = m.pop_to_mark()?;
                m.stack.push(Value::List(Rc::new(RefCell::new(items))));
            }
            b'a' => {
                let v = m.pop()?;
                m.append(vec![v])?;
            }
            b'e' => {
                let items = m.pop_to_mark()?;
                m.append(items)?;
            }
            b'}' => m.stack.push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
            b'd' => {
                let items = m.pop_to_mark()?;
                m.stack.push(Value::Dict(Rc::new(RefCell::new(Vec::new()))));
                m.set_items(items)?;
            }
            b's' => {
                let v = m.pop()?;
                let k = m.pop()?;
                m.set_items(vec![k, v])?;
            }
            b'u' => {
                let items = m.pop_to_mark()?;
                m.set_items(items)?;
            }
            b'R' | 0x81 => {
                let args = m.pop()?;
                let callable = m.pop()?;
                let ordered_dict = matches!(&callable, Value::Global(g)
                    if g.0 == "collections" && (g.1 == "OrderedDict" || g.1 == "defaultdict"));
                // An OrderedDict is built empty and filled by SETITEMS: a plain dict here.
                let value = if ordered_dict {
                    Value::Dict(Rc::new(RefCell::new(Vec::new())))
                } else {
                    Value::Reduce(Rc::new((callable, args)))
                };
                m.stack.push(value);
            }
            b'b' => {
                let state = m.pop()?;
                let obj = m.pop()?;
                let built = match (&obj, &state) {
                    // `__setstate__` of a dict subclass: the attributes are kept as entries.
                    (Value::Dict(d), Value::Dict(s)) => {
                        if !Rc::ptr_eq(d, s) {
                            let extra = s.borrow().clone();
                            d.borrow_mut().extend(extra);
                        }
                        obj.clone()
                    }
                    _ => Value::Build(Rc::new((obj, state))),
                };
                m.stack.push(built);
            }
            b'Q' => {
                let id = m.pop()?;
                m.stack.push(Value::PersId(Rc::new(id)));
            }
            b'q' => {
                let id = u32::from(r.u8()?);
                m.memo_put(id)?;
            }
            b'r' => {
                let id = u32::from_le_bytes(r.array()?);
                m.memo_put(id)?;
            }
            0x94 => {
                let id = u32::try_from(m.memo.len()).map_err(|_| "pickle memo overflow")?;
                m.memo_put(id)?;
            }
            b'h' => {
                let id = u32::from(r.u8()?);
                m.memo_get(id)?;
            }
            b'j' => {
                let id = u32::from_le_bytes(r.array()?);
                m.memo_get(id)?;
            }
            b'0' => {
                m.pop()?;
            }
            b'2' => {
                let v = m.top()?.clone();
                m.stack.push(v);
            }
            other => {
                return Err(format!(
                    "pickle opcode 0x{other:02x} at byte {} is not supported",
                    r.pos - 1
                ))
            }
        }
    }
    let result = m.pop()?;
    if !m.stack.is_empty() {
        return Err("pickle left extra values on its stack".into());
    }
    let mut budget = MAX_NODES;
    convert(&result, 0, &mut budget)
}

/// Copies a value into candle's (owned, tree-shaped) object type, counting every node.
fn convert(value: &Value, depth: usize, budget: &mut usize) -> Result<Object, String> {
    if depth > MAX_DEPTH {
        return Err(format!("pickle nests deeper than {MAX_DEPTH} levels"));
    }
    if *budget == 0 {
        return Err(format!("pickle expands to more than {MAX_NODES} objects"));
    }
    *budget -= 1;
    let d = depth + 1;
    let many = |items: &[Value], budget: &mut usize| -> Result<Vec<Object>, String> {
        items.iter().map(|v| convert(v, d, budget)).collect()
    };
    Ok(match value {
        Value::Mark => return Err("pickle MARK left in a value".into()),
        Value::None => Object::None,
        Value::Bool(b) => Object::Bool(*b),
        Value::Int(i) => match i32::try_from(*i) {
            Ok(i) => Object::Int(i),
            Err(_) => Object::Long(*i),
        },
        Value::Float(f) => Object::Float(*f),
        Value::Str(s) => Object::Unicode(s.to_string()),
        Value::Global(g) => Object::Class {
            module_name: g.0.clone(),
            class_name: g.1.clone(),
        },
        Value::Tuple(items) => Object::Tuple(many(items, budget)?),
        Value::List(items) => {
            let items = items
                .try_borrow()
                .map_err(|_| "pickle list is busy".to_string())?;
            Object::List(many(&items, budget)?)
        }
        Value::Dict(items) => {
            let items = items
                .try_borrow()
                .map_err(|_| "pickle dict is busy".to_string())?;
            let mut out = Vec::with_capacity(items.len().min(*budget));
            for (k, v) in items.iter() {
                out.push((convert(k, d, budget)?, convert(v, d, budget)?));
            }
            Object::Dict(out)
        }
        Value::Reduce(pair) => Object::Reduce {
            callable: Box::new(convert(&pair.0, d, budget)?),
            args: Box::new(convert(&pair.1, d, budget)?),
        },
        Value::Build(pair) => Object::Build {
            callable: Box::new(convert(&pair.0, d, budget)?),
            args: Box::new(convert(&pair.1, d, budget)?),
        },
        Value::PersId(id) => Object::PersistentLoad(Box::new(convert(id, d, budget)?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_memo_references_do_not_explode() {
        // l0 = []; l(n+1) = [ln, ln] forty times: 2^40 nodes if copied.
        let mut p = vec![0x80, 2, b']', b'q', 0, b'0'];
        for i in 0..40u8 {
            p.extend([b'(', b'h', i, b'h', i, b'l', b'q', i + 1, b'0']);
        }
        p.extend([b'h', 40, b'.']);
        let err = load(&p).unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }

    #[test]
    fn hostile_lengths_and_truncation_are_errors() {
        assert!(load(&[0x80, 2, b'X', 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(load(&[0x80, 2, b'(', b't']).is_err());
        assert!(load(b"t.").is_err());
        assert!(load(b".").is_err());
        assert!(load(&[0x80, 2, b'K', 1, b'K', 2, b'.']).is_err());
    }

    #[test]
    fn small_values() {
        let p = [
            0x80, 2, b'}', b'(', b'X', 1, 0, 0, 0, b'a', 0x8a, 1, 0xff, b'u', b'.',
        ];
        let obj = load(&p).unwrap();
        assert_eq!(
            obj,
            Object::Dict(vec![(Object::Unicode("a".into()), Object::Int(-1))])
        );
    }
}
