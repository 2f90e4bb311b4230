//! A TCP proxy on loopback for fault tests: it can throttle the bytes a
//! client sends and call back once a number of them have passed, so a test
//! can stop a server "mid-upload" deterministically.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Called once, when the client has sent `after_bytes` in total.
pub type Trigger = Box<dyn FnOnce() + Send>;

/// How the proxy treats client-to-server bytes.
#[derive(Default)]
pub struct ProxyOptions {
    /// Bytes per second from client to server; unlimited when `None`.
    pub upload_rate: Option<u64>,
    /// Runs `trigger` once this many client bytes have passed.
    pub after_bytes: Option<(u64, Trigger)>,
}

impl std::fmt::Debug for ProxyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyOptions")
            .field("upload_rate", &self.upload_rate)
            .field("after_bytes", &self.after_bytes.as_ref().map(|(n, _)| n))
            .finish()
    }
}

/// A running proxy; stops accepting (and drops its connections) on drop.
#[derive(Debug)]
pub struct TcpProxy {
    pub addr: SocketAddr,
    sent: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr, options: ProxyOptions) -> anyhow::Result<Self> {
        Self::start_on(Ipv4Addr::LOCALHOST, target, options).await
    }

    /// Listens on `ip` (the node agent's gateway, for pods to reach).
    pub async fn start_on(
        ip: Ipv4Addr,
        target: SocketAddr,
        options: ProxyOptions,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let sent = Arc::new(AtomicU64::new(0));
        let trigger = Arc::new(std::sync::Mutex::new(options.after_bytes));
        let rate = options.upload_rate;
        let counter = sent.clone();
        let task = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                let counter = counter.clone();
                let trigger = trigger.clone();
                connections.push(tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target).await {
                        let _ = pipe(client, server, rate, counter, trigger).await;
                    }
                }));
            }
        });
        Ok(Self { addr, sent, task })
    }

    /// Client bytes forwarded so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    rate: Option<u64>,
    counter: Arc<AtomicU64>,
    trigger: Arc<std::sync::Mutex<Option<(u64, Trigger)>>>,
) -> std::io::Result<()> {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                return server_write.shutdown().await;
            }
            if let Some(rate) = rate {
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
            }
            server_write.write_all(&buf[..n]).await?;
            let total = counter.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
            let fire = {
                let mut slot = trigger.lock().expect("trigger lock");
                match slot.as_ref() {
                    Some((after, _)) if total >= *after => slot.take().map(|(_, f)| f),
                    _ => None,
                }
            };
            if let Some(fire) = fire {
                fire();
            }
        }
    };
    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
    tokio::select! {
        result = upstream => result,
        result = downstream => result.map(drop),
    }
}
