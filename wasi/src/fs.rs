//! The descriptor table and the `fd_*` and `path_*` functions. Directories
//! are `cap_std::fs::Dir`s: every path a guest names is resolved by cap-std
//! beneath the directory descriptor it is relative to.

use crate::errno::{Errno, Fail};
use crate::mem::{self, iovecs};
use crate::reactor::{may_block, ready_now, Interest, Reactor};
use crate::{def, def_caller, u32a, u64a, Shared, WasiCtx};
use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt, SystemTimeSpec};
use cap_std::fs::{Dir, MetadataExt as _, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt as _};
use wasm_patch_runtime::{Linker, Val};

const FT_UNKNOWN: u8 = 0;
const FT_BLOCK: u8 = 1;
const FT_CHAR: u8 = 2;
const FT_DIR: u8 = 3;
const FT_FILE: u8 = 4;
const FT_SYMLINK: u8 = 7;

const FDFLAG_APPEND: u16 = 1;
const FDFLAG_DSYNC: u16 = 2;
const FDFLAG_NONBLOCK: u16 = 4;
const FDFLAG_RSYNC: u16 = 8;
const FDFLAG_SYNC: u16 = 16;

const R_FD_DATASYNC: u64 = 1;
const R_FD_READ: u64 = 1 << 1;
const R_FD_SEEK: u64 = 1 << 2;
const R_FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
const R_FD_SYNC: u64 = 1 << 4;
const R_FD_TELL: u64 = 1 << 5;
const R_FD_WRITE: u64 = 1 << 6;
const R_FD_ADVISE: u64 = 1 << 7;
const R_FD_ALLOCATE: u64 = 1 << 8;
const R_PATH_CREATE_FILE: u64 = 1 << 10;
const R_FD_READDIR: u64 = 1 << 14;
const R_PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
const R_FD_FILESTAT_GET: u64 = 1 << 21;
const R_FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
const R_FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
const R_POLL: u64 = 1 << 27;
/// Every right of preview 1 (bits 0..=29).
const R_ALL: u64 = (1 << 30) - 1;
/// The rights that only make sense on a regular file or stream.
const R_FILE_ONLY: u64 = R_FD_READ
    | R_FD_SEEK
    | R_FD_TELL
    | R_FD_WRITE
    | R_FD_ADVISE
    | R_FD_ALLOCATE
    | R_FD_FILESTAT_SET_SIZE
    | R_POLL;
/// What a file descriptor may hold.
const R_FILE: u64 = R_FILE_ONLY
    | R_FD_DATASYNC
    | R_FD_SYNC
    | R_FD_FDSTAT_SET_FLAGS
    | R_FD_FILESTAT_GET
    | R_FD_FILESTAT_SET_TIMES;
/// What a directory descriptor may hold.
const R_DIR: u64 = R_ALL & !R_FILE_ONLY;

/// What a descriptor refers to.
pub(crate) enum Kind {
    Stdin,
    Stdout,
    Stderr,
    File {
        file: std::fs::File,
        read: bool,
        write: bool,
    },
    Dir(Dir),
}

/// One open descriptor.
pub(crate) struct Entry {
    pub(crate) kind: Kind,
    flags: u16,
    rights: u64,
    inheriting: u64,
    /// The guest name of a preopened directory.
    preopen: Option<String>,
    /// Whether reads or writes of it can block (a pipe, FIFO, socket or
    /// terminal): those park the calling guest thread instead.
    may_block: bool,
}

impl Entry {
    /// The host descriptor behind it (stdio included), if it is a stream.
    pub(crate) fn host_fd(&self) -> Option<RawFd> {
        match &self.kind {
            Kind::Stdin => Some(0),
            Kind::Stdout => Some(1),
            Kind::Stderr => Some(2),
            Kind::File { file, .. } => Some(file.as_raw_fd()),
            Kind::Dir(_) => None,
        }
    }
}

/// The WASI state every guest thread shares.
pub(crate) struct State {
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<String>,
    fds: Vec<Option<Entry>>,
    pub(crate) exit_code: Option<i32>,
    /// Present when blocked guest threads park (`park_blocked_threads`).
    pub(crate) reactor: Option<Reactor>,
}

