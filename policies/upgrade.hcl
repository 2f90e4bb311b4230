# Policy openbao-operator-upgrade: one step of a rolling upgrade.

# Check each node before and after it is replaced.
path "sys/health" {
  capabilities = ["read"]
}

# Step the leader down before it is replaced, last (needs sudo).
path "sys/step-down" {
  capabilities = ["sudo", "update"]
}

# Wait for every server to be healthy and at the new version.
path "sys/storage/raft/autopilot/state" {
  capabilities = ["read"]
}

# Take a safety snapshot before the first node is replaced.
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}
