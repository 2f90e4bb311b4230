//! Names of the objects the operator generates for a cluster `<c>`. They
//! are deterministic so a restarted controller finds what it created, and
//! they follow the local control plane's hand-made layout
//! (`libs/test-support/src/openbao_pods.rs`) so the controller can take it over.

/// The StatefulSet and its governing headless Service: `<c>`. Pods are
/// `<c>-0`, `<c>-1`, ... and resolve as `<pod>.<c>.<namespace>.svc`.
pub fn statefulset(cluster: &str) -> String {
    cluster.to_owned()
}

/// The headless Service (also the StatefulSet's `serviceName`).
pub fn headless_service(cluster: &str) -> String {
    cluster.to_owned()
}

/// The client Service, which selects the active node only.
pub fn active_service(cluster: &str) -> String {
    format!("{cluster}-active")
}

/// The server configuration every pod loads.
pub fn config_map(cluster: &str) -> String {
    format!("{cluster}-config")
}

/// The self-init configuration, loaded only by the bootstrap pod on its first start.
pub fn self_init_config_map(cluster: &str) -> String {
    format!("{cluster}-self-init")
}

/// The static seal key (operator-generated, immutable).
pub fn unseal_secret(cluster: &str) -> String {
    format!("{cluster}-unseal-key")
}

/// The operator-managed CA (certificate and key).
pub fn tls_ca_secret(cluster: &str) -> String {
    format!("{cluster}-tls-ca")
}

/// The server certificate the pods mount (`tls.crt`, `tls.key`, `ca.crt`).
pub fn tls_server_secret(cluster: &str) -> String {
    format!("{cluster}-tls-server")
}

/// The root token of a Development cluster initialized through `sys/init`.
pub fn root_token_secret(cluster: &str) -> String {
    format!("{cluster}-root-token")
}

/// The backup identity's ServiceAccount (subject of its JWT role).
pub fn backup_service_account(cluster: &str) -> String {
    format!("{cluster}-backup")
}

/// The restore identity's ServiceAccount; it exists only while a restore runs.
pub fn restore_service_account(cluster: &str) -> String {
    format!("{cluster}-restore")
}

/// The upgrade identity's ServiceAccount; it exists only while an upgrade runs.
pub fn upgrade_service_account(cluster: &str) -> String {
    format!("{cluster}-upgrade")
}

/// The restore-drill identity's ServiceAccount (subject of its JWT role).
pub fn drill_service_account(cluster: &str) -> String {
    format!("{cluster}-drill")
}

/// The throwaway node's configuration for restore drills.
pub fn drill_config_map(cluster: &str) -> String {
    format!("{cluster}-drill")
}

/// The ServiceAccount the OpenBao pods run as.
pub fn service_account(cluster: &str) -> String {
    format!("{cluster}-serviceaccount")
}

/// The Role (and RoleBinding) for service registration and auto-join.
pub fn role(cluster: &str) -> String {
    format!("{cluster}-serviceaccount-role")
}

pub fn role_binding(cluster: &str) -> String {
    format!("{cluster}-serviceaccount-rolebinding")
}

pub fn pod_disruption_budget(cluster: &str) -> String {
    format!("{cluster}-pdb")
}

pub fn network_policy(cluster: &str) -> String {
    format!("{cluster}-network-policy")
}

pub fn ingress(cluster: &str) -> String {
    format!("{cluster}-ingress")
}

/// The name joining servers verify the leader's certificate against: the
/// leader is found by pod IP, which no certificate names.
pub fn tls_server_name(cluster: &str) -> String {
    format!("openbao-cluster-{cluster}.local")
}

/// Name of the container that runs OpenBao.
pub const CONTAINER: &str = "openbao";
/// Name of the data volume claim template (claims are `data-<pod>`).
pub const DATA_VOLUME: &str = "data";
/// Key of the static seal key in [`unseal_secret`].
pub const UNSEAL_KEY: &str = "key";
/// Key of the configuration in [`config_map`].
pub const CONFIG_KEY: &str = "config.hcl";
/// Key of the self-init configuration in [`self_init_config_map`].
pub const SELF_INIT_KEY: &str = "self-init.hcl";
/// Key of the root token Secret (Development clusters initialized by the operator).
pub const ROOT_TOKEN: &str = "token";

/// The product in the controller's `User-Agent` (`<this>/<version>`), so
/// API server audit logs and metrics tell its requests apart.
pub const CONTROLLER_USER_AGENT: &str = "openbao-operator-controller";

/// The ValidatingAdmissionPolicies (and their bindings, of the same names)
/// that `manifests/admission` ships; the controller checks at startup that
/// each is installed and enforced.
pub const ADMISSION_POLICIES: [&str; 4] = [
    "openbao-operator-cluster-invariants",
    "openbao-operator-managed-objects",
    "openbao-operator-statefulset-writes",
    "openbao-operator-tenant-bindings",
];
