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
