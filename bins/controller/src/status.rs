//! Status from observations, as a pure function: what the controller saw
//! (pods, OpenBao health, Raft membership, TLS) in, conditions and summary
//! fields out. The same observations give the same status, so a converged
//! cluster's status does not change and is not rewritten.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use lifecycle_types::OpenBaoCluster;
use lifecycle_types::cluster::{
    NodeStatus, OpenBaoClusterStatus, Phase, Profile, RaftState, RaftStatus, TlsMode, UnsealType,
};
use lifecycle_types::conditions::{Condition, ConditionStatus, reasons, types, upsert};
use lifecycle_types::upgrade::UpgradePhase;
use openbao_client::HealthState;
use openbao_client::raft::Membership;

/// One OpenBao pod as the controller saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub name: String,
    /// The pod object exists.
    pub exists: bool,
    /// Its containers were started (phase Running): OpenBao may answer.
    pub running: bool,
    /// Kubernetes readiness (initialized and unsealed, by the probe).
    pub ready: bool,
    /// Runs the StatefulSet's current template.
    pub current: bool,
    pub restarts: i32,
    /// `sys/health`, or `None` when the pod did not answer.
    pub health: Option<HealthState>,
    pub version: Option<String>,
}

/// How initialization stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitView {
    Done { by_operator: bool },
    Waiting(String),
    Failed(String),
}

/// TLS as the controller found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsView {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Why the reconcile stopped before making anything: `Degraded` with this
/// reason and message, and the phase to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
    pub phase: Phase,
}

impl Refusal {
    /// The spec breaks a rule: the cluster failed until the user fixes it.
    pub fn invalid_spec(message: String) -> Self {
        Self {
            reason: reasons::INVALID_SPEC,
            message,
            phase: Phase::Failed,
        }
    }

    /// The multi-tenant install has not onboarded the namespace: pending
    /// until a platform admin does; `message` says what is missing.
    pub fn not_onboarded(message: String) -> Self {
        Self {
            reason: reasons::NAMESPACE_NOT_ONBOARDED,
            message,
            phase: Phase::Pending,
        }
    }
}

