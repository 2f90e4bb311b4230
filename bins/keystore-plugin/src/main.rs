//! OpenKCM keystore plugin keeping L1 keys in OpenBao Transit.

use clap::Parser;

/// OpenKCM keystore plugin backed by OpenBao Transit.
///
/// Started by the OpenKCM host as a HashiCorp go-plugin over gRPC, it creates,
/// rotates, enables, disables and deletes customer master keys in OpenBao
/// Transit and wraps and unwraps L2 key material there, so key material never
/// leaves OpenBao. It authenticates with AppRole, Kubernetes or certificate
/// auth and holds only its own Transit policy.
///
/// Status: not implemented yet; running it exits with an error.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!(
        "the keystore plugin is not implemented yet; this build only documents its interface (see --help)"
    )
}
