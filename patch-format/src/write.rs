//! Serialization: a bundle's parts → its canonical unsigned bytes.
//!
//! Owns the one encoder of the format ([`encode`]), including the manifest
//! layout. The reader re-encodes what it decoded with this same function
//! and demands byte equality, so this file *is* the definition of
//! "canonical" (FORMAT.md describes it in prose).

use std::borrow::Cow;

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{
    CodeSection, CustomSection, DataCountSection, DataSection, ElementSection, Elements,
    EntityType, ExportKind, ExportSection, FunctionSection, ImportSection, Module, RawSection,
    SectionId,
};
use wasmparser::RefType;

use crate::bundle::{BundleParts, EntryKind, FORMAT_VERSION, MANIFEST_SECTION, TARGET_MODULE};
use crate::error::FormatError;

/// First bytes of the manifest section's payload.
pub(crate) const MANIFEST_MAGIC: &[u8; 4] = b"WPMF";

/// Manifest flag bits.
pub(crate) const FLAG_IMMEDIATE: u8 = 1;
pub(crate) const FLAG_REPLACE: u8 = 2;
/// Entry flag bits.
pub(crate) const ENTRY_IMMEDIATE: u8 = 1;

/// Manifest roles of the bundle's defined functions.
pub(crate) const ROLE_ADD: u8 = 0;
pub(crate) const ROLE_REPLACE: u8 = 1;
pub(crate) const ROLE_CALLBACK: u8 = 2;

/// Encodes `p` as a bundle module (unsigned). `p` must already be in
/// canonical order (the builder sorts; the reader checks).
pub(crate) fn encode(p: &BundleParts) -> Result<Vec<u8>, FormatError> {
    let err = |what: &str, e: wasm_encoder::reencode::Error| {
        FormatError::Build(format!("cannot encode {what}: {e}"))
    };
    let mut r = RoundtripReencoder;
    let it = &p.interface;
    let mut module = Module::new();

    let groups: Vec<&[u8]> = it
        .type_groups
        .iter()
        .chain(p.extra_types.iter())
        .map(|g| g.bytes.as_slice())
        .collect();
    if !groups.is_empty() {
        let mut data = Vec::new();
        leb(groups.len() as u64, &mut data);
        for g in groups {
            data.extend_from_slice(g);
        }
        module.section(&RawSection {
            id: SectionId::Type as u8,
            data: &data,
        });
    }

    let mut imports = ImportSection::new();
    for &t in &it.funcs {
        imports.import(TARGET_MODULE, "func", EntityType::Function(t));
    }
    for t in &it.tables {
        let ty = r.table_type(*t).map_err(|e| err("a table type", e))?;
        imports.import(TARGET_MODULE, "table", EntityType::Table(ty));
    }
    for m in &it.memories {
        let ty = r.memory_type(*m).map_err(|e| err("a memory type", e))?;
        imports.import(TARGET_MODULE, "memory", EntityType::Memory(ty));
    }
    for g in &it.globals {
        let ty = r.global_type(*g).map_err(|e| err("a global type", e))?;
        imports.import(TARGET_MODULE, "global", EntityType::Global(ty));
    }
    for t in &it.tags {
        let ty = r.tag_type(*t).map_err(|e| err("a tag type", e))?;
        imports.import(TARGET_MODULE, "tag", EntityType::Tag(ty));
    }
    if !imports.is_empty() {
        module.section(&imports);
    }

    let mut funcs = FunctionSection::new();
    for e in &p.entries {
        funcs.function(e.type_index);
    }
    for c in &p.callbacks {
        funcs.function(c.type_index);
    }
    if !funcs.is_empty() {
        module.section(&funcs);
    }

    if !p.callbacks.is_empty() {
        let mut exports = ExportSection::new();
        let first = it.func_count() + p.entries.len() as u32;
        for (i, c) in p.callbacks.iter().enumerate() {
            exports.export(c.kind.export_name(), ExportKind::Func, first + i as u32);
        }
        module.section(&exports);
    }

    let mut elements = ElementSection::new();
    for ty in &it.elem_types {
        if *ty == RefType::FUNC {
            elements.passive(Elements::Functions(Cow::Borrowed(&[])));
        } else {
            let ty = r.ref_type(*ty).map_err(|e| err("an element type", e))?;
            elements.passive(Elements::Expressions(ty, Cow::Borrowed(&[])));
        }
    }
    let declared = ref_func_targets(p);
    if !declared.is_empty() {
        elements.declared(Elements::Functions(Cow::Owned(declared)));
    }
    if !elements.is_empty() {
        module.section(&elements);
    }

    if it.data_count > 0 {
        module.section(&DataCountSection {
            count: it.data_count,
        });
    }

    let mut code = CodeSection::new();
    for body in p
        .entries
        .iter()
        .map(|e| &e.body)
        .chain(p.callbacks.iter().map(|c| &c.body))
    {
        code.raw(body);
    }
    if !code.is_empty() {
        module.section(&code);
    }

    if it.data_count > 0 {
        let mut data = DataSection::new();
        for _ in 0..it.data_count {
            data.passive(std::iter::empty());
        }
        module.section(&data);
    }

    module.section(&CustomSection {
        name: MANIFEST_SECTION.into(),
        data: Cow::Owned(manifest(p)),
    });
    if !p.transfer.is_empty() {
        module.section(&CustomSection {
            name: crate::transfer::TRANSFER_SECTION.into(),
            data: Cow::Owned(crate::transfer::encode(&p.transfer)),
        });
    }
    Ok(module.finish())
}

