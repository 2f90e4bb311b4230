//! Exposure of the client Service outside the cluster: an Ingress
//! (`spec.ingress`) and a Gateway API route (`spec.gateway`). Both always
//! point at the active-node Service on the API port.
//!
//! The backend speaks HTTPS: TLS is always on in the pods. An Ingress
//! controller must therefore be told to talk HTTPS to the backend, and how
//! is controller-specific (ingress-nginx:
//! `nginx.ingress.kubernetes.io/backend-protocol: HTTPS`), so that is the
//! user's job through `spec.ingress.annotations`; nothing controller-specific
//! is added here. The same holds for an `HTTPRoute` (the Gateway terminates
//! TLS and needs a `BackendTLSPolicy` or its own setting to re-encrypt);
//! `spec.gateway.tlsPassthrough` renders a `TLSRoute` instead, so clients
//! talk TLS to OpenBao itself.
//!
//! The Gateway API CRDs may not be installed, so the route is a
//! [`DynamicObject`] and [`route_api_resource`] says which resource to
//! look for and apply it with.

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::DynamicObject;
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use lifecycle_types::cluster::GatewaySpec;
use lifecycle_types::{OpenBaoCluster, names};
use serde_json::json;

use super::{API_PORT, RenderError, from_json, metadata_json, name_and_namespace, owned_metadata};

/// The Gateway API group.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// Name of the route (`HTTPRoute` or `TLSRoute`) for cluster `<c>`:
/// `<c>-route`. `lifecycle_types::names` has no helper for it yet, so it
/// follows the pattern of [`names::ingress`].
pub fn route_name(cluster: &str) -> String {
    format!("{cluster}-route")
}

/// The Ingress, or `None` unless `spec.ingress` is set and enabled.
pub fn ingress(cluster: &OpenBaoCluster) -> Result<Option<Ingress>, RenderError> {
    let Some(spec) = cluster.spec.ingress.as_ref().filter(|i| i.enabled) else {
        return Ok(None);
    };
    let (name, _) = name_and_namespace(cluster)?;
    if spec.host.is_empty() {
        return Err(RenderError::InvalidSpec {
            field: "spec.ingress.host".into(),
            message: "is required when spec.ingress.enabled is true".into(),
        });
    }
    check_path("spec.ingress.path", &spec.path)?;
    let mut metadata = owned_metadata(cluster, names::ingress(name))?;
    if !spec.annotations.is_empty() {
        metadata.annotations = Some(spec.annotations.clone());
    }
    let mut ingress_spec = json!({
        "rules": [{
            "host": spec.host,
            "http": {"paths": [{
                "path": spec.path,
                "pathType": "Prefix",
                "backend": {"service": {
                    "name": names::active_service(name),
                    "port": {"number": API_PORT},
                }},
            }]},
        }],
    });
    if let Some(class) = &spec.class_name {
        ingress_spec["ingressClassName"] = json!(class);
    }
    if let Some(secret) = &spec.tls_secret_name {
        ingress_spec["tls"] = json!([{"hosts": [spec.host], "secretName": secret}]);
    }
    from_json(
        "Ingress",
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": metadata_json(&metadata)?,
            "spec": ingress_spec,
        }),
    )
    .map(Some)
}

