//! The audit against an in-process fake router and fake shard.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use trecho_client::audit::{self, ExpectedBooking, Options, Violation};
use trecho_common::internal::{
    AuditReport, AuditSegment, InternalRequest, InternalResponse, InternalResult, ShardOp,
    ShardReply,
};
use trecho_common::types::BookingStatus;

/// Returns `cluster.status` with one shard at `shard_addr` owning every
/// slot, on every connection.
async fn fake_router(shard_addr: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(answer_status(stream, shard_addr.clone()));
        }
    });
    addr
}

async fn answer_status(stream: TcpStream, shard_addr: String) {
    let (read_half, mut write_half) = stream.into_split();
    let mut lines = BufReader::new(read_half).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let request: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(request["method"], "cluster.status");
        let result = json!({
            "slots_total": 16384,
            "map_version": 3,
            "shards": [{"id": 0, "address": shard_addr, "slots": [[0, 16383]],
                        "healthy": true, "segments": 1, "bookings": 0}],
        });
        let response = json!({"jsonrpc": "2.0", "id": request["id"], "result": result});
        let mut out = serde_json::to_vec(&response).unwrap();
        out.push(b'\n');
        write_half.write_all(&out).await.unwrap();
    }
}

/// Serves the internal protocol: returns `report` for `audit` and `pong` for
/// `ping`, on every connection.
async fn fake_shard(report: AuditReport) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(answer_internal(stream, report.clone()));
        }
    });
    addr
}

async fn answer_internal(stream: TcpStream, report: AuditReport) {
    let (read_half, mut write_half) = stream.into_split();
    let mut lines = BufReader::new(read_half).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let request: InternalRequest = serde_json::from_str(&line).unwrap();
        let reply = match request.op {
            ShardOp::Audit => ShardReply::Audit(report.clone()),
            ShardOp::Ping => ShardReply::Pong,
            other => panic!("the audit sent {other:?}"),
        };
        let response = InternalResponse {
            id: request.id,
            result: InternalResult::Ok(reply),
        };
        let mut out = serde_json::to_vec(&response).unwrap();
        out.push(b'\n');
        if write_half.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn report_with_taken(taken: u32) -> AuditReport {
    AuditReport {
        shard_id: 0,
        segments: vec![AuditSegment {
            id: "AD1-2026-12-20".into(),
            capacity: 4,
            taken,
        }],
        reservations: Vec::new(),
        bookings: Vec::new(),
        pending: Vec::new(),
        unacknowledged: Vec::new(),
    }
}

#[tokio::test]
async fn audit_reports_seats_taken_without_reservations() {
    let shard = fake_shard(report_with_taken(5)).await;
    let router = fake_router(shard).await;
    let options = Options {
        in_doubt_after: Duration::from_millis(100),
        expected: vec![ExpectedBooking {
            locator: "AAAAAA".into(),
            status: BookingStatus::Confirmed,
        }],
    };
    let report = tokio::time::timeout(Duration::from_secs(10), audit::check(&router, &options))
        .await
        .expect("the audit finishes")
        .unwrap();
    assert_eq!(report.shards, 1);
    assert_eq!(
        report.violations,
        vec![
            Violation::OverCapacity {
                shard: 0,
                segment: "AD1-2026-12-20".into(),
                taken: 5,
                capacity: 4,
            },
            Violation::TakenMismatch {
                shard: 0,
                segment: "AD1-2026-12-20".into(),
                taken: 5,
                reserved: 0,
            },
            Violation::ExpectedBookingMissing {
                booking: "AAAAAA".into(),
                expected: BookingStatus::Confirmed,
            },
        ]
    );
}

#[tokio::test]
async fn settled_cluster_reports_settled() {
    let shard = fake_shard(report_with_taken(0)).await;
    let router = fake_router(shard).await;
    let wait = audit::wait_settled(&router, Duration::from_secs(1));
    let settled = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the wait finishes")
        .unwrap();
    assert!(settled);
}

#[tokio::test]
async fn pending_transaction_is_in_doubt_after_the_wait() {
    let mut report = report_with_taken(0);
    report.segments.clear();
    report.pending.push(42);
    let shard = fake_shard(report).await;
    let router = fake_router(shard).await;
    let options = Options {
        in_doubt_after: Duration::from_millis(300),
        expected: Vec::new(),
    };
    let check = audit::check(&router, &options);
    let report = tokio::time::timeout(Duration::from_secs(10), check)
        .await
        .expect("the audit finishes")
        .unwrap();
    assert_eq!(
        report.violations,
        vec![Violation::PendingInDoubt { shard: 0, txn: 42 }]
    );
}
