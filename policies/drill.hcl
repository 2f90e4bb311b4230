# Policy openbao-operator-drill: a restore drill reads back, from the
# restored copy inside its throwaway node, the canary the operator wrote at
# bootstrap. Nothing else: on the cluster itself this identity can read one
# non-secret value (the cluster's uid) and cannot restore or read secrets.

# Read the restore-drill canary.
path "openbao-operator/canary" {
  capabilities = ["read"]
}
