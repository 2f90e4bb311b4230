# Policy openbao-operator-backup: the backup Job streams snapshots and
# nothing else. Read only: update on the same path is a (non-force) restore.

# Stream a Raft snapshot.
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}
