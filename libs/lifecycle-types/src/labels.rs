//! Label and annotation keys shared by the controller and the Jobs it creates.

/// Standard Kubernetes label naming the managed application.
pub const APP_NAME: &str = "app.kubernetes.io/name";
/// Standard label naming the instance (the `OpenBaoCluster` name).
pub const APP_INSTANCE: &str = "app.kubernetes.io/instance";
/// Standard label naming the component inside the instance.
pub const APP_COMPONENT: &str = "app.kubernetes.io/component";
/// Standard label naming what manages an object.
pub const APP_MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Value of [`APP_NAME`] on everything that runs OpenBao.
pub const APP_NAME_OPENBAO: &str = "openbao";
/// Value of [`APP_MANAGED_BY`] on everything this operator creates.
pub const MANAGED_BY_OPERATOR: &str = "openbao-operator";

/// Field manager used by the controller for server-side apply.
pub const CONTROLLER_FIELD_MANAGER: &str = "openbao-operator";

/// The `OpenBaoCluster` an object belongs to. OpenBao pods are selected by
/// this label alone (StatefulSet, Services, auto-join, NetworkPolicy), so a
/// user's extra pod labels can never widen or break a selector.
pub const CLUSTER: &str = "openbao.org/cluster";

/// Value of [`APP_COMPONENT`] on OpenBao server objects.
pub const COMPONENT_SERVER: &str = "server";

/// Labels OpenBao's Kubernetes service registration writes on its own pod.
pub mod service_registration {
    /// `"true"` on the active node only: the client Service selects it.
    pub const ACTIVE: &str = "openbao-active";
    pub const INITIALIZED: &str = "openbao-initialized";
    pub const SEALED: &str = "openbao-sealed";
    pub const PERF_STANDBY: &str = "openbao-perf-standby";
    pub const VERSION: &str = "openbao-version";
}

/// Pod-template annotation: SHA-256 of the rendered configuration. A
/// changed hash marks pods the rollout gate must replace.
pub const CONFIG_HASH: &str = "openbao.org/config-hash";
/// Pod-template annotation: SHA-256 of the TLS material the pods use.
pub const TLS_HASH: &str = "openbao.org/tls-hash";
/// Pod-template annotation: `"true"` on the bootstrap template, the only one
/// that loads the self-init configuration.
pub const BOOTSTRAP: &str = "openbao.org/bootstrap";
/// Annotation on the unseal Secret: the static key's id (`current_key_id`),
/// which travels with the key so a rotation can name old and new keys.
pub const SEAL_KEY_ID: &str = "openbao.org/seal-key-id";
