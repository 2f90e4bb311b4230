//! Startup, readiness and liveness probes with the kubelet's defaults and
//! threshold rules. HTTP probes accept any certificate (as the kubelet
//! does) and count 200-399 as success; exec probes run inside the
//! container's namespaces and root through `nsenter`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

/// Consecutive-result bookkeeping: the result flips to success after
/// `successThreshold` successes and to failure after `failureThreshold`
/// failures; before either it is unknown.
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    result: Option<bool>,
}

impl ProbeTracker {
    pub fn new(probe: &Probe) -> Self {
        Self {
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
            successes: 0,
            failures: 0,
            result: None,
        }
    }

    /// Records one probe outcome; returns the new result when it changes.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let new = if self.successes >= self.success_threshold {
            Some(true)
        } else if self.failures >= self.failure_threshold {
            Some(false)
        } else {
            self.result
        };
        if new != self.result {
            self.result = new;
            new
        } else {
            None
        }
    }
}

/// Period, timeout and initial delay with the kubelet's defaults.
pub fn timings(probe: &Probe) -> (Duration, Duration, Duration) {
    let secs =
        |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
    (
        secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
        secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
        secs(probe.initial_delay_seconds, 0),
    )
}

/// Resolves a probe port (number or the name of a container port).
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> anyhow::Result<u16> {
    match port {
        IntOrString::Int(n) => Ok(u16::try_from(*n)?),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port as u16)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "probe names port {name:?}, which the container does not declare"
                    )
                })
        }
    }
}

/// What an exec probe needs: the container's main process and environment.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    pub pid: u32,
    pub env: Vec<(String, String)>,
}

/// Runs one probe once. Errors (bad port, refused host) count as failure;
/// the message is for the pod's events/logs.
pub async fn probe_once(
    probe: &Probe,
    pod_ip: Ipv4Addr,
    ports: &[ContainerPort],
    exec: &ExecTarget,
    http: &reqwest::Client,
) -> anyhow::Result<()> {
    let (_, timeout, _) = timings(probe);
    if let Some(get) = &probe.http_get {
        // Only the pod's own address is a target: the agent never sends
        // traffic to an address it did not create.
        if let Some(host) = get.host.as_deref().filter(|h| !h.is_empty()) {
            anyhow::ensure!(
                host == pod_ip.to_string(),
                "httpGet.host {host:?} is not the pod IP; the node agent only probes pods"
            );
        }
        let port = resolve_port(&get.port, ports)?;
        let scheme = get.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        let path = get.path.as_deref().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let mut request = http
            .get(format!("{scheme}://{pod_ip}:{port}{path}"))
            .timeout(timeout);
        for header in get.http_headers.iter().flatten() {
            request = request.header(&header.name, &header.value);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        anyhow::ensure!((200..400).contains(&status), "HTTP probe answered {status}");
        return Ok(());
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = resolve_port(&tcp.port, ports)?;
        tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect(SocketAddr::from((pod_ip, port))),
        )
        .await??;
        return Ok(());
    }
    if let Some(exec_action) = &probe.exec {
        let command = exec_action.command.clone().unwrap_or_default();
        anyhow::ensure!(!command.is_empty(), "exec probe without a command");
        let mut cmd = tokio::process::Command::new(super::container::host_tool("setpriv")?);
        cmd.args(["--pdeathsig", "KILL", "--"])
            .arg(super::container::host_tool("nsenter")?)
            .arg("--target")
            .arg(exec.pid.to_string())
            .args(["--mount", "--net", "--uts", "--root", "--wd", "--"])
            .args(&command)
            .env_clear()
            .envs(exec.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd.spawn()?;
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                if let Some(pid) = child.id() {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.wait().await;
                anyhow::bail!("exec probe timed out after {timeout:?}");
            }
        };
        anyhow::ensure!(status.success(), "exec probe exited with {status}");
        return Ok(());
    }
    anyhow::bail!("probe has no handler the node agent supports (httpGet, tcpSocket, exec)")
}

/// The HTTP client probes use: short timeouts, any certificate, no
/// redirects (a 3xx already counts as success).
pub fn probe_http_client() -> anyhow::Result<reqwest::Client> {
    crate::install_crypto_provider();
    Ok(reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("kube-probe/1.37")
        .no_proxy()
        .build()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn probe(success: i32, failure: i32) -> Probe {
        Probe {
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            ..Default::default()
        }
    }

    #[test]
    fn thresholds_flip_the_result_only_after_consecutive_outcomes() {
        let mut t = ProbeTracker::new(&probe(2, 3));
        assert_eq!(t.record(true), None, "one success is not enough");
        assert_eq!(t.record(true), Some(true));
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None, "a success resets the failures");
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(false), None, "no repeat when unchanged");
    }

    #[test]
    fn defaults_and_named_ports() {
        let (period, timeout, delay) = timings(&Probe::default());
        assert_eq!(
            (period, timeout, delay),
            (
                Duration::from_secs(10),
                Duration::from_secs(1),
                Duration::ZERO
            )
        );
        let ports = vec![ContainerPort {
            name: Some("api".into()),
            container_port: 8200,
            ..Default::default()
        }];
        assert_eq!(
            resolve_port(&IntOrString::String("api".into()), &ports).unwrap(),
            8200
        );
        assert_eq!(resolve_port(&IntOrString::Int(8201), &ports).unwrap(), 8201);
        assert!(resolve_port(&IntOrString::String("x".into()), &ports).is_err());
    }
}
