//! How a Job reaches OpenBao: flags (each with an environment variable),
//! login with the Job's own identity, and discovery of the active node.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use openbao_client::{
    Client, ClientConfig, Credential, Health, HealthState, Leader, Login, SecretIdSource, Token,
};
use url::Url;

use crate::exit::{ExitCode, JobError};

/// How the Job logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthKind {
    /// A projected ServiceAccount token (audience `openbao-internal`) at a JWT mount: the in-cluster default.
    Jwt,
    /// AppRole with a secret_id from a file (optionally response-wrapped): for runs outside Kubernetes.
    Approle,
    /// A token read from a file: for debugging by hand.
    Token,
}

/// OpenBao connection flags shared by the Job binaries.
#[derive(Debug, Clone, clap::Args)]
pub struct OpenBaoArgs {
    /// OpenBao API addresses (comma-separated); any node works, the active one is found.
    #[arg(
        long = "openbao-address",
        env = "OPENBAO_ADDR",
        value_delimiter = ',',
        required = true
    )]
    pub addresses: Vec<Url>,
    /// PEM file of the CA that signed OpenBao's certificate (system roots when unset).
    #[arg(long, env = "OPENBAO_CACERT")]
    pub ca_file: Option<PathBuf>,
    /// Name to verify OpenBao's certificate against, when it differs from the address.
    #[arg(long, env = "OPENBAO_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
    #[arg(long, env = "OPENBAO_AUTH", value_enum, default_value = "jwt")]
    pub auth: AuthKind,
    /// JWT auth mount path.
    #[arg(long, env = "OPENBAO_JWT_MOUNT", default_value = "jwt")]
    pub jwt_mount: String,
    /// JWT role; defaults to this Job's own role.
    #[arg(long, env = "OPENBAO_JWT_ROLE")]
    pub jwt_role: Option<String>,
    /// File holding the projected ServiceAccount token (re-read at each login).
    #[arg(
        long,
        env = "OPENBAO_JWT_TOKEN_FILE",
        default_value = "/var/run/secrets/openbao/token"
    )]
    pub jwt_token_file: PathBuf,
    #[arg(long, env = "OPENBAO_APPROLE_MOUNT", default_value = "approle")]
    pub approle_mount: String,
    #[arg(long, env = "OPENBAO_APPROLE_ROLE_ID")]
    pub approle_role_id: Option<String>,
    /// File holding the secret_id (never pass it as a flag value).
    #[arg(long, env = "OPENBAO_APPROLE_SECRET_ID_FILE")]
    pub approle_secret_id_file: Option<PathBuf>,
    /// The secret_id file holds a response-wrapping token instead.
    #[arg(long, env = "OPENBAO_APPROLE_SECRET_ID_WRAPPED")]
    pub approle_secret_id_wrapped: bool,
    /// File holding a token, with `--auth token`.
    #[arg(long, env = "OPENBAO_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// How long to keep looking for an active node.
    #[arg(long, env = "OPENBAO_DISCOVERY_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub discovery_timeout: Duration,
    /// TLS is disabled on this OpenBao (development only): accept http://
    /// addresses, given or reported by a standby as the leader's. Without
    /// it every address must be https://, so no token is sent in plain text.
    #[arg(long, env = "OPENBAO_ALLOW_HTTP")]
    pub allow_http: bool,
}

/// Parses `90s`, `5m`, `2h`, `7d` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; use e.g. 90s, 5m, 2h or 7d"))?;
    let seconds = match unit {
        "" | "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        "d" => value * 86_400,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use s, m, h or d"
            ));
        }
    };
    Ok(Duration::from_secs(seconds))
}

/// The active node, logged in.
#[derive(Debug, Clone)]
pub struct ActiveNode {
    pub client: Client,
    pub address: Url,
    pub health: Health,
}

