//! Which local executable stands in for a container image.
//!
//! There is no container runtime, so an image is only a name: the map turns
//! `quay.io/openbao/openbao:2.6.2` into the cached `bao` 2.6.2 binary, and
//! this project's images into its built binaries. The caller decides the
//! project's entries (the test knows where cargo put the binaries).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Directory (inside each container's root) where the image's executable is
/// mounted, and which leads the container's default `PATH`.
pub const IMAGE_BIN_DIR: &str = "/.node-agent/bin";

/// Resolves an image tag to an executable (for example `2.7.2` to the cached
/// `bao` 2.7.2).
pub type VersionedResolver = Arc<dyn Fn(&str) -> anyhow::Result<PathBuf> + Send + Sync>;

/// Where an image's executable comes from.
#[derive(Clone)]
pub enum ImageSource {
    /// The same executable for every tag.
    Fixed(PathBuf),
    /// An executable chosen by tag.
    ByTag(VersionedResolver),
    /// A real image: an OCI image layout folder (`cargo xtask images`),
    /// whose files alone make the container's root.
    Layout(PathBuf),
}

impl fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(path) => f.debug_tuple("Fixed").field(path).finish(),
            Self::ByTag(_) => f.write_str("ByTag(..)"),
            Self::Layout(path) => f.debug_tuple("Layout").field(path).finish(),
        }
    }
}

/// One image repository and what runs for it.
#[derive(Debug, Clone)]
pub struct ImageRule {
    /// Repository without registry or tag, e.g. `openbao/openbao`. It matches
    /// on any registry (`quay.io/openbao/openbao`, `docker.io/...`).
    pub repository: String,
    pub source: ImageSource,
    /// The image's ENTRYPOINT; its first word must be one of `aliases`.
    pub entrypoint: Vec<String>,
    /// The image's CMD, used when the container sets neither command nor args.
    pub cmd: Vec<String>,
    /// Names under which manifests call the executable (`bao`,
    /// `/usr/local/bin/bao`, ...): a command whose first word has one of
    /// these base names runs the mapped executable.
    pub aliases: Vec<String>,
}

/// The image-to-executable map. [`ImageMap::default`] knows OpenBao.
#[derive(Debug, Clone)]
pub struct ImageMap {
    rules: Vec<ImageRule>,
}

impl Default for ImageMap {
    fn default() -> Self {
        Self::empty().with_openbao()
    }
}

/// What a container runs, resolved from its image, command and args.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCommand {
    /// The host executable to mount at [`IMAGE_BIN_DIR`]`/<name>`, if the
    /// command runs the image's own executable.
    pub image_executable: Option<(PathBuf, String)>,
    /// argv as the container sees it (first word possibly rewritten to the
    /// mounted executable).
    pub argv: Vec<String>,
    /// The unpacked image, when the image is a real one: its files are the
    /// root, instead of the host's system folders.
    pub image: Option<super::oci::UnpackedImage>,
}

impl ImageMap {
    /// A map that knows no image.
    pub fn empty() -> Self {
        Self { rules: Vec::new() }
    }

    /// Adds OpenBao (`openbao/openbao` on any registry): the tag picks the
    /// cached `bao` of that version. Like the real image, a container without
    /// a command runs `bao` (the image's entrypoint passes `server ...`
    /// through to it).
    pub fn with_openbao(self) -> Self {
        self.with_rule(ImageRule {
            repository: "openbao/openbao".into(),
            source: ImageSource::ByTag(Arc::new(|tag: &str| {
                crate::tools::bao(tag.trim_start_matches('v'))
            })),
            entrypoint: vec!["bao".into()],
            cmd: vec!["server".into(), "-dev".into(), "-dev-no-store-token".into()],
            aliases: vec!["bao".into(), "docker-entrypoint.sh".into()],
        })
    }