/// Every function named by a `ref.func` in an entry or callback body,
/// sorted and deduplicated: the bundle declares them in a declarative
/// element segment so that the bodies validate. Bodies that do not decode
/// are skipped here (validation reports them).
fn ref_func_targets(p: &BundleParts) -> Vec<u32> {
    let mut out = Vec::new();
    for body in p
        .entries
        .iter()
        .map(|e| &e.body)
        .chain(p.callbacks.iter().map(|c| &c.body))
    {
        let fb = wasmparser::FunctionBody::new(wasmparser::BinaryReader::new(body, 0));
        let Ok(mut ops) = fb.get_operators_reader() else {
            continue;
        };
        while !ops.eof() {
            match ops.read() {
                Ok(wasmparser::Operator::RefFunc { function_index }) => out.push(function_index),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The manifest payload (see FORMAT.md, "Manifest").
fn manifest(p: &BundleParts) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(MANIFEST_MAGIC);
    let version = if p.data.is_empty() { 1 } else { FORMAT_VERSION };
    leb(u64::from(version), &mut m);
    m.extend_from_slice(p.target_hash.as_bytes());
    leb(u64::from(p.interface.func_count()), &mut m);
    leb(u64::from(p.interface.type_count()), &mut m);
    let mut flags = 0;
    if p.immediate {
        flags |= FLAG_IMMEDIATE;
    }
    if p.replace {
        flags |= FLAG_REPLACE;
    }
    m.push(flags);
    string(&p.metadata.name, &mut m);
    string(&p.metadata.description, &mut m);
    string(&p.metadata.created_by, &mut m);
    leb(p.metadata.created_at, &mut m);
    match &p.metadata.new_module {
        None => m.push(0),
        Some(h) => {
            m.push(1);
            m.extend_from_slice(h.as_bytes());
        }
    }
    leb(p.sits_on.len() as u64, &mut m);
    for id in &p.sits_on {
        m.extend_from_slice(id.as_bytes());
    }
    for states in [&p.states, &p.requires] {
        leb(states.len() as u64, &mut m);
        for s in states {
            leb(u64::from(s.id), &mut m);
            leb(u64::from(s.version), &mut m);
        }
    }
    leb((p.entries.len() + p.callbacks.len()) as u64, &mut m);
    for e in &p.entries {
        let (role, index) = match e.kind {
            EntryKind::Add { new_index } => (ROLE_ADD, new_index),
            EntryKind::Replace { target_index } => (ROLE_REPLACE, target_index),
        };
        m.push(role);
        leb(u64::from(index), &mut m);
        m.push(if e.immediate { ENTRY_IMMEDIATE } else { 0 });
        string(&e.name, &mut m);
    }
    for c in &p.callbacks {
        m.push(ROLE_CALLBACK);
        leb(u64::from(c.kind.code()), &mut m);
        m.push(0);
        string(&c.name, &mut m);
    }
    if !p.data.is_empty() {
        crate::data::encode(&p.data, &mut m);
    }
    m
}

/// Append `v` as unsigned LEB128 (the wasm binary format's integers).
pub fn leb(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn string(s: &str, out: &mut Vec<u8>) {
    leb(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}