impl State {
    pub(crate) fn new(ctx: WasiCtx) -> State {
        let stdio = |kind, fd| {
            Some(Entry {
                kind,
                flags: 0,
                rights: R_FILE & !(R_FD_SEEK | R_FD_TELL),
                inheriting: 0,
                preopen: None,
                may_block: may_block(fd),
            })
        };
        let mut fds = vec![
            stdio(Kind::Stdin, 0),
            stdio(Kind::Stdout, 1),
            stdio(Kind::Stderr, 2),
        ];
        for (dir, name) in ctx.preopens {
            fds.push(Some(Entry {
                kind: Kind::Dir(dir),
                flags: 0,
                rights: R_DIR,
                inheriting: R_ALL,
                preopen: Some(name),
                may_block: false,
            }));
        }
        State {
            args: ctx.args,
            env: ctx.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            fds,
            exit_code: None,
            reactor: if ctx.park { Reactor::new() } else { None },
        }
    }

    /// The host fd a guest thread must wait for before it can `what` `fd`
    /// without blocking the store: `None` when it can go on now (the fd is
    /// ready, never blocks, is closed, or is non-blocking, where the call
    /// returns `EAGAIN` instead), or when blocked threads do not park.
    pub(crate) fn would_park(&self, fd: u32, what: Interest) -> Option<RawFd> {
        self.reactor.as_ref()?;
        let e = self.entry(fd).ok()?;
        if !e.may_block || e.flags & FDFLAG_NONBLOCK != 0 {
            return None;
        }
        let raw = e.host_fd()?;
        (!ready_now(raw, what)).then_some(raw)
    }

    /// What `poll_oneoff` reports as `nbytes` for a ready read of `fd`: the
    /// bytes a read returns now without blocking (`FIONREAD` for a stream,
    /// what is left after the position for a regular file); 0 when unknown.
    pub(crate) fn readable_bytes(&self, fd: u32) -> u64 {
        let Ok(e) = self.entry(fd) else {
            return 0;
        };
        let Some(raw) = e.host_fd() else {
            return 0;
        };
        if e.may_block {
            let mut n: libc::c_int = 0;
            // SAFETY: FIONREAD writes one int through the valid pointer; an
            // fd that does not support it is an error, not a fault.
            let rc = unsafe { libc::ioctl(raw, libc::FIONREAD, &mut n) };
            return if rc == 0 { n.max(0) as u64 } else { 0 };
        }
        // SAFETY: `st` is a valid, writable stat buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above; lseek with SEEK_CUR and offset 0 only reads the
        // position.
        let (rc, pos) = unsafe {
            (
                libc::fstat(raw, &mut st),
                libc::lseek(raw, 0, libc::SEEK_CUR),
            )
        };
        if rc != 0 || pos < 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return 0;
        }
        (st.st_size as u64).saturating_sub(pos as u64)
    }

    /// Close `fd`'s entry (the reactor first stops watching its host fd).
    fn close(&mut self, fd: usize) -> Option<Entry> {
        let e = self.fds.get_mut(fd)?.take()?;
        if let (Some(r), Kind::File { file, .. }) = (self.reactor.as_mut(), &e.kind) {
            r.forget(file.as_raw_fd());
        }
        Some(e)
    }

    /// The open descriptor `fd`, or `EBADF`.
    pub(crate) fn entry(&self, fd: u32) -> Result<&Entry, Fail> {
        self.fds
            .get(fd as usize)
            .and_then(Option::as_ref)
            .ok_or(Fail::Errno(Errno::Badf))
    }

    fn entry_mut(&mut self, fd: u32) -> Result<&mut Entry, Fail> {
        self.fds
            .get_mut(fd as usize)
            .and_then(Option::as_mut)
            .ok_or(Fail::Errno(Errno::Badf))
    }

    /// The directory `fd`: `EBADF` when closed, `ENOTDIR` when not a
    /// directory.
    fn dir(&self, fd: u32) -> Result<&Dir, Fail> {
        match &self.entry(fd)?.kind {
            Kind::Dir(d) => Ok(d),
            _ => Err(Errno::Notdir.into()),
        }
    }

    /// The regular file `fd`: `EISDIR` for a directory, `ESPIPE` for stdio.
    fn file(&self, fd: u32) -> Result<&std::fs::File, Fail> {
        match &self.entry(fd)?.kind {
            Kind::File { file, .. } => Ok(file),
            Kind::Dir(_) => Err(Errno::Isdir.into()),
            _ => Err(Errno::Spipe.into()),
        }
    }

    fn insert(&mut self, e: Entry) -> u32 {
        match self.fds.iter().position(Option::is_none) {
            Some(i) => {
                self.fds[i] = Some(e);
                i as u32
            }
            None => {
                self.fds.push(Some(e));
                (self.fds.len() - 1) as u32
            }
        }
    }
}

