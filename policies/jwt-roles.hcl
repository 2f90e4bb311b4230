# One JWT role per operator identity, created by self-init and read by the
# controller and by `cargo xtask gen` (policies/README.md). In bound_subject,
# {operator_namespace} is where the operator runs, {namespace} and {cluster}
# name the OpenBaoCluster being bootstrapped, {uid} is its metadata.uid.
#
# The controller's role accepts only its own cluster's audience: the
# controller mints a short-lived token for each cluster (TokenRequest API),
# so a token seen by one cluster cannot be replayed at another. The Jobs'
# roles accept spec.selfInit.oidc.audience (openbao-internal by default),
# the audience of their projected tokens.

role "openbao-operator" {
  identity        = "controller"
  token_policies  = ["openbao-operator"]
  bound_audiences = ["openbao-operator.openbao.org/{namespace}/{cluster}/{uid}"]
  user_claim      = "sub"
  bound_subject   = "system:serviceaccount:{operator_namespace}:openbao-operator"
  token_ttl       = "1h"
  token_max_ttl   = "1h"
}

role "openbao-operator-backup" {
  identity        = "backup"
  token_policies  = ["openbao-operator-backup"]
  bound_audiences = ["openbao-internal"]
  user_claim      = "sub"
  bound_subject   = "system:serviceaccount:{namespace}:{cluster}-backup"
  token_ttl       = "1h"
  token_max_ttl   = "1h"
}

role "openbao-operator-restore" {
  identity        = "restore"
  token_policies  = ["openbao-operator-restore"]
  bound_audiences = ["openbao-internal"]
  user_claim      = "sub"
  bound_subject   = "system:serviceaccount:{namespace}:{cluster}-restore"
  token_ttl       = "1h"
  token_max_ttl   = "1h"
}

role "openbao-operator-upgrade" {
  identity        = "upgrade"
  token_policies  = ["openbao-operator-upgrade"]
  bound_audiences = ["openbao-internal"]
  user_claim      = "sub"
  bound_subject   = "system:serviceaccount:{namespace}:{cluster}-upgrade"
  token_ttl       = "1h"
  token_max_ttl   = "1h"
}

role "openbao-operator-upgrade-blue-green" {
  identity        = "upgrade-blue-green"
  token_policies  = ["openbao-operator-upgrade", "openbao-operator-upgrade-blue-green"]
  bound_audiences = ["openbao-internal"]
  user_claim      = "sub"
  bound_subject   = "system:serviceaccount:{namespace}:{cluster}-upgrade"
  token_ttl       = "1h"
  token_max_ttl   = "1h"
}

role "openbao-operator-drill" {
  identity        = "drill"
  token_policies  = ["openbao-operator-drill"]
  bound_audiences = ["openbao-internal"]
  user_claim      = "sub"
  bound_subject   = "system:serviceaccount:{namespace}:{cluster}-drill"
  token_ttl       = "15m"
  token_max_ttl   = "1h"
}
