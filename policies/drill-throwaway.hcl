# Policy openbao-operator-drill on a restore drill's throwaway node (never
# on the cluster): the node initializes itself with this policy, and the
# drill restores the backup into it. The restore replaces this policy with
# the cluster's own drill.hcl, which can only read the canary.

# Force-restore the backup under test into the throwaway node.
path "sys/storage/raft/snapshot-force" {
  capabilities = ["update"]
}
