//! Index remapping for `diff`: how the type indices of two builds map into
//! the bundle's type space ([`TypeMap`]), and the rewriting of function
//! bodies (and other items, for comparison) into the target's function and
//! type index spaces ([`Remap`]).

use std::collections::HashMap;

use wasm_encoder::reencode::{Error as ReencodeError, Reencode};
use wasm_encoder::Encode;
use wasmparser::{CompositeInnerType, FuncType, FunctionBody, SubType, ValType};

use crate::error::{Side, Unpatchable};
use crate::module_view::ModuleView;

/// How type indices of each build map into the bundle's type space.
pub(crate) struct TypeMap {
    /// Old type → canonical old type (the first with the same signature).
    pub(crate) old_canon: Vec<u32>,
    /// New type → bundle type (an old one, or an extra one).
    pub(crate) new_to_target: Vec<u32>,
    /// Types the bundle adds after the target's.
    pub(crate) extra: Vec<FuncType>,
}

impl TypeMap {
    pub(crate) fn new(o: &ModuleView<'_>, n: &ModuleView<'_>) -> Result<TypeMap, Unpatchable> {
        if o.type_section == n.type_section {
            let id: Vec<u32> = (0..o.types.len() as u32).collect();
            return Ok(TypeMap {
                old_canon: id.clone(),
                new_to_target: id,
                extra: Vec::new(),
            });
        }
        let plain = |v: &ModuleView<'_>, side: Side| -> Result<Vec<FuncType>, Unpatchable> {
            v.types
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    plain_func(t).ok_or_else(|| {
                        Unpatchable::Types(format!(
                            "type {i} of the {side} module is not a plain function type \
                             (GC types can only be patched when the type section is unchanged)"
                        ))
                    })
                })
                .collect()
        };
        let old = plain(o, Side::Old)?;
        let new = plain(n, Side::New)?;
        let mut first: HashMap<&FuncType, u32> = HashMap::new();
        for (i, t) in old.iter().enumerate() {
            first.entry(t).or_insert(i as u32);
        }
        let old_canon = old.iter().map(|t| first[t]).collect();
        let mut extra: Vec<FuncType> = Vec::new();
        let mut new_to_target = Vec::with_capacity(new.len());
        for t in &new {
            let idx = match first.get(t) {
                Some(&i) => i,
                None => {
                    let pos = match extra.iter().position(|e| e == t) {
                        Some(p) => p,
                        None => {
                            extra.push(t.clone());
                            extra.len() - 1
                        }
                    };
                    (old.len() + pos) as u32
                }
            };
            new_to_target.push(idx);
        }
        Ok(TypeMap {
            old_canon,
            new_to_target,
            extra,
        })
    }
}

/// A final function type with no supertype and no reference to other types.
pub(crate) fn plain_func(t: &SubType) -> Option<FuncType> {
    if !t.is_final || !t.supertype_idxs.is_empty() || t.composite_type.shared {
        return None;
    }
    let CompositeInnerType::Func(f) = &t.composite_type.inner else {
        return None;
    };
    let concrete = |v: &ValType| matches!(v, ValType::Ref(r) if r.is_concrete_type_ref());
    if f.params().iter().chain(f.results()).any(concrete) {
        return None;
    }
    Some(f.clone())
}

/// Rewrites function and type indices; everything else is kept.
pub(crate) struct Remap<'m> {
    funcs: Option<&'m [u32]>,
    types: &'m [u32],
}

impl<'m> Remap<'m> {
    pub(crate) fn new(funcs: &'m [u32], types: &'m [u32]) -> Self {
        Remap {
            funcs: Some(funcs),
            types,
        }
    }
    pub(crate) fn identity(types: &'m [u32]) -> Self {
        Remap { funcs: None, types }
    }
}

#[derive(Debug)]
pub(crate) struct RemapError(String);

impl std::fmt::Display for RemapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Reencode for Remap<'_> {
    type Error = RemapError;

    fn function_index(&mut self, func: u32) -> Result<u32, ReencodeError<RemapError>> {
        let Some(funcs) = self.funcs else {
            return Ok(func);
        };
        match funcs.get(func as usize) {
            Some(&t) if t != u32::MAX => Ok(t),
            _ => Err(ReencodeError::UserError(RemapError(format!(
                "function {func} has no index in the patched module (a callback-only function \
                 cannot be called)"
            )))),
        }
    }

    fn type_index(&mut self, ty: u32) -> Result<u32, ReencodeError<RemapError>> {
        self.types
            .get(ty as usize)
            .copied()
            .ok_or_else(|| ReencodeError::UserError(RemapError(format!("type {ty} out of range"))))
    }
}

pub(crate) fn remap_body(
    body: &FunctionBody<'_>,
    remap: &mut Remap<'_>,
) -> Result<Vec<u8>, String> {
    let run = |remap: &mut Remap<'_>| -> Result<Vec<u8>, ReencodeError<RemapError>> {
        let mut f = remap.new_function_with_parsed_locals(body)?;
        let mut reader = body.get_operators_reader()?;
        while !reader.eof() {
            f.instruction(&remap.parse_instruction(&mut reader)?);
        }
        Ok(f.into_raw_body())
    };
    run(remap).map_err(|e| match e {
        ReencodeError::ParseError(p) => p.message().to_string(),
        other => other.to_string(),
    })
}

/// Encodes whatever `f` writes into a section, for comparisons.
pub(crate) fn encoded<S: Encode + Default>(
    f: impl FnOnce(&mut S) -> Result<(), ReencodeError<RemapError>>,
) -> Option<Vec<u8>> {
    let mut s = S::default();
    f(&mut s).ok()?;
    let mut out = Vec::new();
    s.encode(&mut out);
    Some(out)
}
