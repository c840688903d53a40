//! `Module`: a validated, compiled WebAssembly module, and `ModuleInfo`,
//! everything the compiler and the instantiator need to know about it.

use crate::compile::{self, CompiledModule};
use crate::engine::Engine;
use crate::errors::Error;
use std::collections::HashMap;
use std::sync::Arc;
use wasmparser::{
    ElementItems, ElementKind, ExternalKind, FuncType, Operator, Parser, Payload, RefType, TypeRef,
    ValType, Validator, WasmFeatures,
};

/// A constant expression, as found in global initialisers and segment offsets.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstExpr {
    /// `i32.const`.
    I32(i32),
    /// `i64.const`.
    I64(i64),
    /// `f32.const` (bits).
    F32(u32),
    /// `f64.const` (bits).
    F64(u64),
    /// `v128.const`.
    V128(u128),
    /// `ref.null`.
    RefNull,
    /// `ref.func`.
    RefFunc(u32),
    /// `global.get` of an (imported) global.
    GlobalGet(u32),
}

/// A global of the module.
#[derive(Clone, Debug)]
pub struct GlobalDesc {
    /// Value type.
    pub ty: ValType,
    /// Whether `global.set` is allowed.
    pub mutable: bool,
    /// Initialiser (None for imports).
    pub init: Option<ConstExpr>,
}

/// A table of the module.
#[derive(Clone, Debug)]
pub struct TableDesc {
    /// Element type.
    pub ty: RefType,
    /// Initial size.
    pub minimum: u32,
    /// Maximum size.
    pub maximum: Option<u32>,
    /// Initial element (None = null).
    pub init: Option<ConstExpr>,
}

/// A memory of the module.
#[derive(Clone, Copy, Debug)]
pub struct MemoryDesc {
    /// Initial pages.
    pub minimum: u64,
    /// Maximum pages.
    pub maximum: Option<u64>,
}

/// What an import brings in.
#[derive(Clone, Debug)]
pub enum ImportKind {
    /// A function of this type index.
    Func(u32),
    /// A table.
    Table(TableDesc),
    /// A memory.
    Memory(MemoryDesc),
    /// A global.
    Global(GlobalDesc),
}

/// One import.
#[derive(Clone, Debug)]
pub struct ImportDesc {
    /// Module name.
    pub module: String,
    /// Field name.
    pub name: String,
    /// Kind.
    pub kind: ImportKind,
}

/// Kinds of exported items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    /// Function.
    Func,
    /// Table.
    Table,
    /// Memory.
    Memory,
    /// Global.
    Global,
}

/// An element segment item.
#[derive(Clone, Debug)]
pub enum ElemItem {
    /// A function index.
    Func(u32),
    /// A constant expression.
    Expr(ConstExpr),
}

/// Element segment mode.
#[derive(Clone, Debug)]
pub enum SegmentMode {
    /// Passive: used by `table.init` / `memory.init`.
    Passive,
    /// Active: written at instantiation.
    Active {
        /// Table or memory index.
        index: u32,
        /// Offset expression.
        offset: ConstExpr,
    },
    /// Declarative (elements only): dropped at instantiation.
    Declared,
}

/// An element segment.
#[derive(Clone, Debug)]
pub struct ElemSegment {
    /// Mode.
    pub mode: SegmentMode,
    /// Items.
    pub items: Vec<ElemItem>,
}

/// A data segment.
#[derive(Clone, Debug)]
pub struct DataSegment {
    /// Mode.
    pub mode: SegmentMode,
    /// Bytes.
    pub bytes: Vec<u8>,
}

