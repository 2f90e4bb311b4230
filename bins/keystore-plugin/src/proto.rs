//! Generated protobuf types and tonic servers (see `proto/` and `build.rs`).
#![allow(missing_debug_implementations, clippy::all)]

pub mod plugin {
    //! go-plugin's internal services (package `plugin`).
    tonic::include_proto!("plugin");

    pub mod keystore {
        pub mod common {
            pub mod v1 {
                tonic::include_proto!("plugin.keystore.common.v1");
            }
        }
        pub mod operations {
            pub mod v1 {
                tonic::include_proto!("plugin.keystore.operations.v1");
            }
        }
    }
}

pub mod service {
    pub mod init {
        pub mod v1 {
            tonic::include_proto!("service.init.v1");
        }
    }
    pub mod common {
        pub mod config {
            pub mod v1 {
                tonic::include_proto!("service.common.config.v1");
            }
        }
    }
}

pub mod grpc {
    pub mod health {
        pub mod v1 {
            tonic::include_proto!("grpc.health.v1");
        }
    }
}

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

pub mod openbao {
    pub mod keystore {
        pub mod v1 {
            tonic::include_proto!("openbao.keystore.v1");
        }
    }
}

/// Debug for the messages `build.rs` generates without one: field values
/// that may be secrets (access data with `secretId` or `privateKey`, the
/// plugin YAML, L2 plaintexts) are replaced by their keys or sizes.
mod redacted_debug {
    use std::fmt;

    use super::openbao::keystore::v1 as l1;
    use super::plugin::keystore::common::v1 as common;
    use super::plugin::keystore::operations::v1 as ops;
    use super::service::common::config::v1 as cfg;

    /// The field names of a Struct, without their values.
    struct Keys<'a>(Option<&'a prost_types::Struct>);

    impl fmt::Debug for Keys<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                None => f.write_str("None"),
                Some(values) => f
                    .debug_struct("Struct")
                    .field("keys", &values.fields.keys().collect::<Vec<_>>())
                    .finish_non_exhaustive(),
            }
        }
    }

    /// A byte or text length instead of the content.
    struct Len(usize);

    impl fmt::Debug for Len {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "<{} bytes redacted>", self.0)
        }
    }

    impl fmt::Debug for common::KeystoreInstanceConfig {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("KeystoreInstanceConfig")
                .field("values", &Keys(self.values.as_ref()))
                .finish()
        }
    }

    impl fmt::Debug for ops::ValidateKeyAccessDataRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ValidateKeyAccessDataRequest")
                .field("management", &Keys(self.management.as_ref()))
                .field("crypto", &Keys(self.crypto.as_ref()))
                .finish()
        }
    }

    impl fmt::Debug for ops::ExtractKeyRegionRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ExtractKeyRegionRequest")
                .field("native_key_id", &self.native_key_id)
                .field(
                    "management_access_data",
                    &Keys(self.management_access_data.as_ref()),
                )
                .finish()
        }
    }

    impl fmt::Debug for ops::TransformCryptoAccessDataRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("TransformCryptoAccessDataRequest")
                .field("native_key_id", &self.native_key_id)
                .field("access_data", &Len(self.access_data.len()))
                .finish()
        }
    }

    impl fmt::Debug for cfg::ConfigureRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ConfigureRequest")
                .field("yaml_configuration", &Len(self.yaml_configuration.len()))
                .finish()
        }
    }

    impl fmt::Debug for l1::EncryptRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("EncryptRequest")
                .field("parameters", &self.parameters)
                .field("plaintext", &Len(self.plaintext.len()))
                .field("key_version", &self.key_version)
                .field("associated_data", &Len(self.associated_data.len()))
                .finish()
        }
    }

    impl fmt::Debug for l1::DecryptResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("DecryptResponse")
                .field("plaintext", &Len(self.plaintext.len()))
                .field("key_version", &self.key_version)
                .finish()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn access_data() -> prost_types::Struct {
            let json = serde_json::json!({
                "authMethod": "approle", "roleId": "role-1",
                "secretId": "s3cr3t-value", "privateKey": "private-key-body"
            });
            crate::config::json_to_struct(json.as_object().unwrap())
        }

        fn assert_no_secret(text: &str) {
            for secret in ["s3cr3t-value", "private-key-body", "role-1", "l2-plaintext"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }

        #[test]
        fn debug_of_requests_shows_keys_never_values() {
            let config = common::KeystoreInstanceConfig {
                values: Some(access_data()),
            };
            let get = ops::GetKeyRequest {
                parameters: Some(ops::RequestParameters {
                    config: Some(config.clone()),
                    key_id: "transit/openkcm-a".into(),
                }),
            };
            let text = format!("{get:?}");
            assert_no_secret(&text);
            assert!(
                text.contains("secretId") && text.contains("transit/openkcm-a"),
                "{text}"
            );
            let validate = ops::ValidateKeyAccessDataRequest {
                management: Some(access_data()),
                crypto: Some(access_data()),
            };
            assert_no_secret(&format!("{validate:?}"));
            let region = ops::ExtractKeyRegionRequest {
                native_key_id: "k".into(),
                management_access_data: Some(access_data()),
            };
            assert_no_secret(&format!("{region:?}"));
            let transform = ops::TransformCryptoAccessDataRequest {
                native_key_id: "k".into(),
                access_data: br#"{"eu": {"secretId": "s3cr3t-value"}}"#.to_vec(),
            };
            assert_no_secret(&format!("{transform:?}"));
            let configure = cfg::ConfigureRequest {
                yaml_configuration: "auth: {secretId: s3cr3t-value}".into(),
            };
            assert_no_secret(&format!("{configure:?}"));
            let encrypt = l1::EncryptRequest {
                parameters: Some(l1::CryptoParameters {
                    config: Some(config),
                    key_id: "k".into(),
                }),
                plaintext: b"l2-plaintext".to_vec(),
                key_version: 0,
                associated_data: vec![],
            };
            assert_no_secret(&format!("{encrypt:?}"));
            let decrypted = l1::DecryptResponse {
                plaintext: b"l2-plaintext".to_vec(),
                key_version: 1,
            };
            let text = format!("{decrypted:?}");
            assert_no_secret(&text);
            assert!(text.contains("12 bytes redacted"), "{text}");
        }
    }
}
