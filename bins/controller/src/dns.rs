//! Pod names through a chosen DNS server, for a controller that runs
//! outside the cluster (local development, benchmarks): in a pod the
//! system resolver already asks the cluster DNS.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// A reqwest resolver that asks one DNS server only.
#[derive(Clone)]
pub struct ClusterDns {
    resolver: TokioResolver,
}

impl std::fmt::Debug for ClusterDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterDns").finish_non_exhaustive()
    }
}

impl ClusterDns {
    pub fn new(server: SocketAddr) -> anyhow::Result<Self> {
        let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
        for connection in &mut name_server.connections {
            connection.port = server.port();
        }
        let resolver = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![name_server]),
            TokioRuntimeProvider::default(),
        )
        .build()?;
        Ok(Self { resolver })
    }
}

impl reqwest::dns::Resolve for ClusterDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.resolver.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let found = resolver.lookup_ip(format!("{name}.")).await?;
            let addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}
