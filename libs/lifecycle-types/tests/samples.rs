//! Every sample in `manifests/samples/` parses as an `OpenBaoCluster` and is
//! valid as written (the API server's acceptance is checked by the
//! test-support control-plane tests).

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use lifecycle_types::OpenBaoCluster;
use lifecycle_types::validation::validate_spec;

#[test]
fn every_sample_is_valid_as_written() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/samples");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let cluster: OpenBaoCluster =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let errors = validate_spec(&cluster.spec);
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        checked.push(cluster.metadata.name.unwrap());
    }
    checked.sort();
    assert_eq!(checked, ["dev", "full", "prod"]);
}
