//! Connections to a cluster's OpenBao pods, and the controller's own login.
//!
//! Pods are dialled by their stable DNS names through the headless Service
//! and verified against the cluster's CA. Each cluster has one HTTP client
//! (one connection pool, one TLS setup) reused by every reconcile; it is
//! built off the runtime thread, since trusting the system roots (ACME)
//! reads the trust store from disk, and rebuilt only when the CA changes.
//! Health is asked without a token.
//!
//! The controller logs in to each cluster with a token of its own
//! ServiceAccount minted for that cluster alone (TokenRequest API, audience
//! [`controller_audience`], ten minutes), which the cluster's
//! `openbao-operator` role is bound to. A token seen by one cluster (a
//! tenant's raw audit log, a tenant-chosen image) is therefore refused by
//! every other cluster. Minted tokens stay in memory, never on disk or in
//! a log. The OpenBao login is kept per cluster and replaced before it
//! expires or when OpenBao refuses it.
//!
//! Migration: a cluster bootstrapped by an earlier release binds the role
//! to the shared audience `openbao-internal`. When it refuses the
//! per-cluster token for its audience, the controller logs in once with
//! the legacy projected token (`--openbao-token-file`) and moves the role
//! to the per-cluster audience, which the controller policy allows and
//! nothing more (`policies/controller.hcl`). If that policy predates this
//! release, the controller keeps working with the legacy login and warns.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use lifecycle_types::identities::{
    Identity, JWT_AUTH_MOUNT, SubjectVars, controller_audience, jwt_role,
};
use lifecycle_types::names;
use openbao_client::{
    AuthInfo, Client, ClientConfig, Credential, Error, Login, RetryPolicy, Token,
};
use serde_json::json;

use crate::render::API_PORT;

/// How long a minted token lives: the TokenRequest API's minimum. It is
/// only presented at login, so a short life costs nothing.
pub const MINTED_TOKEN_LIFETIME: Duration = Duration::from_secs(600);

/// The audience every cluster's role accepted before per-cluster tokens,
/// and the audience of the legacy projected token.
pub const LEGACY_AUDIENCE: &str = openbao_client::DEFAULT_JWT_AUDIENCE;

/// What OpenBao's JWT method answers for a token of another audience.
const AUDIENCE_REFUSED: &str = "invalid audience (aud) claim";

/// How the controller proves who it is: tokens of its own ServiceAccount
/// minted per cluster, and the legacy projected token for migration.
#[derive(Clone)]
pub struct Credentials {
    accounts: Api<ServiceAccount>,
    namespace: String,
    service_account: String,
    lifetime: Duration,
    legacy_token_file: PathBuf,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("namespace", &self.namespace)
            .field("service_account", &self.service_account)
            .field("lifetime", &self.lifetime)
            .field("legacy_token_file", &self.legacy_token_file)
            .finish_non_exhaustive()
    }
}

/// A minted token and when to mint the next one. `Debug` shows no token.
#[derive(Clone, Debug)]
struct Minted {
    jwt: Credential,
    refresh_at: Instant,
}

impl Credentials {
    /// Tokens for `namespace/service_account` (the controller's own
    /// ServiceAccount; it needs `create` on its `serviceaccounts/token`).
    pub fn new(
        client: kube::Client,
        namespace: &str,
        service_account: &str,
        legacy_token_file: PathBuf,
    ) -> Self {
        Self {
            accounts: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            lifetime: MINTED_TOKEN_LIFETIME,
            legacy_token_file,
        }
    }

