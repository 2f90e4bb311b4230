# Policy openbao-operator: the controller's steady-state maintenance scope.
# Backup, restore and upgrade hold their own policies; this one never can
# read or restore snapshots.

# Health checks (also answered without a token; listed so the scope is explicit).
path "sys/health" {
  capabilities = ["read"]
}

# Step the leader down so it is replaced last during a rollout (needs sudo).
path "sys/step-down" {
  capabilities = ["sudo", "update"]
}

# Judge membership from the Raft configuration, not from health.
path "sys/storage/raft/configuration" {
  capabilities = ["read"]
}

# Remove the Raft peer of a pod that was scaled away.
path "sys/storage/raft/remove-peer" {
  capabilities = ["update"]
}

# Keep autopilot configured (dead-server cleanup, stabilization time).
path "sys/storage/raft/autopilot/configuration" {
  capabilities = ["read", "update"]
}

# Per-node health, version and failure tolerance for status.
path "sys/storage/raft/autopilot/state" {
  capabilities = ["read"]
}

# Move its own JWT role to this cluster's audience (migrating a cluster
# bootstrapped for the shared openbao-internal token, with no root token):
# bound_audiences only, one openbao-operator.openbao.org/ audience (no
# comma-separated list), on a role that exists (update, not create).
# role_type = "jwt" must be resent: OpenBao takes an update without it
# for an oidc role.
path "auth/jwt/role/openbao-operator" {
  capabilities        = ["update"]
  required_parameters = ["bound_audiences"]
  allowed_parameters = {
    "bound_audiences" = ["openbao-operator.openbao.org/*"]
    "role_type"       = ["jwt"]
  }
  denied_parameters = {
    "bound_audiences" = ["*,*"]
  }
}
