//! Proves the S3 server is real: objects round-trip through a standard S3 client.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use test_support::S3Server;

fn store(server: &S3Server, secret: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(&server.endpoint)
            .with_allow_http(true)
            .with_region(test_support::s3::REGION)
            .with_bucket_name(&server.bucket)
            .with_access_key_id(server.access_key_id())
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(false)
            .build()
            .unwrap(),
    )
}

#[tokio::test]
async fn an_object_round_trips() {
    test_support::install_crypto_provider();
    let server = S3Server::start("backups").await.unwrap();
    let s3 = store(&server, server.secret_access_key());
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let path = Path::from("ns/cluster/snapshot.snap");
    s3.put(&path, PutPayload::from(data.clone())).await.unwrap();

    let listed: Vec<_> = s3
        .list(Some(&Path::from("ns")))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, data.len() as u64);
    let back = s3.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(back.as_ref(), data.as_slice());
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    test_support::install_crypto_provider();
    let server = S3Server::start("backups").await.unwrap();
    let s3 = store(&server, "not-the-secret");
    let err = s3
        .put(&Path::from("x"), PutPayload::from_static(b"x"))
        .await
        .expect_err("a wrong secret was accepted");
    assert!(
        err.to_string().contains("403") || err.to_string().contains("Signature"),
        "{err}"
    );
}