    /// A token for `audience`, kept in memory only, and the instant by
    /// which to replace it (half its life, so a login never presents a
    /// token about to expire).
    async fn mint(&self, audience: &str) -> openbao_client::Result<Minted> {
        let asked = Instant::now();
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![audience.to_owned()]),
                expiration_seconds: Some(self.lifetime.as_secs() as i64),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let what = || {
            format!(
                "a token for audience {audience} (TokenRequest for ServiceAccount {}/{})",
                self.namespace, self.service_account
            )
        };
        let issued = self
            .accounts
            .create_token_request(&self.service_account, &PostParams::default(), &request)
            .await
            .map_err(|error| Error::CredentialUnavailable {
                what: what(),
                message: format!(
                    "{error}; the controller's ClusterRole must allow create on serviceaccounts/token for its own ServiceAccount, and --service-account (POD_SERVICE_ACCOUNT) must name it"
                ),
            })?;
        let status = issued.status.unwrap_or_default();
        let (Some(token), Some(expires)) = (status.token, status.expiration_timestamp) else {
            return Err(Error::CredentialUnavailable {
                what: what(),
                message: "the TokenRequest answer holds no token or expiry; check the API server"
                    .into(),
            });
        };
        // The API server may shorten the life (--service-account-max-token-expiration).
        let granted = Duration::try_from(expires.0 - jiff::Timestamp::now())
            .unwrap_or(Duration::ZERO)
            .min(self.lifetime);
        Ok(Minted {
            jwt: Credential::value(token),
            refresh_at: asked + granted / 2,
        })
    }
}

/// Builds per-cluster connections with the process's settings.
#[derive(Clone)]
pub struct Connector {
    credentials: Credentials,
    resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
    timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Where one cluster's pods are and how to trust them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterAddress {
    pub name: String,
    pub namespace: String,
    /// The CA bundle the pods' certificates chain to; `None` trusts the
    /// system roots (ACME).
    pub ca_pem: Option<String>,
}

impl ClusterAddress {
    /// `https://<pod>.<headless>.<namespace>.svc:8200`.
    pub fn pod_url(&self, pod: &str) -> String {
        format!(
            "https://{pod}.{}.{}.svc:{API_PORT}",
            names::headless_service(&self.name),
            self.namespace
        )
    }
}

/// A login kept until a third of its lease is left.
#[derive(Clone)]
struct CachedLogin {
    token: Token,
    refresh_at: Instant,
}

/// The controller's login at one cluster: the audience its role accepts,
/// the token minted for it, and the OpenBao login.
pub struct ClusterLogin {
    credentials: Credentials,
    namespace: String,
    name: String,
    audience: String,
    /// The audience the role accepted in a cluster this one was restored
    /// from (`status.restoredFrom`): tried once to move the role here.
    previous: Mutex<Option<String>>,
    minted: Mutex<Option<Minted>>,
    login: Mutex<Option<CachedLogin>>,
}

impl std::fmt::Debug for ClusterLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLogin")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The controller's role name (`policies/jwt-roles.hcl`).
fn controller_role() -> String {
    jwt_role(Identity::Controller)
        .ok()
        .flatten()
        .map(|r| r.name)
        .unwrap_or_else(|| "openbao-operator".to_owned())
}

impl ClusterLogin {
    /// The login at the cluster `namespace/name` whose metadata.uid is `uid`.
    pub fn new(credentials: Credentials, namespace: &str, name: &str, uid: &str) -> Self {
        Self {
            credentials,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            audience: controller_audience(namespace, name, uid),
            previous: Mutex::new(None),
            minted: Mutex::new(None),
            login: Mutex::new(None),
        }
    }

    /// The audience of the tokens minted for this cluster.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// `target` carrying the controller's OpenBao token, logging in first
    /// when no fresh login is kept.
    pub async fn client(&self, target: Client) -> openbao_client::Result<Client> {
        let kept = lock(&self.login)
            .clone()
            .filter(|l| Instant::now() < l.refresh_at);
        if let Some(login) = kept {
            return Ok(target.with_token(login.token));
        }
        let auth = self.log_in(&target).await?;
        let lease = auth.lease_duration.max(Duration::from_secs(30));
        *lock(&self.login) = Some(CachedLogin {
            token: auth.token.clone(),
            refresh_at: Instant::now() + lease * 2 / 3,
        });
        Ok(target.with_token(auth.token))
    }

