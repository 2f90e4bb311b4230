//! The StatefulSet that runs OpenBao.
//!
//! Choices, and why:
//! - **One bootstrap pod until initialized.** Before `status.initialized`
//!   the set has one replica, and only that template mounts and loads the
//!   self-init file. Afterwards the template has no self-init at all, so a
//!   replacement pod with an empty volume joins through `retry_join`
//!   instead of founding a second cluster.
//! - **`OnDelete` updates.** A template change (image, configuration hash,
//!   certificates, resources, the end of bootstrap) restarts nothing by
//!   itself; the controller's rollout gate deletes pods one at a time,
//!   standbys first and the stepped-down leader last. The StatefulSet
//!   controller only recreates what the gate deleted, from the new template.
//! - **Probes.** `sys/health` answers 200 active, 429 standby, 503 sealed,
//!   501 uninitialized. Readiness (`standbyok=true`, sealed and
//!   uninitialized explicitly 503) means "initialized and unsealed": the
//!   pod may serve and may be joined. Startup and liveness map sealed and
//!   uninitialized to 200, so they only ask "does the process answer": a
//!   restart cannot unseal a pod or initialize a cluster, and a
//!   transit-sealed pod that restarts while its Transit server is down
//!   exits at once. The startup probe tolerates minutes of connection
//!   refused: self-init keeps the listener closed until it has finished.
//!   Health is not membership (a removed node still answers 429); the
//!   controller judges membership from the Raft configuration.
//! - **Own ServiceAccount, explicit token.** The pods need their own token
//!   for Kubernetes service registration and auto-join (see
//!   [`super::rbac`]); the controller's token is never mounted here. The
//!   automatic mount is off and the pod spells out the same projected
//!   volume at the standard path (token, the API server's CA, the
//!   namespace), so what the pod holds is visible in the template and the
//!   token lives an hour: 3600 s rather than the automatic 3607 s, which an
//!   API server with `--service-account-extend-token-expiration` stretches
//!   to a year. The kubelet replaces the file well before expiry; OpenBao's
//!   service registration re-reads it when the API server refuses the old one.
//! - **Spread by default.** Without `spec.scheduling.affinity` the pods
//!   prefer distinct nodes, so one node failure costs at most one voter.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use lifecycle_types::OpenBaoCluster;
use lifecycle_types::cluster::{AuditType, DeletionPolicy, SecretSource, TlsMode, UnsealType};
use lifecycle_types::{labels, names};
use serde_json::{Value, json};

use super::config::{GCP_CREDENTIALS_FILE, SEAL_KEY_FILE, TLS_CA, TRANSIT_TOKEN_FILE};
use super::self_init::secret_env_var;
use super::{
    API_PORT, CLUSTER_PORT, Inputs, RenderError, common_labels, from_json, metadata_json,
    name_and_namespace, owned_metadata, selector_labels,
};

/// UID and GID of the `openbao` user in the official image.
pub const OPENBAO_UID: i64 = 100;
pub const OPENBAO_GID: i64 = 1000;

/// Secret volumes are readable by the owner and the pod's fsGroup only.
const SECRET_MODE: i32 = 0o440;

/// Where in-cluster Kubernetes clients (OpenBao's service registration,
/// go-discover's auto-join, the JWT auth's issuer CA) look for the token,
/// `ca.crt` and `namespace`.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Lifetime of the pods' Kubernetes API token.
pub const SERVICE_ACCOUNT_TOKEN_SECONDS: i64 = 3600;

/// Query of the readiness probe: 200 for active and standby, 503 otherwise.
pub const READINESS_QUERY: &str = "standbyok=true&sealedcode=503&uninitcode=503";
/// Query of the startup and liveness probes: 200 whenever the process answers.
pub const LIVENESS_QUERY: &str = "standbyok=true&sealedcode=200&uninitcode=200";

