//! Appends audit entries from several threads until killed, printing `appended SEQ` after each
//! append returns (that is, after it is durable). The crash test kills it with SIGKILL. With
//! `DEFER_EVERY` n > 0, every n-th append of a thread is a change that is durable later, printed
//! as `deferred SEQ` (committed, but not yet promised to be on disk).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_storage::Change;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().context("usage: audit-writer DB_PATH [THREADS [DEFER_EVERY]]")?);
    let threads: usize = args.next().map(|t| t.parse()).transpose()?.unwrap_or(8);
    let defer_every: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(0);
    let db = Arc::new(clawnet_tests::open_or_create(&path)?);
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let db = db.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                for n in 0u64.. {
                    let draft = AuditDraft::new(
                        Actor::Node,
                        "test.append",
                        format!("thread {thread} append {n}"),
                        "crash test",
                        Outcome::Success,
                    );
                    let deferred = defer_every > 0 && n % defer_every == defer_every - 1;
                    let (seq, what) = if deferred {
                        (db.commit(Change::audit(draft).durable_later())?.1.last_seq(), "deferred")
                    } else {
                        (db.append(draft)?.last_seq(), "appended")
                    };
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{what} {seq}")?;
                    out.flush()?;
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("a writer thread panicked"))??;
    }
    Ok(())
}