impl OpenBaoArgs {
    fn client_config(&self, address: &Url) -> Result<ClientConfig, JobError> {
        if address.scheme() == "http" && !self.allow_http {
            return Err(JobError::new(
                ExitCode::Config,
                format!(
                    "--openbao-address {address} is http://, so the Job's token would cross the network in plain text; use https://, or add --allow-http for a development server without TLS"
                ),
            ));
        }
        let mut config = ClientConfig::new(address.as_str())
            .map_err(|e| JobError::new(ExitCode::Config, format!("--openbao-address: {e}")))?
            .with_allow_http(self.allow_http);
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                JobError::new(
                    ExitCode::Config,
                    format!("cannot read --ca-file {}: {e}", path.display()),
                )
            })?;
            config = config.with_ca_pem(pem);
        }
        if let Some(name) = &self.tls_server_name {
            config = config.with_tls_server_name(name.clone());
        }
        Ok(config)
    }

    fn client(&self, address: &Url) -> Result<Client, JobError> {
        Client::new(self.client_config(address)?)
            .map_err(|e| JobError::new(ExitCode::Config, e.to_string()))
    }

    /// The login this Job performs; `None` with `--auth token`.
    pub fn login(&self, default_role: &str) -> Result<Option<Login>, JobError> {
        let missing = |flag: &str| {
            JobError::new(
                ExitCode::Config,
                format!("{flag} is required with --auth {:?}", self.auth).to_lowercase(),
            )
        };
        match self.auth {
            AuthKind::Jwt => Ok(Some(Login::Jwt {
                mount: self.jwt_mount.clone(),
                role: self
                    .jwt_role
                    .clone()
                    .unwrap_or_else(|| default_role.to_owned()),
                jwt: Credential::File(self.jwt_token_file.clone()),
            })),
            AuthKind::Approle => {
                let role_id = self
                    .approle_role_id
                    .clone()
                    .ok_or_else(|| missing("--approle-role-id"))?;
                let file = Credential::File(
                    self.approle_secret_id_file
                        .clone()
                        .ok_or_else(|| missing("--approle-secret-id-file"))?,
                );
                Ok(Some(Login::AppRole {
                    mount: self.approle_mount.clone(),
                    role_id,
                    secret_id: if self.approle_secret_id_wrapped {
                        SecretIdSource::Wrapped(file)
                    } else {
                        SecretIdSource::Plain(file)
                    },
                }))
            }
            AuthKind::Token => {
                self.token_file
                    .as_ref()
                    .ok_or_else(|| missing("--token-file"))?;
                Ok(None)
            }
        }
    }

    /// Finds the active node (asking each address, following the leader
    /// address a standby reports) and logs in there. Retries until
    /// `--discovery-timeout`, since elections take seconds.
    pub async fn connect(&self, default_role: &str) -> Result<ActiveNode, JobError> {
        let login = self.login(default_role)?;
        let (client, address, health) = self.find_active().await?;
        let client = match login {
            Some(login) => {
                let auth = client.login(&login).await.map_err(|e| {
                    JobError::from_openbao(
                        ExitCode::Auth,
                        &format!("login ({})", login.describe()),
                        e,
                    )
                })?;
                tracing::info!(login = %login.describe(), policies = ?auth.policies, "logged in to OpenBao");
                client.with_token(auth.token)
            }
            None => {
                let path = self
                    .token_file
                    .as_ref()
                    .ok_or_else(|| JobError::new(ExitCode::Config, "--token-file is required"))?;
                let token = std::fs::read_to_string(path).map_err(|e| {
                    JobError::new(
                        ExitCode::Config,
                        format!("cannot read --token-file {}: {e}", path.display()),
                    )
                })?;
                client.with_token(Token::new(token.trim().to_owned()))
            }
        };
        Ok(ActiveNode {
            client,
            address,
            health,
        })
    }

    async fn find_active(&self) -> Result<(Client, Url, Health), JobError> {
        let deadline = Instant::now() + self.discovery_timeout;
        let mut pause = Duration::from_millis(250);
        let mut last = String::from("no address answered");
        loop {
            for address in &self.addresses {
                match self.probe(address).await {
                    Ok(found) => return Ok(found),
                    Err(reason) => last = reason,
                }
            }
            if Instant::now() >= deadline {
                return Err(JobError::new(
                    ExitCode::LeaderDiscovery,
                    format!(
                        "no active OpenBao node found within {:?} (last: {last}); check that the cluster is unsealed and has quorum",
                        self.discovery_timeout
                    ),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(3));
        }
    }

    /// The active node as seen from `address`: itself, or the leader it names.
    async fn probe(&self, address: &Url) -> Result<(Client, Url, Health), String> {
        let client = self.client(address).map_err(|e| e.message)?;
        let leader = client
            .leader()
            .await
            .map_err(|e| format!("{address}: {e}"))?;
        let (client, address) = if leader.is_self {
            (client, address.clone())
        } else {
            let url = leader_target(&leader, address, self.allow_http)?;
            (self.client(&url).map_err(|e| e.message)?, url)
        };
        let health = client
            .health()
            .await
            .map_err(|e| format!("{address}: {e}"))?;
        if health.state != HealthState::Active {
            return Err(format!("{address} is {:?}, not active", health.state));
        }
        Ok((client, address, health))
    }
}

/// Where a standby at `asked` says the active node is. An `http://` leader
/// address is refused unless `allow_http` (the next call carries the Job's
/// token); the error says which flag allows it.
fn leader_target(leader: &Leader, asked: &Url, allow_http: bool) -> Result<Url, String> {
    match leader.leader_url(allow_http) {
        Ok(Some(url)) => Ok(url),
        Ok(None) => Err(format!("{asked}: no leader elected yet")),
        Err(e) if allow_http => Err(format!("{asked}: {e}")),
        Err(e) => Err(format!(
            "{asked}: {e} (a Job allows plain HTTP only with --allow-http)"
        )),
    }
}

impl JobError {
    /// The same error with another class.
    pub fn with_code(mut self, code: ExitCode) -> Self {
        self.code = code;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(address: &str) -> Leader {
        Leader {
            ha_enabled: true,
            leader_address: Some(address.into()),
            ..Leader::default()
        }
    }

    #[test]
    fn a_leader_address_must_be_https_unless_http_is_allowed() {
        let asked: Url = "https://openbao-1.openbao:8200".parse().unwrap();
        assert_eq!(
            leader_target(&leader("https://openbao-0.openbao:8200"), &asked, false),
            Ok("https://openbao-0.openbao:8200".parse().unwrap())
        );
        let refused =
            leader_target(&leader("http://openbao-0.openbao:8200"), &asked, false).unwrap_err();
        assert!(
            refused.contains("http://openbao-0.openbao:8200")
                && refused.contains("--allow-http")
                && refused.contains("https://"),
            "{refused}"
        );
        assert_eq!(
            leader_target(&leader("http://openbao-0.openbao:8200"), &asked, true),
            Ok("http://openbao-0.openbao:8200".parse().unwrap())
        );
        let none = leader_target(&leader(""), &asked, false).unwrap_err();
        assert!(none.contains("no leader elected yet"), "{none}");
    }

    fn args(extra: &[&str]) -> OpenBaoArgs {
        #[derive(clap::Parser, Debug)]
        struct Cli {
            #[command(flatten)]
            openbao: OpenBaoArgs,
        }
        let mut argv = vec!["job"];
        argv.extend_from_slice(extra);
        <Cli as clap::Parser>::try_parse_from(argv).unwrap().openbao
    }

    #[test]
    fn a_given_http_address_needs_allow_http() {
        let plain: Url = "http://127.0.0.1:8200".parse().unwrap();
        let strict = args(&["--openbao-address", "http://127.0.0.1:8200"]);
        assert!(!strict.allow_http);
        let err = strict.client(&plain).unwrap_err();
        assert_eq!(err.code, ExitCode::Config);
        assert!(err.message.contains("--allow-http"), "{}", err.message);
        let dev = args(&["--openbao-address", "http://127.0.0.1:8200", "--allow-http"]);
        assert!(dev.client(&plain).unwrap().allows_http());
        let tls = args(&["--openbao-address", "https://127.0.0.1:8200"]);
        let client = tls
            .client(&"https://127.0.0.1:8200".parse().unwrap())
            .unwrap();
        assert!(!client.allows_http());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(
            parse_duration("5 weeks")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("soon").unwrap_err().contains("90s"));
    }
}