/// Everything one reconcile observed.
#[derive(Debug, Clone)]
pub struct Observation {
    pub pods: Vec<PodView>,
    pub membership: Option<Membership>,
    /// Why Raft state could not be read (login refused, no active node):
    /// the Degraded reason and message.
    pub membership_error: Option<(&'static str, String)>,
    pub init: InitView,
    pub tls: TlsView,
    pub root_token_stored: bool,
    /// A user-facing problem that stops the reconcile before any object
    /// is made (an invalid spec, a namespace not onboarded).
    pub refused: Option<Refusal>,
    /// The requested exposure cannot be applied (Gateway API missing).
    pub exposure_problem: Option<String>,
    /// A pod that OpenBao or Kubernetes keeps from serving, past the
    /// bound: (reason, message with the likely cause).
    pub stuck: Option<(&'static str, String)>,
    /// Scheduled backups and the operation that holds the cluster.
    pub backup: crate::reconcile::backup::BackupView,
    /// The version upgrade.
    pub upgrade: crate::reconcile::upgrade::UpgradeView,
    /// The admission guardrails missing ([`crate::admission`]).
    pub admission_gap: Option<String>,
}

/// The new status. `previous` keeps transition times of unchanged conditions.
pub fn compute(
    cluster: &OpenBaoCluster,
    previous: Option<&OpenBaoClusterStatus>,
    seen: &Observation,
    now: Time,
) -> OpenBaoClusterStatus {
    let generation = cluster.metadata.generation;
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = generation;
    if !cluster.spec.paused {
        status.conditions.retain(|c| c.type_ != types::PAUSED);
    }
    let mut set = |type_: &str, state: ConditionStatus, reason: &str, message: String| {
        upsert(
            &mut status.conditions,
            Condition::new(type_, state, reason, message, generation),
            now.clone(),
        );
    };
    use ConditionStatus::{False, True, Unknown};

    if cluster.spec.paused {
        set(
            types::PAUSED,
            True,
            reasons::PAUSED,
            "spec.paused is true: the operator changes nothing but status; set it to false to resume".into(),
        );
    }

    if let Some(refusal) = &seen.refused {
        set(
            types::DEGRADED,
            True,
            refusal.reason,
            refusal.message.clone(),
        );
        status.phase = Some(refusal.phase);
        return status;
    }

    let desired = cluster.spec.replicas;
    let wanted: Vec<&PodView> = seen.pods.iter().take(desired as usize).collect();
    let answering: Vec<&PodView> = seen.pods.iter().filter(|p| p.health.is_some()).collect();
    let active: Vec<&PodView> = seen
        .pods
        .iter()
        .filter(|p| p.health == Some(HealthState::Active))
        .collect();
    let sealed: Vec<&str> = seen
        .pods
        .iter()
        .filter(|p| p.health == Some(HealthState::Sealed))
        .map(|p| p.name.as_str())
        .collect();
    let ready = wanted.iter().filter(|p| p.ready).count() as i32;
    status.ready_replicas = ready;

    match &seen.init {
        InitView::Done { by_operator } => {
            status.initialized = true;
            let (reason, message) = if *by_operator {
                (
                    reasons::OPERATOR_INITIALIZED,
                    "initialized by the operator's sys/init (Development); the root token is in a Secret",
                )
            } else {
                (
                    reasons::SELF_INITIALIZED,
                    "initialized by OpenBao self-init; no root token exists",
                )
            };
            set(types::INITIALIZED, True, reason, message.into());
        }
        InitView::Waiting(message) => set(
            types::INITIALIZED,
            False,
            reasons::WAITING_FOR_BOOTSTRAP_POD,
            message.clone(),
        ),
        InitView::Failed(message) => set(
            types::INITIALIZED,
            False,
            reasons::SELF_INIT_FAILED,
            message.clone(),
        ),
    }

    if answering.is_empty() {
        set(
            types::SEALED,
            Unknown,
            reasons::RECONCILING,
            "no OpenBao pod answered sys/health yet".into(),
        );
    } else if sealed.is_empty() {
        set(
            types::SEALED,
            False,
            reasons::ALL_UNSEALED,
            "every answering pod is unsealed".into(),
        );
    } else {
        set(
            types::SEALED,
            True,
            reasons::NODES_SEALED,
            format!(
                "sealed: {}; they unseal themselves once the seal backend is reachable (check spec.unseal and the pods' logs)",
                sealed.join(", ")
            ),
        );
    }

    match active.as_slice() {
        [one] => {
            status.active_leader = Some(one.name.clone());
            set(
                types::LEADER_FOUND,
                True,
                reasons::LEADER_ELECTED,
                format!("{} is the active node", one.name),
            );
        }
        [] => {
            status.active_leader = None;
            set(
                types::LEADER_FOUND,
                False,
                reasons::NO_LEADER,
                "no pod answers as the active node".into(),
            );
        }
        many => {
            status.active_leader = None;
            let names: Vec<&str> = many.iter().map(|p| p.name.as_str()).collect();
            set(
                types::LEADER_FOUND,
                False,
                reasons::MULTIPLE_LEADERS,
                format!(
                    "several pods answer as active ({}): a split cluster; do not write to it and inspect the Raft configuration",
                    names.join(", ")
                ),
            );
        }
    }

    if active.len() == 1 {
        let (reason, message) = if ready == desired {
            (
                reasons::ALL_REPLICAS_READY,
                format!("the active node answers and {ready}/{desired} replicas are ready"),
            )
        } else {
            (
                reasons::SOME_REPLICAS_NOT_READY,
                format!("the active node answers; {ready}/{desired} replicas are ready"),
            )
        };
        set(types::AVAILABLE, True, reason, message);
    } else {
        set(
            types::AVAILABLE,
            False,
            reasons::NO_ACTIVE_NODE,
            format!("no single active node; {ready}/{desired} replicas are ready"),
        );
    }

    set(
        types::TLS_READY,
        if seen.tls.ready { True } else { False },
        seen.tls.reason,
        seen.tls.message.clone(),
    );

    // Raft.
    status.raft = seen.membership.as_ref().map(|m| RaftStatus {
        healthy: m.healthy.unwrap_or(false),
        failure_tolerance: m.failure_tolerance.unwrap_or(0) as i32,
        leader: m.leader().map(|l| l.node_id.clone()),
        voters: m.voters().map(|v| v.node_id.clone()).collect(),
    });
    status.nodes = node_statuses(seen);
    // The running version moves only when an upgrade was verified (or,
    // before any upgrade, when every pod reports the same one).
    let upgrade = seen.upgrade.status.as_ref();
    let in_flight = upgrade.is_some_and(|u| u.phase != UpgradePhase::Completed);
    let versions: std::collections::BTreeSet<&str> =
        wanted.iter().filter_map(|p| p.version.as_deref()).collect();
    if !in_flight && versions.len() == 1 && wanted.iter().all(|p| p.version.is_some()) {
        status.current_version = versions.first().map(|v| (*v).to_owned());
    }
    if let Some(done) = upgrade.filter(|u| u.phase == UpgradePhase::Completed)
        && status.current_version.as_deref() == Some(done.from.as_str())
    {
        status.current_version = Some(done.to.clone());
    }
    status.upgrade = seen.upgrade.status.clone();
    if let Some((state, reason, message)) = &seen.upgrade.condition {
        set(types::UPGRADING, *state, reason, message.clone());
    }

    let degraded = degraded(cluster, seen);
    match &degraded {
        Some((reason, message)) => set(types::DEGRADED, True, reason, message.clone()),
        None => set(
            types::DEGRADED,
            False,
            reasons::AS_EXPECTED,
            "no problem found".into(),
        ),
    }

    if let Some((state, reason, message)) = &seen.backup.health {
        set(types::BACKUP_HEALTHY, *state, reason, message.clone());
    }
    if let Some((state, reason, message)) = &seen.backup.verified {
        set(types::BACKUP_VERIFIED, *state, reason, message.clone());
    }

    let mut gaps = production_gaps(cluster, seen);
    gaps.extend(seen.backup.gap.clone());
    match gaps.first() {
        None => set(
            types::PRODUCTION_READY,
            True,
            reasons::PRODUCTION_READY,
            "the cluster matches the Hardened posture".into(),
        ),
        Some((reason, _)) => set(
            types::PRODUCTION_READY,
            False,
            reason,
            gaps.iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }

    status.backup = seen.backup.status.clone();
    status.operation = seen.backup.operation.clone();
    if let Some(restored) = &seen.backup.restored_from {
        status.restored_from = Some(restored.clone());
    }
    for (view, kind) in [
        (&seen.backup.health, types::BACKUP_HEALTHY),
        (&seen.backup.verified, types::BACKUP_VERIFIED),
    ] {
        if view.is_none() {
            status.conditions.retain(|c| c.type_ != kind);
        }
    }
    status.phase = Some(if !status.initialized {
        if matches!(seen.init, InitView::Failed(_)) {
            Phase::Failed
        } else if answering.is_empty() {
            Phase::Pending
        } else {
            Phase::Initializing
        }
    } else if active.len() == 1 && degraded.is_none() {
        Phase::Running
    } else {
        Phase::Degraded
    });
    status
}

/// Status after a failed reconcile: what was known before, with
/// `Degraded` set to the error's reason and message. A new cluster gets its
/// first phase here too, so a failure is never a blank status.
pub fn with_error(
    cluster: &OpenBaoCluster,
    previous: Option<&OpenBaoClusterStatus>,
    reason: &str,
    message: &str,
    now: Time,
) -> OpenBaoClusterStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.observed_generation = cluster.metadata.generation;
    status.phase = Some(match status.phase {
        None | Some(Phase::Pending) => Phase::Pending,
        Some(Phase::Failed) => Phase::Failed,
        Some(_) => Phase::Degraded,
    });
    upsert(
        &mut status.conditions,
        Condition::new(
            types::DEGRADED,
            ConditionStatus::True,
            reason,
            message,
            cluster.metadata.generation,
        ),
        now,
    );
    status
}

/// The first status of a new cluster, written before any slow step.
pub fn first(cluster: &OpenBaoCluster) -> OpenBaoClusterStatus {
    OpenBaoClusterStatus {
        observed_generation: cluster.metadata.generation,
        phase: Some(Phase::Pending),
        ..OpenBaoClusterStatus::default()
    }
}

/// Pods kept from serving past the bound, with the likely cause: a
/// container that keeps restarting (with the kubelet's last termination),
/// or a cluster whose pods have answered for `no_active_for_secs` without
/// one of them serving as the active node (with what they answer).
pub fn stuck(
    pods: &[PodView],
    terminations: &[(String, String)],
    no_active_for_secs: Option<u64>,
    bound_secs: u64,
) -> Option<(&'static str, String)> {
    const RESTARTS: i32 = 3;
    if let Some(pod) = pods.iter().find(|p| p.restarts >= RESTARTS) {
        let last = terminations
            .iter()
            .find(|(name, _)| *name == pod.name)
            .map(|(_, why)| format!(" (last exit: {why})"))
            .unwrap_or_default();
        return Some((
            reasons::NODE_RESTARTING,
            format!(
                "{} restarted {} times{last}; OpenBao refuses its configuration or storage: read the pod's log, then fix spec.configuration or spec.unseal",
                pod.name, pod.restarts
            ),
        ));
    }
    let waited = no_active_for_secs.filter(|s| *s >= bound_secs)?;
    let answers: Vec<String> = pods
        .iter()
        .filter_map(|p| p.health.map(|h| format!("{} {h:?}", p.name)))
        .collect();
    let cause = if pods
        .iter()
        .filter(|p| p.health.is_some())
        .all(|p| p.health == Some(HealthState::Sealed))
    {
        "every answering pod is sealed: the seal backend (spec.unseal) is unreachable or refuses the key"
    } else {
        "OpenBao refused part of its configuration after unsealing (it then steps down again), or cannot win a Raft election"
    };
    Some((
        reasons::NODE_NOT_ACTIVE,
        format!(
            "no pod has served as the active node for {waited} s (pods answer: {}); likely cause: {cause}; read the pods' logs",
            answers.join(", ")
        ),
    ))
}

fn node_statuses(seen: &Observation) -> Vec<NodeStatus> {
    let mut nodes: Vec<NodeStatus> = seen
        .pods
        .iter()
        .filter(|p| p.exists)
        .map(|pod| {
            let member = seen
                .membership
                .as_ref()
                .and_then(|m| m.members.iter().find(|m| m.node_id == pod.name));
            NodeStatus {
                name: pod.name.clone(),
                raft_state: raft_state(seen.membership.as_ref(), member),
                healthy: member.and_then(|m| m.healthy).unwrap_or(false),
                sealed: pod.health.map(|h| h == HealthState::Sealed),
                last_contact: None,
                last_index: None,
                version: pod.version.clone(),
            }
        })
        .collect();
    // Raft servers without a pod (a removed pod's stale peer) are listed too.
    if let Some(membership) = &seen.membership {
        for member in &membership.members {
            if !nodes.iter().any(|n| n.name == member.node_id) {
                nodes.push(NodeStatus {
                    name: member.node_id.clone(),
                    raft_state: raft_state(Some(membership), Some(member)),
                    healthy: member.healthy.unwrap_or(false),
                    sealed: None,
                    last_contact: None,
                    last_index: None,
                    version: member.version.clone(),
                });
            }
        }
    }
    nodes
}

fn raft_state(
    membership: Option<&Membership>,
    member: Option<&openbao_client::raft::Member>,
) -> RaftState {
    match (membership, member) {
        (None, _) => RaftState::Unknown,
        (Some(_), None) => RaftState::NotMember,
        (Some(_), Some(m)) if m.leader => RaftState::Leader,
        (Some(_), Some(m)) if m.voter => RaftState::Voter,
        (Some(_), Some(_)) => RaftState::NonVoter,
    }
}

fn degraded(cluster: &OpenBaoCluster, seen: &Observation) -> Option<(&'static str, String)> {
    if let Some(problem) = &seen.exposure_problem {
        return Some((reasons::GATEWAY_API_MISSING, problem.clone()));
    }
    if let Some((reason, message)) = &seen.membership_error {
        return Some((reason, message.clone()));
    }
    if let Some((reason, message)) = &seen.stuck {
        return Some((reason, message.clone()));
    }
    let membership = seen.membership.as_ref()?;
    if membership.healthy == Some(false) {
        let unhealthy: Vec<&str> = membership
            .members
            .iter()
            .filter(|m| m.healthy == Some(false))
            .map(|m| m.node_id.as_str())
            .collect();
        return Some((
            reasons::RAFT_UNHEALTHY,
            format!(
                "autopilot reports unhealthy servers: {}",
                unhealthy.join(", ")
            ),
        ));
    }
    let voters = membership.voters().count() as i32;
    if cluster.spec.replicas >= 3 && membership.failure_tolerance == Some(0) && voters >= 1 {
        return Some((
            reasons::QUORUM_AT_RISK,
            format!(
                "{voters} voters and none may fail; wait for new pods to join or check their health"
            ),
        ));
    }
    None
}

fn production_gaps(cluster: &OpenBaoCluster, seen: &Observation) -> Vec<(&'static str, String)> {
    let spec = &cluster.spec;
    let mut gaps = Vec::new();
    if spec.profile == Profile::Development {
        gaps.push((
            reasons::DEVELOPMENT_PROFILE,
            "spec.profile is Development; use Hardened for production".to_owned(),
        ));
    }
    if seen.root_token_stored {
        gaps.push((
            reasons::ROOT_TOKEN_STORED,
            "a root token is stored in a Secret; use spec.selfInit so no root token exists"
                .to_owned(),
        ));
    }
    if spec.unseal.type_ == UnsealType::Static {
        gaps.push((
            reasons::STATIC_UNSEAL_IN_USE,
            "spec.unseal.type is static: the unseal key sits in a Kubernetes Secret; use transit or a cloud KMS".to_owned(),
        ));
    }
    if spec.tls.mode == TlsMode::OperatorManaged && spec.profile == Profile::Hardened {
        gaps.push((
            reasons::OPERATOR_MANAGED_TLS,
            "spec.tls.mode is OperatorManaged; use External (your PKI) or ACME".to_owned(),
        ));
    }
    if spec.replicas < 3 {
        gaps.push((
            reasons::TOO_FEW_REPLICAS,
            format!(
                "spec.replicas is {}; use at least 3 to survive a node failure",
                spec.replicas
            ),
        ));
    }
    if !spec.self_init.enabled || spec.self_init.requests.is_empty() {
        gaps.push((
            reasons::NO_HUMAN_LOGIN,
            "no spec.selfInit.requests create a human login path (for example an OIDC or userpass auth method)".to_owned(),
        ));
    }
    if spec.configuration.audit.is_empty() {
        gaps.push((
            reasons::NO_AUDIT_DEVICE,
            "no audit device in spec.configuration.audit".to_owned(),
        ));
    }
    for field in lifecycle_types::validation::plain_storage_endpoints(spec) {
        gaps.push((
            reasons::PLAIN_TEXT_STORAGE,
            format!("{field} is http://: snapshots and storage credentials cross the network unencrypted; serve the storage over TLS"),
        ));
    }
    if let Some(gap) = &seen.admission_gap {
        gaps.push((reasons::ADMISSION_POLICIES_MISSING, gap.clone()));
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    fn pod(name: &str, health: HealthState) -> PodView {
        PodView {
            name: name.into(),
            exists: true,
            running: true,
            ready: true,
            current: true,
            restarts: 0,
            health: Some(health),
            version: Some("2.7.2".into()),
        }
    }

    pub(super) fn seen(pods: Vec<PodView>) -> Observation {
        Observation {
            pods,
            membership: None,
            membership_error: None,
            init: InitView::Done { by_operator: false },
            tls: TlsView {
                ready: true,
                reason: reasons::CERTIFICATE_VALID,
                message: String::new(),
            },
            root_token_stored: false,
            refused: None,
            exposure_problem: None,
            stuck: None,
            backup: Default::default(),
            upgrade: Default::default(),
            admission_gap: None,
        }
    }

    fn reason(status: &OpenBaoClusterStatus, type_: &str) -> (ConditionStatus, String) {
        let c = lifecycle_types::conditions::find(&status.conditions, type_).unwrap();
        (c.status, c.reason.clone())
    }

    #[test]
    fn one_active_node_and_all_ready_is_available() {
        let cluster = fixtures::development();
        let pods = vec![
            pod("dev-0", HealthState::Active),
            pod("dev-1", HealthState::Standby),
            pod("dev-2", HealthState::Standby),
        ];
        let status = compute(&cluster, None, &seen(pods), at(1));
        assert_eq!(
            reason(&status, types::AVAILABLE),
            (ConditionStatus::True, reasons::ALL_REPLICAS_READY.into())
        );
        assert_eq!(status.active_leader.as_deref(), Some("dev-0"));
        assert_eq!(status.current_version.as_deref(), Some("2.7.2"));
        // The same observation later changes nothing: no status write.
        let again = compute(
            &cluster,
            Some(&status),
            &seen(vec![
                pod("dev-0", HealthState::Active),
                pod("dev-1", HealthState::Standby),
                pod("dev-2", HealthState::Standby),
            ]),
            at(99),
        );
        assert_eq!(again, status);
    }

    #[test]
    fn two_active_nodes_are_a_split_and_sealed_pods_are_named() {
        let cluster = fixtures::development();
        let pods = vec![
            pod("dev-0", HealthState::Active),
            pod("dev-1", HealthState::Active),
            pod("dev-2", HealthState::Sealed),
        ];
        let status = compute(&cluster, None, &seen(pods), at(1));
        assert_eq!(
            reason(&status, types::LEADER_FOUND),
            (ConditionStatus::False, reasons::MULTIPLE_LEADERS.into())
        );
        assert_eq!(reason(&status, types::AVAILABLE).0, ConditionStatus::False);
        let sealed = lifecycle_types::conditions::find(&status.conditions, types::SEALED).unwrap();
        assert_eq!(sealed.status, ConditionStatus::True);
        assert!(sealed.message.contains("dev-2"), "{}", sealed.message);
    }

    #[test]
    fn production_ready_names_every_gap_and_an_invalid_spec_fails() {
        let cluster = fixtures::development();
        let mut observed = seen(vec![pod("dev-0", HealthState::Active)]);
        observed.root_token_stored = true;
        let status = compute(&cluster, None, &observed, at(1));
        let gaps =
            lifecycle_types::conditions::find(&status.conditions, types::PRODUCTION_READY).unwrap();
        assert_eq!(gaps.reason, reasons::DEVELOPMENT_PROFILE);
        for gap in ["spec.profile", "root token", "spec.unseal.type", "audit"] {
            assert!(gaps.message.contains(gap), "{gap}: {}", gaps.message);
        }
        observed.refused = Some(Refusal::invalid_spec(
            "spec.replicas: 0 is out of range".into(),
        ));
        let failed = compute(&cluster, None, &observed, at(1));
        assert_eq!(failed.phase, Some(Phase::Failed));
        assert_eq!(
            reason(&failed, types::DEGRADED),
            (ConditionStatus::True, reasons::INVALID_SPEC.into())
        );
    }
}

#[cfg(test)]
mod liveness_tests {
    use super::*;

    fn pod(name: &str, health: Option<HealthState>, restarts: i32) -> PodView {
        PodView {
            name: name.into(),
            exists: true,
            running: true,
            ready: false,
            current: true,
            restarts,
            health,
            version: None,
        }
    }

    #[test]
    fn a_restarting_pod_is_named_with_its_last_exit() {
        let pods = [pod("a-0", None, 4)];
        let exit = [(
            "a-0".to_owned(),
            "exit code 1, Error: bad config".to_owned(),
        )];
        let (reason, message) = stuck(&pods, &exit, None, 60).unwrap();
        assert_eq!(reason, reasons::NODE_RESTARTING);
        assert!(
            message.contains("bad config") && message.contains("a-0"),
            "{message}"
        );
    }

    #[test]
    fn no_active_node_is_reported_only_after_the_bound_with_a_cause() {
        let pods = [
            pod("a-0", Some(HealthState::Sealed), 0),
            pod("a-1", Some(HealthState::Sealed), 0),
        ];
        assert_eq!(stuck(&pods, &[], Some(59), 60), None);
        assert_eq!(stuck(&pods, &[], None, 60), None);
        let (reason, message) = stuck(&pods, &[], Some(61), 60).unwrap();
        assert_eq!(reason, reasons::NODE_NOT_ACTIVE);
        assert!(
            message.contains("sealed") && message.contains("spec.unseal"),
            "{message}"
        );
        let standby = [pod("a-0", Some(HealthState::Standby), 0)];
        let (_, message) = stuck(&standby, &[], Some(61), 60).unwrap();
        assert!(
            message.contains("refused part of its configuration"),
            "{message}"
        );
    }

    #[test]
    fn paused_is_a_condition_only_while_paused() {
        let mut cluster = crate::render::fixtures::development();
        cluster.spec.paused = true;
        let seen = super::tests::seen(Vec::new());
        let at = Time(k8s_openapi::jiff::Timestamp::from_second(1).unwrap());
        let paused = compute(&cluster, None, &seen, at.clone());
        assert!(lifecycle_types::conditions::find(&paused.conditions, types::PAUSED).is_some());
        cluster.spec.paused = false;
        let resumed = compute(&cluster, Some(&paused), &seen, at);
        assert!(lifecycle_types::conditions::find(&resumed.conditions, types::PAUSED).is_none());
    }

    #[test]
    fn an_error_marks_degraded_and_gives_a_new_cluster_a_phase() {
        let cluster = crate::render::fixtures::development();
        let at = Time(k8s_openapi::jiff::Timestamp::from_second(1).unwrap());
        let status = with_error(
            &cluster,
            None,
            "KubernetesWriteRefused",
            "denied; fix it",
            at,
        );
        assert_eq!(status.phase, Some(Phase::Pending));
        let degraded =
            lifecycle_types::conditions::find(&status.conditions, types::DEGRADED).unwrap();
        assert_eq!(
            (degraded.status, degraded.reason.as_str()),
            (ConditionStatus::True, "KubernetesWriteRefused")
        );
    }
}
