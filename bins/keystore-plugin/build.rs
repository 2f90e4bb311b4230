//! Compiles the project's `.proto` files with `protox` (pure Rust, no system
//! `protoc`) and generates the tonic servers.

/// Messages whose Debug is written by hand in `src/proto.rs`.
const REDACTED_DEBUG: [&str; 7] = [
    ".plugin.keystore.common.v1.KeystoreInstanceConfig",
    ".plugin.keystore.operations.v1.ValidateKeyAccessDataRequest",
    ".plugin.keystore.operations.v1.ExtractKeyRegionRequest",
    ".plugin.keystore.operations.v1.TransformCryptoAccessDataRequest",
    ".service.common.config.v1.ConfigureRequest",
    ".openbao.keystore.v1.EncryptRequest",
    ".openbao.keystore.v1.DecryptResponse",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/plugin/keystore/common/v1/common.proto",
        "proto/plugin/keystore/operations/v1/operations.proto",
        "proto/service/init/v1/init.proto",
        "proto/service/common/config/v1/config.proto",
        "proto/goplugin/goplugin.proto",
        "proto/grpc/health/v1/health.proto",
        "proto/google/rpc/status.proto",
        "proto/openbao/keystore/v1/openbao.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_transport(false)
        // Messages carrying access data (secretId, privateKey), the plugin
        // YAML or L2 plaintexts get hand-written Debug impls that leave the
        // values out (src/proto.rs), so no `{:?}` can leak them.
        .skip_debug(REDACTED_DEBUG)
        .compile_fds(descriptors)?;
    Ok(())
}
