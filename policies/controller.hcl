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
