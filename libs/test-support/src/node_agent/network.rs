//! Pod networking: one Linux bridge per agent, one network namespace and
//! veth pair per pod, addresses from a private /24 the agent creates.
//!
//! ```text
//!  host netns                       pod netns (held by the pause process)
//!  nabr<N>  10.244.<N>.1/24  <--veth-->  eth0 10.244.<N>.<k>/24, lo
//!    |- DNS server      10.244.<N>.1:53/udp
//!    `- API-server proxy 10.244.<N>.1:443 -> 127.0.0.1:<apiserver port>
//! ```
//!
//! Pods get no default route, so the only addresses they can reach are the
//! ones on this /24, all created here. The test process reaches pod
//! addresses through the bridge's connected route. The bridge's name is the
//! lock on its subnet (`ip link add` fails if another agent holds it), and
//! its alias records the owning process so that a later agent deletes
//! bridges left behind by a killed test. Everything in a pod's namespace
//! (its veth end included) disappears with the pause process.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::process::{ManagedProcess, pid_alive};

const BRIDGE_PREFIX: &str = "nabr";
const ALIAS_PREFIX: &str = "openbao-operator node-agent pid=";

/// Runs an `ip`/`nsenter` command and turns a failure into an error with
/// its stderr.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program} (iproute2/util-linux must be installed)"))?;
    anyhow::ensure!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// The agent's bridge and subnet. Dropping it deletes the bridge.
#[derive(Debug)]
pub struct Bridge {
    pub name: String,
    pub index: u8,
    pub gateway: Ipv4Addr,
}

impl Bridge {
    /// Claims a free 10.244.N.0/24 and creates its bridge with the gateway
    /// address.
    pub fn create() -> anyhow::Result<Self> {
        remove_stale_bridges();
        let start = (std::process::id() % 250) as u8;
        for offset in 0..250u16 {
            let index = ((u16::from(start) + offset) % 250 + 1) as u8;
            let name = format!("{BRIDGE_PREFIX}{index}");
            if run("ip", &["link", "add", "name", &name, "type", "bridge"]).is_err() {
                continue;
            }
            let bridge = Self {
                name: name.clone(),
                index,
                gateway: Ipv4Addr::new(10, 244, index, 1),
            };
            let alias = format!("{ALIAS_PREFIX}{}", std::process::id());
            run("ip", &["link", "set", "dev", &name, "alias", &alias])?;
            run(
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("{}/24", bridge.gateway),
                    "dev",
                    &name,
                ],
            )?;
            run("ip", &["link", "set", "dev", &name, "up"])?;
            return Ok(bridge);
        }
        anyhow::bail!("no free 10.244.N.0/24 for a node agent bridge (250 in use?)")
    }

    pub fn pod_ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.index, host)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", "dev", &self.name]);
    }
}

/// Deletes `nabr*` bridges whose owning process is gone.
fn remove_stale_bridges() {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(BRIDGE_PREFIX) {
            continue;
        }
        let alias = std::fs::read_to_string(entry.path().join("ifalias")).unwrap_or_default();
        let owner = alias
            .trim()
            .strip_prefix(ALIAS_PREFIX)
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = owner
            && !pid_alive(pid)
        {
            let _ = run("ip", &["link", "del", "dev", &name]);
        }
    }
}

/// Host numbers 2..=254 of the agent's /24, handed out round-robin so that
/// a released address is not reused at once (a stale EndpointSlice or ARP
/// entry would then point at the wrong pod).
#[derive(Debug)]
pub struct IpPool {
    free: BTreeSet<u8>,
    last: u8,
}

impl Default for IpPool {
    fn default() -> Self {
        Self {
            free: (2..=254).collect(),
            last: 1,
        }
    }
}

impl IpPool {
    /// The next free host number after the last one handed out.
    pub fn allocate(&mut self) -> Option<u8> {
        let host = self
            .free
            .range(self.last.saturating_add(1)..)
            .next()
            .or_else(|| self.free.iter().next())
            .copied()?;
        self.free.remove(&host);
        self.last = host;
        Some(host)
    }

