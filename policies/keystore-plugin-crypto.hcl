# Policy openbao-keystore-plugin-crypto: wrap and unwrap L2 key material with
# its Transit keys. update only: create on encrypt would upsert missing keys.

# Wrap L2 key material.
path "transit/encrypt/openkcm-*" {
  capabilities = ["update"]
}

# Unwrap L2 key material.
path "transit/decrypt/openkcm-*" {
  capabilities = ["update"]
}

# Move ciphertexts to the newest key version after a rotation.
path "transit/rewrap/openkcm-*" {
  capabilities = ["update"]
}

# Learn the latest key version.
path "transit/keys/openkcm-*" {
  capabilities = ["read"]
}