    /// The `bao` commands, run with an admin token, that write the
    /// controller's policy and role at this cluster again.
    pub fn identity_fix(&self) -> String {
        let policy = Identity::Controller.policy_name();
        let role = jwt_role(Identity::Controller).ok().flatten();
        let body = role.as_ref().map(|role| {
            let mut body = role.request_body(&SubjectVars {
                operator_namespace: &self.credentials.namespace,
                namespace: &self.namespace,
                cluster: &self.name,
            });
            body["bound_audiences"] = json!(self.audience);
            body
        });
        let arguments: Vec<String> = body
            .as_ref()
            .and_then(|b| b.as_object())
            .into_iter()
            .flatten()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => format!("{key}={text}"),
                serde_json::Value::Array(items) => format!(
                    "{key}={}",
                    items
                        .iter()
                        .filter_map(|i| i.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                other => format!("{key}={other}"),
            })
            .collect();
        format!(
            "with an admin token run `bao policy write {policy} policies/controller.hcl` and `bao write auth/{JWT_AUTH_MOUNT}/role/{role} {arguments}`; write the backup, restore and drill policies and roles from policies/ the same way",
            role = controller_role(),
            arguments = arguments.join(" "),
        )
    }

    /// When `error` (of the controller's login, or of a call made with
    /// `client`, its token) comes from the controller's own role, auth
    /// method or policy missing in the cluster's data, what is missing and
    /// the fix. A restore of a backup taken before the operator bootstrapped
    /// the cluster leaves them missing.
    pub async fn identity_missing(&self, client: Option<&Client>, error: &Error) -> Option<String> {
        const CAUSE: &str = "the cluster's data predates the operator's identities (a restore of an older backup), or someone deleted them";
        let role = controller_role();
        let missing = match error {
            Error::BadRequest { path, message }
                if path.ends_with("/login") && message.contains("could not be found") =>
            {
                format!("the JWT role auth/{JWT_AUTH_MOUNT}/role/{role} does not exist ({message})")
            }
            Error::NotFound { path, .. }
            | Error::PermissionDenied { path, .. }
            | Error::Unsupported { path, .. }
                if path.ends_with("/login") =>
            {
                format!("the JWT auth method auth/{JWT_AUTH_MOUNT}/ does not answer {path}")
            }
            Error::PermissionDenied { path, .. } => {
                // Our token is valid (the default policy lets it ask) yet
                // cannot do what policy openbao-operator grants.
                let asked = client?
                    .write("sys/capabilities-self", &json!({"paths": [path]}))
                    .await
                    .ok()
                    .flatten()?;
                let capabilities = asked["data"][path.as_str()]
                    .as_array()
                    .or_else(|| asked[path.as_str()].as_array())?;
                if !capabilities.iter().any(|c| c == "deny") {
                    return None;
                }
                format!(
                    "policy {} is missing or does not grant {path}",
                    Identity::Controller.policy_name()
                )
            }
            _ => return None,
        };
        Some(format!(
            "the controller cannot use its identity at this cluster: {missing}; {CAUSE}. To fix it, {}",
            self.identity_fix()
        ))
    }

    /// Drops the kept login (after OpenBao refused it).
    pub fn forget(&self) {
        *lock(&self.login) = None;
    }

    /// Remembers the audience of the cluster this one was restored from.
    pub fn set_previous_audience(&self, audience: Option<String>) {
        *lock(&self.previous) = audience;
    }

    /// The token minted for this cluster, minted again when half its life
    /// is gone.
    async fn jwt(&self) -> openbao_client::Result<Credential> {
        let kept = lock(&self.minted)
            .clone()
            .filter(|m| Instant::now() < m.refresh_at);
        if let Some(minted) = kept {
            return Ok(minted.jwt);
        }
        let minted = self.credentials.mint(&self.audience).await?;
        *lock(&self.minted) = Some(minted.clone());
        Ok(minted.jwt)
    }

