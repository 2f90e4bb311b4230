//! Child processes that cannot outlive the test that started them.
//!
//! Each server runs in its own process group, so stopping it also stops
//! anything it forked. It is started through `setpriv --pdeathsig KILL` from
//! one spawner thread that lives as long as the test process: if the test
//! process dies without running destructors (killed by a timeout, say), the
//! kernel kills the servers too. (The death signal fires when the spawning
//! *thread* exits, hence the dedicated thread.)

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("test-support-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
                // Keep the thread (and so the death-signal parent) alive for
                // the rest of the process even if every sender is gone.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the process spawner thread");
        Mutex::new(tx)
    })
}

/// Spawns `command` from the long-lived spawner thread, so that a
/// `--pdeathsig` set by `setpriv` fires only when the test process dies.
pub fn spawn_with_death_signal(command: Command) -> anyhow::Result<Child> {
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()
        .lock()
        .map_err(|_| anyhow::anyhow!("the spawner lock is poisoned"))?
        .send((command, reply_tx))
        .context("the spawner thread is gone")?;
    Ok(reply_rx
        .recv()
        .context("the spawner thread did not answer")??)
}

/// A running server whose output goes to a log file.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Option<Child>,
    log_path: PathBuf,
}

impl ManagedProcess {
    /// Starts `program args...` with `envs`, logging to `log_path`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(String, String)],
        log_path: &Path,
    ) -> anyhow::Result<Self> {
        let log = File::create(log_path)
            .with_context(|| format!("create log file {}", log_path.display()))?;
        let mut command = Command::new("setpriv");
        command
            .arg("--pdeathsig")
            .arg("KILL")
            .arg("--")
            .arg(program)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = spawn_with_death_signal(command)
            .with_context(|| format!("start {name} ({})", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log_path: log_path.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends `signal` to the whole process group.
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = killpg(Pid::from_raw(pid as i32), signal);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; always reaps the process.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = Pid::from_raw(child.id() as i32);
        if matches!(child.try_wait(), Ok(None)) {
            let _ = killpg(group, Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Whatever is left of the group, including forked helpers, goes now.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// True if a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Peak resident memory (VmHWM, KiB) of the first process whose command
/// line starts with `program`, read from /proc.
pub fn peak_rss_kib(program: &str) -> Option<u64> {
    status_number(&status_of(program)?, "VmHWM:")
}

/// The real user and group ids of the first process whose command line
/// starts with `program`.
pub fn user_ids(program: &str) -> Option<(u32, u32)> {
    let status = status_of(program)?;
    Some((
        status_number(&status, "Uid:")?,
        status_number(&status, "Gid:")?,
    ))
}

/// /proc/<pid>/status of the first process whose command line starts with
/// `program`.
fn status_of(program: &str) -> Option<String> {
    let mut prefix = program.as_bytes().to_vec();
    prefix.push(0);
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            if !cmdline.starts_with(&prefix) {
                return None;
            }
            std::fs::read_to_string(entry.path().join("status")).ok()
        })
}

/// The first number after `field` (`VmHWM:`, `Uid:`) in a status text.
fn status_number<T: std::str::FromStr>(status: &str, field: &str) -> Option<T> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
