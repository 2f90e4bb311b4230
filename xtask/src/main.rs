use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use xtask::images;

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
    /// Build the five binaries and write one OCI image layout per binary
    /// (no container daemon needed; see images/README.md).
    Images {
        /// Cargo profile of the binaries (`release` ships; tests use `dev`).
        #[arg(long, default_value = "release")]
        profile: String,
        /// Folder for the layouts (`<out>/<binary>/`); default `<target>/images/<profile>`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Package binaries already built; do not run cargo build.
        #[arg(long)]
        no_build: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let root = xtask::repo_root();
    let check = match Args::parse().command {
        Command::Gen { check } => check,
        Command::Images {
            profile,
            out,
            no_build,
        } => return images(&root, &profile, out, no_build),
    };
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

fn images(root: &Path, profile: &str, out: Option<PathBuf>, no_build: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    if !no_build {
        println!("building {} ({profile}) ...", images::BINARIES.join(", "));
        let mut cargo =
            std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
        cargo
            .current_dir(root)
            .args(["build", "--locked", "--profile", profile]);
        for binary in images::BINARIES {
            cargo.args(["--bin", binary]);
        }
        let status = cargo.status().context("run cargo build")?;
        anyhow::ensure!(status.success(), "cargo build failed; see its output above");
    }
    let bin_dir = target.join(if profile == "dev" { "debug" } else { profile });
    let binaries: Vec<PathBuf> = images::BINARIES.iter().map(|b| bin_dir.join(b)).collect();
    for binary in &binaries {
        anyhow::ensure!(
            binary.is_file(),
            "{} is missing; build it first (run without --no-build)",
            binary.display()
        );
    }
    let out = out.unwrap_or_else(|| target.join("images").join(profile));
    let provenance = images::Provenance::of_checkout(root);
    // The shipped images are packed as small as gzip can; test images fast.
    let compression = if profile == "release" {
        images::Compression::best()
    } else {
        images::Compression::fast()
    };
    let base = images::base_layer(&binaries, compression)?;
    println!(
        "{:<16} {:>12} {:>14}  layout",
        "image", "compressed", "uncompressed"
    );
    for (name, binary) in images::BINARIES.iter().zip(&binaries) {
        let built = images::write_image(name, binary, &base, &provenance, compression, &out)?;
        println!(
            "{:<16} {:>9.1} MiB {:>10.1} MiB  {}",
            built.name,
            built.compressed as f64 / 1048576.0,
            built.uncompressed as f64 / 1048576.0,
            built.layout.display()
        );
    }
    println!(
        "5 images ({} {}) in {:.0?}",
        provenance.version,
        provenance.revision,
        started.elapsed()
    );
    Ok(())
}