    /// Logs in with the per-cluster token; when the role still expects the
    /// legacy audience, migrates it first.
    async fn log_in(&self, target: &Client) -> openbao_client::Result<AuthInfo> {
        let role = controller_role();
        match target.login(&Login::jwt(&role, self.jwt().await?)).await {
            Err(Error::BadRequest { path, message }) if message.contains(AUDIENCE_REFUSED) => {
                self.migrate(target, &role, path, message).await
            }
            other => other,
        }
    }

    /// Moves the role to this cluster's audience through a login with an
    /// earlier token (the audience of the cluster this one was restored
    /// from, else the legacy token), then logs in with the per-cluster token.
    async fn migrate(
        &self,
        target: &Client,
        role: &str,
        path: String,
        refused: String,
    ) -> openbao_client::Result<AuthInfo> {
        let previous = lock(&self.previous).clone();
        let restored = match &previous {
            Some(audience) => {
                let minted = self.credentials.mint(audience).await?;
                target.login(&Login::jwt(role, minted.jwt)).await.ok()
            }
            None => None,
        };
        let legacy_auth = match restored {
            Some(auth) => auth,
            None => {
                let legacy = Login::jwt(
                    role,
                    Credential::File(self.credentials.legacy_token_file.clone()),
                );
                target.login(&legacy).await.map_err(|legacy_error| {
                    Error::BadRequest {
                        path: path.clone(),
                        message: format!(
                            "{refused}. The role auth/{JWT_AUTH_MOUNT}/role/{role} accepts neither this cluster's audience {audience} nor the legacy {LEGACY_AUDIENCE} token ({legacy_error}){restored}; with an admin token run `bao write auth/{JWT_AUTH_MOUNT}/role/{role} role_type=jwt bound_audiences={audience}`",
                            audience = self.audience,
                            restored = previous
                                .as_deref()
                                .map(|p| format!(" nor {p}, the audience of the cluster this one was restored from"))
                                .unwrap_or_default(),
                        ),
                    }
                })?
            }
        };
        let role_path = format!("auth/{JWT_AUTH_MOUNT}/role/{role}");
        let moved = target
            .with_token(legacy_auth.token.clone())
            // The audience as a string, not a list: the policy matches it
            // against openbao-operator.openbao.org/* and refuses commas.
            // role_type again, or OpenBao turns the role into an oidc one.
            .write(
                &role_path,
                &json!({"role_type": "jwt", "bound_audiences": self.audience}),
            )
            .await;
        match moved {
            Ok(_) => {
                tracing::info!(
                    role = %role_path,
                    audience = %self.audience,
                    "moved the controller's JWT role from the shared {LEGACY_AUDIENCE} audience to this cluster's own"
                );
                target.login(&Login::jwt(role, self.jwt().await?)).await
            }
            Err(Error::PermissionDenied { message, .. }) => {
                // The cluster's openbao-operator policy predates this
                // release: keep working with the legacy login, and say how
                // to finish the move.
                tracing::warn!(
                    role = %role_path,
                    audience = %self.audience,
                    %message,
                    "the controller still logs in with the shared {LEGACY_AUDIENCE} token, which another cluster could replay here: update policy openbao-operator from policies/controller.hcl (it lets the controller move its own role), or set the role's bound_audiences to this audience with an admin token"
                );
                Ok(legacy_auth)
            }
            Err(error) => Err(error),
        }
    }
}

/// One cluster's connection: a shared client and the controller's login.
pub struct ClusterConnection {
    address: ClusterAddress,
    client: Client,
    login: ClusterLogin,
}

impl std::fmt::Debug for ClusterConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConnection")
            .field("cluster", &self.address.name)
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

impl Connector {
    pub fn new(credentials: Credentials, resolver: Option<Arc<dyn reqwest::dns::Resolve>>) -> Self {
        Self {
            credentials,
            resolver,
            timeout: Duration::from_secs(5),
        }
    }

