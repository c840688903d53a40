//! The `path_*` functions other than `path_open`: each resolves its paths
//! with cap-std beneath the directory descriptor it names.

use crate::errno::Errno;
use crate::fs::table::{dir, rel, time_specs, Stat};
use crate::mem;
use crate::{def, u32a, u64a, Shared};
use cap_fs_ext::DirExt;
use wasm_patch_runtime::Linker;

/// Define the `path_*` functions other than `path_open`.
pub(crate) fn add<T: 'static>(l: &mut Linker<T>, st: &Shared) {
    def(l, st, "path_create_directory", "iii", |m, s, a| {
        let p = rel(m, u32a(a, 1), u32a(a, 2))?;
        dir(s, u32a(a, 0))?.create_dir(p.trim_end_matches('/'))?;
        Ok(())
    });
    def(l, st, "path_remove_directory", "iii", |m, s, a| {
        let p = rel(m, u32a(a, 1), u32a(a, 2))?;
        dir(s, u32a(a, 0))?.remove_dir(p.trim_end_matches('/'))?;
        Ok(())
    });
    def(l, st, "path_unlink_file", "iii", |m, s, a| {
        let p = rel(m, u32a(a, 1), u32a(a, 2))?;
        let d = dir(s, u32a(a, 0))?;
        if p.ends_with('/') {
            // A trailing slash names a directory: a file is ENOTDIR, a
            // directory EISDIR.
            let md = d.symlink_metadata(p.trim_end_matches('/'))?;
            return Err(if md.is_dir() {
                Errno::Isdir.into()
            } else {
                crate::fs::table::notdir()
            });
        }
        d.remove_file_or_symlink(&p)?;
        Ok(())
    });
    def(l, st, "path_rename", "iiiiii", |m, s, a| {
        let from = rel(m, u32a(a, 1), u32a(a, 2))?;
        let to = rel(m, u32a(a, 4), u32a(a, 5))?;
        let (d1, d2) = (dir(s, u32a(a, 0))?, dir(s, u32a(a, 3))?);
        if from.ends_with('/') || to.ends_with('/') {
            // Trailing slashes are only allowed on directories.
            if !d1.symlink_metadata(from.trim_end_matches('/'))?.is_dir() {
                return Err(crate::fs::table::notdir());
            }
        }
        d1.rename(from.trim_end_matches('/'), d2, to.trim_end_matches('/'))?;
        Ok(())
    });
    def(l, st, "path_link", "iiiiiii", |m, s, a| {
        let from = rel(m, u32a(a, 2), u32a(a, 3))?;
        let to = rel(m, u32a(a, 5), u32a(a, 6))?;
        let (d1, d2) = (dir(s, u32a(a, 0))?, dir(s, u32a(a, 4))?);
        if u32a(a, 1) & 1 != 0 {
            // Hard links to what a symlink names are not supported.
            return Err(Errno::Inval.into());
        }
        d1.hard_link(&from, d2, &to)?;
        Ok(())
    });
    def(l, st, "path_symlink", "iiiii", |m, s, a| {
        let target = mem::path(m, u32a(a, 0), u32a(a, 1))?;
        let link = rel(m, u32a(a, 3), u32a(a, 4))?;
        let d = dir(s, u32a(a, 2))?;
        if link.ends_with('/') {
            // "link/" may only name an existing directory.
            d.symlink_metadata(link.trim_end_matches('/'))?;
            return Err(Errno::Exist.into());
        }
        // cap-std refuses absolute targets (they could never resolve inside
        // a preopen); a `..` target is stored, and following it is confined.
        d.symlink(&target, &link)?;
        Ok(())
    });
    def(l, st, "path_readlink", "iiiiii", |m, s, a| {
        let p = rel(m, u32a(a, 1), u32a(a, 2))?;
        let target = dir(s, u32a(a, 0))?.read_link_contents(&p)?;
        use std::os::unix::ffi::OsStrExt;
        let b = target.as_os_str().as_bytes();
        let n = b.len().min(u32a(a, 4) as usize);
        mem::slice(m, u32a(a, 3), n as u32)?.copy_from_slice(&b[..n]);
        mem::write_u32(m, u32a(a, 5), n as u32)
    });
    def(l, st, "path_filestat_get", "iiiii", |m, s, a| {
        let p = rel(m, u32a(a, 2), u32a(a, 3))?;
        let d = dir(s, u32a(a, 0))?;
        let md = if u32a(a, 1) & 1 != 0 {
            d.metadata(&p)?
        } else {
            d.symlink_metadata(&p)?
        };
        Stat::of_cap(&md).write(m, u32a(a, 4))
    });
    def(l, st, "path_filestat_set_times", "iiiiIIi", |m, s, a| {
        let p = rel(m, u32a(a, 2), u32a(a, 3))?;
        let (at, mt) = time_specs(u64a(a, 4), u64a(a, 5), u32a(a, 6))?;
        let d = dir(s, u32a(a, 0))?;
        if u32a(a, 1) & 1 != 0 {
            d.set_times(&p, at, mt)?;
        } else {
            d.set_symlink_times(&p, at, mt)?;
        }
        Ok(())
    });
}