/// The `HTTPRoute` (or, with `tlsPassthrough`, the `TLSRoute`), or `None`
/// unless `spec.gateway` is set and enabled. Apply it with
/// [`route_api_resource`].
pub fn route(cluster: &OpenBaoCluster) -> Result<Option<DynamicObject>, RenderError> {
    let Some(spec) = enabled_gateway(cluster) else {
        return Ok(None);
    };
    let (name, _) = name_and_namespace(cluster)?;
    let resource = route_resource(spec);
    let mut metadata = owned_metadata(cluster, route_name(name))?;
    if !spec.annotations.is_empty() {
        metadata.annotations = Some(spec.annotations.clone());
    }
    let mut parent = json!({"name": spec.gateway_ref.name});
    if let Some(namespace) = &spec.gateway_ref.namespace {
        parent["namespace"] = json!(namespace);
    }
    if let Some(listener) = &spec.listener_name {
        parent["sectionName"] = json!(listener);
    }
    let backend = json!({"name": names::active_service(name), "port": API_PORT});
    let rule = if spec.tls_passthrough {
        // TLS routes see only the SNI, never a path.
        json!({"backendRefs": [backend]})
    } else {
        check_path("spec.gateway.path", &spec.path)?;
        json!({
            "matches": [{"path": {"type": "PathPrefix", "value": spec.path}}],
            "backendRefs": [backend],
        })
    };
    from_json(
        if spec.tls_passthrough {
            "TLSRoute"
        } else {
            "HTTPRoute"
        },
        json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": metadata_json(&metadata)?,
            "spec": {
                "parentRefs": [parent],
                "hostnames": [spec.hostname],
                "rules": [rule],
            },
        }),
    )
    .map(Some)
}

/// The resource [`route`] renders (`httproutes` or `tlsroutes` of
/// `gateway.networking.k8s.io`), or `None` when no route is wanted. The
/// controller checks that this CRD is served before applying the route.
pub fn route_api_resource(cluster: &OpenBaoCluster) -> Option<ApiResource> {
    enabled_gateway(cluster).map(route_resource)
}

/// `gateway.networking.k8s.io/v1` `HTTPRoute`.
pub fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GATEWAY_API_GROUP, "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// `gateway.networking.k8s.io/v1alpha2` `TLSRoute`.
pub fn tls_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GATEWAY_API_GROUP, "v1alpha2", "TLSRoute"),
        "tlsroutes",
    )
}

fn enabled_gateway(cluster: &OpenBaoCluster) -> Option<&GatewaySpec> {
    cluster.spec.gateway.as_ref().filter(|g| g.enabled)
}

fn route_resource(spec: &GatewaySpec) -> ApiResource {
    if spec.tls_passthrough {
        tls_route_resource()
    } else {
        http_route_resource()
    }
}