    /// The controller's credentials (for a [`ClusterLogin`]).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// A new connection to the cluster with metadata.uid `uid` at
    /// `address`, with the controller's login for that cluster.
    pub async fn connect_cluster(
        &self,
        address: ClusterAddress,
        uid: &str,
    ) -> openbao_client::Result<Arc<ClusterConnection>> {
        let login = ClusterLogin::new(
            self.credentials.clone(),
            &address.namespace,
            &address.name,
            uid,
        );
        let timeout = self.timeout;
        let resolver = self.resolver.clone();
        let first_pod = address.pod_url(&format!("{}-0", names::statefulset(&address.name)));
        let ca_pem = address.ca_pem.clone();
        let client = tokio::task::spawn_blocking(move || {
            let mut config = ClientConfig::new(&first_pod)?
                .with_timeout(timeout)
                // The reconcile loop is the retry: one attempt per call
                // keeps a reconcile short when a pod is down.
                .with_retry(RetryPolicy::none());
            config.connect_timeout = Duration::from_secs(2);
            if let Some(pem) = ca_pem {
                config = config.with_ca_pem(pem);
            }
            if let Some(resolver) = resolver {
                config = config.with_dns_resolver(resolver);
            }
            Client::new(config)
        })
        .await
        .map_err(|e| Error::Config(format!("building the client failed: {e}")))??;
        Ok(Arc::new(ClusterConnection {
            address,
            client,
            login,
        }))
    }
}

impl ClusterConnection {
    pub fn address(&self) -> &ClusterAddress {
        &self.address
    }

    /// The audience the controller's tokens for this cluster carry.
    pub fn audience(&self) -> &str {
        self.login.audience()
    }

    /// An unauthenticated client for one pod (health, init), sharing the
    /// cluster's connection pool.
    pub fn pod(&self, pod: &str) -> openbao_client::Result<Client> {
        let url = self
            .address
            .pod_url(pod)
            .parse()
            .map_err(|e| Error::Config(format!("pod address of {pod}: {e}")))?;
        self.client.without_token().with_address(url)
    }

    /// A client for `pod` carrying the controller's token, logging in with
    /// the controller's JWT role when no fresh login is kept.
    pub async fn logged_in(&self, pod: &str) -> openbao_client::Result<Client> {
        self.login.client(self.pod(pod)?).await
    }

    /// Drops the kept login (after OpenBao refused it, or after a restore
    /// replaced the tokens and roles it was checked against).
    pub fn forget_login(&self) {
        self.login.forget();
    }

    /// See [`ClusterLogin::identity_missing`].
    pub async fn identity_missing(&self, client: Option<&Client>, error: &Error) -> Option<String> {
        self.login.identity_missing(client, error).await
    }

    /// See [`ClusterLogin::set_previous_audience`].
    pub fn set_previous_audience(&self, audience: Option<String>) {
        self.login.set_previous_audience(audience);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_never_shows_in_debug_output() {
        let minted = Minted {
            jwt: Credential::value("eyJhbGciOiJSUzI1NiJ9.secret.signature"),
            refresh_at: Instant::now(),
        };
        let shown = format!("{minted:?}");
        assert!(
            !shown.contains("eyJ") && !shown.contains("secret"),
            "{shown}"
        );
    }

    #[test]
    fn the_controller_logs_in_as_its_own_role_and_recognizes_the_audience_refusal() {
        assert_eq!(controller_role(), "openbao-operator");
        // OpenBao 2.7.2's words for a token of another audience (measured,
        // and asserted in tests/per_cluster_tokens.rs): only this refusal
        // starts a migration.
        let refusal = "error validating token: invalid audience (aud) claim: audience claim does not match any expected audience";
        assert!(refusal.contains(AUDIENCE_REFUSED));
        assert!(!"error validating token: invalid subject (sub) claim".contains(AUDIENCE_REFUSED));
    }
}
