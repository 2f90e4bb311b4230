//! Logging in (JWT, AppRole, Kubernetes, certificate) and token self-service.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::client::{Client, Replay, Token};
use crate::error::{Error, Result};
use crate::sys::required;

/// Where a credential comes from. Files are re-read at every login, so a
/// rotated projected ServiceAccount token is picked up.
#[derive(Clone)]
pub enum Credential {
    Value(SecretString),
    File(PathBuf),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Value(_) => f.write_str("Value(<redacted>)"),
            Credential::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl Credential {
    /// A credential held in memory, e.g. a token just minted through the
    /// Kubernetes TokenRequest API, so it never touches the disk.
    pub fn value(value: impl Into<String>) -> Self {
        Credential::Value(SecretString::from(value.into()))
    }

    async fn load(&self, what: &'static str) -> Result<SecretString> {
        match self {
            Credential::Value(value) => Ok(value.clone()),
            Credential::File(path) => {
                let text = tokio::fs::read_to_string(path).await.map_err(|source| {
                    Error::CredentialFile {
                        what,
                        path: path.display().to_string(),
                        source,
                    }
                })?;
                // Secret files written by tools often end in a newline.
                Ok(SecretString::from(text.trim().to_owned()))
            }
        }
    }
}

/// Where an AppRole secret_id comes from.
#[derive(Clone, Debug)]
pub enum SecretIdSource {
    /// The secret_id itself (value or file).
    Plain(Credential),
    /// A response-wrapped secret_id: unwrapped once at the first login, then
    /// kept in memory for later logins (a wrapping token works only once).
    Wrapped(Credential),
}

/// How to obtain a token.
#[derive(Clone, Debug)]
pub enum Login {
    /// JWT auth, e.g. a projected ServiceAccount token with audience
    /// `openbao-internal`.
    Jwt {
        mount: String,
        role: String,
        jwt: Credential,
    },
    /// Kubernetes auth (TokenReview-based).
    Kubernetes {
        mount: String,
        role: String,
        jwt: Credential,
    },
    AppRole {
        mount: String,
        role_id: String,
        secret_id: SecretIdSource,
    },
    /// Certificate auth; the client certificate is the one configured in
    /// [`crate::ClientConfig::client_identity_pem`].
    Cert { mount: String, name: Option<String> },
}

impl Login {
    /// JWT login at the default mount `jwt`.
    pub fn jwt(role: impl Into<String>, jwt: Credential) -> Self {
        Login::Jwt {
            mount: "jwt".into(),
            role: role.into(),
            jwt,
        }
    }