/// Replicas the StatefulSet runs now: one bootstrap pod until initialized
/// (and, with `spec.restoreFrom`, until the backup is restored).
pub fn replicas(cluster: &OpenBaoCluster, inputs: &Inputs) -> i32 {
    // A cluster restored from a backup grows once the backup is in.
    if inputs.initialized && !lifecycle_types::restore::restore_from_pending(cluster) {
        cluster.spec.replicas
    } else {
        1
    }
}

/// The StatefulSet for the cluster's current stage.
pub fn statefulset(cluster: &OpenBaoCluster, inputs: &Inputs) -> Result<StatefulSet, RenderError> {
    let (name, namespace) = name_and_namespace(cluster)?;
    let spec = &cluster.spec;
    let paths = &inputs.paths;
    let bootstrap = !inputs.initialized && spec.self_init.enabled;
    let field = |path: &str| json!({"fieldRef": {"apiVersion": "v1", "fieldPath": path}});
    let pod_host = format!(
        "$(POD_NAME).{}.{namespace}.svc",
        names::headless_service(name)
    );

    let mut env = vec![
        json!({"name": "POD_NAME", "valueFrom": field("metadata.name")}),
        json!({"name": "BAO_K8S_POD_NAME", "valueFrom": field("metadata.name")}),
        json!({"name": "BAO_K8S_NAMESPACE", "valueFrom": field("metadata.namespace")}),
        // Stable Raft ids: `raft list-peers` names pods, and status maps
        // autopilot's servers to pods by this id.
        json!({"name": "BAO_RAFT_NODE_ID", "value": "$(POD_NAME)"}),
        json!({"name": "BAO_API_ADDR", "value": format!("https://{pod_host}:{API_PORT}")}),
        json!({"name": "BAO_CLUSTER_ADDR", "value": format!("https://{pod_host}:{CLUSTER_PORT}")}),
    ];
    let mut volumes = vec![json!({"name": "config", "configMap": {
        "name": names::config_map(name),
        "items": [{"key": names::CONFIG_KEY, "path": names::CONFIG_KEY}],
    }})];
    let mut mounts = vec![
        json!({"name": "config", "mountPath": paths.config_dir, "readOnly": true}),
        json!({"name": names::DATA_VOLUME, "mountPath": paths.data_dir}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    volumes.push(json!({"name": "tmp", "emptyDir": {}}));
    // What the automatic mount would hold, spelled out (see the module docs).
    volumes.push(json!({"name": "kube-api-access", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": SERVICE_ACCOUNT_TOKEN_SECONDS}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}));
    mounts.push(
        json!({"name": "kube-api-access", "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": true}),
    );

    if let Some(secret) = super::secrets::tls_files_secret(cluster) {
        volumes.push(
            json!({"name": "tls", "secret": {"secretName": secret, "defaultMode": SECRET_MODE}}),
        );
        mounts.push(json!({"name": "tls", "mountPath": paths.tls_dir, "readOnly": true}));
    }

    let seal = seal_access(cluster, paths);
    env.extend(seal.env);
    volumes.extend(seal.volumes);
    mounts.extend(seal.mounts);
    let file_audit = spec.configuration.audit.iter().any(|a| {
        a.type_ == AuditType::File
            && a.file
                .as_ref()
                .is_some_and(|f| f.file_path.starts_with("/openbao/audit/"))
    });
    if file_audit {
        volumes.push(json!({"name": "audit", "emptyDir": {}}));
        mounts.push(json!({"name": "audit", "mountPath": paths.audit_dir}));
    }

    let mut args = vec![
        "server".to_owned(),
        format!("-config={}/{}", paths.config_dir, names::CONFIG_KEY),
    ];
    if bootstrap {
        args.push(format!(
            "-config={}/{}",
            paths.self_init_dir,
            names::SELF_INIT_KEY
        ));
        volumes.push(json!({"name": "self-init", "configMap": {
            "name": names::self_init_config_map(name),
            "items": [{"key": names::SELF_INIT_KEY, "path": names::SELF_INIT_KEY}],
        }}));
        mounts
            .push(json!({"name": "self-init", "mountPath": paths.self_init_dir, "readOnly": true}));
        // Secret-backed request fields exist in the bootstrap pod only.
        let mut file_secrets = BTreeMap::new();
        for request in &spec.self_init.requests {
            for from in &request.data_from {
                let reference = &from.secret_key_ref;
                match from.source {
                    SecretSource::Env => env.push(secret_key_env(
                        &secret_env_var(&request.name, &from.field),
                        &reference.name,
                        &reference.key,
                        false,
                    )),
                    SecretSource::File => {
                        file_secrets.insert(reference.name.clone(), ());
                    }
                }
            }
        }
        for (index, secret) in file_secrets.keys().enumerate() {
            let volume = format!("self-init-secret-{index}");
            volumes.push(json!({"name": volume, "secret": {"secretName": secret, "defaultMode": SECRET_MODE}}));
            mounts.push(json!({"name": volume, "readOnly": true,
                "mountPath": format!("{}/{secret}", paths.self_init_secrets_dir)}));
        }
    }

    let probe = |query: &str, period: i32, failures: i32| {
        json!({
            "httpGet": {"scheme": "HTTPS", "port": "api", "path": format!("/v1/sys/health?{query}")},
            "periodSeconds": period,
            "timeoutSeconds": 5,
            "failureThreshold": failures,
        })
    };
    let mut container = json!({
        "name": names::CONTAINER,
        "image": spec.image_at(lifecycle_types::upgrade::template_version(cluster)),
        // The image's entrypoint script would add its own -config folder
        // and dev flags; run the server directly.
        "command": ["bao"],
        "args": args,
        "env": env,
        "ports": [
            {"name": "api", "containerPort": API_PORT, "protocol": "TCP"},
            {"name": "cluster", "containerPort": CLUSTER_PORT, "protocol": "TCP"},
        ],
        // Up to 10 minutes of connection refused on first start.
        "startupProbe": probe(LIVENESS_QUERY, 5, 120),
        "readinessProbe": probe(READINESS_QUERY, 5, 2),
        "livenessProbe": probe(LIVENESS_QUERY, 10, 6),
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    });
    if let Some(resources) = &spec.resources {
        container["resources"] =
            serde_json::to_value(resources).map_err(|e| RenderError::Build {
                kind: "StatefulSet",
                message: e.to_string(),
            })?;
    }

    // Operator-owned keys win over the user's extra metadata.
    let mut pod_labels = spec.pod_metadata.labels.clone();
    if let Some(identity) = &spec.unseal.workload_identity {
        pod_labels.extend(identity.pod_labels.clone());
    }
    pod_labels.extend(common_labels(name));
    let mut annotations = spec.pod_metadata.annotations.clone();
    annotations.insert(labels::CONFIG_HASH.to_owned(), inputs.config_hash.clone());
    if spec.tls.mode != TlsMode::Acme {
        annotations.insert(labels::TLS_HASH.to_owned(), inputs.tls_hash.clone());
    }
    if bootstrap {
        annotations.insert(labels::BOOTSTRAP.to_owned(), "true".to_owned());
    }

    let scheduling = &spec.scheduling;
    let affinity = match &scheduling.affinity {
        Some(affinity) => serde_json::to_value(affinity).map_err(|e| RenderError::Build {
            kind: "StatefulSet",
            message: e.to_string(),
        })?,
        None => json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": selector_labels(name)},
            },
        }]}}),
    };
    let mut pod_spec = json!({
        "serviceAccountName": names::service_account(name),
        // The projected `kube-api-access` volume replaces the automatic mount.
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": OPENBAO_UID,
            "runAsGroup": OPENBAO_GID,
            "fsGroup": OPENBAO_GID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "affinity": affinity,
        "containers": [container],
        "volumes": volumes,
    });
    if !scheduling.tolerations.is_empty() {
        pod_spec["tolerations"] = to_json(&scheduling.tolerations)?;
    }
    if !scheduling.node_selector.is_empty() {
        pod_spec["nodeSelector"] = to_json(&scheduling.node_selector)?;
    }
    if !scheduling.topology_spread_constraints.is_empty() {
        pod_spec["topologySpreadConstraints"] = to_json(&scheduling.topology_spread_constraints)?;
    }
    if let Some(class) = &scheduling.priority_class_name {
        pod_spec["priorityClassName"] = json!(class);
    }

    let mut claim = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": names::DATA_VOLUME, "labels": selector_labels(name)},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": spec.storage.size.0}},
        },
    });
    if let Some(class) = &spec.storage.storage_class_name {
        claim["spec"]["storageClassName"] = json!(class);
    }

    from_json(
        "StatefulSet",
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": metadata_json(&owned_metadata(cluster, names::statefulset(name))?)?,
            "spec": {
                "serviceName": names::headless_service(name),
                "replicas": replicas(cluster, inputs),
                // Scaling adds every new pod at once; none of them carries
                // self-init, they all join through retry_join.
                "podManagementPolicy": "Parallel",
                "updateStrategy": {"type": "OnDelete"},
                // Deleting the cluster keeps the data unless the deletion
                // policy says otherwise. A scaled-away pod's data is always
                // dropped: its Raft peer was removed, and a later pod of the
                // same ordinal must join fresh rather than as a stale peer.
                "persistentVolumeClaimRetentionPolicy": {
                    "whenDeleted": if spec.deletion_policy == DeletionPolicy::Retain { "Retain" } else { "Delete" },
                    "whenScaled": "Delete",
                },
                "selector": {"matchLabels": selector_labels(name)},
                "template": {
                    "metadata": {"labels": pod_labels, "annotations": annotations},
                    "spec": pod_spec,
                },
                "volumeClaimTemplates": [claim],
            },
        }),
    )
}