    pub fn release(&mut self, host: u8) {
        if (2..=254).contains(&host) {
            self.free.insert(host);
        }
    }
}

/// A pod's network namespace: a pause process holds it, a veth pair joins
/// it to the bridge. Dropping it stops the pause process, which removes the
/// namespace and both veth ends.
#[derive(Debug)]
pub struct Sandbox {
    pause: ManagedProcess,
    pub ip: Ipv4Addr,
    pub host: u8,
}

impl Sandbox {
    pub fn create(
        bridge_name: &str,
        bridge_index: u8,
        host: u8,
        hostname: &str,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let pause = ManagedProcess::spawn(
            "pause",
            Path::new("unshare"),
            &[
                "--net".into(),
                "--uts".into(),
                "--".into(),
                "/bin/sh".into(),
                "-c".into(),
                "hostname \"$1\" && exec sleep infinity".into(),
                "sh".into(),
                hostname.into(),
            ],
            &[],
            &dir.join("pause.log"),
        )?;
        let pid = pause.pid().context("the pause process has no pid")?;
        wait_for_own_netns(pid)?;
        let sandbox = Self {
            pause,
            ip: Ipv4Addr::new(10, 244, bridge_index, host),
            host,
        };
        let veth = format!("nv{bridge_index}h{host}");
        let pid_s = pid.to_string();
        // A leftover veth of a crashed pod with the same address slot.
        let _ = run("ip", &["link", "del", "dev", &veth]);
        run(
            "ip",
            &[
                "link", "add", "name", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                &pid_s,
            ],
        )?;
        run(
            "ip",
            &["link", "set", "dev", &veth, "master", bridge_name, "up"],
        )?;
        let cidr = format!("{}/24", sandbox.ip);
        let in_pod = |args: &[&str]| -> anyhow::Result<()> {
            let mut full = vec!["--target", &pid_s, "--net", "--", "ip"];
            full.extend_from_slice(args);
            run("nsenter", &full)
        };
        in_pod(&["addr", "add", &cidr, "dev", "eth0"])?;
        in_pod(&["link", "set", "dev", "eth0", "up"])?;
        in_pod(&["link", "set", "dev", "lo", "up"])?;
        Ok(sandbox)
    }

    pub fn pause_pid(&self) -> Option<u32> {
        self.pause.pid()
    }
}

/// Waits until `pid` runs in a network namespace other than ours (unshare
/// has done its work).
fn wait_for_own_netns(pid: u32) -> anyhow::Result<()> {
    let ours = std::fs::read_link("/proc/self/ns/net")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(theirs) = std::fs::read_link(format!("/proc/{pid}/ns/net"))
            && theirs != ours
        {
            return Ok(());
        }
        anyhow::ensure!(
            pid_alive(pid) && Instant::now() < deadline,
            "the pause process {pid} did not create its network namespace (is `unshare --net` permitted?)"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Forwards TCP connections from `listener` (on the bridge) to the API
/// server on loopback, byte for byte: TLS stays end to end, so pods verify
/// the API server's own certificate (they address it as
/// `kubernetes.default.svc`, one of its names).
pub async fn proxy_apiserver(listener: tokio::net::TcpListener, upstream: std::net::SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hands_out_round_robin_and_wraps() {
        let mut pool = IpPool::default();
        assert_eq!(pool.allocate(), Some(2));
        assert_eq!(pool.allocate(), Some(3));
        pool.release(2);
        assert_eq!(
            pool.allocate(),
            Some(4),
            "a released address waits its turn"
        );
        let mut n = 0;
        while let Some(host) = pool.allocate() {
            n += 1;
            assert_ne!(host, 3);
        }
        assert_eq!(n, 251, "253 addresses in all, 2 held");
        pool.release(1);
        assert_eq!(pool.allocate(), None, "the gateway is never handed out");
    }
}
