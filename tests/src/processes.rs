//! The real `clawnet` and `clawnet-bootstrap` binaries as child processes, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The path of workspace binary `name` (of package `package`), building it if this test run
/// did not (as when only this crate's tests were asked for).
pub fn binary(package: &str, name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).context("unexpected test binary location")?;
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo).args(["build", "-p", package, "--bin", name]).status()?;
        if !status.success() {
            bail!("building {name} failed");
        }
    }
    Ok(path)
}

/// A child process with its stdout read line by line; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Process {
    /// Starts `program` with `args` and `envs`.
    pub fn spawn(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Process> {
        let mut command = Command::new(program);
        command.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit());
        command.env_remove("CLAWNET_PASSPHRASE");
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().with_context(|| format!("starting {}", program.display()))?;
        let stdout: ChildStdout = child.stdout.take().context("no stdout")?;
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Process { child, lines })
    }

    /// Waits for a stdout line starting with `prefix` and returns it.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(_) => {}
                Err(_) => bail!("no line starting with {prefix:?} within {timeout:?}"),
            }
        }
    }

    /// The exit status, if the process has ended.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> anyhow::Result<Option<i32>> {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        Ok(self.child.wait()?.code())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `clawnet --data-dir DIR ARGS...` to completion.
pub fn clawnet(binary: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let output = Command::new(binary)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("CLAWNET_PASSPHRASE")
        .env_remove("CLAWNET_DATA_DIR")
        .output()?;
    Ok(output)
}

/// Like [`clawnet`], failing unless it succeeded; returns its stdout.
pub fn clawnet_ok(binary: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = clawnet(binary, dir, args)?;
    if !output.status.success() {
        bail!("clawnet {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8(output.stdout)?)
}
