//! Synced journal records written with `O_DIRECT | O_DSYNC` (Linux).
//!
//! A buffered write followed by `fdatasync` costs the device two operations: writing back the
//! dirty page, then flushing its cache. A direct write opened with `O_DSYNC` is one: the block
//! goes to the device marked to be durable on arrival (FUA), or is followed by the flush where
//! the device cannot do that; either way it is on disk when the call returns. On this project's
//! test machine (ext4 on a virtio disk) that is ~105 µs against ~120–175 µs, on the path of
//! every turn (BENCHMARKS.md, *Governed sessions*).
//!
//! Direct I/O moves whole aligned blocks from an aligned buffer, so the records not yet on disk
//! are kept in memory with the block they start in ([`Tail`]): a sync writes those blocks, the
//! bytes of the first one that were synced before again, unchanged. A record appended without a
//! sync (a durable-later batch) is only kept here until the next sync writes it, which the
//! journal's contract allows: a crash before a sync may lose it, and every later batch, never an
//! earlier one. Rewriting a synced block with the same bytes cannot harm it, even torn.
//!
//! A file system without direct I/O refuses to open the file that way, and the journal keeps
//! writing through the page cache and `fdatasync`; one that accepts the open but refuses the
//! write is handled the same way from then on.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// The alignment of direct I/O: a multiple of every device's logical block size.
const BLOCK: usize = 4096;

/// The journal file opened for direct, synced writes, and the bytes of it not yet written.
pub(super) struct Tail {
    file: File,
    /// Never reallocated: `window` is its aligned part.
    buffer: Vec<u8>,
    window: usize,
    /// The file offset of the window's first byte (a multiple of [`BLOCK`]).
    base: u64,
    /// The window's bytes that hold file content: the file from `base` to the journal's end.
    len: usize,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail").field("base", &self.base).field("len", &self.len).finish()
    }
}

impl Tail {
    /// Opens `path` for direct synced writes, for a journal of `capacity` bytes whose first
    /// bytes are `head` (the magic) and whose records start right after them. `None` where the
    /// file system does not do direct I/O.
    pub(super) fn open(path: &Path, capacity: u64, head: &[u8]) -> Option<Tail> {
        let flags = rustix::fs::OFlags::DIRECT | rustix::fs::OFlags::DSYNC;
        let file = OpenOptions::new().write(true).custom_flags(flags.bits() as i32).open(path).ok()?;
        let size = usize::try_from(capacity).ok()?.next_multiple_of(BLOCK);
        let buffer = vec![0u8; size + BLOCK];
        let window = buffer.as_ptr().align_offset(BLOCK);
        let mut tail = Tail { file, buffer, window, base: 0, len: 0 };
        tail.restart(head);
        Some(tail)
    }

    /// The journal starts again from the top of its file, after `head`.
    pub(super) fn restart(&mut self, head: &[u8]) {
        self.base = 0;
        self.len = head.len();
        let block = self.window..self.window + BLOCK;
        self.buffer[block.clone()].fill(0);
        self.buffer[block][..head.len()].copy_from_slice(head);
    }

    /// Adds `record`, written at the journal's end, to what the next sync writes.
    pub(super) fn push(&mut self, record: &[u8]) {
        let at = self.window + self.len;
        self.buffer[at..at + record.len()].copy_from_slice(record);
        self.len += record.len();
    }

    /// Writes every block not yet on disk; they are durable when it returns. After an error
    /// nothing here changed, so the caller can write the same bytes another way
    /// ([`Tail::unsynced`]).
    pub(super) fn sync(&mut self) -> std::io::Result<()> {
        let length = self.len.next_multiple_of(BLOCK);
        self.file.write_all_at(&self.buffer[self.window..self.window + length], self.base)?;
        // Keep the block the journal's end is in (the next record continues it), zeros after.
        let last = self.len / BLOCK * BLOCK;
        let kept = self.len - last;
        self.buffer.copy_within(self.window + last..self.window + self.len, self.window);
        self.buffer[self.window + kept..self.window + BLOCK].fill(0);
        self.base += last as u64;
        self.len = kept;
        Ok(())
    }

    /// The bytes not yet on disk and where they go: for a buffered write instead.
    pub(super) fn unsynced(&self) -> (u64, &[u8]) {
        (self.base, &self.buffer[self.window..self.window + self.len])
    }

    /// Moves the window one byte off its alignment, so that the next direct write is refused.
    #[cfg(test)]
    pub(super) fn misalign(&mut self) {
        self.buffer.copy_within(self.window..self.window + self.len, self.window + 1);
        self.window += 1;
    }
}