/// A host stdio stream, borrowed without taking ownership of its fd.
fn stdio(fd: i32) -> std::mem::ManuallyDrop<std::fs::File> {
    // SAFETY: fds 0..=2 stay open for the life of the process; ManuallyDrop
    // keeps the File from closing them.
    std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// A filestat, from any metadata with the Unix fields.
pub(crate) struct Stat {
    dev: u64,
    ino: u64,
    ft: u8,
    nlink: u64,
    size: u64,
    atim: u64,
    mtim: u64,
    ctim: u64,
}

fn ns(s: i64, n: i64) -> u64 {
    (s as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(n as u64)
}

fn filetype_of_mode(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FT_DIR,
        libc::S_IFREG => FT_FILE,
        libc::S_IFLNK => FT_SYMLINK,
        libc::S_IFCHR => FT_CHAR,
        libc::S_IFBLK => FT_BLOCK,
        _ => FT_UNKNOWN,
    }
}

impl Stat {
    fn of_std(m: &std::fs::Metadata) -> Stat {
        Stat {
            dev: m.dev(),
            ino: m.ino(),
            ft: filetype_of_mode(m.mode()),
            nlink: m.nlink(),
            size: m.size(),
            atim: ns(m.atime(), m.atime_nsec()),
            mtim: ns(m.mtime(), m.mtime_nsec()),
            ctim: ns(m.ctime(), m.ctime_nsec()),
        }
    }

    pub(crate) fn of_cap(m: &cap_std::fs::Metadata) -> Stat {
        Stat {
            dev: m.dev(),
            ino: m.ino(),
            ft: filetype_of_mode(m.mode()),
            nlink: m.nlink(),
            size: m.size(),
            atim: ns(m.atime(), m.atime_nsec()),
            mtim: ns(m.mtime(), m.mtime_nsec()),
            ctim: ns(m.ctime(), m.ctime_nsec()),
        }
    }

    pub(crate) fn write(&self, mem: &mut [u8], p: u32) -> Result<(), Fail> {
        mem::slice(mem, p, 64)?.fill(0);
        mem::write_u64(mem, p, self.dev)?;
        mem::write_u64(mem, p + 8, self.ino)?;
        mem::write_u8(mem, p + 16, self.ft)?;
        mem::write_u64(mem, p + 24, self.nlink)?;
        mem::write_u64(mem, p + 32, self.size)?;
        mem::write_u64(mem, p + 40, self.atim)?;
        mem::write_u64(mem, p + 48, self.mtim)?;
        mem::write_u64(mem, p + 56, self.ctim)
    }
}

fn entry_stat(e: &Entry) -> Result<Stat, Fail> {
    Ok(match &e.kind {
        Kind::File { file, .. } => Stat::of_std(&file.metadata()?),
        Kind::Dir(d) => Stat::of_cap(&d.dir_metadata()?),
        Kind::Stdin => Stat::of_std(&stdio(0).metadata()?),
        Kind::Stdout => Stat::of_std(&stdio(1).metadata()?),
        Kind::Stderr => Stat::of_std(&stdio(2).metadata()?),
    })
}

/// Validate `fst_flags` and turn them into (atime, mtime) changes.
pub(crate) fn time_specs(
    atim: u64,
    mtim: u64,
    fst: u32,
) -> Result<(Option<SystemTimeSpec>, Option<SystemTimeSpec>), Fail> {
    const ATIM: u32 = 1;
    const ATIM_NOW: u32 = 2;
    const MTIM: u32 = 4;
    const MTIM_NOW: u32 = 8;
    if fst & !0xf != 0 || fst & (ATIM | ATIM_NOW) == ATIM | ATIM_NOW {
        return Err(Errno::Inval.into());
    }
    if fst & (MTIM | MTIM_NOW) == MTIM | MTIM_NOW {
        return Err(Errno::Inval.into());
    }
    let abs = |t: u64| {
        SystemTimeSpec::Absolute(cap_std::time::SystemTime::from_std(
            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t),
        ))
    };
    let pick = |set, now, t| {
        if fst & now != 0 {
            Some(SystemTimeSpec::SymbolicNow)
        } else if fst & set != 0 {
            Some(abs(t))
        } else {
            None
        }
    };
    Ok((pick(ATIM, ATIM_NOW, atim), pick(MTIM, MTIM_NOW, mtim)))
}

fn to_std_time(t: &Option<SystemTimeSpec>) -> Option<std::time::SystemTime> {
    t.as_ref().map(|t| match t {
        SystemTimeSpec::SymbolicNow => std::time::SystemTime::now(),
        SystemTimeSpec::Absolute(a) => a.into_std(),
    })
}

/// A guest path relative to a directory: empty paths are `ENOENT`.
pub(crate) fn rel(mem: &mut [u8], ptr: u32, len: u32) -> Result<String, Fail> {
    let p = mem::path(mem, ptr, len)?;
    if p.is_empty() {
        return Err(Errno::Noent.into());
    }
    Ok(p)
}