/// Everything known about a module after parsing.
#[derive(Debug, Default)]
pub(crate) struct ModuleInfo {
    /// Type section.
    pub types: Vec<FuncType>,
    /// Type index of every function (imports first).
    pub func_types: Vec<u32>,
    /// Number of imported functions.
    pub num_imported_funcs: u32,
    /// Globals (imports first).
    pub globals: Vec<GlobalDesc>,
    /// Number of imported globals.
    pub num_imported_globals: u32,
    /// Memories (imports first).
    pub memories: Vec<MemoryDesc>,
    /// Number of imported memories.
    pub num_imported_memories: u32,
    /// Tables (imports first).
    pub tables: Vec<TableDesc>,
    /// Number of imported tables.
    pub num_imported_tables: u32,
    /// Imports in order.
    pub imports: Vec<ImportDesc>,
    /// Exports by name.
    pub exports: Vec<(String, ExportKind, u32)>,
    /// Start function.
    pub start: Option<u32>,
    /// Element segments.
    pub elems: Vec<ElemSegment>,
    /// Data segments.
    pub datas: Vec<DataSegment>,
    /// Function names from the name section.
    pub func_names: HashMap<u32, String>,
    /// The global the name section calls `__stack_pointer`, when it is a
    /// defined mutable `i32`: the top of the guest's linear-memory stack,
    /// which rustc and clang code moves on every call that needs a frame
    /// there (`store/guest_stacks.rs` gives each guest thread its own).
    pub stack_pointer: Option<u32>,
    /// Function bodies (defined functions only): byte range in `bytes`.
    pub bodies: Vec<std::ops::Range<usize>>,
    /// The module bytes.
    pub bytes: Vec<u8>,
}

impl ModuleInfo {
    /// Name of function `f`: name section, else export name, else `f<index>`.
    pub fn func_name(&self, f: u32) -> String {
        if let Some(n) = self.func_names.get(&f) {
            return n.clone();
        }
        if let Some((n, _, _)) = self
            .exports
            .iter()
            .find(|(_, k, i)| *k == ExportKind::Func && *i == f)
        {
            return n.clone();
        }
        format!("func[{f}]")
    }

    /// The type of function `f`.
    pub fn func_type(&self, f: u32) -> &FuncType {
        &self.types[self.func_types[f as usize] as usize]
    }

    /// The exported item named `name`.
    pub fn export(&self, name: &str) -> Option<(ExportKind, u32)> {
        self.exports
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, k, i)| (*k, *i))
    }
}

pub(crate) fn wasm_features() -> WasmFeatures {
    WasmFeatures::WASM2 | WasmFeatures::SIGN_EXTENSION
}

fn const_expr(expr: &wasmparser::ConstExpr<'_>) -> Result<ConstExpr, Error> {
    let mut reader = expr.get_operators_reader();
    let op = reader.read().map_err(|e| Error::Compile(e.to_string()))?;
    Ok(match op {
        Operator::I32Const { value } => ConstExpr::I32(value),
        Operator::I64Const { value } => ConstExpr::I64(value),
        Operator::F32Const { value } => ConstExpr::F32(value.bits()),
        Operator::F64Const { value } => ConstExpr::F64(value.bits()),
        Operator::V128Const { value } => ConstExpr::V128(u128::from_le_bytes(*value.bytes())),
        Operator::RefNull { .. } => ConstExpr::RefNull,
        Operator::RefFunc { function_index } => ConstExpr::RefFunc(function_index),
        Operator::GlobalGet { global_index } => ConstExpr::GlobalGet(global_index),
        other => {
            return Err(Error::Compile(format!(
                "unsupported constant expression {other:?}"
            )))
        }
    })
}