/// Prefix paths must be absolute (both the Ingress and the HTTPRoute
/// schemas reject anything else).
fn check_path(field: &str, path: &str) -> Result<(), RenderError> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(RenderError::InvalidSpec {
            field: field.to_owned(),
            message: format!("{path:?} must start with '/'"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;
    use lifecycle_types::cluster::{GatewayRef, IngressSpec};
    use std::collections::BTreeMap;

    fn with_ingress(tls: bool) -> OpenBaoCluster {
        let mut cluster = fixtures::development();
        cluster.spec.ingress = Some(IngressSpec {
            enabled: true,
            class_name: Some("nginx".into()),
            host: "bao.example.com".into(),
            path: "/".into(),
            tls_secret_name: tls.then(|| "bao-example-com-tls".into()),
            annotations: BTreeMap::from([(
                "nginx.ingress.kubernetes.io/backend-protocol".into(),
                "HTTPS".into(),
            )]),
        });
        cluster
    }

    fn with_gateway(tls_passthrough: bool) -> OpenBaoCluster {
        let mut cluster = fixtures::development();
        cluster.spec.gateway = Some(GatewaySpec {
            enabled: true,
            gateway_ref: GatewayRef {
                name: "public".into(),
                namespace: Some("gateways".into()),
            },
            hostname: "bao.example.com".into(),
            path: "/".into(),
            listener_name: Some(if tls_passthrough { "tls" } else { "https" }.into()),
            annotations: BTreeMap::from([("example.com/team".into(), "a".into())]),
            tls_passthrough,
        });
        cluster
    }

    #[test]
    fn ingress_golden() {
        insta::assert_yaml_snapshot!(
            "ingress_tls",
            ingress(&with_ingress(true)).unwrap().unwrap()
        );
        let plain = ingress(&with_ingress(false)).unwrap().unwrap();
        let spec = plain.spec.unwrap();
        assert!(spec.tls.is_none());
        let rule = &spec.rules.unwrap()[0];
        let path = &rule.http.as_ref().unwrap().paths[0];
        assert_eq!(path.path_type, "Prefix");
        let service = path.backend.service.as_ref().unwrap();
        assert_eq!(service.name, "dev-active");
        assert_eq!(service.port.as_ref().unwrap().number, Some(8200));
    }

    #[test]
    fn a_minimal_ingress_adds_nothing_the_user_did_not_ask_for() {
        let mut cluster = fixtures::development();
        cluster.spec.ingress = Some(IngressSpec {
            enabled: true,
            class_name: None,
            host: "bao.example.com".into(),
            path: "/".into(),
            tls_secret_name: None,
            annotations: BTreeMap::new(),
        });
        let rendered = ingress(&cluster).unwrap().unwrap();
        assert!(rendered.metadata.annotations.is_none());
        let spec = rendered.spec.unwrap();
        assert!(spec.ingress_class_name.is_none());
        assert!(spec.tls.is_none());
    }

    #[test]
    fn routes_golden() {
        let http = with_gateway(false);
        insta::assert_yaml_snapshot!("http_route", route(&http).unwrap().unwrap());
        assert_eq!(route_api_resource(&http), Some(http_route_resource()));
        let tls = with_gateway(true);
        insta::assert_yaml_snapshot!("tls_route", route(&tls).unwrap().unwrap());
        assert_eq!(route_api_resource(&tls), Some(tls_route_resource()));
    }

    #[test]
    fn a_minimal_route_omits_namespace_and_section() {
        let mut cluster = with_gateway(false);
        if let Some(gateway) = cluster.spec.gateway.as_mut() {
            gateway.gateway_ref.namespace = None;
            gateway.listener_name = None;
            gateway.annotations.clear();
        }
        let rendered = route(&cluster).unwrap().unwrap();
        assert!(rendered.metadata.annotations.is_none());
        assert_eq!(
            rendered.data["spec"]["parentRefs"],
            json!([{"name": "public"}])
        );
    }

    #[test]
    fn resources_name_the_gateway_api_kinds() {
        let http = http_route_resource();
        assert_eq!(
            (
                http.api_version.as_str(),
                http.kind.as_str(),
                http.plural.as_str()
            ),
            ("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes")
        );
        let tls = tls_route_resource();
        assert_eq!(
            (
                tls.api_version.as_str(),
                tls.kind.as_str(),
                tls.plural.as_str()
            ),
            (
                "gateway.networking.k8s.io/v1alpha2",
                "TLSRoute",
                "tlsroutes"
            )
        );
    }

    #[test]
    fn absent_or_disabled_renders_nothing() {
        let cluster = fixtures::development();
        assert!(ingress(&cluster).unwrap().is_none());
        assert!(route(&cluster).unwrap().is_none());
        assert!(route_api_resource(&cluster).is_none());
        let mut off = with_ingress(true);
        if let Some(i) = off.spec.ingress.as_mut() {
            i.enabled = false;
        }
        assert!(ingress(&off).unwrap().is_none());
        let mut off = with_gateway(true);
        if let Some(g) = off.spec.gateway.as_mut() {
            g.enabled = false;
        }
        assert!(route(&off).unwrap().is_none());
        assert!(route_api_resource(&off).is_none());
    }

    #[test]
    fn a_relative_path_is_rejected_with_its_field() {
        let mut cluster = with_ingress(false);
        if let Some(i) = cluster.spec.ingress.as_mut() {
            i.path = "ui".into();
        }
        let err = ingress(&cluster).unwrap_err().to_string();
        assert!(err.contains("spec.ingress.path"), "{err}");
        let mut cluster = with_gateway(false);
        if let Some(g) = cluster.spec.gateway.as_mut() {
            g.path = "ui".into();
        }
        let err = route(&cluster).unwrap_err().to_string();
        assert!(err.contains("spec.gateway.path"), "{err}");
    }
}