/// Read into the iovecs with `read(buf) -> n`, stopping at a short read.
fn read_iovs(
    mem: &mut [u8],
    iovs: &[(u32, u32)],
    mut read: impl FnMut(&mut [u8], u64) -> std::io::Result<usize>,
) -> Result<u32, Fail> {
    let mut total: u64 = 0;
    for &(p, l) in iovs {
        let buf = mem::slice(mem, p, l)?;
        let n = read(buf, total)?;
        total += n as u64;
        if n < l as usize {
            break;
        }
    }
    Ok(total as u32)
}

/// Write the iovecs with `write(buf) -> n`, stopping at a short write.
fn write_iovs(
    mem: &mut [u8],
    iovs: &[(u32, u32)],
    mut write: impl FnMut(&[u8], u64) -> std::io::Result<usize>,
) -> Result<u32, Fail> {
    let mut total: u64 = 0;
    for &(p, l) in iovs {
        let buf = mem::slice(mem, p, l)?;
        if buf.is_empty() {
            continue;
        }
        let n = write(buf, total)?;
        total += n as u64;
        if n < l as usize {
            break;
        }
    }
    Ok(total as u32)
}

fn fd_read(m: &mut [u8], s: &mut State, a: &[Val], pos: Option<u64>) -> Result<u32, Fail> {
    let iovs = iovecs(m, u32a(a, 1), u32a(a, 2))?;
    let e = s.entry_mut(u32a(a, 0))?;
    if e.rights & R_FD_READ == 0 && !matches!(e.kind, Kind::Dir(_)) {
        return Err(Errno::Badf.into());
    }
    match &mut e.kind {
        Kind::Stdin if pos.is_none() => read_iovs(m, &iovs, |b, _| stdio(0).read(b)),
        Kind::File { file, read, .. } => {
            if !*read {
                return Err(Errno::Badf.into());
            }
            match pos {
                None => read_iovs(m, &iovs, |b, _| file.read(b)),
                Some(p) => read_iovs(m, &iovs, |b, done| file.read_at(b, p + done)),
            }
        }
        Kind::Dir(_) => Err(Errno::Isdir.into()),
        _ if pos.is_some() => Err(Errno::Spipe.into()),
        _ => Err(Errno::Badf.into()),
    }
}

