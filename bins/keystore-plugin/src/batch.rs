//! Natural batching of L1 crypto calls: concurrent encrypts (decrypts,
//! rewraps) of one key through one session share one Transit `batch_input`
//! request, so OpenBao's per-request work (routing, token lookup, ACL,
//! audit, JSON) is paid once per batch rather than once per call.
//!
//! A call for a key and operation with nothing in flight is sent at once
//! and alone, exactly as without batching, so a lone caller waits for
//! nothing. Calls arriving while one is in flight queue; when it returns,
//! the queue goes out as one request of at most [`MAX_BATCH`] items, and so
//! on until the queue is empty. Every caller gets its own item's result,
//! with the status the same call alone would have given.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use openbao_client::Error as BaoError;
use openbao_client::transit::{BatchItem, EncryptOptions, Encrypted, Transit};
use secrecy::{ExposeSecret, SecretSlice};
use tokio::sync::oneshot;
use tonic::Status;

use crate::keystore::Session;
use crate::mapping::{self, KeyRef, Rpc};

/// Most items in one Transit request: large enough that 32 or more
/// concurrent callers of one key share a request, small enough that one
/// request stays far below OpenBao's request size limit and its latency
/// stays close to a single call's.
pub const MAX_BATCH: usize = 64;

/// A Transit operation that takes `batch_input`.
pub trait Operation: Sized + Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Output: Send + 'static;

    /// This operation's queues in `session`.
    fn queues(session: &Session) -> &Batcher<Self>;

    /// The call for one item, as it is made without batching.
    fn one(
        transit: Transit,
        name: &str,
        item: &Self::Item,
    ) -> impl Future<Output = Result<Self::Output, BaoError>> + Send;

    /// One `batch_input` call for `items`.
    fn many(
        transit: Transit,
        name: &str,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<BatchItem<Self::Output>>, BaoError>> + Send;
}

/// `encrypt/<name>`: a plaintext and its options.
#[derive(Debug)]
pub struct Encrypt;

impl Operation for Encrypt {
    type Item = (SecretSlice<u8>, EncryptOptions);
    type Output = Encrypted;

    fn queues(session: &Session) -> &Batcher<Self> {
        &session.batches().encrypt
    }

    async fn one(
        transit: Transit,
        name: &str,
        (plaintext, options): &Self::Item,
    ) -> Result<Encrypted, BaoError> {
        transit
            .encrypt(name, plaintext.expose_secret(), options)
            .await
    }

    async fn many(
        transit: Transit,
        name: &str,
        items: &[Self::Item],
    ) -> Result<Vec<BatchItem<Encrypted>>, BaoError> {
        let items: Vec<(&[u8], &EncryptOptions)> =
            items.iter().map(|(p, o)| (p.expose_secret(), o)).collect();
        transit.encrypt_each(name, &items).await
    }
}

/// `decrypt/<name>`: a ciphertext and its associated data.
#[derive(Debug)]
pub struct Decrypt;

impl Operation for Decrypt {
    type Item = (String, Option<Vec<u8>>);
    type Output = SecretSlice<u8>;

    fn queues(session: &Session) -> &Batcher<Self> {
        &session.batches().decrypt
    }

    async fn one(
        transit: Transit,
        name: &str,
        (ciphertext, ad): &Self::Item,
    ) -> Result<SecretSlice<u8>, BaoError> {
        transit.decrypt(name, ciphertext, ad.as_deref()).await
    }

    async fn many(
        transit: Transit,
        name: &str,
        items: &[Self::Item],
    ) -> Result<Vec<BatchItem<SecretSlice<u8>>>, BaoError> {
        let items: Vec<(&str, Option<&[u8]>)> = items
            .iter()
            .map(|(c, ad)| (c.as_str(), ad.as_deref()))
            .collect();
        transit.decrypt_each(name, &items).await
    }
}

/// `rewrap/<name>`: a ciphertext and the version to re-wrap it to.
#[derive(Debug)]
pub struct Rewrap;

impl Operation for Rewrap {
    type Item = (String, Option<u32>);
    type Output = Encrypted;

    fn queues(session: &Session) -> &Batcher<Self> {
        &session.batches().rewrap
    }

    async fn one(
        transit: Transit,
        name: &str,
        (ciphertext, version): &Self::Item,
    ) -> Result<Encrypted, BaoError> {
        transit.rewrap(name, ciphertext, *version).await
    }

    async fn many(
        transit: Transit,
        name: &str,
        items: &[Self::Item],
    ) -> Result<Vec<BatchItem<Encrypted>>, BaoError> {
        let items: Vec<(&str, Option<u32>)> = items.iter().map(|(c, v)| (c.as_str(), *v)).collect();
        transit.rewrap_each(name, &items).await
    }
}

