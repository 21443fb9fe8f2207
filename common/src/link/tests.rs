use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures::FutureExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;
use crate::internal::{InternalRequest, InternalResponse, InternalResult};

fn quick_options() -> LinkOptions {
    LinkOptions {
        connect_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_millis(300),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        queue: 1024,
        ..LinkOptions::default()
    }
}

/// Answers `ping` with `pong` and every other request with `seats` holding
/// the request id, writing each read's answers in reverse order. Stops
/// answering anything once `silent` is set.
async fn fake_shard(listener: TcpListener, silent: Arc<AtomicBool>) {
    while let Ok((stream, _)) = listener.accept().await {
        let silent = silent.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if silent.load(Ordering::Relaxed) {
                    continue;
                }
                let mut batch = vec![line];
                while let Some(Ok(Some(more))) = lines.next_line().now_or_never() {
                    batch.push(more);
                }
                let mut out = Vec::new();
                for line in batch.iter().rev() {
                    let request: InternalRequest = serde_json::from_str(line).unwrap();
                    let reply = match request.op {
                        ShardOp::Ping => ShardReply::Pong,
                        _ => ShardReply::Seats {
                            seats: vec![Some(request.id as u32)],
                        },
                    };
                    let response = InternalResponse {
                        id: request.id,
                        result: InternalResult::Ok(reply),
                    };
                    serde_json::to_writer(&mut out, &response).unwrap();
                    out.push(b'\n');
                }
                if write.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn start_fake() -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let silent = Arc::new(AtomicBool::new(false));
    tokio::spawn(fake_shard(listener, silent.clone()));
    (address, silent)
}

fn seats_op() -> ShardOp {
    ShardOp::Seats {
        ids: vec!["AD1-2026-12-20".into()],
    }
}

#[tokio::test]
async fn pipelined_requests_get_their_own_answers() {
    let (address, _) = start_fake().await;
    let link = ShardLink::spawn(0, address, quick_options());
    let calls: Vec<_> = (0..300).map(|_| link.send(&seats_op())).collect();
    let answers = futures::future::join_all(calls).await;
    let mut seen = Vec::new();
    for answer in answers {
        match answer.unwrap() {
            ShardReply::Seats { seats } => seen.push(seats[0].unwrap()),
            other => panic!("unexpected reply {other:?}"),
        }
    }
    // Requests are sent in `send` order, so ids rise with the call index.
    let expected: Vec<u32> = (1..=300).collect();
    assert_eq!(seen, expected);
    assert!(link.is_healthy());
}

#[tokio::test]
async fn silent_shard_fails_requests_within_the_deadline() {
    let (address, silent) = start_fake().await;
    let link = ShardLink::spawn(0, address, quick_options());
    link.call(&ShardOp::Ping).await.unwrap();
    silent.store(true, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let error = link.call(&seats_op()).await.unwrap_err();
    assert_eq!(error, LinkError::Lost { shard: 0 });
    assert!(started.elapsed() < Duration::from_millis(800));
    // Reconnecting needs an answered greeting, which a silent shard never
    // sends, so later calls fail at once without being sent.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    let error = link.call(&seats_op()).await.unwrap_err();
    assert!(
        matches!(error, LinkError::Unavailable { shard: 0, .. }),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(!link.is_healthy());
}

#[tokio::test]
async fn unreachable_shard_fails_fast_and_link_recovers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let link = ShardLink::spawn(3, address.clone(), quick_options());
    let started = std::time::Instant::now();
    let error = link.call(&ShardOp::Ping).await.unwrap_err();
    assert!(
        matches!(error, LinkError::Unavailable { shard: 3, .. }),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(250));

    let listener = TcpListener::bind(&address).await.unwrap();
    tokio::spawn(fake_shard(listener, Arc::new(AtomicBool::new(false))));
    let recovered = async {
        loop {
            if link.call(&ShardOp::Ping).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(Duration::from_secs(3), recovered)
        .await
        .expect("the link reconnects after the shard comes back");
    assert!(link.is_healthy());
}

/// Starts a shard that serves one connection, answering each request in
/// order with `answer`, and returns its address.
async fn answering_shard(
    answer: impl Fn(&InternalRequest) -> InternalResult + Send + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let request: InternalRequest = serde_json::from_str(&line).unwrap();
            let response = InternalResponse {
                id: request.id,
                result: answer(&request),
            };
            let mut out = serde_json::to_vec(&response).unwrap();
            out.push(b'\n');
            write.write_all(&out).await.unwrap();
        }
    });
    address
}

#[tokio::test]
async fn refusal_is_returned_as_remote_error() {
    let address = answering_shard(|request| match request.op {
        ShardOp::Ping => InternalResult::Ok(ShardReply::Pong),
        _ => InternalResult::Err(ShardError::NotOwner {
            slot: 1,
            shard: 0,
            map_version: 2,
            owner: None,
        }),
    })
    .await;
    let link = ShardLink::spawn(0, address, quick_options());
    let error = link.call(&seats_op()).await.unwrap_err();
    assert!(
        matches!(
            error,
            LinkError::Remote(ShardError::NotOwner { slot: 1, .. })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn requests_carry_current_map_version() {
    let (seen, mut versions) = mpsc::unbounded_channel();
    let address = answering_shard(move |request| {
        let _ = seen.send((request.id, request.map_version));
        InternalResult::Ok(ShardReply::Pong)
    })
    .await;
    let options = quick_options();
    let version = options.map_version.clone();
    version.store(3, Ordering::Relaxed);
    let link = ShardLink::spawn(0, address, options);

    link.call(&ShardOp::Ping).await.unwrap();
    version.store(4, Ordering::Relaxed);
    link.call(&ShardOp::Ping).await.unwrap();

    let mut requests = Vec::new();
    while let Ok(request) = versions.try_recv() {
        requests.push(request);
    }
    // The greeting ping (id 0) routes nothing, so it carries no version.
    assert_eq!(requests, vec![(0, 0), (1, 3), (2, 4)]);
}
