//! Keeps a token alive: renews it before it expires, logs in again when
//! renewal is refused or the token is gone, and never shows it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::sync::Mutex;

use crate::auth::{AuthInfo, Login};
use crate::client::Client;
use crate::error::{Error, Result};

/// What to do with the held token before the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The token is fresh enough.
    Use,
    /// Past the renewal point and renewable: renew it.
    Renew,
    /// No token, expired, or no longer renewable: log in.
    Login,
}

/// The token currently held and what is known of its lifetime.
#[derive(Debug, Clone)]
pub struct Held {
    pub auth: AuthInfo,
    pub obtained: Instant,
    /// Renewal stopped extending the lease (the role's max TTL was reached).
    pub exhausted: bool,
}

/// Decides, without I/O, what to do at `now`. A token is renewed once two
/// thirds of its lease have passed; tokens with no lease never expire.
pub fn plan(held: Option<&Held>, now: Instant) -> Plan {
    let Some(held) = held else { return Plan::Login };
    let lease = held.auth.lease_duration;
    if lease.is_zero() {
        return Plan::Use;
    }
    let elapsed = now.saturating_duration_since(held.obtained);
    if elapsed >= lease {
        return Plan::Login;
    }
    if elapsed >= lease * 2 / 3 {
        return if held.auth.renewable && !held.exhausted {
            Plan::Renew
        } else {
            Plan::Login
        };
    }
    Plan::Use
}

/// Holds one identity's token for a client.
#[derive(Debug)]
pub struct TokenKeeper {
    client: Client,
    login: Login,
    held: Mutex<Option<Held>>,
    unwrapped_secret_id: Mutex<Option<SecretString>>,
}

impl TokenKeeper {
    /// Nothing is sent until the first call needs a token.
    pub fn new(client: Client, login: Login) -> Self {
        Self {
            client: client.without_token(),
            login,
            held: Mutex::new(None),
            unwrapped_secret_id: Mutex::new(None),
        }
    }

    /// A client carrying a valid token, renewing or logging in first if due.
    pub async fn client(&self) -> Result<Client> {
        let mut held = self.held.lock().await;
        match plan(held.as_ref(), Instant::now()) {
            Plan::Use => {}
            Plan::Renew => {
                let current = held.as_ref().map(|h| h.auth.clone());
                match self.renew(current).await {
                    Ok(next) => *held = Some(next),
                    Err(error) => {
                        tracing::info!(login = %self.login.describe(), %error, "token renewal refused; logging in again");
                        *held = Some(self.fresh_login().await?);
                    }
                }
            }
            Plan::Login => *held = Some(self.fresh_login().await?),
        }
        let auth = &held.as_ref().expect("a token is held after planning").auth;
        Ok(self.client.with_token(auth.token.clone()))
    }

    /// Runs `call` with a valid token. On permission denied it logs in once
    /// more and retries, because an expired or revoked token looks exactly
    /// like a missing capability.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match call(self.client().await?).await {
            Err(Error::PermissionDenied { .. }) => {
                self.invalidate().await;
                call(self.client().await?).await
            }
            other => other,
        }
    }

    /// Forgets the held token; the next call logs in.
    pub async fn invalidate(&self) {
        *self.held.lock().await = None;
    }

    /// Revokes the held token (on shutdown), if any.
    pub async fn revoke(&self) -> Result<()> {
        let held = self.held.lock().await.take();
        match held {
            Some(held) => self.client.with_token(held.auth.token).revoke_self().await,
            None => Ok(()),
        }
    }

    /// Policies and lease of the held token, for logs and status.
    pub async fn current(&self) -> Option<AuthInfo> {
        self.held.lock().await.as_ref().map(|h| h.auth.clone())
    }

    /// Refreshes in the background at each renewal point until dropped.
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let keeper = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(strong) = keeper.upgrade() else {
                    return;
                };
                let wait = match strong.client().await {
                    Ok(_) => strong.until_renewal().await,
                    Err(error) => {
                        tracing::warn!(login = %strong.login.describe(), %error, "cannot obtain an OpenBao token; retrying");
                        Duration::from_secs(5)
                    }
                };
                drop(strong);
                tokio::time::sleep(wait.max(Duration::from_millis(200))).await;
            }
        })
    }

    async fn until_renewal(&self) -> Duration {
        match self.held.lock().await.as_ref() {
            Some(held) if !held.auth.lease_duration.is_zero() => (held.obtained
                + held.auth.lease_duration * 2 / 3)
                .saturating_duration_since(Instant::now()),
            _ => Duration::from_secs(3600),
        }
    }

    async fn fresh_login(&self) -> Result<Held> {
        let auth = self
            .client
            .login_with_cache(&self.login, &self.unwrapped_secret_id)
            .await?;
        tracing::debug!(login = %self.login.describe(), policies = ?auth.policies, ttl = ?auth.lease_duration, "logged in to OpenBao");
        Ok(Held {
            auth,
            obtained: Instant::now(),
            exhausted: false,
        })
    }

    async fn renew(&self, current: Option<AuthInfo>) -> Result<Held> {
        let current = current.ok_or_else(|| Error::Config("nothing to renew".into()))?;
        let previous_lease = current.lease_duration;
        let renewed = self
            .client
            .with_token(current.token.clone())
            .renew_self(Some(previous_lease))
            .await?;
        // Renewal keeps the same token; a shorter lease means the max TTL is near.
        let exhausted = renewed.lease_duration < previous_lease;
        Ok(Held {
            auth: AuthInfo {
                token: current.token,
                ..renewed
            },
            obtained: Instant::now(),
            exhausted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Token;

    fn held(
        lease_secs: u64,
        age: Duration,
        renewable: bool,
        exhausted: bool,
        now: Instant,
    ) -> Held {
        Held {
            auth: AuthInfo {
                token: Token::new("t"),
                accessor: String::new(),
                policies: vec![],
                lease_duration: Duration::from_secs(lease_secs),
                renewable,
            },
            obtained: now - age,
            exhausted,
        }
    }

    #[test]
    fn plans_follow_the_lease() {
        let now = Instant::now() + Duration::from_secs(10_000);
        let s = Duration::from_secs;
        assert_eq!(plan(None, now), Plan::Login);
        assert_eq!(
            plan(Some(&held(60, s(10), true, false, now)), now),
            Plan::Use
        );
        assert_eq!(
            plan(Some(&held(60, s(41), true, false, now)), now),
            Plan::Renew
        );
        assert_eq!(
            plan(Some(&held(60, s(41), false, false, now)), now),
            Plan::Login
        );
        assert_eq!(
            plan(Some(&held(60, s(41), true, true, now)), now),
            Plan::Login
        );
        assert_eq!(
            plan(Some(&held(60, s(61), true, false, now)), now),
            Plan::Login
        );
        assert_eq!(
            plan(Some(&held(0, s(9_000), false, false, now)), now),
            Plan::Use
        );
    }
}
