//! Compiles the project's `.proto` files with `protox` (pure Rust, no system
//! `protoc`) and generates the tonic servers.

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
        .compile_fds(descriptors)?;
    Ok(())
}
