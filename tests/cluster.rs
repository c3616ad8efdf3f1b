//! A cluster of real `taskflow` processes sharing one PostgreSQL database and one Redis: events
//! written through any node reach every subscriber on every node once each, in offset order;
//! a node killed with SIGKILL, a Redis restarted, a load balancer in front: nothing is lost.
//! Each test has its own database and its own Redis key prefix; the Redis restart test runs its
//! own `redis-server` (on a free port) so it never disturbs the shared one on 6379.

mod binary;
#[path = "../crates/server/tests/common/mod.rs"]
mod common;
#[path = "../crates/server/tests/docs/editor.rs"]
mod editor;
mod realtime_client;

use binary::{Prefix, TOKEN};
use common::{Backend, TestDb};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use realtime_client::*;
/// The shared Redis, as `scripts/test.sh` starts it.
const REDIS: &str = "redis://127.0.0.1:6379/";

/// One `taskflow serve` node of a cluster.
struct Node {
    child: Child,
    addr: String,
}

impl Node {
    fn start(db: &TestDb, redis: &str, prefix: &str, id: &str) -> Node {
        let (child, addr) = binary::start_with(
            &db.url,
            &[
                ("TASKFLOW_BROKER", redis),
                ("TASKFLOW_BROKER_PREFIX", prefix),
                ("TASKFLOW_NODE_ID", id),
                ("TASKFLOW_PRESENCE_TTL_SECS", "2"),
                ("TASKFLOW_BROKER_CHECK_INTERVAL_MS", "300"),
                ("TASKFLOW_SHUTDOWN_TIMEOUT_SECS", "3"),
                ("TASKFLOW_DASHBOARD_INTERVAL_MS", "200"),
            ],
        );
        Node { child, addr }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three nodes on a fresh PostgreSQL database and the shared Redis under a fresh prefix.
async fn cluster(n: usize) -> (TestDb, Vec<Node>, Prefix) {
    let db = TestDb::new(Backend::Postgres).await;
    let prefix = Prefix::new();
    let nodes = (0..n)
        .map(|i| Node::start(&db, REDIS, &prefix, &format!("node{i}")))
        .collect();
    (db, nodes, prefix)
}

/// A `redis-server` of this test's own, on a free port, that it may kill and restart.
struct OwnRedis {
    child: Option<Child>,
    port: u16,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let mut redis = OwnRedis::not_yet();
        redis.restart();
        redis
    }

    /// A free port where a Redis will run once [`OwnRedis::restart`] is called.
    fn not_yet() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        OwnRedis { child: None, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

const ROOMS: [&str; 2] = ["project:default", "project:p2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_every_node_reach_every_client_once_in_order() {
    let (db, nodes, _prefix) = cluster(3).await;
    create_project(&nodes[0].addr, "p2", &[]).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        clients.push(Client::connect(&nodes[i % 3].addr, TOKEN, &ROOMS).await);
    }
    let mut writers = Vec::new();
    for node in &nodes {
        for project in ["default", "p2"] {
            writers.push(writer(node.addr.clone(), project, 25));
        }
    }
    for w in writers {
        assert_eq!(w.await.unwrap(), 25, "every write is acknowledged");
    }
    let targets = last_offsets(&db, &ROOMS).await;
    assert_eq!(targets["project:p2"], 75, "75 tasks in p2");
    for client in &mut clients {
        assert!(client.read_until(&targets).await, "the node stays up");
        client.assert_complete(&targets);
    }
    // Nothing extra arrives after the end: no duplicate came late.
    let late = tokio::time::timeout(Duration::from_millis(500), clients[0].frame()).await;
    assert!(late.is_err(), "no frame after the last event: {late:?}");
    // Every node says the broker is up, and received events from the others through it.
    for node in &nodes {
        let (status, body) = get_json(&format!("http://{}/readyz", node.addr)).await;
        assert_eq!(
            (status, body["broker"].as_str()),
            (200, Some("ok")),
            "{body}"
        );
        let metrics = reqwest::get(format!("http://{}/metrics", node.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let received = metrics
            .lines()
            .find_map(|l| l.strip_prefix("broker_received_total "))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap());
        assert!(received > 0.0, "events came through Redis");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_node_resume_on_the_others_with_nothing_lost() {
    let (db, mut nodes, _prefix) = cluster(3).await;
    create_project(&nodes[0].addr, "p2", &[]).await;
    let mut doomed = Vec::new();
    for _ in 0..2 {
        doomed.push(Client::connect(&nodes[0].addr, TOKEN, &ROOMS).await);
    }
    let mut survivor = Client::connect(&nodes[1].addr, TOKEN, &ROOMS).await;
    // Writes through all three nodes, including the one about to die.
    let mut writers = Vec::new();
    for node in &nodes {
        writers.push(writer(node.addr.clone(), "default", 60));
        writers.push(writer(node.addr.clone(), "p2", 60));
    }
    // Under load: each doomed client has seen some events.
    for client in &mut doomed {
        let some: BTreeMap<String, i64> = ROOMS
            .iter()
            .map(|r| (r.to_string(), client.start[*r] + 10))
            .collect();
        assert!(client.read_until(&some).await);
    }
    nodes[0].kill();
    for (i, client) in doomed.iter_mut().enumerate() {
        client.read_until_closed().await;
        client.resume(&nodes[1 + i % 2].addr).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    let targets = last_offsets(&db, &ROOMS).await;
    for client in doomed.iter_mut().chain([&mut survivor]) {
        assert!(client.read_until(&targets).await);
        client.assert_complete(&targets);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_redis_restarts_under_load() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut redis = OwnRedis::start();
    let prefix = Prefix::new();
    let nodes: Vec<Node> = (0..2)
        .map(|i| Node::start(&db, &redis.url(), &prefix, &format!("node{i}")))
        .collect();
    create_project(&nodes[0].addr, "p2", &[]).await;
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(Client::connect(&nodes[i % 2].addr, TOKEN, &ROOMS).await);
    }
    let mut writers = Vec::new();
    for node in &nodes {
        writers.push(writer(node.addr.clone(), "default", 80));
        writers.push(writer(node.addr.clone(), "p2", 80));
    }
    let some: BTreeMap<String, i64> = ROOMS.iter().map(|r| (r.to_string(), 5)).collect();
    assert!(clients[0].read_until(&some).await);
    redis.kill();
    // The nodes notice and say so, and keep serving meanwhile.
    for node in &nodes {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = get_json(&format!("http://{}/readyz", node.addr)).await;
            if body["broker"] == "unreachable" {
                assert_eq!((status, body["status"].as_str()), (200, Some("degraded")));
                break;
            }
            assert!(Instant::now() < deadline, "readyz reports the broker down");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Events written while Redis is down still reach the other node's clients (from the log).
    let during = last_offsets(&db, &ROOMS).await;
    for client in &mut clients {
        assert!(client.read_until(&during).await);
    }
    redis.restart();
    for node in &nodes {
        let deadline = Instant::now() + WAIT;
        while get_json(&format!("http://{}/readyz", node.addr)).await.1["broker"] != "ok" {
            assert!(Instant::now() < deadline, "the nodes reconnect to Redis");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for w in writers {
        assert_eq!(w.await.unwrap(), 80, "writes never fail because of Redis");
    }
    let targets = last_offsets(&db, &ROOMS).await;
    for client in &mut clients {
        assert!(client.read_until(&targets).await);
        client.assert_complete(&targets);
    }
    let metrics = reqwest::get(format!("http://{}/metrics", nodes[0].addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("broker_reconnects_total"),
        "reconnects are counted"
    );
}

/// The `present` list of a presence answer, as (user, connections).
async fn presence(client: &mut Client, room: &str) -> Vec<(String, u64)> {
    let answer = client
        .command(json!({ "type": "presence", "room": room }))
        .await;
    answer["present"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["user"].as_str().unwrap().to_owned(),
                p["connections"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_the_cluster_and_a_killed_node_leaves_no_ghosts() {
    let (_db, mut nodes, _prefix) = cluster(3).await;
    create_project(&nodes[0].addr, "p1", &["amy", "bob", "cyd"]).await;
    let amy = token_for(&nodes[0].addr, "amy").await;
    let bob = token_for(&nodes[0].addr, "bob").await;
    let cyd = token_for(&nodes[0].addr, "cyd").await;
    let room = "project:p1";
    let mut bob_on_1 = Client::connect(&nodes[1].addr, &bob, &[room]).await;
    let mut amy_on_0 = Client::connect(&nodes[0].addr, &amy, &[room]).await;
    let _amy_again_on_2 = Client::connect(&nodes[2].addr, &amy, &[room]).await;
    let mut cyd_on_2 = Client::connect(&nodes[2].addr, &cyd, &[room]).await;
    // Bob, on another node, hears that Amy joined.
    loop {
        let frame = bob_on_1.frame().await.expect("presence.joined");
        if frame["type"] == "presence.joined" && frame["user"] == "amy" {
            break;
        }
    }
    // Typing crosses nodes too.
    amy_on_0
        .command(json!({ "type": "typing", "room": room }))
        .await;
    loop {
        let frame = bob_on_1.frame().await.expect("typing");
        if frame["type"] == "typing" && frame["user"] == "amy" {
            break;
        }
    }
    let all = vec![
        ("amy".to_owned(), 2),
        ("bob".to_owned(), 1),
        ("cyd".to_owned(), 1),
    ];
    let deadline = Instant::now() + WAIT;
    while presence(&mut cyd_on_2, room).await != all {
        assert!(Instant::now() < deadline, "the cluster's presence adds up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nodes[0].kill();
    // Amy's connection on node 0 is gone with it; after the TTL (2 s) it no longer counts.
    let killed_at = Instant::now();
    let without = vec![
        ("amy".to_owned(), 1),
        ("bob".to_owned(), 1),
        ("cyd".to_owned(), 1),
    ];
    while presence(&mut cyd_on_2, room).await != without {
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "the dead node's entries expire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        killed_at.elapsed() >= Duration::from_secs(1),
        "it took the TTL, not luck"
    );
    assert_eq!(
        presence(&mut bob_on_1, room).await,
        without,
        "every node agrees"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shut_down_with_sigterm_closes_its_clients_with_1001_and_they_resume_elsewhere() {
    let (db, mut nodes, _prefix) = cluster(2).await;
    let mut client = Client::connect(&nodes[0].addr, TOKEN, &["project:default"]).await;
    assert_eq!(
        writer(nodes[1].addr.clone(), "default", 5).await.unwrap(),
        5
    );
    let five: BTreeMap<String, i64> = [("project:default".to_owned(), 5)].into();
    assert!(client.read_until(&five).await);
    nodes[0].terminate();
    client.read_until_closed().await;
    assert_eq!(client.closes, [1001], "going away: reconnect elsewhere");
    assert_eq!(
        writer(nodes[1].addr.clone(), "default", 5).await.unwrap(),
        5
    );
    client.resume(&nodes[1].addr).await;
    let targets = last_offsets(&db, &["project:default"]).await;
    assert!(client.read_until(&targets).await);
    client.assert_complete(&targets);
}

/// `nginx` in front of the nodes, as docs/operations.md configures it, on a free port.
struct Nginx {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(upstreams: &[&str]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The documented configuration itself, pointed at this test's nodes and port.
        let documented = include_str!("../deploy/cluster/nginx.conf");
        let mut config = String::from("user root root;\n");
        let mut upstreams = upstreams.iter();
        for line in documented.lines() {
            let line = if line.trim_start().starts_with("server 127.0.0.1:300") {
                match upstreams.next() {
                    Some(addr) => format!("    server {addr} max_fails=1 fail_timeout=5s;"),
                    None => continue,
                }
            } else if line.trim_start().starts_with("listen ") {
                format!("    listen 127.0.0.1:{port};")
            } else if line.starts_with("worker_processes") {
                "worker_processes 1;".to_owned()
            } else if line.starts_with("events") {
                "events { worker_connections 1024; }".to_owned()
            } else {
                line.to_owned()
            };
            config.push_str(&line);
            config.push('\n');
        }
        assert!(
            upstreams.next().is_none(),
            "the documented config has 3 nodes"
        );
        let file = dir.path().join("nginx.conf");
        std::fs::write(&file, config).unwrap();
        // Debian installs it in /usr/sbin, which is not on every user's PATH.
        let program = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nginx");
        let child = Command::new(program)
            .arg("-c")
            .arg(&file)
            .arg("-p")
            .arg(dir.path())
            // One process: nothing outlives the test's handle on it (workers of a killed master
            // would).
            .args(["-g", "daemon off; master_process off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx is installed (scripts/test.sh installs it)");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: nginx's fast shutdown; SIGKILL only if that does not end it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads SSE `event` frames from a response until `count` arrived; returns their offsets.
async fn sse_offsets(res: reqwest::Response, count: usize) -> Vec<i64> {
    sse_events(res, count)
        .await
        .into_iter()
        .map(|(_, offset)| offset)
        .collect()
}

/// Reads SSE `event` frames until `count` arrived; returns each one's `id:` and offset.
async fn sse_events(res: reqwest::Response, count: usize) -> Vec<(String, i64)> {
    let mut body = res.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("SSE data in time")
            .expect("the stream stays open")
            .unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut id = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim_start().to_owned();
                }
            }
            for line in block.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    let frame: Value = serde_json::from_str(data.trim_start()).unwrap();
                    if frame["type"] == "event" {
                        events.push((id.clone(), frame["offset"].as_i64().unwrap()));
                    }
                }
            }
        }
    }
    events
}

/// The `ws_connections` gauge of a node.
async fn connections_on(node: &Node) -> i64 {
    let text = reqwest::get(format!("http://{}/metrics", node.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("ws_connections "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_in_front_passes_websocket_and_sse_and_a_client_survives_its_node() {
    let (db, mut nodes, _prefix) = cluster(3).await;
    let addrs: Vec<&str> = nodes.iter().map(|n| n.addr.as_str()).collect();
    let nginx = Nginx::start(&addrs);
    // SSE through the balancer, written through the balancer (so through any node).
    let sse = reqwest::Client::new()
        .get(format!(
            "http://{}/events?rooms=project:default",
            nginx.addr
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert!(sse.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let reading = tokio::spawn(sse_offsets(sse, 10));
    assert_eq!(writer(nginx.addr.clone(), "default", 10).await.unwrap(), 10);
    let offsets = tokio::time::timeout(WAIT, reading).await.unwrap().unwrap();
    assert_eq!(offsets, (1..=10).collect::<Vec<_>>(), "SSE passes through");
    // A WebSocket client through the balancer; find the node it landed on.
    let mut client = Client::connect(&nginx.addr, TOKEN, &["project:default"]).await;
    let deadline = Instant::now() + WAIT;
    let on = loop {
        let mut counts = Vec::new();
        for node in &nodes {
            counts.push(connections_on(node).await);
        }
        if counts.iter().sum::<i64>() == 1 {
            break counts.iter().position(|&c| c == 1).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "one connection in all: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(writer(nginx.addr.clone(), "default", 5).await.unwrap(), 5);
    let fifteen: BTreeMap<String, i64> = [("project:default".to_owned(), 15)].into();
    assert!(client.read_until(&fifteen).await);
    nodes[on].kill();
    client.read_until_closed().await;
    // Writes go on through the balancer; the client comes back through it to another node.
    assert_eq!(writer(nginx.addr.clone(), "default", 5).await.unwrap(), 5);
    client.resume(&nginx.addr).await;
    assert_eq!(writer(nginx.addr.clone(), "default", 5).await.unwrap(), 5);
    let targets = last_offsets(&db, &["project:default"]).await;
    assert_eq!(targets["project:default"], 25);
    assert!(client.read_until(&targets).await);
    client.assert_complete(&targets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_change_reaches_a_node_that_does_not_watch_the_project() {
    let (_db, nodes, _prefix) = cluster(2).await;
    create_project(&nodes[0].addr, "p3", &[]).await;
    let dee = token_for(&nodes[0].addr, "dee").await;
    // Dee is connected to node 1 before she is a member; node 1 watches nothing of p3.
    let mut client = Client::connect(&nodes[1].addr, &dee, &[]).await;
    let res = reqwest::Client::new()
        .put(format!("http://{}/projects/p3/members/dee", nodes[0].addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    client
        .command(json!({ "type": "subscribe", "room": "tasks" }))
        .await;
    // Her `tasks` feed now shows p3's task events, written through the other node.
    let deadline = Instant::now() + WAIT;
    loop {
        assert_eq!(writer(nodes[0].addr.clone(), "p3", 1).await.unwrap(), 1);
        let got = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                match client.frame().await {
                    Some(f) if f["type"] == "event" && f["room"] == "project:p3" => return true,
                    Some(_) => {}
                    None => return false,
                }
            }
        })
        .await;
        if got == Ok(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "p3's events reach dee's tasks feed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_receives_only_the_rooms_it_has_subscribers_for() {
    let (db, nodes, _prefix) = cluster(2).await;
    create_project(&nodes[0].addr, "p2", &[]).await;
    let mut on_0 = Client::connect(&nodes[0].addr, TOKEN, &["project:default"]).await;
    let mut on_1 = Client::connect(&nodes[1].addr, TOKEN, &["project:p2"]).await;
    assert_eq!(
        writer(nodes[0].addr.clone(), "default", 20).await.unwrap(),
        20
    );
    assert_eq!(writer(nodes[0].addr.clone(), "p2", 10).await.unwrap(), 10);
    let targets = last_offsets(&db, &["project:default", "project:p2"]).await;
    let default: BTreeMap<String, i64> = [("project:default".to_owned(), 20)].into();
    let p2: BTreeMap<String, i64> = [("project:p2".to_owned(), targets["project:p2"])].into();
    assert!(on_0.read_until(&default).await);
    assert!(on_1.read_until(&p2).await);
    on_1.assert_complete(&p2);
    // Node 1 got p2's ten events through Redis, and none of default's twenty.
    assert_eq!(counter(&nodes[1].addr, "broker_received_total").await, 10.0);
    assert_eq!(counter(&nodes[1].addr, "broker_watched_rooms").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_client_resumes_on_another_node_with_its_last_event_id() {
    let (db, mut nodes, _prefix) = cluster(2).await;
    let url = |node: &Node| format!("http://{}/events?rooms=project:default", node.addr);
    let first = reqwest::Client::new()
        .get(url(&nodes[0]))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let reading = tokio::spawn(sse_events(first, 5));
    assert_eq!(
        writer(nodes[1].addr.clone(), "default", 5).await.unwrap(),
        5
    );
    let seen = tokio::time::timeout(WAIT, reading).await.unwrap().unwrap();
    assert_eq!(
        seen.iter().map(|e| e.1).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    nodes[0].kill();
    // Written while the client is away, through the surviving node.
    assert_eq!(
        writer(nodes[1].addr.clone(), "default", 5).await.unwrap(),
        5
    );
    let last_id = &seen.last().unwrap().0;
    assert!(!last_id.is_empty(), "SSE events carry an id");
    let again = reqwest::Client::new()
        .get(url(&nodes[1]))
        .bearer_auth(TOKEN)
        .header("Last-Event-ID", last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let end = last_offsets(&db, &["project:default"]).await["project:default"];
    let rest = sse_offsets(again, (end - 5) as usize).await;
    assert_eq!(
        rest,
        (6..=end).collect::<Vec<_>>(),
        "the rest, once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_and_serves_while_redis_is_unreachable_and_joins_when_it_comes() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut redis = OwnRedis::not_yet();
    let prefix = Prefix::new();
    let nodes: Vec<Node> = (0..2)
        .map(|i| Node::start(&db, &redis.url(), &prefix, &format!("node{i}")))
        .collect();
    let (status, body) = get_json(&format!("http://{}/readyz", nodes[0].addr)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("degraded")),
        "{body}"
    );
    // Without Redis, a write through node 1 still reaches node 0's client (from the log).
    let mut client = Client::connect(&nodes[0].addr, TOKEN, &["project:default"]).await;
    assert_eq!(
        writer(nodes[1].addr.clone(), "default", 3).await.unwrap(),
        3
    );
    let three: BTreeMap<String, i64> = [("project:default".to_owned(), 3)].into();
    assert!(client.read_until(&three).await);
    redis.restart();
    for node in &nodes {
        let deadline = Instant::now() + WAIT;
        while get_json(&format!("http://{}/readyz", node.addr)).await.1["broker"] != "ok" {
            assert!(
                Instant::now() < deadline,
                "the node connects once Redis is there"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        writer(nodes[1].addr.clone(), "default", 3).await.unwrap(),
        3
    );
    let six: BTreeMap<String, i64> = [("project:default".to_owned(), 6)].into();
    assert!(client.read_until(&six).await);
    client.assert_complete(&six);
    assert!(
        counter(&nodes[0].addr, "broker_received_total").await > 0.0,
        "once connected, events come through Redis"
    );
}

/// Subscribes on a new connection to `addr` and returns the reply (ok or not).
async fn try_subscribe(addr: &str, token: &str, room: &str) -> Value {
    let mut socket = open_socket(addr, token).await;
    let command = json!({ "type": "subscribe", "room": room, "id": "s" });
    futures::SinkExt::send(
        &mut socket,
        tokio_tungstenite::tungstenite::Message::text(command.to_string()),
    )
    .await
    .unwrap();
    loop {
        let frame = next(&mut socket).await.expect("a reply");
        if frame["id"] == "s" {
            return frame;
        }
    }
}

/// Subscribes on new connections until the reply's `ok` is `ok` (a membership change on its
/// way through the broker), and returns that reply.
async fn subscribe_until(addr: &str, token: &str, room: &str, ok: bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = try_subscribe(addr, token, room).await;
        if reply["ok"] == ok {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "{room} on {addr}: ok {ok} in time"
        );
    }
}

/// Node 1 serves fay's handshakes from its membership cache; a removal made through node 0
/// reaches that cache through the broker, so her next subscription on node 1 is refused without
/// node 1 reloading her memberships; her return is seen the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_change_on_one_node_updates_the_others_cache() {
    let (_db, nodes, _prefix) = cluster(2).await;
    create_project(&nodes[0].addr, "p5", &["fay"]).await;
    let fay = token_for(&nodes[0].addr, "fay").await;
    let loads = r#"reason="memberships""#;
    let reply = try_subscribe(&nodes[1].addr, &fay, "project:p5").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        counter_of(&nodes[1].addr, "realtime_db_queries_total", loads).await,
        1.0
    );
    let members = |method: reqwest::Method| {
        reqwest::Client::new()
            .request(
                method,
                format!("http://{}/projects/p5/members/fay", nodes[0].addr),
            )
            .bearer_auth(TOKEN)
            .send()
    };
    assert!(members(reqwest::Method::DELETE)
        .await
        .unwrap()
        .status()
        .is_success());
    let reply = subscribe_until(&nodes[1].addr, &fay, "project:p5", false).await;
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    assert!(members(reqwest::Method::PUT)
        .await
        .unwrap()
        .status()
        .is_success());
    subscribe_until(&nodes[1].addr, &fay, "project:p5", true).await;
    assert_eq!(
        counter_of(&nodes[1].addr, "realtime_db_queries_total", loads).await,
        1.0,
        "node 1 never read fay's memberships again: the broker kept its cache current"
    );
}

/// Clients of one node drop and resume on another node that follows their room: it answers from
/// its own position and its room's tail, with no query per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_onto_a_node_that_follows_the_room_makes_no_database_queries() {
    let (db, nodes, _prefix) = cluster(2).await;
    let users = ["gus", "hal"];
    create_project(&nodes[0].addr, "p6", &users).await;
    let mut tokens = Vec::new();
    for user in users {
        tokens.push(token_for(&nodes[0].addr, user).await);
    }
    // The same users are connected to both nodes (each node's cache knows them).
    let mut here = Vec::new();
    let mut there = Vec::new();
    for i in 0..20 {
        let token = &tokens[i % 2];
        here.push(Client::connect(&nodes[0].addr, token, &["project:p6"]).await);
        there.push(Client::connect(&nodes[1].addr, token, &["project:p6"]).await);
    }
    assert_eq!(writer(nodes[0].addr.clone(), "p6", 5).await.unwrap(), 5);
    let targets = last_offsets(&db, &["project:p6"]).await;
    for client in here.iter_mut().chain(there.iter_mut()) {
        assert!(client.read_until(&targets).await);
    }
    let queries = counter_sum(&nodes[0].addr, "realtime_db_queries_total").await;
    let opened = counter(&nodes[0].addr, "hub_connections_opened_total").await;
    for client in &mut there {
        drop(client.socket.take());
    }
    assert_eq!(writer(nodes[0].addr.clone(), "p6", 5).await.unwrap(), 5);
    futures::future::join_all(there.iter_mut().map(|c| c.resume(&nodes[0].addr))).await;
    let targets = last_offsets(&db, &["project:p6"]).await;
    for client in here.iter_mut().chain(there.iter_mut()) {
        assert!(client.read_until(&targets).await);
        client.assert_complete(&targets);
    }
    let reconnections = counter(&nodes[0].addr, "hub_connections_opened_total").await - opened;
    assert_eq!(reconnections, 20.0);
    let queries = counter_sum(&nodes[0].addr, "realtime_db_queries_total").await - queries;
    assert!(
        queries / reconnections <= 0.05,
        "{queries} queries for {reconnections} reconnections"
    );
}

/// The next event frame of `room` the client reads.
async fn next_event_of(client: &mut Client, room: &str) -> Value {
    loop {
        let frame = client.frame().await.expect("the connection stays open");
        if frame["type"] == "event" && frame["room"] == room {
            return frame;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_and_an_unblocking_cross_nodes_to_every_tab() {
    let (_db, nodes, _prefix) = cluster(2).await;
    create_project(&nodes[0].addr, "dm", &["ann", "ben"]).await;
    let ann = token_for(&nodes[0].addr, "ann").await;
    let ben = token_for(&nodes[0].addr, "ben").await;
    // Ben has a tab on each node; Ann writes through node 0.
    let mut ben_0 = Client::connect(&nodes[0].addr, &ben, &["user:ben"]).await;
    let mut ben_1 = Client::connect(&nodes[1].addr, &ben, &["user:ben"]).await;
    let mut ann_1 = Client::connect(&nodes[1].addr, &ann, &["user:ann"]).await;
    let mut ann_0 = Client::connect(&nodes[0].addr, &ann, &[]).await;
    let sent = ann_0
        .command(json!({ "type": "direct", "to": "ben", "text": "standup in 5" }))
        .await;
    assert_eq!(sent["room"], "user:ann");
    for tab in [&mut ben_0, &mut ben_1] {
        let event = next_event_of(tab, "user:ben").await;
        assert_eq!(event["event"], "message.direct");
        assert_eq!(event["data"]["text"], "standup in 5");
    }
    let copy = next_event_of(&mut ann_1, "user:ann").await;
    assert_eq!(copy["offset"], sent["offset"]);

    // A task of Ben's blocked by one other: finishing that one through node 0 tells Ben on
    // node 1.
    let http = reqwest::Client::new();
    let create = |title: &str, assignee: Option<&str>| {
        http.post(format!("http://{}/tasks", nodes[0].addr))
            .bearer_auth(TOKEN)
            .json(&json!({ "title": title, "project_id": "dm", "assignee": assignee }))
            .send()
    };
    let first: Value = create("first", None).await.unwrap().json().await.unwrap();
    let second: Value = create("second", Some("ben"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (first_id, second_id) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    let res = http
        .put(format!(
            "http://{}/tasks/{second_id}/dependencies/{first_id}",
            nodes[0].addr
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let res = http
        .patch(format!("http://{}/tasks/{first_id}", nodes[0].addr))
        .bearer_auth(TOKEN)
        .json(&json!({ "status": "done" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    loop {
        let event = next_event_of(&mut ben_1, "user:ben").await;
        if event["event"] == "task.unblocked" {
            assert_eq!(event["data"]["task"]["id"], second["id"]);
            assert_eq!(event["data"]["dependency_id"], first["id"]);
            break;
        }
        assert_eq!(event["event"], "task.assigned", "{event}");
    }
}

/// Reads `stats` frames on `admin` until `done` holds for the latest frame of every node named
/// in `nodes`; returns those frames.
async fn stats_until(
    admin: &mut Client,
    nodes: &[&str],
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> BTreeMap<String, Value> {
    let mut latest: BTreeMap<String, Value> = BTreeMap::new();
    let wait = async {
        loop {
            let frame = admin.frame().await.expect("the admin stays connected");
            if frame["type"] != "stats" {
                continue;
            }
            assert_eq!(frame["room"], "system", "{frame}");
            latest.insert(frame["node"].as_str().unwrap().to_owned(), frame);
            if nodes.iter().all(|n| latest.get(*n).is_some_and(&done)) {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("no stats frames showed {what}: {latest:?}"));
    latest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_every_node_through_any_node() {
    let (_db, nodes, _prefix) = cluster(2).await;
    create_project(&nodes[0].addr, "ops", &["ann"]).await;
    // The admin follows `system` on node 0 only; node 1 reports because node 0's frames tell
    // it someone watches.
    let mut admin = Client::connect(&nodes[0].addr, TOKEN, &["system"]).await;
    let first = stats_until(&mut admin, &["node0", "node1"], "both nodes", |f| {
        f["broker"] == "connected"
    })
    .await;
    let before = first["node1"]["connections"]["websocket"].as_u64().unwrap();

    // Two tabs on node 1 and events written through node 0: node 1's own numbers move, and the
    // admin on node 0 sees them.
    let ann = token_for(&nodes[0].addr, "ann").await;
    let mut tabs = Vec::new();
    for _ in 0..2 {
        tabs.push(Client::connect(&nodes[1].addr, &ann, &["project:ops"]).await);
    }
    stats_until(&mut admin, &["node1"], "node 1's new connections", |f| {
        f["connections"]["websocket"].as_u64() == Some(before + 2)
    })
    .await;
    let http = reqwest::Client::new();
    for n in 0..10 {
        let res = http
            .post(format!("http://{}/tasks", nodes[0].addr))
            .bearer_auth(TOKEN)
            .json(&json!({ "title": format!("t{n}"), "project_id": "ops" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    let busy = stats_until(&mut admin, &["node1"], "node 1 delivering", |f| {
        f["deliveries_per_sec"].as_f64().unwrap() > 0.0
    })
    .await;
    assert!(
        busy["node1"]["events_per_sec"].as_f64().unwrap() > 0.0,
        "{busy:?}"
    );
    assert!(!busy["node1"]["latency_ms"].is_null(), "{busy:?}");
    for tab in &mut tabs {
        let targets = BTreeMap::from([("project:ops".to_owned(), 10)]);
        assert!(
            tab.read_until(&targets).await,
            "every event reached node 1's tabs"
        );
    }
}

/// Editors of one description on two nodes converge: updates and awareness cross over the
/// broker, and while Redis is down the nodes still converge from the store (every
/// `broker_check_interval_ms`); after it comes back, the broker carries them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editors_of_one_document_on_two_nodes_converge_also_through_a_redis_restart() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut redis = OwnRedis::start();
    let prefix = Prefix::new();
    let nodes: Vec<Node> = (0..2)
        .map(|i| Node::start(&db, &redis.url(), &prefix, &format!("node{i}")))
        .collect();
    let task: Value = reqwest::Client::new()
        .post(format!("http://{}/tasks", nodes[0].addr))
        .bearer_auth(TOKEN)
        .json(&json!({ "title": "shared", "description": "base" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = task["id"].as_str().unwrap().to_owned();
    let mut a = editor::Editor::join_at(&nodes[0].addr, &id, TOKEN, yrs::Doc::new()).await;
    let mut b = editor::Editor::join_at(&nodes[1].addr, &id, TOKEN, yrs::Doc::new()).await;
    assert_eq!((a.text(), b.text()), ("base".into(), "base".into()));
    a.insert(4, " from A").await;
    b.insert(0, "B says: ").await;
    let both = "B says: base from A";
    a.until(|e| e.text() == both).await;
    b.until(|e| e.text() == both).await;
    a.announce(json!({ "user": { "name": "Ann" } })).await;
    let ann = a.doc.client_id().get();
    b.until(|e| e.peers.get(&ann).is_some_and(|s| s.contains("Ann")))
        .await;

    redis.kill();
    for node in &nodes {
        let deadline = Instant::now() + WAIT;
        while get_json(&format!("http://{}/readyz", node.addr)).await.1["broker"] != "unreachable" {
            assert!(
                Instant::now() < deadline,
                "the nodes notice that Redis is gone"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // No broker: the edit reaches the other node from the store.
    a.insert(0, "[offline] ").await;
    b.until(|e| e.text().starts_with("[offline] ")).await;

    redis.restart();
    for node in &nodes {
        let deadline = Instant::now() + WAIT;
        while get_json(&format!("http://{}/readyz", node.addr)).await.1["broker"] != "ok" {
            assert!(Instant::now() < deadline, "the nodes reconnect to Redis");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let end = b.text().len() as u32;
    b.insert(end, " [back]").await;
    let last = "[offline] B says: base from A [back]";
    a.until(|e| e.text() == last).await;
    b.until(|e| e.text() == last).await;
    // Ann leaves node0: node1's editor sees her state go.
    drop(a);
    b.until(|e| e.peers.get(&ann).is_some_and(|s| s == "null"))
        .await;
    // The description is the text, whichever node is asked.
    for node in &nodes {
        let deadline = Instant::now() + WAIT;
        loop {
            let task: Value = reqwest::Client::new()
                .get(format!("http://{}/tasks/{id}", node.addr))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if task["description"] == last {
                break;
            }
            assert!(Instant::now() < deadline, "the description follows: {task}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