    /// A short description for logs: method, mount and role, never secrets.
    pub fn describe(&self) -> String {
        match self {
            Login::Jwt { mount, role, .. } => format!("jwt at auth/{mount} as role {role}"),
            Login::Kubernetes { mount, role, .. } => {
                format!("kubernetes at auth/{mount} as role {role}")
            }
            Login::AppRole { mount, role_id, .. } => {
                format!("approle at auth/{mount} with role_id {role_id}")
            }
            Login::Cert { mount, name } => {
                format!(
                    "cert at auth/{mount}{}",
                    name.as_ref()
                        .map(|n| format!(" as {n}"))
                        .unwrap_or_default()
                )
            }
        }
    }
}

/// A successful login or renewal. Its `Debug` never shows the token.
#[derive(Clone)]
pub struct AuthInfo {
    pub token: Token,
    pub accessor: String,
    pub policies: Vec<String>,
    pub lease_duration: Duration,
    pub renewable: bool,
}

impl fmt::Debug for AuthInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthInfo")
            .field("accessor", &self.accessor)
            .field("policies", &self.policies)
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AuthBody {
    auth: Option<RawAuth>,
}

#[derive(Deserialize)]
struct RawAuth {
    client_token: String,
    #[serde(default)]
    accessor: String,
    #[serde(default)]
    policies: Vec<String>,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

/// `auth/token/lookup-self`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TokenInfo {
    #[serde(default)]
    pub accessor: String,
    #[serde(default)]
    pub policies: Vec<String>,
    /// Seconds left.
    #[serde(default)]
    pub ttl: u64,
    #[serde(default)]
    pub creation_ttl: u64,
    #[serde(default)]
    pub renewable: bool,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub display_name: String,
}

fn auth_info(path: &str, body: Option<AuthBody>) -> Result<AuthInfo> {
    let raw = body.and_then(|b| b.auth).ok_or_else(|| Error::Decode {
        path: path.to_owned(),
        message: "no auth block in the answer".to_owned(),
    })?;
    Ok(AuthInfo {
        token: Token::new(raw.client_token),
        accessor: raw.accessor,
        policies: raw.policies,
        lease_duration: Duration::from_secs(raw.lease_duration),
        renewable: raw.renewable,
    })
}

impl Client {
    /// Logs in and returns the new token; `self`'s token is not used.
    /// `unwrapped_secret_id` caches an unwrapped AppRole secret_id across calls.
    pub(crate) async fn login_with_cache(
        &self,
        login: &Login,
        unwrapped_secret_id: &tokio::sync::Mutex<Option<SecretString>>,
    ) -> Result<AuthInfo> {
        let anonymous = self.without_token();
        let (path, body) = match login {
            Login::Jwt { mount, role, jwt } => (
                format!("auth/{mount}/login"),
                json!({"role": role, "jwt": jwt.load("JWT").await?.expose_secret()}),
            ),
            Login::Kubernetes { mount, role, jwt } => (
                format!("auth/{mount}/login"),
                json!({"role": role, "jwt": jwt.load("ServiceAccount token").await?.expose_secret()}),
            ),
            Login::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let secret = match secret_id {
                    SecretIdSource::Plain(credential) => credential.load("secret_id").await?,
                    SecretIdSource::Wrapped(wrapping) => {
                        let mut cached = unwrapped_secret_id.lock().await;
                        match cached.as_ref() {
                            Some(secret) => secret.clone(),
                            None => {
                                let wrapping = wrapping.load("wrapping token").await?;
                                let secret = anonymous.unwrap_secret_id(&wrapping).await?;
                                *cached = Some(secret.clone());
                                secret
                            }
                        }
                    }
                };
                (
                    format!("auth/{mount}/login"),
                    json!({"role_id": role_id, "secret_id": secret.expose_secret()}),
                )
            }
            Login::Cert { mount, name } => (
                format!("auth/{mount}/login"),
                match name {
                    Some(name) => json!({ "name": name }),
                    None => json!({}),
                },
            ),
        };
        // Login bodies carry credentials: sent once, never logged, never retried
        // blindly (a one-use secret_id would be burnt by a retry).
        let timeout = self.timeout();
        let response = anonymous
            .send(&path, Replay::IfNotApplied, || {
                Ok(anonymous
                    .request(Method::POST, &path)?
                    .timeout(timeout)
                    .json(&body))
            })
            .await?;
        auth_info(&path, crate::client::decode(&path, response).await?)
    }

    /// Logs in once (no secret_id cache).
    pub async fn login(&self, login: &Login) -> Result<AuthInfo> {
        self.login_with_cache(login, &tokio::sync::Mutex::new(None))
            .await
    }

    /// Unwraps a response-wrapped AppRole secret_id.
    async fn unwrap_secret_id(&self, wrapping_token: &SecretString) -> Result<SecretString> {
        let path = "sys/wrapping/unwrap";
        let client = self.with_token(Token::new(wrapping_token.expose_secret().to_owned()));
        let answer: serde_json::Value = required(
            client
                .call_json(Method::POST, path, Some(&json!({})))
                .await?,
            path,
        )?;
        answer["data"]["secret_id"]
            .as_str()
            .map(|s| SecretString::from(s.to_owned()))
            .ok_or_else(|| Error::Decode {
                path: path.to_owned(),
                message: "the wrapped response holds no secret_id; wrap the output of auth/<mount>/role/<role>/secret-id".into(),
            })
    }

    pub async fn lookup_self(&self) -> Result<TokenInfo> {
        let path = "auth/token/lookup-self";
        let answer: serde_json::Value =
            required(self.call_json(Method::GET, path, None).await?, path)?;
        serde_json::from_value(answer["data"].clone()).map_err(|e| Error::Decode {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Renews this client's token; the server may grant less than asked
    /// (capped by the role's max TTL).
    pub async fn renew_self(&self, increment: Option<Duration>) -> Result<AuthInfo> {
        let path = "auth/token/renew-self";
        let body = match increment {
            Some(increment) => json!({ "increment": format!("{}s", increment.as_secs()) }),
            None => json!({}),
        };
        auth_info(path, self.call_json(Method::POST, path, Some(&body)).await?)
    }

    pub async fn revoke_self(&self) -> Result<()> {
        let path = "auth/token/revoke-self";
        self.call_json::<serde_json::Value>(Method::POST, path, Some(&json!({})))
            .await
            .map(drop)
    }
}
