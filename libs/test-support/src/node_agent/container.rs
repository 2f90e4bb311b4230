//! One container instance as a local process.
//!
//! The process joins its pod's network and UTS namespaces (held by the
//! pod's pause process), gets a private mount namespace, and runs chrooted
//! in a fresh tmpfs root that stands in for the image's filesystem:
//!
//! ```text
//! /usr /bin /sbin /lib /lib64   host, read-only: the tools for `sh -c` and exec probes
//! /proc /sys                    host
//! /dev                          a tmpfs of its own with the host's null, zero,
//!                               full, random, urandom, tty, ptmx, pts (as a
//!                               container runtime makes it), a fresh /dev/shm
//! /etc/{hosts,resolv.conf,hostname,nsswitch.conf}   the pod's (cluster DNS)
//! /etc/{passwd,group,ssl}       host, read-only
//! /.node-agent/bin/<exe>        the image's executable (see `images.rs`)
//! <volumeMounts>                bind mounts of the pod's volume folders
//! <terminationMessagePath>      the instance's termination-message file
//!                               (default /dev/termination-log, `termination.rs`)
//! everything else               the tmpfs: a writable layer, fresh per start
//! ```
//!
//! So manifests run unchanged: `/vault/config/x.hcl`,
//! `/var/run/secrets/kubernetes.io/serviceaccount/token`,
//! `/dev/termination-log` are real paths.
//! The mounts are made by a small `sh` script inside `unshare --mount`
//! (util-linux; the workspace forbids `unsafe`), and the mount namespace
//! vanishes with the process, so no mount can outlive it.
//!
//! The chain `setpriv --pdeathsig KILL -- nsenter -- unshare -- sh -- unshare
//! --root` only ever `exec`s, so the container's main process keeps the pid
//! we spawned, leads its own process group, and dies with the test process.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;

/// Builds the container root, then execs the command in it. Positional
/// arguments: root, working dir, a marker file created once the root is
/// built (so the agent reports the container running only then), the
/// user and group to run as (`-` `-`: root), mount count, 4 words per
/// mount (kind,
/// source, target, ro|rw), `--`, argv. Environment: the container's own;
/// the script uses a fixed PATH for its tools and restores the container's
/// before exec.
const ROOT_SCRIPT: &str = r#"set -eu
ctr_path=${PATH:-}
PATH=/usr/sbin:/usr/bin:/sbin:/bin
root=$1; wd=$2; marker=$3; uid=$4; gid=$5; n=$6; shift 6
mount -t tmpfs -o mode=0755 node-agent-root "$root"
while [ "$n" -gt 0 ]; do
  kind=$1; src=$2; dst=$root$3; mode=$4; shift 4; n=$((n - 1))
  case $kind in
    link) mkdir -p "$(dirname "$dst")"; ln -s "$src" "$dst"; continue ;;
    file) mkdir -p "$(dirname "$dst")"; [ -e "$dst" ] || : > "$dst"; mount --bind "$src" "$dst" ;;
    dev)
      mkdir -p "$dst"
      mount -t tmpfs -o mode=0755,nosuid node-agent-dev "$dst"
      for d in null zero full random urandom tty ptmx; do
        if [ -e "$src/$d" ]; then : > "$dst/$d"; mount --bind "$src/$d" "$dst/$d"; fi
      done
      mkdir "$dst/pts" "$dst/shm"
      if [ -d "$src/pts" ]; then mount --rbind "$src/pts" "$dst/pts"; fi
      mount -t tmpfs -o mode=1777,nosuid,nodev node-agent-shm "$dst/shm"
      ln -s /proc/self/fd "$dst/fd"
      ln -s /proc/self/fd/0 "$dst/stdin"
      ln -s /proc/self/fd/1 "$dst/stdout"
      ln -s /proc/self/fd/2 "$dst/stderr"
      ;;
    rdir) mkdir -p "$dst"; mount --rbind "$src" "$dst" ;;
    *) mkdir -p "$dst"; mount --bind "$src" "$dst" ;;
  esac
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$dst"; fi
done
shift
mkdir -p "$root$wd"
unshare_bin=$(command -v unshare)
: > "$marker"
PATH=$ctr_path
if [ "$uid" = - ]; then
  exec "$unshare_bin" --root="$root" --wd="$wd" -- "$@"
fi
# unshare enters the root and working dir as root, then drops to the user
# (and to no supplementary group) before exec.
exec "$unshare_bin" --root="$root" --wd="$wd" --setgid="$gid" --setuid="$uid" -- "$@"
"#;

