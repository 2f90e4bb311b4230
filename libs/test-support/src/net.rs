//! Loopback addresses and free ports, so that environments run side by side.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU8, Ordering};

/// A port that was free on `ip` a moment ago. The kernel does not hand the
/// same ephemeral port out again soon, which makes collisions rare enough.
pub fn free_port(ip: Ipv4Addr) -> anyhow::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((ip, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// Distinct addresses 127.0.0.2..=127.0.0.254 handed out round-robin within a
/// process, starting at a per-process offset, so that each OpenBao node of a
/// cluster has an address of its own as it would have on a network.
pub fn next_loopback_ip() -> Ipv4Addr {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let start = (std::process::id() % 253) as u8;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Ipv4Addr::new(127, 0, 0, 2 + (start.wrapping_add(n) % 253))
}
