//! Shared by the host tests and the benchmark: builds the Go test host
//! (plugin-sdk's real catalog) into a cache outside the repository, runs it
//! with the built plugin, and prepares a real OpenBao for the plugin.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use test_support::BaoCluster;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_keystore-plugin");

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds `hosttest/` with `go build` into
/// `<cache>/keystore-hosttest-<hash of its sources>/hosttest`, once.
pub fn go_host() -> anyhow::Result<PathBuf> {
    let source = crate_dir().join("hosttest");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&source)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "go")
                || p.file_name()
                    .is_some_and(|n| n == "go.mod" || n == "go.sum")
        })
        .collect();
    names.sort();
    let mut hash = Sha256::new();
    for name in &names {
        hash.update(name.file_name().unwrap().as_encoded_bytes());
        hash.update(std::fs::read(name)?);
    }
    let digest = hash.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let dir = test_support::tools::cache_dir().join(format!("keystore-hosttest-{hex}"));
    let binary = dir.join("hosttest");
    if binary.is_file() {
        return Ok(binary);
    }
    std::fs::create_dir_all(&dir)?;
    let partial = dir.join(format!("hosttest.{}.partial", std::process::id()));
    let output = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&partial)
        .arg(".")
        .current_dir(&source)
        .output()
        .context("run `go build` for the plugin-sdk test host (is Go on PATH?)")?;
    anyhow::ensure!(
        output.status.success(),
        "go build of bins/keystore-plugin/hosttest failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, &binary)?;
    Ok(binary)
}

/// The Go host with the plugin loaded through plugin-sdk's catalog.
pub struct Host {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    pub ready: Value,
}

