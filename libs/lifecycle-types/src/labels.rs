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