/// How a path appears in the container root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootEntry {
    /// Bind-mount a folder.
    Dir {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    /// Recursively bind-mount a folder (`/proc`, `/sys`).
    RecursiveDir { source: PathBuf, target: String },
    /// A private `/dev`: a tmpfs holding bind mounts of the basic devices
    /// of `source` (the host's `/dev`), so that files mounted under it (the
    /// termination-message file) never create anything in the host's
    /// `/dev`.
    Dev { source: PathBuf, target: String },
    /// Bind-mount a file.
    File {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    /// A symlink (merged-/usr hosts: `/bin -> usr/bin`).
    Link { points_to: String, target: String },
}

impl RootEntry {
    fn words(&self) -> [String; 4] {
        let ro = |r: bool| if r { "ro" } else { "rw" }.to_owned();
        let s = |p: &Path| p.display().to_string();
        match self {
            Self::Dir {
                source,
                target,
                read_only,
            } => ["dir".into(), s(source), target.clone(), ro(*read_only)],
            Self::RecursiveDir { source, target } => {
                ["rdir".into(), s(source), target.clone(), "rw".into()]
            }
            Self::Dev { source, target } => ["dev".into(), s(source), target.clone(), "rw".into()],
            Self::File {
                source,
                target,
                read_only,
            } => ["file".into(), s(source), target.clone(), ro(*read_only)],
            Self::Link { points_to, target } => [
                "link".into(),
                points_to.clone(),
                target.clone(),
                "rw".into(),
            ],
        }
    }
}

/// The host part of every container root: system folders read-only,
/// `/proc`, `/sys`, a private `/dev`, and a few `/etc` files.
pub fn host_root_entries() -> Vec<RootEntry> {
    let mut entries = Vec::new();
    for dir in super::volumes::HOST_SYSTEM_DIRS {
        let path = Path::new(dir);
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_symlink() => {
                if let Ok(to) = std::fs::read_link(path) {
                    entries.push(RootEntry::Link {
                        points_to: to.display().to_string(),
                        target: dir.to_owned(),
                    });
                }
            }
            Ok(meta) if meta.is_dir() => entries.push(RootEntry::Dir {
                source: path.to_owned(),
                target: dir.to_owned(),
                read_only: true,
            }),
            _ => {}
        }
    }
    for dir in ["/proc", "/sys"] {
        entries.push(RootEntry::RecursiveDir {
            source: dir.into(),
            target: dir.into(),
        });
    }
    entries.push(RootEntry::Dev {
        source: "/dev".into(),
        target: "/dev".into(),
    });
    for file in ["/etc/passwd", "/etc/group"] {
        if Path::new(file).is_file() {
            entries.push(RootEntry::File {
                source: file.into(),
                target: file.into(),
                read_only: true,
            });
        }
    }
    if Path::new("/etc/ssl").is_dir() {
        entries.push(RootEntry::Dir {
            source: "/etc/ssl".into(),
            target: "/etc/ssl".into(),
            read_only: true,
        });
    }
    entries
}

/// Where the agent's `PATH` has `tool` (util-linux).
pub fn host_tool(tool: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|dir| dir.join(tool))
        .find(|path| path.is_file())
        .ok_or_else(|| anyhow::anyhow!("{tool} is not installed; install util-linux"))
}

/// Everything needed to start one container instance.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Pid of the pod's pause process (owner of its network namespace).
    pub pause_pid: u32,
    /// Empty folder the tmpfs root is mounted on (in the private namespace).
    pub root_mount_point: PathBuf,
    pub working_dir: String,
    pub entries: Vec<RootEntry>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub log_path: PathBuf,
    /// The user and group the process runs as; `None`: root.
    pub run_as: Option<RunAs>,
}

/// A numeric user and primary group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// Exit code of a finished container (128 + signal when killed).
pub type ExitCode = i32;

/// A live process group and its "has exited" flag.
type LiveEntry = (i32, Arc<AtomicBool>);

/// Live container processes, so that the agent's Drop can stop all of them
/// synchronously.
#[derive(Debug, Clone, Default)]
pub struct ProcessRegistry {
    live: Arc<Mutex<HashMap<u64, LiveEntry>>>,
}

impl ProcessRegistry {
    /// Process-group ids still running.
    pub fn pids(&self) -> Vec<u32> {
        self.live
            .lock()
            .map(|l| l.values().map(|(pgid, _)| *pgid as u32).collect())
            .unwrap_or_default()
    }

