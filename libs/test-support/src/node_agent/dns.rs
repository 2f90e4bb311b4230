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
//! Messages are parsed and encoded with `hickory-proto`.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
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

/// TTL of every answer: short, because pods come and go during a test.
const TTL_SECONDS: u32 = 5;

/// The answer to one DNS query packet, or None if it is not a query we can
/// parse (the server then stays silent, like for garbage).
pub fn answer(query: &[u8], table: &DnsTable) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.metadata.message_type != MessageType::Query || request.queries.len() != 1 {
        return None;
    }
    let question = request.queries.first()?.clone();
    // Same id and opcode; RD and CD echoed (RFC 6895). This server is the
    // authority for the cluster domain. RA is set so that resolvers do not
    // treat an empty answer as a lame referral.
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.metadata.authoritative = true;
    response.metadata.recursion_available = true;
    // A query with an OPT record must get one back (RFC 6891 6.1.1).
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        response.set_edns(edns);
    }
    response.add_query(question.clone());

    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return response.to_vec().ok();
    }
    match table.lookup(&question.name().to_ascii()) {
        None => response.metadata.response_code = ResponseCode::NXDomain,
        // A and ANY get addresses; other types of a known name get none
        // (NODATA: NOERROR with an empty answer section).
        Some(addresses) => {
            if matches!(question.query_type(), RecordType::A | RecordType::ANY) {
                response.add_answers(addresses.into_iter().map(|ip| {
                    Record::from_rdata(question.name().clone(), TTL_SECONDS, RData::A(A(ip)))
                }));
            }
        }
    }
    response.to_vec().ok()
}

/// UDP payload size advertised to EDNS clients: the size DNS Flag Day 2020
/// recommends, far above what a few A records of one Service need.
const EDNS_PAYLOAD: u16 = 1232;

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
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
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

    fn query(name: &str, record_type: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 0x1234;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
        message.to_vec().unwrap()
    }

    fn ask(name: &str, record_type: RecordType, t: &DnsTable) -> Message {
        Message::from_vec(&answer(&query(name, record_type), t).unwrap()).unwrap()
    }

    fn addresses(message: &Message) -> Vec<Ipv4Addr> {
        message
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn wire_answers_a_records_nodata_and_nxdomain() {
        let t = table();
        let a = ask("bao-0.bao-internal.ns.svc.cluster.local", RecordType::A, &t);
        assert_eq!(a.metadata.id, 0x1234, "same id");
        assert_eq!(a.metadata.message_type, MessageType::Response);
        assert!(a.metadata.authoritative, "AA");
        assert!(a.metadata.recursion_desired, "RD echoed");
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a.queries.len(), 1, "question echoed");
        assert_eq!(addresses(&a), [Ipv4Addr::new(10, 244, 1, 2)]);
        assert_eq!(a.answers[0].ttl, TTL_SECONDS);
        assert_eq!(
            a.answers[0].name.to_ascii(),
            "bao-0.bao-internal.ns.svc.cluster.local."
        );

        let aaaa = ask("bao-internal.ns.svc.cluster.local", RecordType::AAAA, &t);
        assert_eq!(
            (aaaa.metadata.response_code, aaaa.answers.len()),
            (ResponseCode::NoError, 0),
            "NODATA for AAAA"
        );

        let nx = ask("nope.ns.svc.cluster.local", RecordType::A, &t);
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert!(nx.answers.is_empty());
        let outside = ask("example.com", RecordType::A, &t);
        assert_eq!(outside.metadata.response_code, ResponseCode::NXDomain);

        assert!(answer(&[1, 2, 3], &t).is_none(), "garbage gets no answer");
        let mut response = Message::from_vec(&query("empty.ns.svc", RecordType::A)).unwrap();
        response.metadata.message_type = MessageType::Response;
        assert!(
            answer(&response.to_vec().unwrap(), &t).is_none(),
            "responses are not answered"
        );
    }

    #[test]
    fn edns_queries_get_an_opt_record_back() {
        let t = table();
        let mut message = Message::from_vec(&query("empty.ns.svc", RecordType::A)).unwrap();
        message.set_edns(Edns::new());
        let reply = Message::from_vec(&answer(&message.to_vec().unwrap(), &t).unwrap()).unwrap();
        assert_eq!(
            reply.edns.as_ref().map(Edns::max_payload),
            Some(EDNS_PAYLOAD)
        );
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(
            reply.answers.is_empty(),
            "a Service without ready endpoints"
        );
        let plain = ask("empty.ns.svc", RecordType::A, &t);
        assert!(plain.edns.is_none(), "no OPT record unless asked");
    }
}
