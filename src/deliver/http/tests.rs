use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use hyper::Uri;

use super::*;

/// A function on 127.0.0.1 that answers its `n`th request (on one keep-alive connection)
/// after `delays[n]`, and never answers those past the list.
async fn slow_function(delays: Vec<Duration>) -> Uri {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        for delay in delays {
            // One request: headers, then a body of its Content-Length.
            loop {
                let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if buf.len() >= end + 4 + length {
                        drop(buf.drain(..end + 4 + length));
                        break;
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the client closed the connection");
                buf.extend_from_slice(&chunk[..n]);
            }
            tokio::time::sleep(delay).await;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
        }
        // Holds the connection open, unanswered.
        tokio::time::sleep(Duration::from_secs(60)).await;
    }));
    format!("http://{addr}/").parse().unwrap()
}

fn event() -> Event {
    Event {
        id: "partition:0/offset:0".into(),
        headers: Vec::new(),
        body: Bytes::from_static(b"x"),
    }
}

#[tokio::test]
async fn each_request_of_a_session_gets_its_whole_timeout() {
    // The session's timer is first set for the quick request's deadline (t = 2 s). The
    // second request starts at 1.5 s and is answered at 2.5 s, within its own 2 s: it
    // must not be cut off at the first deadline. The third is never answered.
    let timeout = Duration::from_secs(2);
    let url = slow_function(vec![Duration::ZERO, Duration::from_secs(1)]).await;
    let mut session = Invoker::new().session();
    let quick = session.attempt(&url, &event(), timeout, false).await;
    assert!(matches!(quick, Attempt::Delivered { .. }), "{quick:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let slow = session.attempt(&url, &event(), timeout, false).await;
    assert!(matches!(slow, Attempt::Delivered { .. }), "{slow:?}");
    let started = std::time::Instant::now();
    let never = session.attempt(&url, &event(), timeout, false).await;
    match never {
        Attempt::Retry { failure, .. } => assert_eq!(failure.code, "timeout"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= timeout, "cut off early");
}

/// A function that answers every request 200 with a chunked body that does not end (it
/// stops writing after 64 MiB, or when the client goes). Counts its connections.
async fn endless_function() -> (Uri, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    drop(tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let _ = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "x".repeat(16 * 1024));
                for _ in 0..4096 {
                    out.extend_from_slice(chunk.as_bytes());
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
            }));
        }
    }));
    (format!("http://{addr}/").parse().unwrap(), connections)
}

#[tokio::test]
async fn an_endless_response_body_is_not_read_to_the_timeout() {
    // The timeout is far longer than the test: reading the body to its end would end
    // the attempt as a timeout, not as delivered or rejected.
    let timeout = Duration::from_secs(600);
    let (url, connections) = endless_function().await;
    let mut session = Invoker::new().session();
    let plain = session.attempt(&url, &event(), timeout, false).await;
    assert!(
        matches!(plain, Attempt::Delivered { reply: None, .. }),
        "{plain:?}"
    );
    // A reply is wanted: the body is over the reply limit, so the event is rejected.
    let reply = session.attempt(&url, &event(), timeout, true).await;
    match reply {
        Attempt::Reject { failure } => {
            assert!(failure.message.contains("larger than"), "{failure:?}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // A body not read to its end closes its connection: each attempt had a new one.
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
}
