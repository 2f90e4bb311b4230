//! The client never follows a redirect, so `X-Vault-Token` never reaches
//! the host a `Location` names. Two small HTTP servers on 127.0.0.1 stand
//! in for a node that redirects (as an OpenBao standby does with 307) and
//! for another host that records every byte it receives. A real OpenBao
//! cannot be made to redirect to an arbitrary host on demand, so these two
//! speak just enough HTTP/1.1 for the test.

// A test fails loudly on any unexpected error.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openbao_client::{Client, ClientConfig, Error, RetryPolicy, Token};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "s.redirect-test-token-value";

/// Reads one request (headers and a Content-Length body); returns its bytes.
async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return data,
        };
        if n == 0 {
            return data;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).to_ascii_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return data;
            }
        }
    }
}

/// Answers each request with the next of `answers` (the last one repeats)
/// and counts the requests.
async fn serve(answers: Vec<String>) -> (u16, Arc<AtomicUsize>, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(Mutex::new(Vec::new()));
    let (count2, received2) = (count.clone(), received.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let request = read_request(&mut stream).await;
            if request.is_empty() {
                continue;
            }
            received2.lock().unwrap().extend_from_slice(&request);
            let index = count2.fetch_add(1, Ordering::SeqCst);
            let answer = answers[index.min(answers.len() - 1)].clone();
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (port, count, received)
}

fn redirect_to(port: u16) -> String {
    format!(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{port}/v1/secret/data/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

fn ok_json() -> String {
    let body = r#"{"data":{"ok":true}}"#;
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn client(port: u16) -> Client {
    let config = ClientConfig::new(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .with_retry(RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
        });
    Client::new(config).unwrap().with_token(Token::new(TOKEN))
}

#[tokio::test]
async fn a_redirect_never_carries_the_token_to_another_host() {
    // The other host, recording every byte it receives.
    let (other_port, other_count, other_received) = serve(vec![ok_json()]).await;
    // The node that redirects every call there.
    let (node_port, node_count, node_received) = serve(vec![redirect_to(other_port)]).await;

    // The check can fail: a client that follows redirects (reqwest's
    // default) hands the token to the other host.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let following = reqwest::Client::new();
    let answer = following
        .get(format!("http://127.0.0.1:{node_port}/v1/secret/data/x"))
        .header("X-Vault-Token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        String::from_utf8_lossy(&other_received.lock().unwrap()).contains(TOKEN),
        "the recording host should have seen the token sent by a following client"
    );
    other_received.lock().unwrap().clear();
    other_count.store(0, Ordering::SeqCst);
    node_count.store(0, Ordering::SeqCst);

    // Our client: a read (retried as transient), a write, a list and a login.
    let client = client(node_port);
    let read = client.read("secret/data/x").await.unwrap_err();
    assert!(matches!(read, Error::Standby { .. }), "{read}");
    assert!(
        read.to_string().contains("307") && read.to_string().contains("not followed"),
        "{read}"
    );
    let write = client
        .write("secret/data/x", &json!({"data": {"a": "b"}}))
        .await
        .unwrap_err();
    assert!(matches!(write, Error::Standby { .. }), "{write}");
    assert!(client.list("secret/metadata").await.is_err());
    let login = client
        .login(&openbao_client::Login::AppRole {
            mount: "approle".into(),
            role_id: "r".into(),
            secret_id: openbao_client::SecretIdSource::Plain(openbao_client::Credential::Value(
                "secret-id-value".to_owned().into(),
            )),
        })
        .await
        .unwrap_err();
    assert!(matches!(login, Error::Standby { .. }), "{login}");
    assert!(!login.to_string().contains("secret-id-value"), "{login}");

    // Every try went to the node (three each: a redirected call was not
    // applied, so even the write and the login are tried again) and none
    // went anywhere else.
    assert_eq!(node_count.load(Ordering::SeqCst), 12);
    assert!(String::from_utf8_lossy(&node_received.lock().unwrap()).contains(TOKEN));
    assert_eq!(other_count.load(Ordering::SeqCst), 0);
    assert!(other_received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_write_redirected_during_an_election_succeeds_on_the_next_try() {
    let (other_port, other_count, _) = serve(vec![ok_json()]).await;
    // The node redirects once (as during a step-down), then answers.
    let (node_port, node_count, _) = serve(vec![redirect_to(other_port), ok_json()]).await;
    let client = client(node_port);
    let answer = client
        .write("secret/data/x", &json!({"data": {"a": "b"}}))
        .await
        .unwrap();
    assert_eq!(answer, Some(json!({"data": {"ok": true}})));
    assert_eq!(node_count.load(Ordering::SeqCst), 2);
    assert_eq!(other_count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failed_write_that_was_not_redirected_is_not_sent_again() {
    let error = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 22\r\nConnection: close\r\n\r\n{\"errors\":[\"failure\"]}";
    let (node_port, node_count, _) = serve(vec![error.to_owned()]).await;
    let client = client(node_port);
    let err = client
        .write("secret/data/x", &json!({"data": {"a": "b"}}))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Server { .. }), "{err}");
    assert_eq!(
        node_count.load(Ordering::SeqCst),
        1,
        "a write may have been applied"
    );
    // A read is retried.
    node_count.store(0, Ordering::SeqCst);
    assert!(client.read("secret/data/x").await.is_err());
    assert_eq!(node_count.load(Ordering::SeqCst), 3);
}
