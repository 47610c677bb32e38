//! The demo's bootstrap relay: the real `clawnet-bootstrap` binary as a child process (the node
//! crate does not link relay code), found next to the running `clawnet`, or built by cargo when
//! the demo runs under `cargo run`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

/// How long the relay may take to listen.
const STARTUP: Duration = Duration::from_secs(30);

/// A running relay, killed when dropped.
#[derive(Debug)]
pub(super) struct Relay {
    child: Child,
    /// Its address, ending in `/p2p/<peer id>`.
    pub(super) address: String,
}

impl Relay {
    /// Starts a relay on a free loopback port, its key in `dir`.
    pub(super) fn start(dir: &Path, binary: Option<&Path>) -> anyhow::Result<Relay> {
        let binary = match binary {
            Some(path) => path.to_owned(),
            None => find_or_build()?,
        };
        let key = dir.join("relay.key");
        let mut child = Command::new(&binary)
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--key-file"])
            .arg(&key)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("relay stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("listening ") {
                    let _ = tx.send(address.to_owned());
                }
            }
        });
        let mut relay = Relay { child, address: String::new() };
        relay.address = rx.recv_timeout(STARTUP).context("the relay did not start listening")?;
        Ok(relay)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `clawnet-bootstrap` next to this executable; under `cargo run`, built first if missing.
fn find_or_build() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the running executable")?;
    let dir = exe.parent().context("the executable has no directory")?;
    let candidate = dir.join(format!("clawnet-bootstrap{}", std::env::consts::EXE_SUFFIX));
    if candidate.exists() {
        return Ok(candidate);
    }
    let Ok(cargo) = std::env::var("CARGO") else {
        bail!(
            "clawnet-bootstrap is not next to {} (build it with `cargo build -p clawnet-bootstrap`, or pass --relay-bin)",
            exe.display()
        );
    };
    println!("Building the bootstrap relay (cargo build -p clawnet-bootstrap)...");
    let mut build = Command::new(cargo);
    build.args(["build", "-q", "-p", "clawnet-bootstrap"]);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().context("cannot run cargo")?;
    if !status.success() || !candidate.exists() {
        bail!("building clawnet-bootstrap failed");
    }
    Ok(candidate)
}
