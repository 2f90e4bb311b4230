//! One-shot upgrade Job: one step of a rolling or blue/green upgrade.

use clap::Parser;

/// OpenBao upgrade Job.
///
/// Logs in with the upgrade JWT role and performs one step of an upgrade:
/// for a rolling upgrade it checks health and autopilot state and steps the
/// leader down so it can be replaced last; for a blue/green upgrade it also
/// joins, promotes, demotes and removes Raft peers. Its policy holds only
/// those paths.
///
/// Status: not implemented yet; running it exits with an error.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!(
        "upgrade is not implemented yet; this build only documents its interface (see --help)"
    )
}
