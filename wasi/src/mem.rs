//! Bounds-checked access to guest memory: an out-of-bounds pointer is
//! `EFAULT`, never a host fault.

use crate::errno::{Errno, Fail};

/// `[ptr, ptr + len)` of `mem`.
pub(crate) fn slice(mem: &mut [u8], ptr: u32, len: u32) -> Result<&mut [u8], Fail> {
    let (p, l) = (ptr as usize, len as usize);
    p.checked_add(l)
        .and_then(|end| mem.get_mut(p..end))
        .ok_or(Fail::Errno(Errno::Fault))
}

fn bytes<const N: usize>(mem: &mut [u8], ptr: u32) -> Result<[u8; N], Fail> {
    let s = slice(mem, ptr, N as u32)?;
    let mut b = [0; N];
    b.copy_from_slice(s);
    Ok(b)
}

pub(crate) fn read_u16(mem: &mut [u8], ptr: u32) -> Result<u16, Fail> {
    Ok(u16::from_le_bytes(bytes(mem, ptr)?))
}

pub(crate) fn read_u32(mem: &mut [u8], ptr: u32) -> Result<u32, Fail> {
    Ok(u32::from_le_bytes(bytes(mem, ptr)?))
}

pub(crate) fn read_u64(mem: &mut [u8], ptr: u32) -> Result<u64, Fail> {
    Ok(u64::from_le_bytes(bytes(mem, ptr)?))
}

pub(crate) fn write_u8(mem: &mut [u8], ptr: u32, v: u8) -> Result<(), Fail> {
    slice(mem, ptr, 1)?[0] = v;
    Ok(())
}

pub(crate) fn write_u16(mem: &mut [u8], ptr: u32, v: u16) -> Result<(), Fail> {
    slice(mem, ptr, 2)?.copy_from_slice(&v.to_le_bytes());
    Ok(())
}

pub(crate) fn write_u32(mem: &mut [u8], ptr: u32, v: u32) -> Result<(), Fail> {
    slice(mem, ptr, 4)?.copy_from_slice(&v.to_le_bytes());
    Ok(())
}

pub(crate) fn write_u64(mem: &mut [u8], ptr: u32, v: u64) -> Result<(), Fail> {
    slice(mem, ptr, 8)?.copy_from_slice(&v.to_le_bytes());
    Ok(())
}

/// The (pointer, length) pairs of an iovec array.
pub(crate) fn iovecs(mem: &mut [u8], ptr: u32, count: u32) -> Result<Vec<(u32, u32)>, Fail> {
    (0..count)
        .map(|i| {
            let at = ptr.checked_add(i * 8).ok_or(Fail::Errno(Errno::Fault))?;
            Ok((read_u32(mem, at)?, read_u32(mem, at + 4)?))
        })
        .collect()
}

/// A guest path string (UTF-8 required, as wasmtime does).
pub(crate) fn path(mem: &mut [u8], ptr: u32, len: u32) -> Result<String, Fail> {
    let b = slice(mem, ptr, len)?;
    String::from_utf8(b.to_vec()).map_err(|_| Fail::Errno(Errno::Ilseq))
}
