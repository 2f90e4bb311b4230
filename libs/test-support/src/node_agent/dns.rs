//! Cluster DNS: what CoreDNS would answer for Services and StatefulSet pods.
//!
//! Records come from EndpointSlices (maintained by the real controller-
//! manager from pod readiness), so a pod that fails its readiness probe
//! drops out of DNS exactly as it drops out of the slices:
//!
//! - `<service>.<ns>.svc[.cluster.local]`: the ready endpoints' addresses.
//!   For a ClusterIP Service this differs from Kubernetes (which answers the
//!   ClusterIP): there is no kube-proxy, and ClusterIPs are never a target.
//! - `<hostname>.<service>.<ns>.svc[.cluster.local]`: the address of the
//!   endpoint with that hostname (StatefulSet pods under their governing
//!   headless Service).
//! - `kubernetes.default.svc[.cluster.local]`: the agent's API-server proxy.
//!
//! Pods query a UDP server on the bridge address (their `/etc/resolv.conf`
//! points there); the test process uses [`ClusterResolver`] with reqwest.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::discovery::v1::EndpointSlice;

pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Fully-qualified name (lower case, no trailing dot) to addresses.
pub type Records = HashMap<String, Vec<Ipv4Addr>>;

/// The records of a set of EndpointSlices, plus the `kubernetes` Service.
pub fn records_from_slices<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    apiserver: Ipv4Addr,
) -> Records {
    let mut records: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let (Some(ns), Some(service)) = (
            slice.metadata.namespace.as_deref(),
            slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name")),
        ) else {
            continue;
        };
        let service_name = format!("{service}.{ns}.svc.{CLUSTER_DOMAIN}");
        // A Service with no ready endpoint still exists: it answers with no
        // address rather than "no such name".
        records.entry(service_name.clone()).or_default();
        for endpoint in slice.endpoints.iter().flatten() {
            // CoreDNS serves an endpoint unless it is explicitly not ready
            // (`publishNotReadyAddresses` makes the controller mark all ready).
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            let addresses: Vec<Ipv4Addr> = endpoint
                .addresses
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect();
            records
                .entry(service_name.clone())
                .or_default()
                .extend(&addresses);
            if let Some(hostname) = &endpoint.hostname {
                records
                    .entry(format!("{hostname}.{service_name}"))
                    .or_default()
                    .extend(&addresses);
            }
        }
    }
    let mut records: Records = records
        .into_iter()
        .map(|(name, mut addrs)| {
            addrs.sort();
            addrs.dedup();
            (name, addrs)
        })
        .collect();
    records.insert(
        format!("kubernetes.default.svc.{CLUSTER_DOMAIN}"),
        vec![apiserver],
    );
    records
}

/// The cluster form of `name` (`x.ns.svc` gains `.cluster.local`), or None
/// for names outside the cluster domain.
pub fn normalize(name: &str) -> Option<String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.ends_with(&format!(".svc.{CLUSTER_DOMAIN}")) {
        Some(name)
    } else if name.ends_with(".svc") {
        Some(format!("{name}.{CLUSTER_DOMAIN}"))
    } else {
        None
    }
}

/// Shared, live view of the records (updated by the EndpointSlice watch).
#[derive(Debug, Clone, Default)]
pub struct DnsTable {
    records: Arc<RwLock<Records>>,
}

impl DnsTable {
    pub fn replace(&self, records: Records) {
        if let Ok(mut guard) = self.records.write() {
            *guard = records;
        }
    }

    /// `Some(addresses)` for a known cluster name (possibly empty), `None`
    /// for an unknown one.
    pub fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
        let name = normalize(name)?;
        self.records.read().ok()?.get(&name).cloned()
    }
}

/// The answer to one DNS query packet, or None if it is not a query we can
/// parse (the server then stays silent, like for garbage).
pub fn answer(query: &[u8], table: &DnsTable) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let question_count = u16::from_be_bytes([query[4], query[5]]);
    if question_count != 1 {
        return None;
    }
    // Question: labels, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).into_owned());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question_end = at + 4;
    query.get(..question_end)?;
    let name = labels.join(".");

    let found = table.lookup(&name);
    let addresses = match (&found, qtype) {
        // A and ANY get addresses; other types of a known name get none.
        (Some(addrs), 1 | 255) => addrs.clone(),
        _ => Vec::new(),
    };
    let mut out = Vec::with_capacity(question_end + addresses.len() * 16);
    out.extend_from_slice(&query[0..2]);
    // QR, same opcode, AA; RD copied; RA set so resolvers do not treat an
    // empty answer as a lame referral.
    let opcode_rd = query[2] & 0x79;
    out.push(0x80 | 0x04 | opcode_rd);
    let rcode = if found.is_some() { 0 } else { 3 };
    out.push(0x80 | rcode);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..question_end]);
    for addr in addresses {
        out.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
        // A short TTL: pods come and go during a test.
        out.extend_from_slice(&5u32.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&addr.octets());
    }
    Some(out)
}

