//! Fails when a checked-in generated file differs from what the sources render.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

#[test]
fn checked_in_generated_files_match_the_sources() {
    let stale = xtask::stale_files(&xtask::repo_root()).unwrap();
    assert!(
        stale.is_empty(),
        "these files are out of date: {stale:?}; run `cargo xtask gen` and commit the result"
    );
}

#[test]
fn the_crd_is_namespaced_with_status_and_short_name() {
    let crd = &lifecycle_types::crds()[0];
    assert_eq!(crd.spec.group, "openbao.org");
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    assert!(
        crd.spec
            .names
            .short_names
            .as_ref()
            .unwrap()
            .contains(&"obc".to_owned())
    );
    let yaml = serde_yaml_ng::to_string(crd).unwrap();
    assert!(
        yaml.contains("x-kubernetes-validations"),
        "CEL rules missing"
    );
}
