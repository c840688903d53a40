//! One build of a module as `diff` sees it: validated, split into its
//! index spaces, with names, and with each function's direct calls and
//! `ref.func` uses.
//!
//! Owns [`ModuleView`] and the function *key* rule used to match functions
//! between two builds: the name-section name if it is unique in the module,
//! else the alphabetically first export name if no other function has that
//! key; otherwise the function has no key.

use std::collections::{BTreeMap, HashMap};

use wasmparser::{
    ConstExpr, Data, Element, ElementItems, Export, ExternalKind, FunctionBody, Global, Import,
    KnownCustom, MemoryType, Name, Operator, Parser, Payload, SubType, Table, TagType, TypeRef,
};

use crate::error::{DiffError, Side};

/// One build of a module, parsed for diffing.
pub(crate) struct ModuleView<'a> {
    /// Raw content of the type section (for the identical-sections fast path).
    pub(crate) type_section: &'a [u8],
    /// Every type, flattened across recursion groups.
    pub(crate) types: Vec<SubType>,
    pub(crate) imports: Vec<Import<'a>>,
    /// Type index of every function (imports first).
    pub(crate) func_types: Vec<u32>,
    pub(crate) imported_funcs: u32,
    pub(crate) imported_tables: u32,
    pub(crate) imported_memories: u32,
    pub(crate) imported_globals: u32,
    pub(crate) imported_tags: u32,
    /// Defined items only.
    pub(crate) tables: Vec<Table<'a>>,
    pub(crate) memories: Vec<MemoryType>,
    pub(crate) globals: Vec<Global<'a>>,
    pub(crate) tags: Vec<TagType>,
    pub(crate) exports: Vec<Export<'a>>,
    pub(crate) start: Option<u32>,
    pub(crate) elements: Vec<Element<'a>>,
    pub(crate) data: Vec<Data<'a>>,
    /// Bodies of the defined functions.
    pub(crate) bodies: Vec<FunctionBody<'a>>,
    /// Matching key of every function (`None` for imports and unkeyed ones).
    pub(crate) keys: Vec<Option<String>>,
    pub(crate) global_names: HashMap<u32, String>,
    pub(crate) data_names: HashMap<u32, String>,
    pub(crate) elem_names: HashMap<u32, String>,
    /// Per defined function: targets of `call` / `return_call`.
    pub(crate) calls: Vec<Vec<u32>>,
    /// Per defined function: targets of `ref.func`.
    pub(crate) refs: Vec<Vec<u32>>,
}

