//! Every sample in `manifests/samples/` parses as the kind its file name
//! says (`openbaocluster-*`, `openbaotenant*`) and is valid as written (the
//! API server's acceptance is checked by the control-plane tests).

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use lifecycle_types::tenant::validate_tenant;
use lifecycle_types::validation::{validate_hardened, validate_spec};
use lifecycle_types::{OpenBaoCluster, OpenBaoTenant};

#[test]
fn every_sample_is_valid_as_written() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/samples");
    let mut clusters = Vec::new();
    let mut tenants = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if file.starts_with("openbaotenant") {
            let tenant: OpenBaoTenant = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = tenant.metadata.name.clone().unwrap();
            let errors = validate_tenant(&name, &tenant.spec, "openbao-operator-system");
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            tenants.push(name);
            continue;
        }
        assert!(
            file.starts_with("openbaocluster-"),
            "{file}: name samples after their kind"
        );
        let cluster: OpenBaoCluster =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let errors: Vec<_> = validate_spec(&cluster.spec)
            .into_iter()
            .chain(validate_hardened(&cluster.spec))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        clusters.push(cluster.metadata.name.unwrap());
    }
    clusters.sort();
    assert_eq!(clusters, ["dev", "full", "prod"]);
    assert_eq!(tenants, ["team-a"]);
}