/// Parse (after validation) a module's bytes into [`ModuleInfo`].
pub(crate) fn parse(bytes: Vec<u8>) -> Result<ModuleInfo, Error> {
    let mut validator = Validator::new_with_features(wasm_features());
    validator
        .validate_all(&bytes)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let mut info = ModuleInfo::default();
    let err = |e: wasmparser::BinaryReaderError| Error::Invalid(e.to_string());
    for payload in Parser::new(0).parse_all(&bytes) {
        match payload.map_err(err)? {
            Payload::TypeSection(r) => {
                for rec in r.into_iter_err_on_gc_types() {
                    info.types.push(rec.map_err(err)?);
                }
            }
            Payload::ImportSection(r) => {
                for imp in r.into_imports() {
                    let imp = imp.map_err(err)?;
                    let kind = match imp.ty {
                        TypeRef::Func(t) => {
                            info.func_types.push(t);
                            info.num_imported_funcs += 1;
                            ImportKind::Func(t)
                        }
                        TypeRef::Table(t) => {
                            let d = TableDesc {
                                ty: t.element_type,
                                minimum: t.initial as u32,
                                maximum: t.maximum.map(|m| m as u32),
                                init: None,
                            };
                            info.tables.push(d.clone());
                            info.num_imported_tables += 1;
                            ImportKind::Table(d)
                        }
                        TypeRef::Memory(m) => {
                            let d = MemoryDesc {
                                minimum: m.initial,
                                maximum: m.maximum,
                            };
                            info.memories.push(d);
                            info.num_imported_memories += 1;
                            ImportKind::Memory(d)
                        }
                        TypeRef::Global(g) => {
                            let d = GlobalDesc {
                                ty: g.content_type,
                                mutable: g.mutable,
                                init: None,
                            };
                            info.globals.push(d.clone());
                            info.num_imported_globals += 1;
                            ImportKind::Global(d)
                        }
                        other => return Err(Error::Unsupported(format!("import kind {other:?}"))),
                    };
                    info.imports.push(ImportDesc {
                        module: imp.module.to_string(),
                        name: imp.name.to_string(),
                        kind,
                    });
                }
            }
            Payload::FunctionSection(r) => {
                for t in r {
                    info.func_types.push(t.map_err(err)?);
                }
            }
            Payload::TableSection(r) => {
                for t in r {
                    let t = t.map_err(err)?;
                    let init = match &t.init {
                        wasmparser::TableInit::RefNull => None,
                        wasmparser::TableInit::Expr(e) => Some(const_expr(e)?),
                    };
                    info.tables.push(TableDesc {
                        ty: t.ty.element_type,
                        minimum: t.ty.initial as u32,
                        maximum: t.ty.maximum.map(|m| m as u32),
                        init,
                    });
                }
            }
            Payload::MemorySection(r) => {
                for m in r {
                    let m = m.map_err(err)?;
                    info.memories.push(MemoryDesc {
                        minimum: m.initial,
                        maximum: m.maximum,
                    });
                }
            }
            Payload::GlobalSection(r) => {
                for g in r {
                    let g = g.map_err(err)?;
                    info.globals.push(GlobalDesc {
                        ty: g.ty.content_type,
                        mutable: g.ty.mutable,
                        init: Some(const_expr(&g.init_expr)?),
                    });
                }
            }
            Payload::ExportSection(r) => {
                for e in r {
                    let e = e.map_err(err)?;
                    let kind = match e.kind {
                        ExternalKind::Func => ExportKind::Func,
                        ExternalKind::Table => ExportKind::Table,
                        ExternalKind::Memory => ExportKind::Memory,
                        ExternalKind::Global => ExportKind::Global,
                        other => return Err(Error::Unsupported(format!("export kind {other:?}"))),
                    };
                    info.exports.push((e.name.to_string(), kind, e.index));
                }
            }
            Payload::StartSection { func, .. } => info.start = Some(func),
            Payload::ElementSection(r) => {
                for e in r {
                    let e = e.map_err(err)?;
                    let mode = match e.kind {
                        ElementKind::Passive => SegmentMode::Passive,
                        ElementKind::Declared => SegmentMode::Declared,
                        ElementKind::Active {
                            table_index,
                            offset_expr,
                        } => SegmentMode::Active {
                            index: table_index.unwrap_or(0),
                            offset: const_expr(&offset_expr)?,
                        },
                    };
                    let mut items = Vec::new();
                    match e.items {
                        ElementItems::Functions(r) => {
                            for f in r {
                                items.push(ElemItem::Func(f.map_err(err)?));
                            }
                        }
                        ElementItems::Expressions(_, r) => {
                            for x in r {
                                items.push(ElemItem::Expr(const_expr(&x.map_err(err)?)?));
                            }
                        }
                    }
                    info.elems.push(ElemSegment { mode, items });
                }
            }
            Payload::DataSection(r) => {
                for d in r {
                    let d = d.map_err(err)?;
                    let mode = match d.kind {
                        wasmparser::DataKind::Passive => SegmentMode::Passive,
                        wasmparser::DataKind::Active {
                            memory_index,
                            offset_expr,
                        } => SegmentMode::Active {
                            index: memory_index,
                            offset: const_expr(&offset_expr)?,
                        },
                    };
                    info.datas.push(DataSegment {
                        mode,
                        bytes: d.data.to_vec(),
                    });
                }
            }
            Payload::CodeSectionEntry(body) => {
                let r = body.range();
                info.bodies.push(r.start as usize..r.end as usize);
            }
            Payload::CustomSection(c) => {
                if let wasmparser::KnownCustom::Name(names) = c.as_known() {
                    for n in names {
                        match n {
                            Ok(wasmparser::Name::Function(map)) => {
                                for naming in map.into_iter().flatten() {
                                    info.func_names
                                        .insert(naming.index, naming.name.to_string());
                                }
                            }
                            Ok(wasmparser::Name::Global(map)) => {
                                for naming in map.into_iter().flatten() {
                                    if naming.name == STACK_POINTER {
                                        info.stack_pointer = Some(naming.index);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // Only a global this module defines, mutable and of type i32, can be
    // a stack pointer the runtime may switch per thread.
    info.stack_pointer = info.stack_pointer.filter(|&g| {
        g >= info.num_imported_globals
            && info
                .globals
                .get(g as usize)
                .is_some_and(|d| d.mutable && d.ty == ValType::I32)
    });
    info.bytes = bytes;
    Ok(info)
}

/// The name rustc, clang and wasm-ld give the linear-memory stack pointer.
const STACK_POINTER: &str = "__stack_pointer";

pub(crate) struct ModuleInner {
    pub(crate) engine: Engine,
    pub(crate) info: Arc<ModuleInfo>,
    pub(crate) compiled: CompiledModule,
}

/// A validated and compiled module, ready to instantiate any number of times.
#[derive(Clone)]
pub struct Module {
    pub(crate) inner: Arc<ModuleInner>,
}

impl Module {
    /// Validate and compile a module from binary or text (`.wat`) bytes
    /// (text with the default `wat` feature).
    ///
    /// # Errors
    /// [`Error::Invalid`] for malformed or invalid modules, [`Error::Compile`]
    /// when code generation fails.
    pub fn new(engine: &Engine, bytes: impl AsRef<[u8]>) -> Result<Module, Error> {
        #[cfg(feature = "wat")]
        let bytes = wat::parse_bytes(bytes.as_ref())
            .map_err(|e| Error::Invalid(e.to_string()))?
            .into_owned();
        #[cfg(not(feature = "wat"))]
        let bytes = bytes.as_ref().to_vec();
        let info = Arc::new(parse(bytes)?);
        let compiled = compile::compile_module(engine, &info)?;
        Ok(Module {
            inner: Arc::new(ModuleInner {
                engine: engine.clone(),
                info,
                compiled,
            }),
        })
    }

    /// Read and compile a module file.
    ///
    /// # Errors
    /// I/O errors and those of [`Module::new`].
    pub fn from_file(engine: &Engine, path: impl AsRef<std::path::Path>) -> Result<Module, Error> {
        let path = path.as_ref();
        let bytes =
            std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        Module::new(engine, bytes)
    }

    /// Everything known about the module.
    pub(crate) fn info(&self) -> &ModuleInfo {
        &self.inner.info
    }

    /// The functions whose bodies the compiled code of function `func`
    /// contains (`Config::inline`), by index, sorted; empty for imports,
    /// out-of-range indices and functions that inlined nothing. A bundle
    /// that changes one of them also replaces `func` (docs/consistency.md
    /// rule 18).
    pub fn inlined_callees(&self, func: u32) -> Vec<u32> {
        let Some(i) = func.checked_sub(self.inner.info.num_imported_funcs) else {
            return Vec::new();
        };
        (self.inner.compiled.inlined.get(i as usize)).map_or_else(Vec::new, |c| c.clone())
    }

    /// The element type of the table exported as `name`, if there is one.
    pub fn export_table_type(&self, name: &str) -> Option<RefType> {
        match self.inner.info.export(name)? {
            (ExportKind::Table, t) => self.table_type(t),
            _ => None,
        }
    }

    /// Whether the module uses reference-typed tables of functions (helper for
    /// embedders). Returns the element type of table `t`.
    pub fn table_type(&self, t: u32) -> Option<RefType> {
        self.inner.info.tables.get(t as usize).map(|d| d.ty)
    }
}