    /// SIGTERM to every group, SIGKILL after `grace`, and waits until every
    /// process has been reaped.
    pub fn stop_all(&self, grace: Duration) {
        let entries: Vec<LiveEntry> = self
            .live
            .lock()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default();
        for (pgid, _) in &entries {
            let _ = killpg(Pid::from_raw(*pgid), Signal::SIGTERM);
        }
        let all_exited = |deadline: Instant| {
            while Instant::now() < deadline {
                if entries
                    .iter()
                    .all(|(_, exited)| exited.load(Ordering::SeqCst))
                {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        };
        if !all_exited(Instant::now() + grace) {
            for (pgid, exited) in &entries {
                if !exited.load(Ordering::SeqCst) {
                    let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
                }
            }
            all_exited(Instant::now() + Duration::from_secs(10));
        }
    }
}

/// A started container process.
#[derive(Debug)]
pub struct ContainerProcess {
    pid: u32,
    exited: Arc<AtomicBool>,
    exit: watch::Receiver<Option<ExitCode>>,
}

impl ContainerProcess {
    /// Starts the container. Its output (stdout and stderr) goes to
    /// `launch.log_path`.
    pub fn start(launch: &Launch, registry: &ProcessRegistry) -> anyhow::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(&launch.root_mount_point)?;
        if let Some(parent) = launch.log_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let log = File::create(&launch.log_path)
            .with_context(|| format!("create log file {}", launch.log_path.display()))?;
        let marker = launch.root_mount_point.with_extension("built");
        let _ = std::fs::remove_file(&marker);
        // The tools come from the agent's PATH: the container's own (an
        // image's PATH) is only for what runs inside its root.
        let mut command = Command::new(host_tool("setpriv")?);
        command
            .args(["--pdeathsig", "KILL", "--"])
            .arg(host_tool("nsenter")?)
            .arg("--target")
            .arg(launch.pause_pid.to_string())
            .args(["--net", "--uts", "--"])
            .arg(host_tool("unshare")?)
            .args(["--mount", "--propagation", "private"])
            .args(["--", "/bin/sh", "-c", ROOT_SCRIPT, "sh"])
            .arg(&launch.root_mount_point)
            .arg(&launch.working_dir)
            .arg(&marker)
            .args(match launch.run_as {
                Some(RunAs { uid, gid }) => [uid.to_string(), gid.to_string()],
                None => ["-".to_owned(), "-".to_owned()],
            })
            .arg(launch.entries.len().to_string());
        for entry in &launch.entries {
            command.args(entry.words());
        }
        command
            .arg("--")
            .args(&launch.argv)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = crate::process::spawn_with_death_signal(command)
            .context("start a container (setpriv/nsenter/unshare from util-linux)")?;
        let pid = child.id();
        let exited = Arc::new(AtomicBool::new(false));
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut live) = registry.live.lock() {
            live.insert(id, (pid as i32, exited.clone()));
        }
        let (tx, rx) = watch::channel(None);
        let registry = registry.clone();
        let flag = exited.clone();
        std::thread::Builder::new()
            .name(format!("container-wait-{pid}"))
            .spawn(move || {
                let code = match child.wait() {
                    Ok(status) => status.code().unwrap_or_else(|| {
                        128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(9)
                    }),
                    Err(_) => 137,
                };
                // Helpers the main process forked die with it, as they would
                // with the container's cgroup.
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                flag.store(true, Ordering::SeqCst);
                if let Ok(mut live) = registry.live.lock() {
                    live.remove(&id);
                }
                let _ = tx.send(Some(code));
            })
            .context("spawn a container wait thread")?;
        // Report the container as started only once its root is built, as
        // the kubelet does once the runtime started it: a probe or a test
        // must never see a container whose mounts are not there yet.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !marker.exists() && !exited.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(&marker);
        Ok(Self {
            pid,
            exited,
            exit: rx,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A receiver that holds `Some(code)` once the process has exited.
    pub fn exit_watch(&self) -> watch::Receiver<Option<ExitCode>> {
        self.exit.clone()
    }

    /// SIGTERM, SIGKILL after `grace`; returns the exit code.
    pub async fn stop(&self, grace: Duration) -> ExitCode {
        let mut exit = self.exit.clone();
        if !self.exited.load(Ordering::SeqCst) {
            let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        }
        if tokio::time::timeout(grace, exit.wait_for(Option::is_some))
            .await
            .is_err()
            && !self.exited.load(Ordering::SeqCst)
        {
            let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
        let code = exit.wait_for(Option::is_some).await.ok().and_then(|c| *c);
        code.unwrap_or(137)
    }
}