/// The queues of every batched operation of one session, and counters.
#[derive(Debug, Default)]
pub struct Batches {
    encrypt: Batcher<Encrypt>,
    decrypt: Batcher<Decrypt>,
    rewrap: Batcher<Rewrap>,
    requests: AtomicU64,
    items: AtomicU64,
}

impl Batches {
    pub fn stats(&self) -> BatchStats {
        BatchStats {
            requests: self.requests.load(Ordering::Relaxed),
            items: self.items.load(Ordering::Relaxed),
        }
    }
}

/// How many `batch_input` requests a session sent and how many calls they
/// carried (calls sent alone are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub requests: u64,
    pub items: u64,
}

/// One operation's queues: a key is in the map while a call for it is in
/// flight, with the calls waiting for the next request.
pub struct Batcher<O: Operation> {
    queues: Mutex<HashMap<KeyRef, Vec<Waiter<O>>>>,
}

impl<O: Operation> Default for Batcher<O> {
    fn default() -> Self {
        Self {
            queues: Mutex::default(),
        }
    }
}

impl<O: Operation> fmt::Debug for Batcher<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher")
            .field("keys_in_flight", &self.lock().len())
            .finish()
    }
}

impl<O: Operation> Batcher<O> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyRef, Vec<Waiter<O>>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next request's calls, or `None` (and the key leaves the map)
    /// when nobody waits.
    fn next_batch(&self, key: &KeyRef) -> Option<Vec<Waiter<O>>> {
        let mut queues = self.lock();
        let waiting = queues.get_mut(key)?;
        if waiting.is_empty() {
            queues.remove(key);
            return None;
        }
        let take = waiting.len().min(MAX_BATCH);
        Some(waiting.drain(..take).collect())
    }
}

type Reply<O> = Result<<O as Operation>::Output, Status>;

struct Waiter<O: Operation> {
    item: O::Item,
    reply: oneshot::Sender<Reply<O>>,
}

/// What a call does: lead (send at once, alone) or wait for a batch.
enum Turn<O: Operation> {
    Lead(O::Item),
    Wait(oneshot::Receiver<Reply<O>>),
}

/// Runs `item` on `key`: at once and alone when nothing is in flight for
/// it, else in the next batch.
pub async fn submit<O: Operation>(session: &Arc<Session>, key: &KeyRef, item: O::Item) -> Reply<O> {
    let turn = {
        let mut queues = O::queues(session).lock();
        match queues.get_mut(key) {
            Some(waiting) => {
                let (reply, answer) = oneshot::channel();
                waiting.push(Waiter { item, reply });
                Turn::<O>::Wait(answer)
            }
            None => {
                queues.insert(key.clone(), Vec::new());
                Turn::Lead(item)
            }
        }
    };
    match turn {
        Turn::Lead(item) => {
            // Hands the queue on when this call ends, even if its caller
            // gives up half-way.
            let _in_flight = InFlight::<O>::new(session.clone(), key.clone());
            alone::<O>(session, key, &item).await
        }
        Turn::Wait(answer) => answer.await.unwrap_or_else(|_| {
            Err(Status::unavailable(
                "the batched OpenBao call was abandoned; retry",
            ))
        }),
    }
}

/// A call for `key` is in flight; on drop the waiting calls go out as the
/// next batch, on a task of their own.
struct InFlight<O: Operation> {
    session: Arc<Session>,
    key: KeyRef,
    operation: PhantomData<O>,
}

impl<O: Operation> InFlight<O> {
    fn new(session: Arc<Session>, key: KeyRef) -> Self {
        Self {
            session,
            key,
            operation: PhantomData,
        }
    }
}

impl<O: Operation> Drop for InFlight<O> {
    fn drop(&mut self) {
        let Some(batch) = O::queues(&self.session).next_batch(&self.key) else {
            return;
        };
        let next = InFlight::<O>::new(self.session.clone(), self.key.clone());
        // Without a runtime (the process is ending) the batch is dropped:
        // its callers get `Unavailable`, and `next` empties the queue.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                run_batch::<O>(&next.session, &next.key, batch).await;
                drop(next);
            });
        }
    }
}

async fn run_batch<O: Operation>(session: &Session, key: &KeyRef, batch: Vec<Waiter<O>>) {
    let (items, replies): (Vec<O::Item>, Vec<_>) =
        batch.into_iter().map(|w| (w.item, w.reply)).unzip();
    let results = if let [item] = items.as_slice() {
        vec![alone::<O>(session, key, item).await]
    } else {
        together::<O>(session, key, &items).await
    };
    for (reply, result) in replies.into_iter().zip(results) {
        // A caller that gave up no longer listens.
        let _ = reply.send(result);
    }
}