/// What a pod running OpenBao needs to reach its seal: the key or token
/// files, CA, credentials and the KMS plugin folder. The StatefulSet and a
/// restore drill's throwaway node share it.
pub(super) struct SealAccess {
    pub env: Vec<Value>,
    pub volumes: Vec<Value>,
    pub mounts: Vec<Value>,
}

pub(super) fn seal_access(cluster: &OpenBaoCluster, paths: &super::Paths) -> SealAccess {
    let (mut env, mut volumes, mut mounts) = (Vec::new(), Vec::new(), Vec::new());
    let unseal = &cluster.spec.unseal;
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    match unseal.type_ {
        UnsealType::Static => {
            // The raw key as a file: no encoding, so no trailing newline.
            volumes.push(json!({"name": "seal", "secret": {
                "secretName": names::unseal_secret(name),
                "defaultMode": SECRET_MODE,
                "items": [{"key": names::UNSEAL_KEY, "path": SEAL_KEY_FILE}],
            }}));
            mounts.push(json!({"name": "seal", "mountPath": paths.seal_dir, "readOnly": true}));
        }
        UnsealType::Transit => {
            if let Some(transit) = &unseal.transit {
                volumes.push(json!({"name": "seal", "secret": {
                    "secretName": transit.token_secret_ref,
                    "defaultMode": SECRET_MODE,
                    "items": [{"key": "token", "path": TRANSIT_TOKEN_FILE}],
                }}));
                mounts.push(json!({"name": "seal", "mountPath": paths.seal_dir, "readOnly": true}));
                if let Some(ca) = &transit.ca_secret_ref {
                    volumes.push(json!({"name": "seal-ca", "secret": {
                        "secretName": ca,
                        "defaultMode": SECRET_MODE,
                        "items": [{"key": TLS_CA, "path": TLS_CA}],
                    }}));
                    mounts.push(json!({"name": "seal-ca", "mountPath": paths.seal_ca_dir, "readOnly": true}));
                }
            }
        }
        UnsealType::Awskms => {
            if let Some(secret) = &unseal.credentials_secret_ref {
                env.push(secret_key_env(
                    "AWS_ACCESS_KEY_ID",
                    secret,
                    "AWS_ACCESS_KEY_ID",
                    false,
                ));
                env.push(secret_key_env(
                    "AWS_SECRET_ACCESS_KEY",
                    secret,
                    "AWS_SECRET_ACCESS_KEY",
                    false,
                ));
                env.push(secret_key_env(
                    "AWS_SESSION_TOKEN",
                    secret,
                    "AWS_SESSION_TOKEN",
                    true,
                ));
            }
        }
        UnsealType::Gcpckms => {
            if let Some(secret) = &unseal.credentials_secret_ref {
                volumes.push(json!({"name": "seal-credentials", "secret": {
                    "secretName": secret,
                    "defaultMode": SECRET_MODE,
                    "items": [{"key": GCP_CREDENTIALS_FILE, "path": GCP_CREDENTIALS_FILE}],
                }}));
                mounts.push(json!({"name": "seal-credentials", "mountPath": paths.seal_credentials_dir, "readOnly": true}));
            }
        }
        UnsealType::Azurekeyvault => {
            if let Some(secret) = &unseal.credentials_secret_ref {
                env.push(secret_key_env(
                    "AZURE_CLIENT_ID",
                    secret,
                    "AZURE_CLIENT_ID",
                    false,
                ));
                env.push(secret_key_env(
                    "AZURE_CLIENT_SECRET",
                    secret,
                    "AZURE_CLIENT_SECRET",
                    false,
                ));
            }
        }
    }
    if unseal.kms_plugin.is_some() {
        volumes.push(json!({"name": "plugins", "emptyDir": {}}));
        mounts.push(json!({"name": "plugins", "mountPath": paths.plugin_dir}));
    }
    SealAccess {
        env,
        volumes,
        mounts,
    }
}