    /// Maps `repository` (any tag) to `executable`: the image's entrypoint is
    /// the executable itself, as in this project's single-binary images.
    pub fn with_binary(self, repository: &str, executable: &Path) -> Self {
        let name = executable
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "entrypoint".into());
        self.with_rule(ImageRule {
            repository: repository.into(),
            source: ImageSource::Fixed(executable.to_owned()),
            entrypoint: vec![name.clone()],
            cmd: Vec::new(),
            aliases: vec![name],
        })
    }

    /// Maps `repository` (any tag) to the OCI image layout at `layout`: the
    /// container runs the image itself (its files, entrypoint, cmd, env).
    pub fn with_layout(self, repository: &str, layout: &Path) -> Self {
        self.with_rule(ImageRule {
            repository: repository.into(),
            source: ImageSource::Layout(layout.to_owned()),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            aliases: Vec::new(),
        })
    }

    /// Adds a rule; later rules win over earlier ones for the same repository.
    pub fn with_rule(mut self, rule: ImageRule) -> Self {
        self.rules.insert(0, rule);
        self
    }

    fn rule(&self, image: &str) -> Option<(&ImageRule, String)> {
        let reference = ImageRef::parse(image);
        self.rules
            .iter()
            .find(|r| r.repository == reference.path || r.repository == reference.full)
            .map(|r| (r, reference.tag.clone()))
    }

    /// Resolves what a container runs, following Kubernetes' rules for
    /// `command`/`args` versus the image's ENTRYPOINT/CMD. `command` and
    /// `args` must already have `$(VAR)` references expanded.
    pub fn resolve(
        &self,
        image: &str,
        command: Option<&[String]>,
        args: Option<&[String]>,
    ) -> anyhow::Result<ResolvedCommand> {
        let rule = self.rule(image);
        let unpacked = match &rule {
            Some((
                ImageRule {
                    source: ImageSource::Layout(layout),
                    ..
                },
                _,
            )) => Some(super::oci::unpack(layout)?),
            _ => None,
        };
        let (entrypoint, cmd) = match (&unpacked, &rule) {
            (Some(image), _) => (image.entrypoint.clone(), image.cmd.clone()),
            (None, Some((rule, _))) => (rule.entrypoint.clone(), rule.cmd.clone()),
            (None, None) => (Vec::new(), Vec::new()),
        };
        let mut argv: Vec<String> = match (command, args) {
            (Some(command), args) => command.iter().chain(args.unwrap_or(&[])).cloned().collect(),
            (None, Some(args)) => entrypoint.iter().chain(args).cloned().collect(),
            (None, None) => entrypoint.iter().chain(&cmd).cloned().collect(),
        };
        anyhow::ensure!(
            !argv.is_empty(),
            "image {image:?} has no known entrypoint and the container sets no command; \
             give the container a command or add the image to the node agent's ImageMap"
        );
        if unpacked.is_some() {
            return Ok(ResolvedCommand {
                image_executable: None,
                argv,
                image: unpacked,
            });
        }
        let base = Path::new(&argv[0])
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some((rule, tag)) = rule
            && rule.aliases.contains(&base)
        {
            let executable = match &rule.source {
                ImageSource::Fixed(path) => path.clone(),
                ImageSource::ByTag(resolve) => resolve(&tag)?,
                ImageSource::Layout(layout) => {
                    anyhow::bail!("{} was resolved as an image above", layout.display())
                }
            };
            let name = executable
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| base.clone());
            // The real OpenBao image's docker-entrypoint.sh runs `bao <args>`.
            if base == "docker-entrypoint.sh" {
                argv.remove(0);
                if argv.first().is_some_and(|a| a == "bao") {
                    argv.remove(0);
                }
            } else {
                argv.remove(0);
            }
            argv.insert(0, format!("{IMAGE_BIN_DIR}/{name}"));
            return Ok(ResolvedCommand {
                image_executable: Some((executable, name)),
                argv,
                image: None,
            });
        }
        // Anything else (`sh`, `/bin/cat`) is taken from the host's /usr,
        // which every container sees read-only.
        Ok(ResolvedCommand {
            image_executable: None,
            argv,
            image: None,
        })
    }
}

/// The parts of an image reference the map cares about.
#[derive(Debug, PartialEq, Eq)]
struct ImageRef {
    /// Repository including registry (`quay.io/openbao/openbao`).
    full: String,
    /// Repository without registry (`openbao/openbao`).
    path: String,
    /// Tag, `latest` when absent.
    tag: String,
}