fn status(error: &BaoError) -> Status {
    mapping::status_from_bao(error, Rpc::Other)
}

/// The unbatched call.
async fn alone<O: Operation>(session: &Session, key: &KeyRef, item: &O::Item) -> Reply<O> {
    let name = key.name.as_str();
    session
        .transit(&key.mount, |t| O::one(t, name, item))
        .await
        .map_err(|e| status(&e))
}

/// One batch request; per-item results.
async fn together<O: Operation>(
    session: &Session,
    key: &KeyRef,
    items: &[O::Item],
) -> Vec<Reply<O>> {
    let name = key.name.as_str();
    session.batches().requests.fetch_add(1, Ordering::Relaxed);
    session
        .batches()
        .items
        .fetch_add(items.len() as u64, Ordering::Relaxed);
    // `None`: only the call alone tells which status this caller would get.
    let settled: Vec<Option<Reply<O>>> = match session
        .transit(&key.mount, |t| O::many(t, name, items))
        .await
    {
        Ok(results) => results
            .into_iter()
            .map(|result| match result {
                Err(e) if needs_alone(&e) => None,
                other => Some(other.map_err(|e| status(&as_if_alone(e)))),
            })
            .collect(),
        Err(e) if needs_alone(&e) || matches!(e, BaoError::Decode { .. }) => {
            items.iter().map(|_| None).collect()
        }
        // A failure of the request as a whole (key missing or disabled,
        // refused token, sealed, unreachable) is every caller's.
        Err(e) => {
            let status = status(&e);
            items.iter().map(|_| Some(Err(status.clone()))).collect()
        }
    };
    if settled.iter().all(Option::is_some) {
        return settled.into_iter().flatten().collect();
    }
    tracing::debug!(key_id = %key.native_id(), items = items.len(), "OpenBao failed part of a batch internally; sending those calls alone");
    futures_util::future::join_all(
        settled
            .into_iter()
            .zip(items)
            .map(|(done, item)| async move {
                match done {
                    Some(reply) => reply,
                    None => alone::<O>(session, key, item).await,
                }
            }),
    )
    .await
}

/// OpenBao answers 500 for an internal error of any one item (and fails a
/// whole rewrap batch on one), 413 for a batch too large as a whole; alone,
/// only some callers, or none, would see it.
fn needs_alone(error: &BaoError) -> bool {
    matches!(error, BaoError::Server { status, .. } if matches!(status.as_u16(), 500 | 413))
}

/// OpenBao names a batch item by its index in some messages (`'[3].associated_data'
/// provided for non-AEAD cipher suite`); alone, the index is 0.
fn as_if_alone(error: BaoError) -> BaoError {
    match error {
        BaoError::BadRequest { path, message } => BaoError::BadRequest {
            path,
            message: zero_index(&message),
        },
        other => other,
    }
}

fn zero_index(message: &str) -> String {
    let indexed = message
        .strip_prefix("'[")
        .and_then(|rest| rest.split_once("]."))
        .filter(|(index, _)| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()));
    match indexed {
        Some((_, rest)) => format!("'[0].{rest}"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_indexes_read_as_a_lone_call() {
        assert_eq!(
            zero_index("'[12].associated_data' provided for non-AEAD cipher suite rsa-3072"),
            "'[0].associated_data' provided for non-AEAD cipher suite rsa-3072"
        );
        assert_eq!(
            zero_index("cipher: message authentication failed"),
            "cipher: message authentication failed"
        );
        assert_eq!(zero_index("'[x].a'"), "'[x].a'");
        assert_eq!(zero_index("'[]. a"), "'[]. a");
    }

    #[test]
    fn only_internal_errors_are_retried_alone() {
        let server = |code: u16| BaoError::Server {
            path: "transit/rewrap/k".into(),
            status: reqwest::StatusCode::from_u16(code).unwrap(),
            message: "m".into(),
        };
        assert!(needs_alone(&server(500)) && needs_alone(&server(413)));
        assert!(!needs_alone(&server(503)), "an outage is everyone's");
        let bad = BaoError::BadRequest {
            path: "transit/decrypt/k".into(),
            message: "'[3].associated_data' provided".into(),
        };
        assert!(!needs_alone(&bad));
        match as_if_alone(bad) {
            BaoError::BadRequest { message, .. } => {
                assert_eq!(message, "'[0].associated_data' provided");
            }
            other => panic!("{other:?}"),
        }
    }
}
