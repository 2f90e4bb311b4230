//! Where the operator's Jobs and pods may be sent: object-store endpoints
//! and Transit addresses are user input that pods holding credentials
//! connect to, so an address of the node itself (loopback, unspecified),
//! of the link (link-local, where cloud metadata services answer) or of a
//! metadata service by name is refused. Numeric host spellings that hide
//! an address (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`, IPv4
//! mapped into IPv6) are refused too: write the address in plain dotted or
//! IPv6 form. The admission policy `openbao-operator-cluster-invariants`
//! holds the same rule in CEL.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Host names of cloud metadata services.
const METADATA_NAMES: [&str; 3] = ["metadata", "metadata.google.internal", "instance-data"];

/// The AWS instance metadata service's IPv6 address (not link-local).
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// Why `endpoint` may not be used, or `None` when it may.
pub fn forbidden_endpoint(endpoint: &str) -> Option<String> {
    let parsed = match url::Url::parse(endpoint) {
        Ok(parsed) => parsed,
        Err(error) => return Some(format!("{endpoint:?} is not a URL ({error})")),
    };
    let raw = raw_host(endpoint);
    let host = match parsed.host() {
        None => return Some(format!("{endpoint:?} has no host")),
        Some(host) => host,
    };
    let refused = |what: &str| {
        Some(format!(
            "{endpoint:?} points at {what}, which would let the operator's pods reach the node or its credentials; use the service's own address"
        ))
    };
    match host {
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return refused("the node itself (localhost)");
            }
            if METADATA_NAMES.contains(&name.as_str()) {
                return refused("a cloud metadata service");
            }
            None
        }
        url::Host::Ipv4(ip) => {
            // The URL standard reads 2130706433, 0x7f000001 and 127.1 as
            // 127.0.0.1: only the plain dotted form is taken as written.
            if raw != ip.to_string() {
                return Some(format!(
                    "{endpoint:?} spells an IPv4 address in a numeric form other than dotted decimal; write it as {ip}"
                ));
            }
            ipv4_problem(ip).and_then(refused)
        }
        url::Host::Ipv6(ip) => {
            if ip.to_ipv4_mapped().is_some() {
                return Some(format!(
                    "{endpoint:?} maps an IPv4 address into IPv6; write the IPv4 address itself"
                ));
            }
            ipv6_problem(ip).and_then(refused)
        }
    }
}

/// The host as written: between `://` (and any user info) and the port or path.
fn raw_host(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or("").to_owned(),
        None => host_port.split(':').next().unwrap_or("").to_owned(),
    }
}

fn ipv4_problem(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("the unspecified address (the node itself)")
    } else if ip.is_link_local() {
        Some("a link-local address (where cloud metadata services answer)")
    } else {
        None
    }
}

fn ipv6_problem(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("the unspecified address (the node itself)")
    } else if ip.segments()[0] & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if ip == AWS_METADATA_V6 {
        Some("a cloud metadata service")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample of the spellings; bins/controller/tests/admission_policies.rs
    /// sends every one it knows to the API server and to this code.
    const REFUSED: [&str; 6] = [
        "https://LOCALHOST.:8200",
        "http://0x7f000001:9000",
        "http://0177.0.0.1:9000",
        "http://[0:0:0:0:0:ffff:7f00:1]:9000",
        "http://instance-data/latest",
        "http://[fe80::1%25eth0]:9000",
    ];

    #[test]
    fn the_node_the_link_and_metadata_are_refused_in_every_spelling() {
        for endpoint in REFUSED {
            let why = forbidden_endpoint(endpoint).unwrap_or_else(|| panic!("{endpoint} passed"));
            assert!(why.contains(endpoint), "{why}");
        }
    }

    #[test]
    fn services_on_the_network_pass() {
        for endpoint in [
            "https://minio.storage.svc:9000",
            "http://10.244.3.1:9000",
            "https://s3.eu-central-1.amazonaws.com",
            "https://[2001:db8::5]:8200",
            "https://transit-0.transit.team-a.svc:8200",
            "http://192.168.1.20",
        ] {
            assert_eq!(forbidden_endpoint(endpoint), None, "{endpoint}");
        }
    }
}
