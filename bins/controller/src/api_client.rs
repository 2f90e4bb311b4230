//! The Kubernetes client the controller uses, with a layer that counts
//! every request it sends by kind (read, write, watch), so `/metrics` and
//! the benchmark show what a reconcile costs the API server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{Method, Request};
use kube::client::{Body, ClientBuilder};

/// Requests sent, by kind.
#[derive(Debug, Default)]
pub struct ApiCounters {
    /// GET and LIST (not watches).
    pub reads: AtomicU64,
    /// Everything that changes state: create, apply, patch, delete.
    pub writes: AtomicU64,
    /// Watch requests (one per watch and per reconnect).
    pub watches: AtomicU64,
}

impl ApiCounters {
    fn count<B>(&self, request: &Request<B>) {
        let counter = match *request.method() {
            Method::GET | Method::HEAD if is_watch(request.uri().query()) => &self.watches,
            Method::GET | Method::HEAD => &self.reads,
            _ => &self.writes,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

fn is_watch(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    })
}

/// A client for `config` whose requests are counted in `counters`.
pub fn counted(config: kube::Config, counters: Arc<ApiCounters>) -> kube::Result<kube::Client> {
    let layer = tower::util::MapRequestLayer::new(move |request: Request<Body>| {
        counters.count(&request);
        request
    });
    Ok(ClientBuilder::try_from(config)?.with_layer(&layer).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_told_apart_by_method_and_watch_flag() {
        let counters = ApiCounters::default();
        let request = |method: Method, uri: &str| {
            Request::builder().method(method).uri(uri).body(()).unwrap()
        };
        counters.count(&request(Method::GET, "/api/v1/namespaces/a/pods"));
        counters.count(&request(
            Method::GET,
            "/api/v1/pods?labelSelector=x&watch=true&resourceVersion=5",
        ));
        counters.count(&request(Method::PATCH, "/apis/apps/v1/statefulsets/x"));
        counters.count(&request(Method::DELETE, "/api/v1/pods/x"));
        assert_eq!(counters.reads(), 1);
        assert_eq!(counters.writes(), 2);
        assert_eq!(counters.watches.load(Ordering::Relaxed), 1);
    }
}