fn secret_key_env(env_name: &str, secret: &str, key: &str, optional: bool) -> Value {
    json!({"name": env_name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": optional}}})
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, RenderError> {
    serde_json::to_value(value).map_err(|e| RenderError::Build {
        kind: "StatefulSet",
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    fn args(set: &StatefulSet) -> Vec<String> {
        let pod = set.spec.template.spec.as_ref().unwrap();
        pod.containers[0].args.clone().unwrap()
    }

    #[test]
    fn development_golden() {
        let mut inputs = fixtures::inputs();
        inputs.initialized = true;
        let set = statefulset(&fixtures::development(), &inputs).unwrap();
        insta::assert_yaml_snapshot!("statefulset_development", set);
    }

    #[test]
    fn full_bootstrap_golden() {
        let set = statefulset(&fixtures::full(), &fixtures::inputs()).unwrap();
        insta::assert_yaml_snapshot!("statefulset_full_bootstrap", set);
    }

    #[test]
    fn only_the_bootstrap_template_loads_self_init() {
        let cluster = fixtures::hardened();
        let mut inputs = fixtures::inputs();
        let bootstrap = statefulset(&cluster, &inputs).unwrap();
        assert_eq!(bootstrap.spec.replicas, Some(1));
        assert!(
            args(&bootstrap)
                .iter()
                .any(|a| a.ends_with("self-init.hcl"))
        );
        let text = serde_json::to_string(&bootstrap).unwrap();
        assert!(text.contains("BAO_SELF_INIT_ADMIN_USER_PASSWORD"));

        inputs.initialized = true;
        let steady = statefulset(&cluster, &inputs).unwrap();
        assert_eq!(steady.spec.replicas, Some(3));
        assert!(!args(&steady).iter().any(|a| a.contains("self-init")));
        let text = serde_json::to_string(&steady).unwrap();
        assert!(
            !text.contains("self-init"),
            "no trace of self-init after bootstrap"
        );
        assert!(
            !text.contains("BAO_SELF_INIT"),
            "no request secrets after bootstrap"
        );
    }

    /// No automatic token; one explicit projected volume at the standard
    /// path with an hour-long token for the API server's default audience,
    /// the cluster CA and the namespace, in every stage of the cluster.
    #[test]
    fn pods_get_an_explicit_short_lived_api_token_at_the_standard_path() {
        assert!(
            crate::render::KUBE_CA_FILE.starts_with(&format!("{SERVICE_ACCOUNT_DIR}/")),
            "the CA the config names is in the projected volume"
        );
        for (cluster, initialized) in [
            (fixtures::development(), false),
            (fixtures::development(), true),
            (fixtures::full(), false),
        ] {
            let mut inputs = fixtures::inputs();
            inputs.initialized = initialized;
            let set = statefulset(&cluster, &inputs).unwrap();
            let pod = set.spec.template.spec.unwrap();
            assert_eq!(pod.automount_service_account_token, Some(false));
            let name = cluster.metadata.name.as_deref().unwrap();
            assert_eq!(
                pod.service_account_name,
                Some(names::service_account(name)),
                "the cluster's own account, never the controller's"
            );
            let mounts: Vec<_> = pod.containers[0]
                .volume_mounts
                .iter()
                .flatten()
                .filter(|m| m.mount_path == SERVICE_ACCOUNT_DIR)
                .collect();
            assert_eq!(mounts.len(), 1);
            assert_eq!(mounts[0].read_only, Some(true));
            let volume = pod
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == mounts[0].name)
                .unwrap();
            let sources = volume.projected.as_ref().unwrap().sources.clone().unwrap();
            assert_eq!(sources.len(), 3);
            let token = sources[0].service_account_token.as_ref().unwrap();
            assert_eq!(token.path, "token");
            assert_eq!(token.expiration_seconds, Some(3600));
            assert!(token.audience.is_none(), "the API server's own audience");
            let ca = sources[1].config_map.as_ref().unwrap();
            assert_eq!(ca.name, "kube-root-ca.crt");
            let items = ca.items.as_ref().unwrap();
            assert_eq!(
                (items[0].key.as_str(), items[0].path.as_str()),
                ("ca.crt", "ca.crt")
            );
            let namespace = &sources[2]
                .downward_api
                .as_ref()
                .unwrap()
                .items
                .as_ref()
                .unwrap()[0];
            assert_eq!(namespace.path, "namespace");
            assert_eq!(
                namespace.field_ref.as_ref().unwrap().field_path,
                "metadata.namespace"
            );
        }
    }

    #[test]
    fn pods_are_replaced_only_by_the_rollout_gate() {
        let set = statefulset(&fixtures::development(), &fixtures::inputs()).unwrap();
        let strategy = set.spec.update_strategy.unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("OnDelete"));
    }

    #[test]
    fn user_labels_cannot_override_the_selector() {
        let mut cluster = fixtures::development();
        cluster
            .spec
            .pod_metadata
            .labels
            .insert(labels::CLUSTER.into(), "someone-else".into());
        let set = statefulset(&cluster, &fixtures::inputs()).unwrap();
        let template_labels = set.spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(template_labels[labels::CLUSTER], "dev");
    }

    #[test]
    fn kms_credentials_come_from_the_secret_and_plugins_get_a_folder() {
        let set = statefulset(&fixtures::aws_kms(), &fixtures::inputs()).unwrap();
        let text = serde_json::to_string(&set).unwrap();
        assert!(text.contains("\"AWS_SECRET_ACCESS_KEY\""));
        assert!(text.contains("\"aws-credentials\""));
        assert!(text.contains("/openbao/plugins"));
    }
}
