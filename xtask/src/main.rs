use clap::{Parser, Subcommand};

/// Project maintenance commands.
#[derive(Parser, Debug)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Regenerate every generated file (CRD YAML in manifests/crds/, policies/README.md).
    Gen {
        /// Write nothing; fail if a checked-in file is out of date.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let Command::Gen { check } = Args::parse().command;
    let root = xtask::repo_root();
    if check {
        let stale = xtask::stale_files(&root)?;
        if !stale.is_empty() {
            anyhow::bail!("out of date: {stale:?}; run `cargo xtask gen` and commit the result");
        }
        return Ok(());
    }
    for file in xtask::render_all()? {
        let path = root.join(&file.path);
        std::fs::create_dir_all(path.parent().expect("generated files live in a folder"))?;
        std::fs::write(&path, &file.content)?;
        println!("wrote {}", file.path.display());
    }
    Ok(())
}
