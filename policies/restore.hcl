# Policy openbao-operator-restore: the restore Job replaces the whole
# cluster state and may do nothing else (it cannot read secrets).

# Force-restore a verified snapshot.
path "sys/storage/raft/snapshot-force" {
  capabilities = ["update"]
}

# Restore a verified snapshot through the seal-checking endpoint
# (OpenBaoRestore mode SealChecked; refused for another cluster's keys).
path "sys/storage/raft/snapshot" {
  capabilities = ["update"]
}