/// Write `b` to `f`. On a stream that may block (`streaming`: a pipe, a
/// socket, a terminal, with parking on), write in `PIPE_BUF` pieces and
/// stop early, with a short count, when the stream is full: the caller was
/// only let in when at least `PIPE_BUF` bytes fit, so no piece blocks the
/// store, and a guest sees a short write only when the reader is behind
/// (WASI allows them; Rust's `write_all` and C's stdio write the rest).
fn write_stream(f: &mut std::fs::File, b: &[u8], streaming: bool) -> std::io::Result<usize> {
    if !streaming {
        return f.write(b);
    }
    const PIPE_BUF: usize = libc::PIPE_BUF;
    let mut done = 0;
    while done < b.len() {
        if done > 0 && !ready_now(f.as_raw_fd(), Interest::Write) {
            break;
        }
        let end = (done + PIPE_BUF).min(b.len());
        match f.write(&b[done..end]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(done)
}

fn fd_write(m: &mut [u8], s: &mut State, a: &[Val], pos: Option<u64>) -> Result<u32, Fail> {
    let iovs = iovecs(m, u32a(a, 1), u32a(a, 2))?;
    let parking = s.reactor.is_some();
    let e = s.entry_mut(u32a(a, 0))?;
    if e.rights & R_FD_WRITE == 0 && !matches!(e.kind, Kind::Dir(_)) {
        return Err(Errno::Badf.into());
    }
    let streaming = e.may_block && parking && pos.is_none();
    match &mut e.kind {
        Kind::Stdout if pos.is_none() => {
            write_iovs(m, &iovs, |b, _| write_stream(&mut stdio(1), b, streaming))
        }
        Kind::Stderr if pos.is_none() => {
            write_iovs(m, &iovs, |b, _| write_stream(&mut stdio(2), b, streaming))
        }
        Kind::File { file, write, .. } => {
            if !*write {
                return Err(Errno::Badf.into());
            }
            match pos {
                None => write_iovs(m, &iovs, |b, _| write_stream(file, b, streaming)),
                Some(p) => write_iovs(m, &iovs, |b, done| file.write_at(b, p + done)),
            }
        }
        Kind::Dir(_) => Err(Errno::Isdir.into()),
        _ if pos.is_some() => Err(Errno::Spipe.into()),
        _ => Err(Errno::Badf.into()),
    }
}

/// `fd_readdir`: entries (with `.` and `..`) in the order the host lists
/// them; the cookie is the index of the next entry.
fn readdir(m: &mut [u8], s: &mut State, a: &[Val]) -> Result<(), Fail> {
    let (buf, len, cookie, used_ptr) = (u32a(a, 1), u32a(a, 2), u64a(a, 3), u32a(a, 4));
    let dir = s.dir(u32a(a, 0))?;
    let me = dir.dir_metadata()?;
    let mut list: Vec<(Vec<u8>, u64, u8)> = vec![
        (b".".to_vec(), me.ino(), FT_DIR),
        (b"..".to_vec(), 0, FT_DIR),
    ];
    for ent in dir.entries()? {
        let ent = ent?;
        let md = ent.metadata()?;
        use std::os::unix::ffi::OsStrExt;
        list.push((
            ent.file_name().as_bytes().to_vec(),
            md.ino(),
            filetype_of_mode(md.mode()),
        ));
    }
    let mut out = Vec::new();
    for (i, (name, ino, ft)) in list.iter().enumerate().skip(cookie as usize) {
        if out.len() >= len as usize {
            break;
        }
        out.extend_from_slice(&(i as u64 + 1).to_le_bytes());
        out.extend_from_slice(&ino.to_le_bytes());
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&[*ft, 0, 0, 0]);
        out.extend_from_slice(name);
    }
    out.truncate(len as usize);
    mem::slice(m, buf, out.len() as u32)?.copy_from_slice(&out);
    mem::write_u32(m, used_ptr, out.len() as u32)
}

fn set_fd_flags(e: &mut Entry, flags: u16) -> Result<(), Fail> {
    if flags & !(FDFLAG_APPEND | FDFLAG_NONBLOCK) != e.flags & !(FDFLAG_APPEND | FDFLAG_NONBLOCK) {
        // dsync, rsync and sync cannot be changed after opening.
        return Err(Errno::Notsup.into());
    }
    if let Kind::File { file, .. } = &e.kind {
        let raw = file.as_raw_fd();
        // SAFETY: `raw` is an open descriptor owned by `file`.
        let old = unsafe { libc::fcntl(raw, libc::F_GETFL) };
        if old < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let mut new = old & !(libc::O_APPEND | libc::O_NONBLOCK);
        if flags & FDFLAG_APPEND != 0 {
            new |= libc::O_APPEND;
        }
        if flags & FDFLAG_NONBLOCK != 0 {
            new |= libc::O_NONBLOCK;
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(raw, libc::F_SETFL, new) } < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
    }
    e.flags = flags;
    Ok(())
}

/// `path_open`.
fn path_open(m: &mut [u8], s: &mut State, a: &[Val]) -> Result<(), Fail> {
    const O_CREAT: u32 = 1;
    const O_DIRECTORY: u32 = 2;
    const O_EXCL: u32 = 4;
    const O_TRUNC: u32 = 8;
    let (dirflags, oflags) = (u32a(a, 1), u32a(a, 4));
    let (base, inheriting, fdflags) = (u64a(a, 5), u64a(a, 6), u32a(a, 7) as u16);
    let path = rel(m, u32a(a, 2), u32a(a, 3))?;
    let dir_entry = s.entry(u32a(a, 0))?;
    let Kind::Dir(dir) = &dir_entry.kind else {
        return Err(Errno::Notdir.into());
    };
    let follow = if dirflags & 1 != 0 {
        FollowSymlinks::Yes
    } else {
        FollowSymlinks::No
    };
    let write = base & (R_FD_WRITE | R_FD_ALLOCATE | R_FD_FILESTAT_SET_SIZE) != 0
        || oflags & O_TRUNC != 0
        || fdflags & FDFLAG_APPEND != 0;
    // Creating and truncating need their rights on the directory.
    if oflags & O_CREAT != 0 && dir_entry.rights & R_PATH_CREATE_FILE == 0
        || oflags & O_TRUNC != 0 && dir_entry.rights & R_PATH_FILESTAT_SET_SIZE == 0
    {
        return Err(Errno::Notcapable.into());
    }
    let read = base & (R_FD_READ | R_FD_READDIR) != 0 || !write;
    if oflags & O_DIRECTORY != 0 {
        if oflags & (O_CREAT | O_TRUNC) != 0 {
            return Err(Errno::Inval.into());
        }
        if write {
            return Err(Errno::Isdir.into());
        }
        let d = match follow {
            FollowSymlinks::Yes => dir.open_dir(&path)?,
            FollowSymlinks::No => dir.open_dir_nofollow(&path)?,
        };
        let e = Entry {
            kind: Kind::Dir(d),
            flags: fdflags,
            rights: R_DIR,
            inheriting,
            preopen: None,
            may_block: false,
        };
        let fd = s.insert(e);
        return mem::write_u32(m, u32a(a, 8), fd);
    }
    if path.ends_with('/') && oflags & O_CREAT != 0 {
        // A file name with a trailing slash names a directory.
        return Err(Errno::Isdir.into());
    }
    let mut o = OpenOptions::new();
    o.read(read).write(write).follow(follow);
    if oflags & O_TRUNC != 0 {
        o.truncate(true);
    }
    // O_APPEND is set with fcntl below (std refuses append with truncate).
    let sync = fdflags & (FDFLAG_DSYNC | FDFLAG_RSYNC | FDFLAG_SYNC);
    // Opening a FIFO for reading waits in open(2) for a writer: open it
    // non-blocking (the flag is set as the guest asked just below), so
    // that only reads park, and only the reading guest thread.
    let fifo = !write && {
        use cap_fs_ext::FileTypeExt;
        let md = match follow {
            FollowSymlinks::Yes => dir.metadata(&path),
            FollowSymlinks::No => dir.symlink_metadata(&path),
        };
        md.is_ok_and(|md| md.file_type().is_fifo())
    };
    if sync != 0 || fifo {
        let mut f = if fifo { libc::O_NONBLOCK } else { 0 };
        if sync & FDFLAG_DSYNC != 0 {
            f |= libc::O_DSYNC;
        }
        if sync & FDFLAG_RSYNC != 0 {
            f |= libc::O_RSYNC;
        }
        if sync & FDFLAG_SYNC != 0 {
            f |= libc::O_SYNC;
        }
        cap_std::fs::OpenOptionsExt::custom_flags(&mut o, f);
    }
    if oflags & O_CREAT != 0 {
        if write {
            o.create(true).create_new(oflags & O_EXCL != 0);
        } else {
            // POSIX allows creating a file opened read-only; std's options
            // do not: create it first (exclusively when asked), then open.
            let exists = oflags & O_EXCL == 0 && dir.symlink_metadata(&path).is_ok();
            if !exists {
                let mut c = OpenOptions::new();
                c.write(true).follow(follow);
                c.create(true).create_new(oflags & O_EXCL != 0);
                drop(dir.open_with(&path, &c)?);
            }
        }
    }
    let file = dir.open_with(&path, &o)?.into_std();
    let kind = if file.metadata()?.is_dir() {
        if write {
            return Err(Errno::Isdir.into());
        }
        Kind::Dir(Dir::from_std_file(file))
    } else {
        Kind::File { file, read, write }
    };
    // Rights follow what the descriptor can do (as wasmtime reports them);
    // `fd_fdstat_set_rights` may only drop them.
    let rights = match &kind {
        Kind::Dir(_) => R_DIR,
        _ => {
            let mut r = R_FILE;
            if !read {
                r &= !R_FD_READ;
            }
            if !write {
                r &= !(R_FD_WRITE | R_FD_ALLOCATE | R_FD_FILESTAT_SET_SIZE);
            }
            r
        }
    };
    let blocks = match &kind {
        Kind::File { file, .. } => may_block(file.as_raw_fd()),
        _ => false,
    };
    let mut e = Entry {
        kind,
        flags: 0,
        rights,
        inheriting,
        preopen: None,
        may_block: blocks,
    };
    set_fd_flags(&mut e, fdflags & (FDFLAG_APPEND | FDFLAG_NONBLOCK))?;
    e.flags |= sync;
    let fd = s.insert(e);
    mem::write_u32(m, u32a(a, 8), fd)
}

/// Define the `fd_*` and `path_*` functions.
pub(crate) fn add<T: 'static>(l: &mut Linker<T>, st: &Shared) {
    def_caller(l, st, "fd_read", "iiii", |c, st, a| loop {
        {
            let mut s = crate::lock(st);
            let fd = u32a(a, 0);
            let Some(raw) = s.would_park(fd, Interest::Read) else {
                let m = c.memory(0).ok_or(Errno::Fault)?;
                let n = fd_read(m, &mut s, a, None)?;
                return mem::write_u32(m, u32a(a, 3), n);
            };
            // Only this guest thread waits; the reactor wakes it.
            let me = c.thread_id();
            if let Some(r) = s.reactor.as_mut() {
                r.wait_for(me, vec![(raw, Interest::Read)], None);
            }
        }
        c.park().map_err(Fail::Fatal)?;
    });
    def(l, st, "fd_pread", "iiiIi", |m, s, a| {
        let n = fd_read(m, s, a, Some(u64a(a, 3)))?;
        mem::write_u32(m, u32a(a, 4), n)
    });
    def_caller(l, st, "fd_write", "iiii", |c, st, a| loop {
        {
            let mut s = crate::lock(st);
            let Some(raw) = s.would_park(u32a(a, 0), Interest::Write) else {
                let m = c.memory(0).ok_or(Errno::Fault)?;
                let n = fd_write(m, &mut s, a, None)?;
                return mem::write_u32(m, u32a(a, 3), n);
            };
            // A full pipe: only this guest thread waits for its reader.
            let me = c.thread_id();
            if let Some(r) = s.reactor.as_mut() {
                r.wait_for(me, vec![(raw, Interest::Write)], None);
            }
        }
        c.park().map_err(Fail::Fatal)?;
    });
    def(l, st, "fd_pwrite", "iiiIi", |m, s, a| {
        let n = fd_write(m, s, a, Some(u64a(a, 3)))?;
        mem::write_u32(m, u32a(a, 4), n)
    });
    def(l, st, "fd_seek", "iIii", |m, s, a| {
        let (off, whence) = (a[1].i64().unwrap_or(0), u32a(a, 2));
        let mut f = s.file(u32a(a, 0)).map_err(|e| match e {
            Fail::Errno(Errno::Isdir) => Fail::Errno(Errno::Badf),
            e => e,
        })?;
        let pos = match whence {
            0 => SeekFrom::Start(u64::try_from(off).map_err(|_| Errno::Inval)?),
            1 => SeekFrom::Current(off),
            2 => SeekFrom::End(off),
            _ => return Err(Errno::Inval.into()),
        };
        let p = f.seek(pos)?;
        mem::write_u64(m, u32a(a, 3), p)
    });
    def(l, st, "fd_tell", "ii", |m, s, a| {
        let mut f = s.file(u32a(a, 0)).map_err(|e| match e {
            Fail::Errno(Errno::Isdir) => Fail::Errno(Errno::Badf),
            e => e,
        })?;
        let p = f.stream_position()?;
        mem::write_u64(m, u32a(a, 1), p)
    });
    def(l, st, "fd_close", "i", |_, s, a| {
        let fd = u32a(a, 0) as usize;
        s.entry(fd as u32)?;
        s.close(fd);
        Ok(())
    });
    def(l, st, "fd_renumber", "ii", |_, s, a| {
        let (from, to) = (u32a(a, 0) as usize, u32a(a, 1) as usize);
        s.entry(from as u32)?;
        s.entry(to as u32)?;
        if from != to {
            s.close(to);
            s.fds[to] = s.fds[from].take();
        }
        Ok(())
    });
    def(l, st, "fd_fdstat_get", "ii", |m, s, a| {
        let e = s.entry(u32a(a, 0))?;
        let ft = match &e.kind {
            Kind::Dir(_) => FT_DIR,
            Kind::File { .. } => FT_FILE,
            _ => entry_stat(e)?.ft,
        };
        let p = u32a(a, 1);
        mem::slice(m, p, 24)?.fill(0);
        mem::write_u8(m, p, ft)?;
        mem::write_u16(m, p + 2, e.flags)?;
        mem::write_u64(m, p + 8, e.rights)?;
        mem::write_u64(m, p + 16, e.inheriting)
    });
    def(l, st, "fd_fdstat_set_flags", "ii", |_, s, a| {
        let e = s.entry_mut(u32a(a, 0))?;
        set_fd_flags(e, u32a(a, 1) as u16)
    });
    def(l, st, "fd_fdstat_set_rights", "iII", |_, s, a| {
        let e = s.entry_mut(u32a(a, 0))?;
        let (base, inh) = (u64a(a, 1), u64a(a, 2));
        // Rights can only be dropped, never gained.
        if base & !e.rights != 0 || inh & !e.inheriting != 0 {
            return Err(Errno::Notcapable.into());
        }
        e.rights = base;
        e.inheriting = inh;
        Ok(())
    });
    def(l, st, "fd_filestat_get", "ii", |m, s, a| {
        let st = entry_stat(s.entry(u32a(a, 0))?)?;
        st.write(m, u32a(a, 1))
    });
    def(l, st, "fd_filestat_set_size", "iI", |_, s, a| {
        let f = s.file(u32a(a, 0)).map_err(|e| match e {
            Fail::Errno(Errno::Isdir) => Fail::Errno(Errno::Badf),
            e => e,
        })?;
        f.set_len(u64a(a, 1))?;
        Ok(())
    });
    def(l, st, "fd_filestat_set_times", "iIIi", |_, s, a| {
        let (at, mt) = time_specs(u64a(a, 1), u64a(a, 2), u32a(a, 3))?;
        let e = s.entry(u32a(a, 0))?;
        let mut times = std::fs::FileTimes::new();
        if let Some(t) = to_std_time(&at) {
            times = times.set_accessed(t);
        }
        if let Some(t) = to_std_time(&mt) {
            times = times.set_modified(t);
        }
        match &e.kind {
            Kind::File { file, .. } => file.set_times(times)?,
            Kind::Dir(d) => d.set_times(".", at, mt)?,
            _ => stdio(e_fd(&e.kind)).set_times(times)?,
        }
        Ok(())
    });
    def(l, st, "fd_sync", "i", |_, s, a| sync(s, u32a(a, 0), false));
    def(l, st, "fd_datasync", "i", |_, s, a| {
        sync(s, u32a(a, 0), true)
    });
    def(l, st, "fd_advise", "iIIi", |_, s, a| {
        let advice = match u32a(a, 3) {
            0 => libc::POSIX_FADV_NORMAL,
            1 => libc::POSIX_FADV_SEQUENTIAL,
            2 => libc::POSIX_FADV_RANDOM,
            3 => libc::POSIX_FADV_WILLNEED,
            4 => libc::POSIX_FADV_DONTNEED,
            5 => libc::POSIX_FADV_NOREUSE,
            _ => return Err(Errno::Inval.into()),
        };
        let f = s.file(u32a(a, 0)).map_err(|e| match e {
            Fail::Errno(Errno::Isdir) => Fail::Errno(Errno::Badf),
            e => e,
        })?;
        let (off, len) = (a[1].i64().unwrap_or(0), a[2].i64().unwrap_or(0));
        // SAFETY: the descriptor is open (owned by `f`); the call only
        // passes a hint to the kernel.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), off, len, advice) };
        if r != 0 {
            return Err(Errno::from_io(&std::io::Error::from_raw_os_error(r)).into());
        }
        Ok(())
    });
    def(l, st, "fd_allocate", "iII", |_, s, a| {
        let f = s.file(u32a(a, 0)).map_err(|e| match e {
            Fail::Errno(Errno::Isdir) => Fail::Errno(Errno::Badf),
            e => e,
        })?;
        let end = u64a(a, 1).checked_add(u64a(a, 2)).ok_or(Errno::Inval)?;
        if end > f.metadata()?.len() {
            f.set_len(end)?;
        }
        Ok(())
    });
    def(l, st, "fd_prestat_get", "ii", |m, s, a| {
        let name = s.entry(u32a(a, 0))?.preopen.as_ref().ok_or(Errno::Badf)?;
        mem::write_u32(m, u32a(a, 1), 0)?;
        mem::write_u32(m, u32a(a, 1) + 4, name.len() as u32)
    });
    def(l, st, "fd_prestat_dir_name", "iii", |m, s, a| {
        let name = s.entry(u32a(a, 0))?.preopen.as_ref().ok_or(Errno::Badf)?;
        if (u32a(a, 2) as usize) < name.len() {
            return Err(Errno::Nametoolong.into());
        }
        mem::slice(m, u32a(a, 1), name.len() as u32)?.copy_from_slice(name.as_bytes());
        Ok(())
    });
    def(l, st, "fd_readdir", "iiiIi", readdir);
    def(l, st, "path_open", "iiiiiIIii", path_open);
    crate::fs_path::add(l, st);
}

fn e_fd(k: &Kind) -> i32 {
    match k {
        Kind::Stdin => 0,
        Kind::Stdout => 1,
        _ => 2,
    }
}

fn sync(s: &State, fd: u32, data: bool) -> Result<(), Fail> {
    let e = s.entry(fd)?;
    let raw = match &e.kind {
        Kind::File { file, .. } => file.as_raw_fd(),
        Kind::Dir(d) => d.as_raw_fd(),
        k => e_fd(k),
    };
    // SAFETY: `raw` is an open descriptor of this table or stdio.
    let r = unsafe {
        if data {
            libc::fdatasync(raw)
        } else {
            libc::fsync(raw)
        }
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Things `fs_path` needs from the table.
pub(crate) mod table {
    pub(crate) use super::{rel, time_specs, Stat};
    use super::{Dir, Errno, Fail, State};

    /// The directory `fd`, as `path_*` functions need it.
    pub(crate) fn dir(s: &State, fd: u32) -> Result<&Dir, Fail> {
        s.dir(fd)
    }

    /// `ENOTDIR` for a path ending in `/` that names a non-directory.
    pub(crate) fn notdir() -> Fail {
        Fail::Errno(Errno::Notdir)
    }
}
