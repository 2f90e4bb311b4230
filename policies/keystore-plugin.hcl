# Policy openbao-keystore-plugin: OpenKCM key management of its own Transit
# keys (names start with openkcm-). Create is an update (no existence check),
# so create is not needed. Token lookup, renew and revoke come from the
# default policy.

# Create, read, rotate, configure, soft-delete, import and delete its keys.
path "transit/keys/openkcm-*" {
  capabilities = ["read", "update", "delete"]
}

# Fetch the wrapping key for BYOK imports.
path "transit/wrapping_key" {
  capabilities = ["read"]
}
