//! Pod status as the kubelet reports it, computed from the agent's view of
//! the containers (pure, so the phase and condition rules are unit-tested).

use serde_json::{Value, json};

/// A container's state, with times as API timestamps.
#[derive(Debug, Clone, PartialEq)]
pub enum CtrState {
    Waiting { reason: String, message: String },
    Running { started_at: Value },
    Terminated(Terminated),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub reason: String,
    /// The termination message (see `termination.rs`); empty for none.
    pub message: String,
    pub started_at: Value,
    pub finished_at: Value,
}

impl CtrState {
    pub fn waiting(reason: &str, message: &str) -> Self {
        Self::Waiting {
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn to_json(&self, container_id: &str) -> Value {
        // Strategic merge patches merge maps, so the variants that do not
        // apply are set to null explicitly.
        match self {
            Self::Waiting { reason, message } => json!({
                "waiting": {"reason": reason, "message": message}, "running": null, "terminated": null,
            }),
            Self::Running { started_at } => json!({
                "running": {"startedAt": started_at}, "waiting": null, "terminated": null,
            }),
            Self::Terminated(t) => json!({
                "terminated": t.to_json(container_id), "waiting": null, "running": null,
            }),
        }
    }
}

impl Terminated {
    fn to_json(&self, container_id: &str) -> Value {
        // Always sent, even empty: a strategic merge patch would otherwise
        // keep an earlier instance's message in `lastState`.
        json!({
            "exitCode": self.exit_code,
            "reason": self.reason,
            "message": self.message,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": container_id,
        })
    }
}

/// What the status of one container is made of.
#[derive(Debug, Clone)]
pub struct CtrView {
    pub name: String,
    pub image: String,
    pub state: CtrState,
    pub last: Option<Terminated>,
    pub ready: bool,
    pub started: bool,
    pub restart_count: i32,
    pub container_id: String,
}

impl CtrView {
    /// Cuts the termination messages (current and last state) to their
    /// first `max` bytes, as the kubelet's status manager does with its
    /// per-container share of the pod's 12 KiB.
    pub fn limit_messages(&mut self, max: usize) {
        if let CtrState::Terminated(t) = &mut self.state {
            super::termination::truncate_start(&mut t.message, max);
        }
        if let Some(t) = &mut self.last {
            super::termination::truncate_start(&mut t.message, max);
        }
    }
}

pub fn container_status(v: &CtrView) -> Value {
    let last = match &v.last {
        Some(t) => {
            json!({"terminated": t.to_json(&v.container_id), "waiting": null, "running": null})
        }
        None => json!({}),
    };
    json!({
        "name": v.name,
        "image": v.image,
        "imageID": format!("node-agent://{}", v.image),
        "containerID": v.container_id,
        "ready": v.ready,
        "started": v.started,
        "restartCount": v.restart_count,
        "state": v.state.to_json(&v.container_id),
        "lastState": last,
    })
}

/// Whether a main container that stopped with `exit_code` is started again.
pub fn restarts(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// Whether an init container lets the pod's initialization go on: a
/// regular one once it exited 0, a sidecar (`restartPolicy: Always`) once
/// it has started (`has_started`: its startup probe passed, or it ran
/// without one), even if it has restarted since.
pub fn init_container_done(sidecar: bool, has_started: bool, state: &CtrState) -> bool {
    if sidecar {
        has_started
    } else {
        matches!(state, CtrState::Terminated(t) if t.exit_code == 0)
    }
}

/// The exit codes of the regular containers once every one of them has
/// terminated for good (none will be restarted by `policy`), else `None`.
pub fn final_exit_codes(policy: &str, main: &[CtrState]) -> Option<Vec<i32>> {
    let codes: Vec<i32> = main
        .iter()
        .filter_map(|s| match s {
            CtrState::Terminated(t) if !restarts(policy, t.exit_code) => Some(t.exit_code),
            _ => None,
        })
        .collect();
    (!main.is_empty() && codes.len() == main.len()).then_some(codes)
}

/// The pod phase, from the regular containers (`main`) and the sidecars.
/// As in the kubelet, a sidecar's exit code never counts, but a running
/// sidecar keeps a pod whose regular containers are done `Running` until
/// the agent has stopped it: a terminal pod runs no process.
pub fn pod_phase(
    policy: &str,
    sandbox_ready: bool,
    init_failed: bool,
    init_done: bool,
    main: &[CtrState],
    sidecars: &[CtrState],
) -> &'static str {
    if init_failed {
        return "Failed";
    }
    if !sandbox_ready || !init_done {
        return "Pending";
    }
    if let Some(codes) = final_exit_codes(policy, main) {
        return if sidecars
            .iter()
            .any(|s| matches!(s, CtrState::Running { .. }))
        {
            "Running"
        } else if codes.iter().all(|c| *c == 0) {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    let never_started = main.iter().all(|s| {
        matches!(s, CtrState::Waiting { reason, .. } if reason == "ContainerCreating"
            || reason == "CreateContainerConfigError" || reason == "ErrImagePull")
    });
    if never_started { "Pending" } else { "Running" }
}

/// Condition statuses, in the kubelet's order: `(type, status, reason)`.
/// `ready` holds one entry per regular container and per sidecar.
pub fn conditions(
    phase: &str,
    sandbox_ready: bool,
    init_done: bool,
    ready: &[bool],
) -> Vec<(&'static str, bool, &'static str)> {
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let all_ready = !ready.is_empty() && ready.iter().all(|r| *r);
    let ready_reason = if terminal {
        "PodCompleted"
    } else if all_ready {
        ""
    } else {
        "ContainersNotReady"
    };
    vec![
        ("PodReadyToStartContainers", sandbox_ready && !terminal, ""),
        (
            "Initialized",
            init_done,
            if init_done {
                ""
            } else {
                "ContainersNotInitialized"
            },
        ),
        ("ContainersReady", all_ready && !terminal, ready_reason),
        ("Ready", all_ready && !terminal, ready_reason),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(code: i32) -> CtrState {
        CtrState::Terminated(Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: String::new(),
            started_at: json!("t0"),
            finished_at: json!("t1"),
        })
    }

    fn running() -> CtrState {
        CtrState::Running {
            started_at: json!("t0"),
        }
    }

    #[test]
    fn job_pods_end_succeeded_or_failed_by_exit_code() {
        assert_eq!(
            pod_phase("Never", true, false, true, &[term(0)], &[]),
            "Succeeded"
        );
        assert_eq!(
            pod_phase("Never", true, false, true, &[term(0), term(1)], &[]),
            "Failed"
        );
        assert_eq!(
            pod_phase("OnFailure", true, false, true, &[term(1)], &[]),
            "Running",
            "restarts"
        );
        assert_eq!(
            pod_phase("OnFailure", true, false, true, &[term(0)], &[]),
            "Succeeded"
        );
        assert_eq!(
            pod_phase("Always", true, false, true, &[term(0)], &[]),
            "Running"
        );
        assert_eq!(
            pod_phase("Never", true, true, false, &[], &[]),
            "Failed",
            "init failed"
        );
    }

    #[test]
    fn pending_until_sandbox_init_and_first_start() {
        let creating = CtrState::waiting("ContainerCreating", "");
        assert_eq!(
            pod_phase(
                "Always",
                false,
                false,
                false,
                std::slice::from_ref(&creating),
                &[]
            ),
            "Pending"
        );
        assert_eq!(
            pod_phase(
                "Always",
                true,
                false,
                false,
                std::slice::from_ref(&creating),
                &[]
            ),
            "Pending"
        );
        assert_eq!(
            pod_phase("Always", true, false, true, &[creating], &[]),
            "Pending"
        );
        assert_eq!(
            pod_phase("Always", true, false, true, &[running()], &[]),
            "Running"
        );
        let backoff = CtrState::waiting("CrashLoopBackOff", "");
        assert_eq!(
            pod_phase("Always", true, false, true, &[backoff], &[]),
            "Running"
        );
    }

    fn condition(all: &[(&str, bool, &str)], type_: &str) -> Option<bool> {
        all.iter().find(|c| c.0 == type_).map(|c| c.1)
    }

    #[test]
    fn ready_needs_every_container_ready_and_a_live_pod() {
        let ready = |c: Vec<(&str, bool, &str)>| condition(&c, "Ready");
        assert_eq!(
            ready(conditions("Running", true, true, &[true, true])),
            Some(true)
        );
        assert_eq!(
            ready(conditions("Running", true, true, &[true, false])),
            Some(false)
        );
        assert_eq!(
            ready(conditions("Succeeded", true, true, &[true])),
            Some(false)
        );
    }

    #[test]
    fn sidecars_never_decide_the_phase_but_must_stop_first() {
        for policy in ["Never", "OnFailure"] {
            assert_eq!(
                pod_phase(policy, true, false, true, &[term(0)], &[running()]),
                "Running",
                "{policy}: main done, the agent is stopping the sidecar"
            );
            assert_eq!(
                pod_phase(policy, true, false, true, &[term(0)], &[term(143)]),
                "Succeeded",
                "{policy}: a sidecar killed by SIGTERM does not fail the pod"
            );
        }
        assert_eq!(
            pod_phase("Never", true, false, true, &[term(1)], &[term(0)]),
            "Failed"
        );
        let backoff = CtrState::waiting("CrashLoopBackOff", "");
        assert_eq!(
            pod_phase("Never", true, false, true, &[term(0)], &[backoff]),
            "Succeeded",
            "a sidecar waiting to restart is not running"
        );
        assert_eq!(
            pod_phase("Never", true, false, true, &[running()], &[term(1)]),
            "Running"
        );
        assert_eq!(
            pod_phase("Always", true, false, true, &[term(0)], &[term(143)]),
            "Running",
            "restartPolicy Always: the main container restarts"
        );
        assert_eq!(
            final_exit_codes("Never", &[term(0), term(2)]),
            Some(vec![0, 2])
        );
        assert_eq!(final_exit_codes("OnFailure", &[term(0), term(2)]), None);
        assert_eq!(final_exit_codes("Never", &[]), None);
    }

    #[test]
    fn a_started_sidecar_does_not_block_initialization() {
        assert!(init_container_done(true, true, &running()));
        assert!(
            init_container_done(true, true, &CtrState::waiting("CrashLoopBackOff", "")),
            "a sidecar restarting after it started keeps the pod initialized"
        );
        assert!(
            !init_container_done(true, false, &running()),
            "its startup probe has not passed yet"
        );
        assert!(!init_container_done(false, true, &running()));
        assert!(init_container_done(false, false, &term(0)));
        assert!(!init_container_done(false, false, &term(1)));
        let init_done = [(true, true, running()), (false, false, term(0))]
            .iter()
            .all(|(sidecar, started, state)| init_container_done(*sidecar, *started, state));
        assert_eq!(
            condition(
                &conditions("Running", true, init_done, &[true, true]),
                "Initialized"
            ),
            Some(true)
        );
        assert_eq!(
            pod_phase("Never", true, false, init_done, &[running()], &[running()]),
            "Running"
        );
    }

    #[test]
    fn container_status_nulls_the_other_state_variants() {
        let status = container_status(&CtrView {
            name: "c".into(),
            image: "img".into(),
            state: term(3),
            last: None,
            ready: false,
            started: false,
            restart_count: 2,
            container_id: "node-agent://x".into(),
        });
        assert_eq!(status["state"]["terminated"]["exitCode"], 3);
        assert!(status["state"]["running"].is_null() && status["state"].get("running").is_some());
        assert_eq!(status["restartCount"], 2);
    }

    #[test]
    fn termination_messages_are_reported_and_capped() {
        let with_message = |m: &str| Terminated {
            exit_code: 1,
            reason: "Error".into(),
            message: m.into(),
            started_at: json!("t0"),
            finished_at: json!("t1"),
        };
        let mut view = CtrView {
            name: "c".into(),
            image: "img".into(),
            state: CtrState::Terminated(with_message("new result")),
            last: Some(with_message("old")),
            ready: false,
            started: false,
            restart_count: 1,
            container_id: "node-agent://x".into(),
        };
        view.limit_messages(3);
        let status = container_status(&view);
        assert_eq!(status["state"]["terminated"]["message"], "new");
        assert_eq!(status["state"]["terminated"]["reason"], "Error");
        assert_eq!(status["lastState"]["terminated"]["message"], "old");
        view.state = term(0);
        let status = container_status(&view);
        assert_eq!(
            status["state"]["terminated"]["message"], "",
            "an empty message replaces an earlier one in a merge patch"
        );
    }
}
