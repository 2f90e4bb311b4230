//! One-shot restore Job: verifies a backup and force-restores it.

use clap::Parser;

/// OpenBao restore Job.
///
/// Logs in with the restore JWT role, reads a backup's manifest, refuses a
/// snapshot whose size or SHA-256 does not match (checked before any byte
/// reaches OpenBao) or that comes from another cluster or a newer OpenBao,
/// then streams it into `sys/storage/raft/snapshot-force` on the active node
/// and waits until the cluster is unsealed and healthy. Its policy can
/// restore snapshots and nothing else; it cannot read secrets.
///
/// Status: not implemented yet; running it exits with an error.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!(
        "restore is not implemented yet; this build only documents its interface (see --help)"
    )
}
