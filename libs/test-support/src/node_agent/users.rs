//! Who a container of a real image runs as, decided as the kubelet decides
//! it: the container's `securityContext`, then the pod's, then the image's
//! `User`. Containers mapped to host tools (OpenBao) keep running as root:
//! their files are the host's, not an image's.

use k8s_openapi::api::core::v1::{Container, Pod};

use super::container::RunAs;

/// The user and primary group for `spec`, a container of `pod` running an
/// image whose config says `image_user` (`uid[:gid]`, numeric only: the
/// agent does not read the image's `/etc/passwd`).
///
/// The group is `runAsGroup`, else the image's, else the pod's `fsGroup`,
/// else 0. The kubelet would add `fsGroup` as a supplementary group; the
/// agent gives each process only a primary group, so it refuses a container
/// whose `runAsGroup` and `fsGroup` differ rather than run it with less
/// access than Kubernetes would.
pub fn run_as(pod: &Pod, spec: &Container, image_user: Option<&str>) -> anyhow::Result<RunAs> {
    let pod_context = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let context = spec.security_context.as_ref();
    let (image_uid, image_gid) = match image_user {
        None => (None, None),
        Some(user) => {
            let (uid, gid) = user.split_once(':').unwrap_or((user, ""));
            let number = |text: &str| {
                text.parse::<u32>().map_err(|_| {
                    anyhow::anyhow!(
                        "image user {user:?} is not numeric; the node agent runs only numeric users (uid[:gid])"
                    )
                })
            };
            (
                Some(number(uid)?),
                (!gid.is_empty()).then(|| number(gid)).transpose()?,
            )
        }
    };
    let id = |value: i64, field: &str| {
        u32::try_from(value).map_err(|_| anyhow::anyhow!("{field} {value} is not a valid id"))
    };
    let uid = match context
        .and_then(|c| c.run_as_user)
        .or_else(|| pod_context.and_then(|c| c.run_as_user))
    {
        Some(uid) => id(uid, "runAsUser")?,
        None => image_uid.unwrap_or(0),
    };
    let run_as_group = context
        .and_then(|c| c.run_as_group)
        .or_else(|| pod_context.and_then(|c| c.run_as_group));
    let fs_group = pod_context.and_then(|c| c.fs_group);
    if let (Some(group), Some(fs_group)) = (run_as_group, fs_group) {
        anyhow::ensure!(
            group == fs_group,
            "container {:?}: runAsGroup {group} and fsGroup {fs_group} differ; the node agent gives a process one group, so set them equal",
            spec.name
        );
    }
    let gid = match run_as_group {
        Some(gid) => id(gid, "runAsGroup")?,
        None => match (image_gid, fs_group) {
            (Some(gid), _) => gid,
            (None, Some(fs_group)) => id(fs_group, "fsGroup")?,
            (None, None) => 0,
        },
    };
    let non_root = context
        .and_then(|c| c.run_as_non_root)
        .or_else(|| pod_context.and_then(|c| c.run_as_non_root))
        .unwrap_or(false);
    anyhow::ensure!(
        !(non_root && uid == 0),
        "container {:?} has runAsNonRoot and its image will run as root",
        spec.name
    );
    Ok(RunAs { uid, gid })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn pod(security: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"securityContext": security, "containers": [{"name": "c"}]},
        }))
        .unwrap()
    }

    fn container(security: serde_json::Value) -> Container {
        serde_json::from_value(json!({"name": "c", "securityContext": security})).unwrap()
    }

    #[test]
    fn the_container_wins_over_the_pod_and_the_pod_over_the_image() {
        let run = |pod_security, container_security, image| {
            run_as(&pod(pod_security), &container(container_security), image)
        };
        assert_eq!(
            run(json!({}), json!({}), Some("65532:65532")).unwrap(),
            RunAs {
                uid: 65532,
                gid: 65532
            }
        );
        assert_eq!(
            run(json!({"runAsUser": 100}), json!({}), Some("65532:65532")).unwrap(),
            RunAs {
                uid: 100,
                gid: 65532
            }
        );
        assert_eq!(
            run(
                json!({"runAsUser": 100, "runAsGroup": 1000}),
                json!({"runAsUser": 7, "runAsGroup": 8}),
                Some("65532")
            )
            .unwrap(),
            RunAs { uid: 7, gid: 8 }
        );
        // No group anywhere but fsGroup: the fsGroup, so volumes are readable.
        assert_eq!(
            run(json!({"fsGroup": 2000}), json!({}), Some("65532")).unwrap(),
            RunAs {
                uid: 65532,
                gid: 2000
            }
        );
        assert_eq!(
            run(json!({}), json!({}), None).unwrap(),
            RunAs { uid: 0, gid: 0 }
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        let error = |pod_security, container_security, image| {
            run_as(&pod(pod_security), &container(container_security), image)
                .unwrap_err()
                .to_string()
        };
        assert!(
            error(json!({"runAsNonRoot": true}), json!({}), None).contains("runAsNonRoot"),
            "a root image under runAsNonRoot"
        );
        assert!(error(json!({}), json!({}), Some("nonroot")).contains("not numeric"));
        assert!(
            error(
                json!({"runAsGroup": 1, "fsGroup": 2}),
                json!({}),
                Some("65532")
            )
            .contains("runAsGroup 1 and fsGroup 2 differ")
        );
    }
}
