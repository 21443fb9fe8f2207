//! The client against tiny in-process servers that respond as scripted.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use trecho_client::{BookParams, Client, ClientError, Passenger, RawConnection};
use trecho_common::Error;

const LIMIT: Duration = Duration::from_secs(10);

async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

/// Reads `count` request lines from one connection.
async fn read_requests(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    count: usize,
) -> Vec<Value> {
    let mut requests = Vec::new();
    for _ in 0..count {
        let line = lines.next_line().await.unwrap().expect("a request line");
        requests.push(serde_json::from_str(&line).unwrap());
    }
    requests
}

async fn accept(
    listener: &TcpListener,
) -> (
    tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let (stream, _) = listener.accept().await.unwrap();
    let (read_half, write_half) = stream.into_split();
    (BufReader::new(read_half).lines(), write_half)
}

async fn send(writer: &mut tokio::net::tcp::OwnedWriteHalf, response: Value) {
    let mut line = serde_json::to_vec(&response).unwrap();
    line.push(b'\n');
    writer.write_all(&line).await.unwrap();
}

#[tokio::test]
async fn pipelined_calls_match_responses_answered_in_reverse() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut lines, mut writer) = accept(&listener).await;
        // Every call must be in flight before the first response is sent;
        // a client that waited for each response would stall here.
        let requests = read_requests(&mut lines, 5).await;
        for request in requests.iter().rev() {
            assert_eq!(request["jsonrpc"], "2.0");
            let response = json!({
                "jsonrpc": "2.0",
                "id": request["id"],
                "result": {"n": request["params"]["n"], "method": request["method"]},
            });
            send(&mut writer, response).await;
        }
    });
    let client = Client::connect(&addr).await.unwrap();
    let calls = (0..5).map(|n| {
        let client = client.clone();
        tokio::spawn(async move { client.call("echo", json!({ "n": n })).await })
    });
    let results = tokio::time::timeout(LIMIT, futures::future::join_all(calls))
        .await
        .expect("the calls finish");
    for (n, result) in results.into_iter().enumerate() {
        let result = result.unwrap().unwrap();
        assert_eq!(result["n"], n);
        assert_eq!(result["method"], "echo");
    }
    server.await.unwrap();
}

#[tokio::test]
async fn sold_out_error_becomes_typed() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut lines, mut writer) = accept(&listener).await;
        let request = read_requests(&mut lines, 1).await.remove(0);
        assert_eq!(request["method"], "bookings.create");
        assert_eq!(request["params"]["segments"][0], "AD1-2026-12-20");
        assert_eq!(request["params"]["seats"], 3);
        let error = Error::SoldOut {
            segment: "AD1-2026-12-20".into(),
            requested: 3,
            left: 1,
        };
        let response = json!({"jsonrpc": "2.0", "id": request["id"], "error": error.to_json()});
        send(&mut writer, response).await;
    });
    let client = Client::connect(&addr).await.unwrap();
    let params = BookParams {
        passenger: Passenger {
            name: "Ana Souza".into(),
            document: "X1".into(),
        },
        segments: vec!["AD1-2026-12-20".into()],
        seats: Some(3),
        request_id: None,
        hold_seconds: None,
    };
    let error = client.create(params).await.unwrap_err();
    assert_eq!(error.kind(), Some("sold_out"));
    assert_eq!(error.rpc().map(|rpc| rpc.code), Some(1001));
    assert_eq!(
        error.trecho_error(),
        Some(&Error::SoldOut {
            segment: "AD1-2026-12-20".into(),
            requested: 3,
            left: 1,
        })
    );
    server.await.unwrap();
}

#[tokio::test]
async fn typed_results_are_read() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut lines, mut writer) = accept(&listener).await;
        let request = read_requests(&mut lines, 1).await.remove(0);
        assert_eq!(request["method"], "cluster.status");
        assert!(request.get("params").is_none(), "{request}");
        let result = json!({
            "slots_total": 16384,
            "map_version": 1,
            "shards": [{"id": 0, "address": "127.0.0.1:7001", "slots": [[0, 16383]],
                        "healthy": true, "segments": 12, "bookings": null}],
        });
        send(
            &mut writer,
            json!({"jsonrpc": "2.0", "id": request["id"], "result": result}),
        )
        .await;
    });
    let client = Client::connect(&addr).await.unwrap();
    let status = client.status().await.unwrap();
    assert_eq!(status.map_version, 1);
    assert_eq!(status.shards[0].slots, vec![[0, 16383]]);
    assert_eq!(status.shards[0].segments, Some(12));
    assert_eq!(status.shards[0].bookings, None);
    server.await.unwrap();
}

#[tokio::test]
async fn closed_connection_fails_waiting_and_later_calls() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut lines, writer) = accept(&listener).await;
        read_requests(&mut lines, 1).await;
        drop((lines, writer));
    });
    let client = Client::connect(&addr).await.unwrap();
    let error = client.ping().await.unwrap_err();
    assert!(
        matches!(error, ClientError::ConnectionLost { .. }),
        "{error:?}"
    );
    let error = client.ping().await.unwrap_err();
    assert!(
        matches!(error, ClientError::ConnectionLost { .. }),
        "{error:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn refused_connection_names_address_and_fix() {
    let (listener, addr) = listener().await;
    drop(listener);
    let error = match Client::connect(&addr).await {
        Ok(_) => panic!("nothing listens on {addr}"),
        Err(error) => error,
    };
    let message = error.to_string();
    assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
    assert!(message.contains(&addr), "{message}");
    assert!(message.contains("trecho cluster"), "{message}");
}

#[tokio::test]
async fn request_timeout_fails_the_call() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut lines, writer) = accept(&listener).await;
        read_requests(&mut lines, 1).await;
        // Keep the connection open without a response until the client
        // gives up and closes it.
        let _ = lines.next_line().await;
        drop(writer);
    });
    let options = trecho_client::ClientOptions {
        request_timeout: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    let client = Client::connect_with(&addr, options).await.unwrap();
    let error = client.ping().await.unwrap_err();
    assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
    drop(client);
    tokio::time::timeout(LIMIT, server)
        .await
        .expect("dropping the client closes the connection")
        .unwrap();
}

#[tokio::test]
async fn raw_connection_reads_lines_across_cancelled_reads() {
    let (listener, addr) = listener().await;
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut stream: TcpStream = stream;
        stream.write_all(b"{\"half\":").await.unwrap();
        stream.flush().await.unwrap();
        released.await.unwrap();
        stream.write_all(b"true}\r\nsecond\n").await.unwrap();
    });
    let mut raw = RawConnection::connect(&addr).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(100), raw.read_line()).await;
    assert!(early.is_err(), "no full line was sent yet");
    release.send(()).unwrap();
    let first = raw.read_json().await.unwrap().unwrap();
    assert_eq!(first, json!({"half": true}));
    assert_eq!(raw.read_line().await.unwrap().unwrap(), b"second");
    assert_eq!(raw.read_line().await.unwrap(), None);
    server.await.unwrap();
}
