//! WASI errno values and the mapping from host I/O errors.

use wasm_patch_runtime::Error;

/// A WASI preview 1 errno (the values of `wasi_snapshot_preview1`).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Errno {
    Success = 0,
    TooBig = 1,
    Acces = 2,
    Again = 6,
    Badf = 8,
    Busy = 10,
    Exist = 20,
    Fault = 21,
    Fbig = 22,
    Ilseq = 25,
    Intr = 27,
    Inval = 28,
    Io = 29,
    Isdir = 31,
    Loop = 32,
    Mfile = 33,
    Mlink = 34,
    Nametoolong = 37,
    Noent = 44,
    Nomem = 48,
    Nospc = 51,
    Nosys = 52,
    Notdir = 54,
    Notempty = 55,
    Notsock = 57,
    Notsup = 58,
    Notty = 59,
    Nxio = 60,
    Overflow = 61,
    Perm = 63,
    Pipe = 64,
    Rofs = 69,
    Spipe = 70,
    Txtbsy = 74,
    Xdev = 75,
    Notcapable = 76,
}

impl Errno {
    /// The errno for a host I/O error. Errors that carry no OS code (such
    /// as cap-std's refusal of a path leading outside its directory) map by
    /// kind.
    pub fn from_io(e: &std::io::Error) -> Errno {
        if let Some(code) = e.raw_os_error() {
            return match code {
                libc::E2BIG => Errno::TooBig,
                libc::EACCES => Errno::Acces,
                libc::EAGAIN => Errno::Again,
                libc::EBADF => Errno::Badf,
                libc::EBUSY => Errno::Busy,
                libc::EEXIST => Errno::Exist,
                libc::EFAULT => Errno::Fault,
                libc::EFBIG => Errno::Fbig,
                libc::EILSEQ => Errno::Ilseq,
                libc::EINTR => Errno::Intr,
                libc::EINVAL => Errno::Inval,
                libc::EIO => Errno::Io,
                libc::EISDIR => Errno::Isdir,
                libc::ELOOP => Errno::Loop,
                libc::EMFILE => Errno::Mfile,
                libc::EMLINK => Errno::Mlink,
                libc::ENAMETOOLONG => Errno::Nametoolong,
                libc::ENOENT => Errno::Noent,
                libc::ENOMEM => Errno::Nomem,
                libc::ENOSPC => Errno::Nospc,
                libc::ENOSYS => Errno::Nosys,
                libc::ENOTDIR => Errno::Notdir,
                libc::ENOTEMPTY => Errno::Notempty,
                libc::ENOTSOCK => Errno::Notsock,
                libc::EOPNOTSUPP => Errno::Notsup,
                libc::ENOTTY => Errno::Notty,
                libc::ENXIO => Errno::Nxio,
                libc::EOVERFLOW => Errno::Overflow,
                libc::EPERM => Errno::Perm,
                libc::EPIPE => Errno::Pipe,
                libc::EROFS => Errno::Rofs,
                libc::ESPIPE => Errno::Spipe,
                libc::ETXTBSY => Errno::Txtbsy,
                libc::EXDEV => Errno::Xdev,
                _ => Errno::Io,
            };
        }
        use std::io::ErrorKind as K;
        match e.kind() {
            K::NotFound => Errno::Noent,
            // cap-std: "a path led outside of the filesystem".
            K::PermissionDenied => Errno::Perm,
            K::AlreadyExists => Errno::Exist,
            K::InvalidInput => Errno::Inval,
            K::Unsupported => Errno::Notsup,
            K::NotADirectory => Errno::Notdir,
            K::IsADirectory => Errno::Isdir,
            K::DirectoryNotEmpty => Errno::Notempty,
            K::Interrupted => Errno::Intr,
            K::WouldBlock => Errno::Again,
            _ => Errno::Io,
        }
    }
}

/// How a WASI function fails: with an errno the guest sees, or fatally
/// (the guest thread ends with this error).
pub(crate) enum Fail {
    Errno(Errno),
    Fatal(Error),
}

impl From<Errno> for Fail {
    fn from(e: Errno) -> Self {
        Fail::Errno(e)
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Fail::Errno(Errno::from_io(&e))
    }
}