impl ImageRef {
    fn parse(image: &str) -> Self {
        let without_digest = image.split('@').next().unwrap_or(image);
        let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
        let (full, tag) = match without_digest[last_slash..].rfind(':') {
            Some(colon) => {
                let at = last_slash + colon;
                (&without_digest[..at], &without_digest[at + 1..])
            }
            None => (without_digest, "latest"),
        };
        let mut parts: Vec<&str> = full.split('/').collect();
        if parts.len() > 1
            && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
        {
            parts.remove(0);
        }
        if parts.len() > 1 && parts[0] == "library" {
            parts.remove(0);
        }
        Self {
            full: full.to_owned(),
            path: parts.join("/"),
            tag: tag.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    fn fake_openbao() -> ImageMap {
        ImageMap::empty().with_rule(ImageRule {
            repository: "openbao/openbao".into(),
            source: ImageSource::ByTag(Arc::new(|tag: &str| {
                Ok(PathBuf::from(format!("/cache/openbao-{tag}/bao")))
            })),
            entrypoint: strings(&["bao"]),
            cmd: strings(&["server", "-dev"]),
            aliases: strings(&["bao", "docker-entrypoint.sh"]),
        })
    }

    #[test]
    fn image_references_parse_registry_repository_and_tag() {
        let r = ImageRef::parse("quay.io/openbao/openbao:2.6.2");
        assert_eq!(
            (r.full.as_str(), r.path.as_str(), r.tag.as_str()),
            ("quay.io/openbao/openbao", "openbao/openbao", "2.6.2")
        );
        let r = ImageRef::parse("localhost:5000/team/app@sha256:abcd");
        assert_eq!((r.path.as_str(), r.tag.as_str()), ("team/app", "latest"));
        let r = ImageRef::parse("docker.io/library/busybox:1");
        assert_eq!((r.path.as_str(), r.tag.as_str()), ("busybox", "1"));
    }

    #[test]
    fn openbao_at_any_registry_and_version_maps_to_that_bao() {
        let map = fake_openbao();
        for (image, version) in [
            ("openbao/openbao:2.7.2", "2.7.2"),
            ("quay.io/openbao/openbao:2.6.2", "2.6.2"),
        ] {
            let r = map
                .resolve(image, None, Some(&strings(&["server", "-config=/c"])))
                .unwrap();
            assert_eq!(
                r.image_executable,
                Some((
                    PathBuf::from(format!("/cache/openbao-{version}/bao")),
                    "bao".into()
                ))
            );
            assert_eq!(
                r.argv,
                strings(&["/.node-agent/bin/bao", "server", "-config=/c"])
            );
        }
    }

    #[test]
    fn command_replaces_entrypoint_and_cmd_as_kubernetes_does() {
        let map = fake_openbao();
        let r = map.resolve("openbao/openbao:2.7.2", None, None).unwrap();
        assert_eq!(r.argv, strings(&["/.node-agent/bin/bao", "server", "-dev"]));
        let r = map
            .resolve(
                "openbao/openbao:2.7.2",
                Some(&strings(&["/usr/local/bin/bao", "version"])),
                None,
            )
            .unwrap();
        assert_eq!(r.argv, strings(&["/.node-agent/bin/bao", "version"]));
        let r = map
            .resolve(
                "openbao/openbao:2.7.2",
                Some(&strings(&["docker-entrypoint.sh"])),
                Some(&strings(&["bao", "version"])),
            )
            .unwrap();
        assert_eq!(r.argv, strings(&["/.node-agent/bin/bao", "version"]));
    }

    #[test]
    fn other_commands_run_from_the_host_and_unknown_images_need_a_command() {
        let map = fake_openbao().with_binary("example.com/ops/backup", Path::new("/t/backup"));
        let r = map
            .resolve(
                "openbao/openbao:2.7.2",
                Some(&strings(&["sh", "-c", "exit 1"])),
                None,
            )
            .unwrap();
        assert_eq!(r.image_executable, None);
        assert_eq!(r.argv, strings(&["sh", "-c", "exit 1"]));
        let r = map
            .resolve("example.com/ops/backup:dev", None, None)
            .unwrap();
        assert_eq!(r.argv, strings(&["/.node-agent/bin/backup"]));
        let err = map.resolve("busybox", None, None).unwrap_err();
        assert!(err.to_string().contains("ImageMap"), "{err}");
    }
}
