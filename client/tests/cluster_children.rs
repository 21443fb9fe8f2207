//! `trecho cluster` as a process: its children must not outlive it.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Returns a loopback port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn is_running(pid: u32) -> bool {
    // A zombie keeps its /proc entry until reaped; its state is 'Z'.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.contains(") Z "),
        Err(_) => false,
    }
}

#[test]
fn children_exit_when_cluster_is_killed() {
    let data = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cluster = Command::new(env!("CARGO_BIN_EXE_trecho"))
        .args([
            "cluster", "--shards", "2", "--days", "2", "--listen", &listen,
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The supervisor logs "child started ... pid=N" for each child, then
    // "cluster ready".
    let stderr = BufReader::new(cluster.stderr.take().unwrap());
    let mut pids = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains("child started") {
            let pid = line.rsplit("pid=").next().unwrap().trim();
            pids.push(pid.parse::<u32>().unwrap());
        }
        if line.contains("cluster ready") {
            break;
        }
    }
    assert_eq!(pids.len(), 3, "two shards and a router, got {pids:?}");
    assert!(pids.iter().all(|&pid| is_running(pid)));

    cluster.kill().unwrap();
    cluster.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&pid| is_running(pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<u32> = pids.into_iter().filter(|&pid| is_running(pid)).collect();
    for &pid in &left {
        // Clean up before failing, so the test leaves no process behind.
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    assert!(
        left.is_empty(),
        "children still running after the cluster died: {left:?}"
    );
    assert!(Path::new(&data.path().join("shard-0").join("LOCK")).exists());
}

#[test]
fn second_cluster_on_same_data_stops_with_the_cause() {
    let data = tempfile::tempdir().unwrap();
    let start = |listen: String| {
        Command::new(env!("CARGO_BIN_EXE_trecho"))
            .args([
                "cluster", "--shards", "2", "--days", "2", "--listen", &listen,
            ])
            .args(["--ready-timeout", "300"])
            .arg("--data-dir")
            .arg(data.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = start(format!("127.0.0.1:{}", free_port()));
    let stderr = BufReader::new(first.stderr.take().unwrap());
    let ready = stderr
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("cluster ready"));
    assert!(ready, "the first cluster never became ready");

    let started = Instant::now();
    let second = start(format!("127.0.0.1:{}", free_port()));
    let output = second.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    first.kill().unwrap();
    first.wait().unwrap();

    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the second cluster must fail");
    assert!(log.contains("in use by another shard process"), "{log}");
    assert!(
        log.contains("exited with an error while the cluster was starting"),
        "{log}"
    );
    // Far from the 300 s readiness timeout: the refusal ends the start
    // instead of being retried until then.
    assert!(elapsed < Duration::from_secs(100), "took {elapsed:?}");
}