impl<'a> ModuleView<'a> {
    /// Validates and reads `bytes`.
    pub(crate) fn parse(bytes: &'a [u8], side: Side) -> Result<Self, DiffError> {
        let err = |e: wasmparser::BinaryReaderError| DiffError::Module {
            side,
            offset: e.offset(),
            message: e.message().to_string(),
        };
        wasmparser::Validator::new()
            .validate_all(bytes)
            .map_err(err)?;
        let mut v = ModuleView {
            type_section: &[],
            types: Vec::new(),
            imports: Vec::new(),
            func_types: Vec::new(),
            imported_funcs: 0,
            imported_tables: 0,
            imported_memories: 0,
            imported_globals: 0,
            imported_tags: 0,
            tables: Vec::new(),
            memories: Vec::new(),
            globals: Vec::new(),
            tags: Vec::new(),
            exports: Vec::new(),
            start: None,
            elements: Vec::new(),
            data: Vec::new(),
            bodies: Vec::new(),
            keys: Vec::new(),
            global_names: HashMap::new(),
            data_names: HashMap::new(),
            elem_names: HashMap::new(),
            calls: Vec::new(),
            refs: Vec::new(),
        };
        let mut func_names: HashMap<u32, &'a str> = HashMap::new();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(err)? {
                Payload::Version {
                    encoding: wasmparser::Encoding::Component,
                    ..
                } => {
                    return Err(DiffError::Module {
                        side,
                        offset: 0,
                        message: "a component, not a core module".into(),
                    })
                }
                Payload::TypeSection(r) => {
                    let range = r.range();
                    v.type_section = &bytes[range.start as usize..range.end as usize];
                    for group in r {
                        v.types.extend(group.map_err(err)?.into_types());
                    }
                }
                Payload::ImportSection(r) => {
                    for i in r.into_imports() {
                        let i = i.map_err(err)?;
                        match i.ty {
                            TypeRef::Func(t) | TypeRef::FuncExact(t) => {
                                v.func_types.push(t);
                                v.imported_funcs += 1;
                            }
                            TypeRef::Table(_) => v.imported_tables += 1,
                            TypeRef::Memory(_) => v.imported_memories += 1,
                            TypeRef::Global(_) => v.imported_globals += 1,
                            TypeRef::Tag(_) => v.imported_tags += 1,
                        }
                        v.imports.push(i);
                    }
                }
                Payload::FunctionSection(r) => {
                    for t in r {
                        v.func_types.push(t.map_err(err)?);
                    }
                }
                Payload::TableSection(r) => {
                    for t in r {
                        v.tables.push(t.map_err(err)?);
                    }
                }
                Payload::MemorySection(r) => {
                    for m in r {
                        v.memories.push(m.map_err(err)?);
                    }
                }
                Payload::GlobalSection(r) => {
                    for g in r {
                        v.globals.push(g.map_err(err)?);
                    }
                }
                Payload::TagSection(r) => {
                    for t in r {
                        v.tags.push(t.map_err(err)?);
                    }
                }
                Payload::ExportSection(r) => {
                    for e in r {
                        v.exports.push(e.map_err(err)?);
                    }
                }
                Payload::StartSection { func, .. } => v.start = Some(func),
                Payload::ElementSection(r) => {
                    for e in r {
                        v.elements.push(e.map_err(err)?);
                    }
                }
                Payload::DataSection(r) => {
                    for d in r {
                        v.data.push(d.map_err(err)?);
                    }
                }
                Payload::CodeSectionEntry(body) => v.bodies.push(body),
                Payload::CustomSection(s) => {
                    if let KnownCustom::Name(names) = s.as_known() {
                        let bad = |e: wasmparser::BinaryReaderError| DiffError::Module {
                            side,
                            offset: e.offset(),
                            message: format!("malformed name section: {}", e.message()),
                        };
                        for name in names {
                            let map = |m: wasmparser::NameMap<'a>| {
                                m.into_iter()
                                    .map(|n| n.map(|n| (n.index, n.name)))
                                    .collect::<Result<Vec<_>, _>>()
                                    .map_err(bad)
                            };
                            match name.map_err(bad)? {
                                Name::Function(m) => func_names.extend(map(m)?),
                                Name::Global(m) => v.global_names.extend(owned(map(m)?)),
                                Name::Data(m) => v.data_names.extend(owned(map(m)?)),
                                Name::Element(m) => v.elem_names.extend(owned(map(m)?)),
                                _ => {}
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        for body in &v.bodies {
            let (calls, refs) = scan_body(body).map_err(err)?;
            v.calls.push(calls);
            v.refs.push(refs);
        }
        v.keys = compute_keys(&v, &func_names);
        Ok(v)
    }

    /// Number of defined functions.
    pub(crate) fn defined_count(&self) -> u32 {
        self.bodies.len() as u32
    }

    /// The key of function `index`, or `func[index]` for messages.
    pub(crate) fn display_name(&self, index: u32) -> String {
        match self.keys.get(index as usize) {
            Some(Some(k)) => k.clone(),
            _ => format!("func[{index}]"),
        }
    }

    /// The defined function that `name` names (see [`crate::names::matches`]):
    /// its raw key first, else the one function whose demangled name it is.
    ///
    /// # Errors
    /// The message when `name` fits several functions (generic instances of one
    /// Rust path differ only in their hashes).
    pub(crate) fn find_defined(&self, name: &str) -> Result<Option<u32>, String> {
        let v = self;
        let defined = v.imported_funcs..v.func_types.len() as u32;
        if let Some(i) = defined
            .clone()
            .find(|&i| v.keys[i as usize].as_deref() == Some(name))
        {
            return Ok(Some(i));
        }
        let found: Vec<u32> = defined
            .filter(|&i| {
                v.keys[i as usize]
                    .as_deref()
                    .is_some_and(|k| crate::names::matches(k, name))
            })
            .collect();
        match found[..] {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(format!(
                "`{name}` names {} functions; give the raw name of one: {}",
                found.len(),
                found
                    .iter()
                    .map(|&i| v.display_name(i))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The key of function `index` as a person reads it (demangled), for
    /// messages.
    pub(crate) fn readable_name(&self, index: u32) -> String {
        crate::names::readable(&self.display_name(index))
    }

    /// The function type of type index `t`, if it is one.
    pub(crate) fn func_type(&self, t: u32) -> Option<&wasmparser::FuncType> {
        match &self.types.get(t as usize)?.composite_type.inner {
            wasmparser::CompositeInnerType::Func(f) => Some(f),
            _ => None,
        }
    }

    /// The signature of function `index`, for messages.
    pub(crate) fn signature(&self, index: u32) -> String {
        self.func_types
            .get(index as usize)
            .and_then(|&t| self.func_type(t))
            .map_or_else(|| "?".into(), crate::diff::signature)
    }

    /// Export names of function `index`.
    pub(crate) fn func_exports(&self, index: u32) -> Vec<&'a str> {
        self.exports
            .iter()
            .filter(|e| matches!(e.kind, ExternalKind::Func | ExternalKind::FuncExact))
            .filter(|e| e.index == index)
            .map(|e| e.name)
            .collect()
    }

    /// Functions element segment `i` refers to (indices or `ref.func`).
    pub(crate) fn element_funcs(&self, i: usize) -> Vec<u32> {
        let mut out = Vec::new();
        if let Some(e) = self.elements.get(i) {
            match e.items.clone() {
                ElementItems::Functions(r) => out.extend(r.into_iter().flatten()),
                ElementItems::Expressions(_, r) => {
                    for expr in r.into_iter().flatten() {
                        out.extend(const_expr_funcs(&expr));
                    }
                }
            }
        }
        out
    }

    /// Whether element segment `i` is, here and in `other`, an active
    /// segment of function indices on table 0 at the same constant offset.
    pub(crate) fn same_table0_segment(&self, other: &ModuleView<'_>, i: usize) -> bool {
        let a = self.table0_segment_offset(i);
        a.is_some() && a == other.table0_segment_offset(i)
    }

    /// The constant offset of element segment `i` when it is an active
    /// segment of function indices on table 0.
    fn table0_segment_offset(&self, i: usize) -> Option<i32> {
        let e = self.elements.get(i)?;
        match &e.kind {
            wasmparser::ElementKind::Active {
                table_index,
                offset_expr,
            } if table_index.unwrap_or(0) == 0 && matches!(e.items, ElementItems::Functions(_)) => {
                match offset_expr.get_operators_reader().read() {
                    Ok(wasmparser::Operator::I32Const { value }) => Some(value),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Whether element segment `i` is declarative (no runtime effect).
    pub(crate) fn element_is_declared(&self, i: usize) -> bool {
        self.elements
            .get(i)
            .is_some_and(|e| matches!(e.kind, wasmparser::ElementKind::Declared))
    }

    /// Functions named by `ref.func` in global initializers, with the global index.
    pub(crate) fn global_refs(&self) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for (i, g) in self.globals.iter().enumerate() {
            for f in const_expr_funcs(&g.init_expr) {
                out.push((self.imported_globals + i as u32, f));
            }
        }
        out
    }
}

fn owned(v: Vec<(u32, &str)>) -> impl Iterator<Item = (u32, String)> + '_ {
    v.into_iter().map(|(i, n)| (i, n.to_string()))
}

/// Functions named by `ref.func` in a constant expression.
pub(crate) fn const_expr_funcs(expr: &ConstExpr<'_>) -> Vec<u32> {
    let mut out = Vec::new();
    let mut ops = expr.get_operators_reader();
    while !ops.eof() {
        match ops.read() {
            Ok(Operator::RefFunc { function_index }) => out.push(function_index),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    out
}

/// Direct call targets and `ref.func` targets of a body.
fn scan_body(
    body: &FunctionBody<'_>,
) -> Result<(Vec<u32>, Vec<u32>), wasmparser::BinaryReaderError> {
    let mut calls = Vec::new();
    let mut refs = Vec::new();
    let mut ops = body.get_operators_reader()?;
    while !ops.eof() {
        match ops.read()? {
            Operator::Call { function_index } | Operator::ReturnCall { function_index } => {
                calls.push(function_index)
            }
            Operator::RefFunc { function_index } => refs.push(function_index),
            _ => {}
        }
    }
    calls.sort_unstable();
    calls.dedup();
    refs.sort_unstable();
    refs.dedup();
    Ok((calls, refs))
}

/// The key rule (see the module docs).
fn compute_keys(v: &ModuleView<'_>, func_names: &HashMap<u32, &str>) -> Vec<Option<String>> {
    let total = v.func_types.len();
    let mut name_count: HashMap<&str, u32> = HashMap::new();
    for (&i, &n) in func_names {
        if (i as usize) < total {
            *name_count.entry(n).or_default() += 1;
        }
    }
    let mut keys: Vec<Option<String>> = vec![None; total];
    for (i, key) in keys.iter_mut().enumerate().skip(v.imported_funcs as usize) {
        let i = i as u32;
        if let Some(&n) = func_names.get(&i) {
            if name_count[n] == 1 && !n.is_empty() {
                *key = Some(n.to_string());
                continue;
            }
        }
        let mut exports = v.func_exports(i);
        exports.sort_unstable();
        *key = exports.first().map(|s| s.to_string());
    }
    // A key used by two functions identifies neither.
    let mut uses: BTreeMap<&str, u32> = BTreeMap::new();
    for k in keys.iter().flatten() {
        *uses.entry(k.as_str()).or_default() += 1;
    }
    let dup: Vec<String> = uses
        .into_iter()
        .filter(|&(_, n)| n > 1)
        .map(|(k, _)| k.to_string())
        .collect();
    for k in &mut keys {
        if k.as_ref().is_some_and(|s| dup.contains(s)) {
            *k = None;
        }
    }
    keys
}
