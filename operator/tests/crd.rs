//! The CRD: the committed YAML is what `shoal-operator crd` generates, and the
//! schema's CEL rules (evaluated here by kube's client-side CEL validator,
//! the same rules the API server runs) accept the example and refuse bad specs.

use std::path::PathBuf;

use kube::core::cel::{validate_cel, validate_cel_update};
use shoal_operator::crd::{KvBackup, KvCluster, RestoreFromSpec, backup_crd_yaml, crd_yaml};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crds_match_the_generated_one() {
    for (kind, generated) in [("KvCluster", crd_yaml()), ("KvBackup", backup_crd_yaml())] {
        let file = format!("{}.yaml", kind.to_lowercase());
        for path in [format!("crds/{file}"), format!("charts/shoal-operator/crds/{file}")] {
            let committed = std::fs::read_to_string(repo().join(&path)).unwrap_or_default();
            assert!(
                committed == generated,
                "{path} has drifted from the Rust types: run `cargo run -p shoal-operator -- crd --kind {kind} > {path}`"
            );
        }
    }
}

#[test]
fn cel_rules_check_backups_and_restores() {
    let text = std::fs::read_to_string(repo().join("examples/kvbackup.yaml")).expect("example");
    let ok: KvBackup = serde_saphyr::from_str(&text).expect("the example parses as a KvBackup");
    validate_cel(&ok).expect("the KvBackup example passes the CRD's rules");
    let mut bad = ok.clone();
    bad.spec.destination = "ftp://host/dir".into();
    match validate_cel(&bad) {
        Ok(()) => panic!("accepted an ftp destination"),
        Err(e) => assert!(format!("{e:?}").contains("s3://BUCKET/PREFIX or file:///DIR"), "{e:?}"),
    }

    let mut restored = example();
    restored.spec.restore_from = Some(RestoreFromSpec { source: "s3://b/p/nightly-1".into(), credentials_secret: None });
    validate_cel(&restored).expect("a restoreFrom source");
    let mut changed = restored.clone();
    changed.spec.restore_from = Some(RestoreFromSpec { source: "s3://b/p/nightly-2".into(), credentials_secret: None });
    assert!(validate_cel_update(&changed, &restored).is_err(), "restoreFrom changed after creation");
    let mut bad = restored.clone();
    bad.spec.restore_from = Some(RestoreFromSpec { source: "nightly-1".into(), credentials_secret: None });
    assert!(validate_cel(&bad).is_err(), "a source without a scheme");
}

fn example() -> KvCluster {
    let text = std::fs::read_to_string(repo().join("examples/kvcluster.yaml")).expect("example");
    serde_saphyr::from_str(&text).expect("the example parses as a KvCluster")
}

fn refusal(kvc: &KvCluster) -> String {
    match validate_cel(kvc) {
        Ok(()) => panic!("accepted: {:?}", kvc.spec),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn cel_rules_accept_the_example_and_refuse_bad_specs() {
    let ok = example();
    validate_cel(&ok).expect("the example passes the CRD's rules");

    let mut few = ok.clone();
    few.spec.replicas = 2;
    assert!(refusal(&few).contains("replicas must be at least replicationFactor"));

    let mut bad_name = ok.clone();
    bad_name.spec.column_families[0].name = "Users!".into();
    assert!(refusal(&bad_name).contains("1-64 characters"));

    let mut reserved = ok.clone();
    reserved.spec.column_families[0].name = "raft_log".into();
    assert!(refusal(&reserved).contains("reserved"));

    let mut twice = ok.clone();
    twice.spec.column_families.push(twice.spec.column_families[0].clone());
    assert!(refusal(&twice).contains("unique"));

    let mut size = ok.clone();
    size.spec.storage.size = "ten gigs".into();
    assert!(refusal(&size).contains("quantity"));

    let mut rf = ok.clone();
    rf.spec.replication_factor = 1;
    let e = validate_cel_update(&rf, &ok).expect_err("replicationFactor is immutable");
    assert!(format!("{e:?}").contains("replicationFactor cannot be changed"), "{e:?}");
    // Volumes grow, never shrink; their class is fixed.
    let mut bigger = ok.clone();
    bigger.spec.storage.size = "20Gi".into();
    validate_cel_update(&bigger, &ok).expect("a volume may grow");
    let mut decimal = ok.clone();
    decimal.spec.storage.size = "11G".into();
    validate_cel_update(&decimal, &ok).expect("11G > 10Gi");
    let e = validate_cel_update(&ok, &bigger).expect_err("a volume cannot shrink");
    assert!(format!("{e:?}").contains("can grow, not shrink"), "{e:?}");
    let mut fast = ok.clone();
    fast.spec.storage.storage_class_name = Some("fast".into());
    let e = validate_cel_update(&fast, &ok).expect_err("the class is fixed");
    assert!(format!("{e:?}").contains("storageClassName cannot be changed"), "{e:?}");

    let mut scaled = ok.clone();
    scaled.spec.replicas = 5;
    validate_cel_update(&scaled, &ok).expect("scaling is a valid update");
}

#[test]
fn tls_needs_an_issuer_for_cert_manager_and_its_mode_is_fixed() {
    use shoal_operator::crd::{IssuerRef, TlsMode, TlsSpec};
    let plain = example();
    let tls = |mode, issuer: Option<&str>| TlsSpec {
        mode,
        issuer_ref: issuer.map(|n| IssuerRef { name: n.into(), kind: Some("ClusterIssuer".into()), group: None }),
        certificate_lifetime_hours: None,
    };
    let with = |t: TlsSpec| {
        let mut k = plain.clone();
        k.spec.tls = Some(t);
        k
    };
    let managed = with(tls(TlsMode::OperatorManaged, None));
    validate_cel(&managed).expect("operator-managed needs nothing more");
    validate_cel(&with(tls(TlsMode::CertManager, Some("ca")))).expect("cert-manager with an issuer");
    assert!(refusal(&with(tls(TlsMode::CertManager, None))).contains("needs tls.issuerRef"));

    // On or off, and who issues, is fixed at creation.
    for (old, new) in [(&plain, &managed), (&managed, &plain), (&managed, &with(tls(TlsMode::CertManager, Some("ca"))))] {
        let e = validate_cel_update(new, old).expect_err("tls.mode is immutable");
        assert!(format!("{e:?}").contains("tls.mode cannot be changed"), "{e:?}");
    }
    validate_cel_update(&with(tls(TlsMode::Disabled, None)), &plain).expect("Disabled is the same as no tls");
    let mut longer = managed.clone();
    longer.spec.tls.as_mut().expect("tls").certificate_lifetime_hours = Some(24);
    validate_cel_update(&longer, &managed).expect("the lifetime may change");
}
