//! Streams: every client gets every record of the topic over WebSocket or SSE, resumes from
//! its position read back from Kafka (and is told when that position is gone), publishes
//! with an acknowledgement, and a client that never reads is dropped without holding the
//! others back.

mod common;

use std::{net::SocketAddr, time::Duration};

use common::{InProcess, produce_all};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

const WAIT: Duration = Duration::from_secs(60);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, path_and_query: &str) -> Socket {
    let (socket, _) = connect_async(format!("ws://{addr}{path_and_query}"))
        .await
        .unwrap_or_else(|e| panic!("{path_and_query}: {e}"));
    socket
}

/// The next JSON message, failing after [`WAIT`].
async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a message in time")
            .expect("the connection stays open")
            .expect("a well-formed message");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// The values of the next `n` records, skipping control messages.
async fn next_records(socket: &mut Socket, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let json = next_json(socket).await;
        if json["type"] == "record" {
            out.push(json);
        }
    }
    out
}

fn values(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["value"].as_str().unwrap().to_owned())
        .collect()
}

fn numbered(range: std::ops::Range<usize>) -> Vec<common::TestRecord> {
    range
        .map(|n| (None, format!("m{n}").into_bytes(), vec![]))
        .collect()
}

async fn start(streams: &str) -> (InProcess, SocketAddr) {
    let public = sluice::broker::free_local_addr().unwrap();
    let sluice = InProcess::start(&format!(
        "topics:\n  - name: chat\n    partitions: 1\ningress:\n  listen: \"{public}\"\nstreams:\n{streams}"
    ))
    .await;
    let addr = sluice.running().edge_addr().unwrap();
    (sluice, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_resume_from_their_position_and_are_told_when_it_is_gone() {
    let (sluice, addr) =
        start("  - path: /chat/stream\n    topic: chat\n    publish: true\n").await;
    produce_all(&sluice.bootstrap, "chat", numbered(0..10)).await;

    // Ten records back.
    let mut socket = connect(addr, "/chat/stream?history=10").await;
    let records = next_records(&mut socket, 10).await;
    assert_eq!(
        values(&records),
        (0..10).map(|n| format!("m{n}")).collect::<Vec<_>>()
    );
    assert_eq!(records[4]["position"], "0:5");
    assert_eq!(records[4]["offset"], 4);
    assert_eq!(records[4]["topic"], "chat");
    let position = records[4]["position"].as_str().unwrap().to_owned();
    drop(socket);

    // From a position: the rest, then word that the resume is whole, then live records.
    let mut socket = connect(addr, &format!("/chat/stream?since={position}")).await;
    let records = next_records(&mut socket, 5).await;
    assert_eq!(values(&records), ["m5", "m6", "m7", "m8", "m9"]);
    let recovery = next_json(&mut socket).await;
    assert_eq!(recovery["type"], "recovery");
    assert_eq!(recovery["recovered"], true);
    produce_all(&sluice.bootstrap, "chat", numbered(10..12)).await;
    let records = next_records(&mut socket, 2).await;
    assert_eq!(values(&records), ["m10", "m11"]);
    assert_eq!(records[1]["position"], "0:12");

    // The same over SSE, with the browser's Last-Event-ID.
    let sse = tokio::task::spawn_blocking(move || sse_events(addr, "/chat/stream", Some("0:9"), 3))
        .await
        .unwrap();
    assert_eq!(
        sse.iter()
            .map(|(id, data)| (id.clone(), data["value"].as_str().unwrap().to_owned()))
            .collect::<Vec<_>>(),
        [
            ("0:10".to_owned(), "m9".to_owned()),
            ("0:11".to_owned(), "m10".to_owned()),
            ("0:12".to_owned(), "m11".to_owned())
        ]
    );

    // Records before offset 8 are deleted: a resume from 5 is told so, and goes on live.
    delete_records(&sluice.bootstrap, "chat", 0, 8).await;
    let mut stale = connect(addr, "/chat/stream?since=0:5").await;
    let recovery = next_json(&mut stale).await;
    assert_eq!(recovery["type"], "recovery", "{recovery}");
    assert_eq!(recovery["recovered"], false, "{recovery}");
    assert!(
        recovery["reason"]
            .as_str()
            .unwrap()
            .contains("holds offsets from 8"),
        "{recovery}"
    );
    produce_all(&sluice.bootstrap, "chat", numbered(12..13)).await;
    let records = next_records(&mut stale, 1).await;
    assert_eq!(
        values(&records),
        ["m12"],
        "no partial replay, only live records"
    );

    // A position past the end, or not a position, is refused before the upgrade.
    for bad in ["0:999", "nonsense"] {
        let err = connect_async(format!("ws://{addr}/chat/stream?since={bad}"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("400"), "{bad}: {err}");
    }
    let metrics = sluice.state().metrics().encode();
    assert!(
        metrics.contains(
            "sluice_stream_resumes_total{stream=\"/chat/stream\",outcome=\"not_recovered\"} 1"
        ),
        "{metrics}"
    );
    drop((socket, stale));
    sluice.stop().await;
}

/// Reads `n` SSE events of `path`, resuming from `last_event_id`: (id, data).
fn sse_events(
    addr: SocketAddr,
    path: &str,
    last_event_id: Option<&str>,
    n: usize,
) -> Vec<(String, Value)> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
    if let Some(id) = last_event_id {
        request.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let reader = BufReader::new(stream);
    let mut events = Vec::new();
    let mut id = None;
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(value) = line
            .strip_prefix("id: ")
            .or_else(|| line.strip_prefix("id:"))
        {
            id = Some(value.trim().to_owned());
        } else if let Some(data) = line
            .strip_prefix("data: ")
            .or_else(|| line.strip_prefix("data:"))
            && let Some(id) = id.take()
        {
            events.push((id, serde_json::from_str(data.trim()).unwrap()));
            if events.len() == n {
                break;
            }
        }
    }
    events
}

async fn delete_records(bootstrap: &str, topic: &str, partition: i32, before: i64) {
    use rdkafka::{
        ClientConfig, Offset, TopicPartitionList,
        admin::{AdminClient, AdminOptions},
        client::DefaultClientContext,
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(before))
        .unwrap();
    let result = admin
        .delete_records(&list, &AdminOptions::new())
        .await
        .unwrap();
    assert!(
        result.elements().iter().all(|e| e.error().is_ok()),
        "{result:?}"
    );
    tokio::task::spawn_blocking(move || drop(admin))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_reads_is_dropped_and_the_others_get_everything() {
    let (sluice, addr) = start("  - path: /chat/stream\n    topic: chat\n    queue: 64\n").await;
    let mut reader = connect(addr, "/chat/stream").await;
    // Connected, never read: its socket buffers fill, then its queue, then it is dropped.
    let stalled = connect(addr, "/chat/stream").await;
    // Produced in steps the reading client keeps up with; 32 MiB in all, more than the
    // stalled client's socket buffers hold.
    let (total, step) = (2000, 20);
    let big = "x".repeat(16 << 10);
    let mut received = Vec::new();
    for first in (0..total).step_by(step) {
        let records: Vec<common::TestRecord> = (first..first + step)
            .map(|n| (None, format!("{n} {big}").into_bytes(), vec![]))
            .collect();
        produce_all(&sluice.bootstrap, "chat", records).await;
        received.extend(next_records(&mut reader, step).await);
    }
    for (n, record) in received.iter().enumerate() {
        let value = record["value"].as_str().unwrap();
        assert!(
            value.starts_with(&format!("{n} ")),
            "record {n} out of order"
        );
    }
    let status = || sluice.state().metrics().encode();
    let dropped = "sluice_stream_clients_dropped_total{stream=\"/chat/stream\"} 1";
    let deadline = std::time::Instant::now() + WAIT;
    while !status().contains(dropped) {
        assert!(std::time::Instant::now() < deadline, "{}", status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        status().contains("sluice_stream_clients{stream=\"/chat/stream\"} 1"),
        "{}",
        status()
    );
    // The stalled client, reading at last, finds the reason after what was buffered.
    let mut stalled = stalled;
    let reason = tokio::time::timeout(WAIT, async {
        while let Some(message) = stalled.next().await {
            match message {
                Ok(Message::Close(Some(frame))) => return Some(frame),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .unwrap();
    if let Some(frame) = reason {
        assert_eq!(u16::from(frame.code), 4008);
        assert!(frame.reason.contains("too slow"), "{frame:?}");
        println!("the stalled client was told: {}", frame.reason);
    } else {
        println!("the stalled client's connection was cut before the close frame fit");
    }
    drop(reader);
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_publish_with_an_acknowledgement_and_origins_and_tokens_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let read_token = dir.path().join("read");
    let write_token = dir.path().join("write");
    std::fs::write(&read_token, "reader").unwrap();
    std::fs::write(&write_token, "writer").unwrap();
    let (sluice, addr) = start(&format!(
        "  - path: /chat/stream\n    topic: chat\n    publish: true\n    allowed_origins: [\"https://chat.example\"]\n    tokens:\n      subscribe: [{{file: {}}}, {{file: {}}}]\n      publish: [{{file: {}}}]\n  - path: /news\n    topic: chat\n",
        read_token.display(),
        write_token.display(),
        write_token.display()
    ))
    .await;

    // Tokens: none is 401, a wrong one 403; a reader may read but not publish.
    for (query, code) in [("", "401"), ("?token=wrong", "403")] {
        let err = connect_async(format!("ws://{addr}/chat/stream{query}"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(code), "{query}: {err}");
    }
    let mut reader = connect(addr, "/chat/stream?token=reader").await;
    reader
        .send(Message::text(r#"{"id":"r-1","value":"from a reader"}"#))
        .await
        .unwrap();
    let refused = next_json(&mut reader).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["id"], "r-1");

    // A writer's message is acknowledged with its place, and every client receives it.
    let mut request = format!("ws://{addr}/chat/stream")
        .into_client_request()
        .unwrap();
    let _ = request
        .headers_mut()
        .insert("authorization", HeaderValue::from_static("Bearer writer"));
    let _ = request
        .headers_mut()
        .insert("origin", HeaderValue::from_static("https://chat.example"));
    let (mut writer, _) = connect_async(request).await.unwrap();
    writer
        .send(Message::text(
            r#"{"id":"w-1","key":"ada","value":"hello","headers":{"user":"ada"}}"#,
        ))
        .await
        .unwrap();
    let mut ack = None;
    let mut echoed = None;
    while ack.is_none() || echoed.is_none() {
        let json = next_json(&mut writer).await;
        match json["type"].as_str() {
            Some("ack") => ack = Some(json),
            Some("record") => echoed = Some(json),
            _ => {}
        }
    }
    let (ack, echoed) = (ack.unwrap(), echoed.unwrap());
    assert_eq!(ack["id"], "w-1");
    assert_eq!(
        (ack["partition"].clone(), ack["offset"].clone()),
        (echoed["partition"].clone(), echoed["offset"].clone())
    );
    assert_eq!(echoed["key"], "ada");
    assert_eq!(echoed["headers"]["user"], "ada");
    let seen = next_records(&mut reader, 1).await;
    assert_eq!(seen[0]["value"], "hello");

    // A page of another origin may not open it.
    let mut request = format!("ws://{addr}/chat/stream?token=reader")
        .into_client_request()
        .unwrap();
    let _ = request
        .headers_mut()
        .insert("origin", HeaderValue::from_static("https://evil.example"));
    let err = connect_async(request).await.unwrap_err().to_string();
    assert!(err.contains("403"), "{err}");
    // A stream without `publish` takes nothing.
    let mut news = connect(addr, "/news").await;
    news.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_json(&mut news).await["type"], "error");
    // A plain GET is told how to open it.
    let answer =
        tokio::task::spawn_blocking(move || common::http_request(addr, "GET", "/news", &[], b""))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(answer.status, 400);
    assert!(String::from_utf8_lossy(&answer.body).contains("WebSocket"));
    drop((reader, writer, news));
    sluice.stop().await;
}