impl Host {
    /// Starts the host; `yaml` is the plugin's yamlConfiguration.
    pub async fn start(yaml: &str, scratch: &Path) -> anyhow::Result<Self> {
        let host = go_host()?;
        let config = scratch.join(format!("plugin-{}.yaml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&config, yaml)?;
        let mut child = Command::new(host)
            .arg("-plugin")
            .arg(PLUGIN)
            .arg("-proto")
            .arg(crate_dir().join("proto"))
            .arg("-config")
            .arg(&config)
            // The plugin's own debug logs; dependencies (h2, hyper) only
            // from warn, or every frame would be logged.
            .env(
                "OPENBAO_KEYSTORE_LOG",
                std::env::var("OPENBAO_KEYSTORE_LOG")
                    .unwrap_or_else(|_| "warn,keystore_plugin=debug,openbao_client=debug".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready: Value = serde_json::from_str(
            &tokio::time::timeout(Duration::from_secs(90), lines.next_line())
                .await
                .context("the host did not load the plugin in 90 s")??
                .context("the host exited before loading the plugin")?,
        )?;
        anyhow::ensure!(
            ready["ready"] == true,
            "the catalog refused the plugin: {ready}"
        );
        Ok(Self {
            child,
            stdin,
            lines,
            ready,
        })
    }

    pub async fn send(&mut self, command: Value) -> anyhow::Result<Value> {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.flush().await?;
        let answer = tokio::time::timeout(Duration::from_secs(300), self.lines.next_line())
            .await
            .context("no answer from the host in 300 s")??
            .context("the host exited")?;
        Ok(serde_json::from_str(&answer)?)
    }

    /// Calls an RPC; `method` is an SDK name (`GetKey`) or a full path.
    pub async fn call(&mut self, method: &str, request: Value) -> Value {
        self.send(json!({"method": method, "request": request}))
            .await
            .unwrap()
    }

    /// Calls an RPC that must succeed and returns its response.
    pub async fn ok(&mut self, method: &str, request: Value) -> Value {
        let answer = self.call(method, request).await;
        assert_eq!(answer["code"], "OK", "{method}: {answer}");
        answer["response"].clone()
    }

    /// Closes the catalog (Deinit, Shutdown) and waits for the host to exit.
    pub async fn close(mut self) -> anyhow::Result<Value> {
        let answer = self.send(json!({"method": "close"})).await?;
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await??;
        anyhow::ensure!(status.success(), "host exited with {status}");
        Ok(answer)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// A real single-node OpenBao with Transit, AppRole and the plugin's two
/// policies, and an AppRole role for each.
pub struct Bao {
    pub cluster: BaoCluster,
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    pub mgmt: AppRole,
    pub crypto: AppRole,
}

#[derive(Debug, Clone)]
pub struct AppRole {
    pub role: String,
    pub role_id: String,
    pub secret_id_file: PathBuf,
}

impl AppRole {
    /// The secret_id, as its file holds it.
    pub fn secret_id(&self) -> String {
        std::fs::read_to_string(&self.secret_id_file)
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Access data carrying this role's own credential (`roleId` and the
    /// `secretId` itself), as a tenant's stored HYOK access data would.
    pub fn own_credential(&self) -> Value {
        json!({
            "authMethod": "approle",
            "roleId": self.role_id,
            "secretId": self.secret_id(),
        })
    }

    /// The plugin YAML's `auth` making this role the plugin's own
    /// credential (its secret_id read from the file at each login).
    pub fn yaml_auth(&self) -> String {
        format!(
            "auth:\n  roleId: {}\n  secretIdFile: {}\n",
            self.role_id,
            self.secret_id_file.display()
        )
    }
}

/// Access data of a request that uses the plugin's own credential: it
/// carries none and names nothing the YAML does not.
pub fn plugin_credential() -> Value {
    json!({})
}

impl Bao {
    pub async fn start() -> anyhow::Result<Self> {
        let cluster = BaoCluster::start(test_support::BaoClusterOptions {
            nodes: 1,
            ..Default::default()
        })
        .await?;
        let dir = tempfile::Builder::new()
            .prefix("keystore-plugin-")
            .tempdir()?;
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, cluster.ca_pem().unwrap())?;
        cluster
            .expect_ok(
                0,
                Method::POST,
                "sys/mounts/transit",
                json!({"type": "transit"}),
            )
            .await?;
        cluster
            .expect_ok(
                0,
                Method::POST,
                "sys/auth/approle",
                json!({"type": "approle"}),
            )
            .await?;
        use lifecycle_types::identities::Identity;
        for identity in [Identity::KeystorePlugin, Identity::KeystorePluginCrypto] {
            cluster
                .expect_ok(
                    0,
                    Method::PUT,
                    &format!("sys/policies/acl/{}", identity.policy_name()),
                    json!({"policy": identity.policy_hcl()}),
                )
                .await?;
        }
        let mut bao = Self {
            mgmt: AppRole {
                role: String::new(),
                role_id: String::new(),
                secret_id_file: PathBuf::new(),
            },
            crypto: AppRole {
                role: String::new(),
                role_id: String::new(),
                secret_id_file: PathBuf::new(),
            },
            cluster,
            dir,
            ca_file,
        };
        bao.mgmt = bao
            .approle(
                "keystore",
                Identity::KeystorePlugin.policy_name(),
                "1h",
                "4h",
            )
            .await?;
        bao.crypto = bao
            .approle(
                "keystore-crypto",
                Identity::KeystorePluginCrypto.policy_name(),
                "1h",
                "4h",
            )
            .await?;
        Ok(bao)
    }

    /// Creates AppRole `role` with `policy`, writes a secret_id file.
    pub async fn approle(
        &self,
        role: &str,
        policy: &str,
        ttl: &str,
        max_ttl: &str,
    ) -> anyhow::Result<AppRole> {
        self.cluster
            .expect_ok(
                0,
                Method::POST,
                &format!("auth/approle/role/{role}"),
                json!({"token_policies": [policy], "token_ttl": ttl, "token_max_ttl": max_ttl,
                       "secret_id_num_uses": 0, "secret_id_ttl": "24h"}),
            )
            .await?;
        let role_id = self
            .cluster
            .expect_ok(
                0,
                Method::GET,
                &format!("auth/approle/role/{role}/role-id"),
                Value::Null,
            )
            .await?["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let secret_id = self.secret_id(role).await?;
        let secret_id_file = self.dir.path().join(format!("{role}.secret-id"));
        std::fs::write(&secret_id_file, format!("{secret_id}\n"))?;
        Ok(AppRole {
            role: role.to_owned(),
            role_id,
            secret_id_file,
        })
    }

    pub async fn secret_id(&self, role: &str) -> anyhow::Result<String> {
        Ok(self
            .cluster
            .expect_ok(
                0,
                Method::POST,
                &format!("auth/approle/role/{role}/secret-id"),
                json!({}),
            )
            .await?["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_owned())
    }

    /// A response-wrapped secret_id (`X-Vault-Wrap-TTL`), as a delivery
    /// system would hand it over.
    pub async fn wrapped_secret_id(&self, role: &str) -> anyhow::Result<String> {
        let answer: Value = self
            .cluster
            .http()
            .post(format!(
                "{}/v1/auth/approle/role/{role}/secret-id",
                self.cluster.addr(0)
            ))
            .header("X-Vault-Token", self.cluster.root_token())
            .header("X-Vault-Wrap-TTL", "300s")
            .json(&json!({}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(answer["wrap_info"]["token"]
            .as_str()
            .context("no wrap_info")?
            .to_owned())
    }

    /// The plugin YAML pointing at this server, without a credential of
    /// its own (requests bring theirs).
    pub fn yaml(&self) -> String {
        format!(
            "address: {}\ntls:\n  caCertFile: {}\nregion: eu-test\nregions: [eu-test, us-test]\n",
            self.cluster.addr(0),
            self.ca_file.display()
        )
    }

    /// The plugin YAML with `role` as the plugin's own credential.
    pub fn yaml_as(&self, role: &AppRole) -> String {
        format!("{}{}", self.yaml(), role.yaml_auth())
    }

    /// Logs in as `role` directly (for direct Transit calls).
    pub async fn login(&self, role: &AppRole) -> anyhow::Result<String> {
        let secret_id = role.secret_id();
        let (status, answer) = self
            .cluster
            .request(
                0,
                Method::POST,
                "auth/approle/login",
                Some(json!({"role_id": role.role_id, "secret_id": secret_id.trim()})),
            )
            .await?;
        anyhow::ensure!(status.is_success(), "login: {status}");
        Ok(answer["auth"]["client_token"].as_str().unwrap().to_owned())
    }
}

/// `config` of a request with these access data.
pub fn config(access: &Value) -> Value {
    json!({"values": access})
}

/// `parameters` of a request for `key_id`.
pub fn params(access: &Value, key_id: &str) -> Value {
    json!({"config": config(access), "keyId": key_id})
}
