//! The router and the shard exit at start when the shard map in their
//! config file leaves a slot without an owner or gives it two.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Time allowed for a process to reject its config and exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Writes a config file with two shards whose slot ranges are `first` and
/// `second`.
fn write_config(dir: &Path, first: &str, second: &str) -> std::path::PathBuf {
    let path = dir.join("cluster.toml");
    let text = format!(
        "map_version = 1\n\n\
         [[shard_map]]\nid = 0\naddress = \"127.0.0.1:1\"\nslots = {first}\n\n\
         [[shard_map]]\nid = 1\naddress = \"127.0.0.1:2\"\nslots = {second}\n"
    );
    std::fs::write(&path, text).expect("the temporary folder is writable");
    path
}

/// Runs `trecho-node ARGS` and returns its output, killing it when it is
/// still running after [`EXIT_TIMEOUT`].
fn run_node(args: &[&str], data_dir: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trecho-node"))
        .args(args)
        .env("TRECHO_DATA_DIR", data_dir)
        .env("TRECHO_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("trecho-node starts");
    let started = Instant::now();
    while child.try_wait().expect("the child can be polled").is_none() {
        if started.elapsed() > EXIT_TIMEOUT {
            child.kill().expect("the child can be killed");
            panic!("trecho-node {args:?} still runs {EXIT_TIMEOUT:?} after start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
        .wait_with_output()
        .expect("the child's output is readable")
}

#[test]
fn router_and_shard_reject_incomplete_map() {
    let cases = [
        (
            "[[0, 8000]]",
            "[[8002, 16383]]",
            "slots 8001-8001 have no owner",
        ),
        (
            "[[0, 8001]]",
            "[[8001, 16383]]",
            "slot 8001 is owned by shards 0 and 1",
        ),
        (
            "[[0, 8000]]",
            "[[8001, 16382]]",
            "slots 16383-16383 have no owner",
        ),
    ];
    for (first, second, expected) in cases {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let config = write_config(dir.path(), first, second);
        let config = config.to_str().expect("the temporary path is UTF-8");
        for node in [
            vec!["router", "--config", config],
            vec!["shard", "--config", config, "--id", "0"],
        ] {
            let output = run_node(&node, &dir.path().join("data"));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                !output.status.success(),
                "{node:?} started on slots {first} and {second}"
            );
            assert!(
                stderr.contains(expected),
                "{node:?} on slots {first} and {second} printed no \"{expected}\": {stderr}"
            );
        }
    }
}