/// Serves `table` over UDP on `addr` until the task is aborted.
pub async fn serve(socket: tokio::net::UdpSocket, table: DnsTable) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(reply) = answer(&buf[..len], &table) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

/// A reqwest resolver for the test process: cluster names from the agent's
/// records (pod addresses, reachable through the agent's bridge), anything
/// else from the system resolver.
#[derive(Debug, Clone)]
pub struct ClusterResolver {
    table: DnsTable,
}

impl ClusterResolver {
    pub fn new(table: DnsTable) -> Self {
        Self { table }
    }

    /// The addresses of a cluster name, or an error saying why there are none.
    pub fn resolve_cluster(&self, name: &str) -> anyhow::Result<Vec<Ipv4Addr>> {
        match self.table.lookup(name) {
            Some(addrs) if !addrs.is_empty() => Ok(addrs),
            Some(_) => anyhow::bail!("{name} has no ready endpoint"),
            None => anyhow::bail!("{name} is not a known Service or pod name"),
        }
    }
}

impl reqwest::dns::Resolve for ClusterResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_owned();
        let this = self.clone();
        Box::pin(async move {
            if normalize(&name).is_some() {
                let addrs = this.resolve_cluster(&name)?;
                let iter: reqwest::dns::Addrs = Box::new(
                    addrs
                        .into_iter()
                        .map(|ip| SocketAddr::from((ip, 0)))
                        .collect::<Vec<_>>()
                        .into_iter(),
                );
                return Ok(iter);
            }
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let iter: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(iter)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(service: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{service}-abc"), "namespace": "ns",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn table() -> DnsTable {
        let slices = [
            slice(
                "bao-internal",
                json!([
                    {"addresses": ["10.244.1.2"], "hostname": "bao-0", "conditions": {"ready": true}},
                    {"addresses": ["10.244.1.3"], "hostname": "bao-1", "conditions": {"ready": false}},
                ]),
            ),
            slice("empty", json!([])),
        ];
        let table = DnsTable::default();
        table.replace(records_from_slices(&slices, Ipv4Addr::new(10, 244, 1, 1)));
        table
    }

    #[test]
    fn names_cover_services_pods_and_the_api_server() {
        let t = table();
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            t.lookup("bao-internal.ns.svc"),
            Some(vec![ip("10.244.1.2")])
        );
        assert_eq!(
            t.lookup("bao-0.bao-internal.ns.svc.cluster.local."),
            Some(vec![ip("10.244.1.2")])
        );
        assert_eq!(t.lookup("bao-1.bao-internal.ns.svc"), None, "not ready");
        assert_eq!(t.lookup("empty.ns.svc"), Some(vec![]));
        assert_eq!(
            t.lookup("kubernetes.default.svc"),
            Some(vec![ip("10.244.1.1")])
        );
        assert_eq!(t.lookup("example.com"), None);
    }

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn wire_answers_a_records_nodata_and_nxdomain() {
        let t = table();
        let q = query("bao-0.bao-internal.ns.svc.cluster.local", 1);
        let a = answer(&q, &t).unwrap();
        assert_eq!(&a[0..2], &[0x12, 0x34], "same id");
        assert_eq!(a[3] & 0x0F, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1, "one answer");
        assert_eq!(&a[a.len() - 4..], &[10, 244, 1, 2]);

        let aaaa = answer(&query("bao-internal.ns.svc.cluster.local", 28), &t).unwrap();
        assert_eq!((aaaa[3] & 0x0F, aaaa[7]), (0, 0), "NODATA for AAAA");

        let nx = answer(&query("nope.ns.svc.cluster.local", 1), &t).unwrap();
        assert_eq!(nx[3] & 0x0F, 3, "NXDOMAIN");
        assert!(answer(&[1, 2, 3], &t).is_none());
    }
}
