# Policy openbao-operator-upgrade-blue-green: added to the upgrade policy
# only for blue/green cutovers, which move Raft membership to new pods.

# Join a green node to the running cluster. OpenBao serves join without a
# token (the joining node has none); kept because the seeds list it.
path "sys/storage/raft/join" {
  capabilities = ["update"]
}

# Read and adjust the Raft configuration during the cutover.
path "sys/storage/raft/configuration" {
  capabilities = ["read", "update"]
}

# Remove blue nodes once green ones hold quorum.
path "sys/storage/raft/remove-peer" {
  capabilities = ["update"]
}

# Make green non-voters voters.
path "sys/storage/raft/promote" {
  capabilities = ["update"]
}

# Make blue voters non-voters before removal.
path "sys/storage/raft/demote" {
  capabilities = ["update"]
}
