//! One client of a stream: where it starts (live, `?history=N`, or `?since=` a position read
//! back from Kafka), then the hub's frames, over a WebSocket (which may also publish) or SSE.
//!
//! A resume is never silently partial: when the position asked for is older than what the
//! topic still holds, the client is told (`{"type":"recovery","recovered":false}`) and starts
//! live.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket},
    response::sse::Event,
};
use bytes::Bytes;
use futures::{
    SinkExt, StreamExt,
    stream::{FuturesUnordered, SplitSink, SplitStream},
};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Frame, Hub, NotReady, Subscription, frame, position};
use crate::{edge::publish::Publisher, ingress::parse::Outgoing};

/// The longest a replay from Kafka may take before the client is told it failed.
const REPLAY_LIMIT: Duration = Duration::from_secs(30);

/// Publishes of one client waiting for the broker at once; past it, its messages wait.
const MOST_PENDING: usize = 64;

/// Frames written before the socket is flushed.
const BATCH: usize = 64;

/// Close code for a client dropped for falling behind (application range, 4000-4999).
pub const CLOSE_SLOW: u16 = 4008;

/// The longest a client is given to take its close frame before its connection is cut.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Why a client cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// A position or history that cannot be used (400).
    #[error("{0}")]
    Bad(String),
    /// The stream cannot serve now (503).
    #[error("{0}")]
    Unavailable(String),
}

impl From<NotReady> for StartError {
    fn from(err: NotReady) -> Self {
        Self::Unavailable(err.to_string())
    }
}

/// Where a client starts.
#[derive(Debug)]
pub struct Start {
    sub: Subscription,
    cursor: Cursor,
    /// Partitions to read back from Kafka: (from, until).
    replay: BTreeMap<i32, (i64, i64)>,
    /// Sent before anything else: the resume could not be honoured.
    notice: Option<Bytes>,
    /// A resume from a position that is still held: told once the replay is done.
    resumed: bool,
}

/// Joins `hub` and works out where the client starts: at `since` (a position), `history`
/// records back in each partition, or live.
pub async fn start(
    hub: &Arc<Hub>,
    since: Option<&str>,
    history: Option<usize>,
) -> Result<Start, StartError> {
    let since = since
        .map(position::parse)
        .transpose()
        .map_err(StartError::Bad)?;
    let sub = hub.join()?;
    let live_from = sub.live_from.clone();
    let live = Start {
        cursor: Cursor::aligned(live_from.clone()),
        sub,
        replay: BTreeMap::new(),
        notice: None,
        resumed: false,
    };
    if since.is_none() && history.is_none_or(|n| n == 0) {
        return Ok(live);
    }
    let info = hub
        .kafka()
        .describe_topic(&hub.settings().topic)
        .await
        .map_err(|err| {
            StartError::Unavailable(format!("cannot read the topic's offsets: {err}"))
        })?;
    let mut from = live_from.clone();
    let mut lost = Vec::new();
    for partition in &info.partitions {
        let Some(slot) = usize::try_from(partition.partition)
            .ok()
            .and_then(|p| from.get_mut(p))
        else {
            continue;
        };
        let live_at = *slot;
        *slot = match (&since, history) {
            (Some(since), _) => {
                let asked = since.get(&partition.partition).copied().unwrap_or(0);
                if asked > partition.high.max(live_at) {
                    return Err(StartError::Bad(format!(
                        "position {}:{asked} is past the end of the topic ({})",
                        partition.partition,
                        partition.high.max(live_at)
                    )));
                }
                if asked < partition.low {
                    lost.push(format!(
                        "partition {} holds offsets from {}, not {asked}",
                        partition.partition, partition.low
                    ));
                }
                asked
            }
            (None, Some(n)) => {
                let n = i64::try_from(n.min(hub.settings().max_history)).unwrap_or(i64::MAX);
                live_at.saturating_sub(n).max(partition.low).min(live_at)
            }
            (None, None) => live_at,
        };
    }
    if !lost.is_empty() {
        let _ = hub.metrics().not_recovered.inc();
        return Ok(Start {
            notice: Some(frame::control(
                "recovery",
                &[
                    ("recovered", Value::from(false)),
                    (
                        "reason",
                        Value::from(format!(
                            "the position is older than what the topic still holds ({}); going on live",
                            lost.join("; ")
                        )),
                    ),
                    ("position", Value::from(position::format(&live_from))),
                ],
            )),
            ..live
        });
    }
    if since.is_some() {
        let _ = hub.metrics().recovered.inc();
    }
    let replay = from
        .iter()
        .zip(&live_from)
        .enumerate()
        .filter(|(_, (from, until))| from < until)
        .filter_map(|(p, (from, until))| Some((i32::try_from(p).ok()?, (*from, *until))))
        .collect();
    Ok(Start {
        cursor: Cursor::new(from, &live_from),
        replay,
        resumed: since.is_some(),
        ..live
    })
}

/// The client's position: the next offset of each partition it has yet to see.
#[derive(Debug)]
struct Cursor {
    next: Vec<i64>,
    /// Whether `next` is the hub's own position: then the hub's frames are sent as they are.
    aligned: bool,
}

impl Cursor {
    fn aligned(next: Vec<i64>) -> Self {
        Self {
            next,
            aligned: true,
        }
    }

    fn new(next: Vec<i64>, hub: &[i64]) -> Self {
        let aligned = next == hub;
        Self { next, aligned }
    }

    fn position(&self) -> String {
        position::format(&self.next)
    }

    /// A hub frame to send, or `None` when the client has it already (from a replay, or
    /// from another replica further on).
    fn live(&mut self, frame: &Frame) -> Option<(Bytes, String)> {
        let slot = usize::try_from(frame.partition)
            .ok()
            .and_then(|p| self.next.get_mut(p))?;
        if frame.offset < *slot {
            return None;
        }
        *slot = frame.offset + 1;
        if self.aligned {
            return Some((frame.json.clone(), frame.position.clone()));
        }
        let position = self.position();
        if position == frame.position {
            self.aligned = true;
            return Some((frame.json.clone(), position));
        }
        Some((with_position(&frame.json, &position), position))
    }
}

/// A frame's JSON with another position: the position is its last member.
fn with_position(json: &Bytes, position: &str) -> Bytes {
    const MEMBER: &[u8] = b",\"position\":\"";
    let cut = json
        .windows(MEMBER.len())
        .rposition(|w| w == MEMBER)
        .unwrap_or(json.len().saturating_sub(1));
    let mut out = Vec::with_capacity(cut + MEMBER.len() + position.len() + 2);
    out.extend_from_slice(&json[..cut]);
    out.extend_from_slice(MEMBER);
    out.extend_from_slice(position.as_bytes());
    out.extend_from_slice(b"\"}");
    Bytes::from(out)
}

/// Reads partitions back from Kafka up to where the hub took over.
struct Replayer {
    consumer: StreamConsumer,
    topic: String,
    pending: BTreeMap<i32, i64>,
    deadline: Instant,
}

impl Replayer {
    fn new(hub: &Hub, replay: &BTreeMap<i32, (i64, i64)>) -> Result<Self, String> {
        let topic = hub.settings().topic.clone();
        let consumer: StreamConsumer = hub
            .kafka()
            .create(&[
                ("group.id", "sluice-stream-replay"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "false"),
            ])
            .map_err(|err| err.to_string())?;
        let mut list = TopicPartitionList::new();
        for (partition, (from, _)) in replay {
            list.add_partition_offset(&topic, *partition, Offset::Offset(*from))
                .map_err(|err| err.to_string())?;
        }
        consumer.assign(&list).map_err(|err| err.to_string())?;
        Ok(Self {
            consumer,
            topic,
            pending: replay.iter().map(|(p, (_, until))| (*p, *until)).collect(),
            deadline: Instant::now() + REPLAY_LIMIT,
        })
    }

    /// The next record read back, as a frame with the client's position; `None` once every
    /// partition reached where the hub took over.
    async fn next(&mut self, cursor: &mut Cursor) -> Result<Option<(Bytes, String)>, String> {
        loop {
            if self.pending.is_empty() {
                return Ok(None);
            }
            if Instant::now() > self.deadline {
                return Err(format!(
                    "reading the topic back took longer than {}",
                    humantime::format_duration(REPLAY_LIMIT)
                ));
            }
            let message = match tokio::time::timeout(
                Duration::from_millis(250),
                self.consumer.recv(),
            )
            .await
            {
                Ok(Ok(message)) => message,
                Ok(Err(err)) => return Err(err.to_string()),
                Err(_) => {
                    self.settle_gaps();
                    continue;
                }
            };
            let (partition, offset) = (message.partition(), message.offset());
            let Some(&until) = self.pending.get(&partition) else {
                continue;
            };
            if offset >= until {
                let _ = self.pending.remove(&partition);
                continue;
            }
            if offset + 1 >= until {
                let _ = self.pending.remove(&partition);
            }
            let Some(slot) = usize::try_from(partition)
                .ok()
                .and_then(|p| cursor.next.get_mut(p))
            else {
                continue;
            };
            if offset < *slot {
                continue;
            }
            *slot = offset + 1;
            let position = cursor.position();
            let members = frame::members(&message);
            let frame = frame::frame(&message, &members, position.clone());
            return Ok(Some((frame.json, position)));
        }
    }

    /// A partition whose remaining offsets were compacted away has its consumer's position
    /// at or past where the hub took over, with nothing more to read.
    fn settle_gaps(&mut self) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        for element in positions.elements_for_topic(&self.topic) {
            if let Offset::Offset(at) = element.offset()
                && self
                    .pending
                    .get(&element.partition())
                    .is_some_and(|until| at >= *until)
            {
                let _ = self.pending.remove(&element.partition());
            }
        }
    }
}

/// Where a client's messages go.
enum Out {
    Ws(SplitSink<WebSocket, WsMessage>),
    Sse(mpsc::Sender<Result<Event, Infallible>>),
}

/// Something to send.
enum Item {
    /// A record, with the position after it.
    Record(Bytes, String),
    /// A control message of a kind (`recovery`, `ack`, `error`, `close`).
    Control(&'static str, Bytes),
}

impl Out {
    /// Queues an item; false when the client is gone.
    async fn feed(&mut self, item: Item) -> bool {
        match self {
            Self::Ws(sink) => {
                let json = match item {
                    Item::Record(json, _) | Item::Control(_, json) => json,
                };
                let Ok(text) = Utf8Bytes::try_from(json) else {
                    // JSON written by serde_json is always UTF-8.
                    return true;
                };
                sink.feed(WsMessage::Text(text)).await.is_ok()
            }
            Self::Sse(events) => {
                let event = match item {
                    Item::Record(json, position) => Event::default()
                        .id(position)
                        .data(String::from_utf8_lossy(&json)),
                    Item::Control(kind, json) => Event::default()
                        .event(kind)
                        .data(String::from_utf8_lossy(&json)),
                };
                events.send(Ok(event)).await.is_ok()
            }
        }
    }

    async fn flush(&mut self) -> bool {
        match self {
            Self::Ws(sink) => sink.flush().await.is_ok(),
            Self::Sse(_) => true,
        }
    }

    /// Says why the connection ends, then ends it.
    async fn close(mut self, code: u16, reason: String) {
        match &mut self {
            Self::Ws(sink) => {
                let _ = sink
                    .send(WsMessage::Close(Some(CloseFrame {
                        code,
                        reason: Utf8Bytes::from(reason),
                    })))
                    .await;
            }
            Self::Sse(_) => {
                let json = frame::control("close", &[("reason", Value::from(reason))]);
                let _ = self.feed(Item::Control("close", json)).await;
            }
        }
    }
}

/// What a session needs besides its start.
#[derive(Debug, Clone)]
pub struct Context {
    /// The stream.
    pub hub: Arc<Hub>,
    /// The producer, when this client may publish.
    pub publisher: Option<Publisher>,
    /// Fires when sluice stops.
    pub cancel: CancellationToken,
}

/// How a session ended, with the close code and reason to send.
enum End {
    Gone,
    Close(u16, String),
}

/// Serves a WebSocket client until it leaves, falls behind, or sluice stops.
pub async fn websocket(socket: WebSocket, start: Start, context: Context) {
    let (sink, input) = socket.split();
    drive(Out::Ws(sink), Some(input), start, context).await;
}

/// Serves an SSE client: the events go to `events`, which the response streams.
pub async fn sse(events: mpsc::Sender<Result<Event, Infallible>>, start: Start, context: Context) {
    drive(Out::Sse(events), None, start, context).await;
}

async fn drive(
    mut out: Out,
    mut input: Option<SplitStream<WebSocket>>,
    mut start: Start,
    context: Context,
) {
    let end = session(&mut out, input.as_mut(), &mut start, &context).await;
    // The frames still queued for the client are not sent any more.
    drop(start);
    if let End::Close(code, reason) = end {
        // A client that stopped reading never takes the close frame either: without a limit
        // the session, its socket and its buffers would stay for as long as the client
        // keeps the connection open.
        let _ = tokio::time::timeout(CLOSE_LIMIT, out.close(code, reason)).await;
    }
}

async fn session(
    out: &mut Out,
    mut input: Option<&mut SplitStream<WebSocket>>,
    start: &mut Start,
    context: &Context,
) -> End {
    let hub = &context.hub;
    let metrics = hub.metrics().clone();
    let dropped = start.sub.dropped.clone();
    let cancel = context.cancel.clone();
    let slow = |cursor: &Cursor| {
        hub.count_dropped();
        End::Close(
            CLOSE_SLOW,
            format!(
                "too slow: more than {} messages behind; resume with ?since={}",
                hub.settings().queue,
                cursor.position()
            ),
        )
    };
    macro_rules! send {
        ($item:expr) => {{
            let sent = tokio::select! {
                biased;
                _ = cancel.cancelled() => return End::Close(1001, "sluice is stopping".to_owned()),
                _ = dropped.cancelled() => return slow(&start.cursor),
                sent = out.feed($item) => sent,
            };
            if !sent {
                return End::Gone;
            }
        }};
    }
    macro_rules! flush {
        () => {{
            let flushed = tokio::select! {
                biased;
                _ = cancel.cancelled() => return End::Close(1001, "sluice is stopping".to_owned()),
                _ = dropped.cancelled() => return slow(&start.cursor),
                flushed = out.flush() => flushed,
            };
            if !flushed {
                return End::Gone;
            }
        }};
    }

    if let Some(notice) = start.notice.take() {
        send!(Item::Control("recovery", notice));
        flush!();
    }
    if !start.replay.is_empty() {
        let Some(_permit) = hub.replay_permit().await else {
            return End::Gone;
        };
        let mut replayer = match Replayer::new(hub, &start.replay) {
            Ok(replayer) => replayer,
            Err(why) => return End::Close(1011, format!("cannot read the topic back: {why}")),
        };
        loop {
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => return End::Close(1001, "sluice is stopping".to_owned()),
                _ = dropped.cancelled() => return slow(&start.cursor),
                next = replayer.next(&mut start.cursor) => next,
            };
            match next {
                Ok(Some((json, position))) => {
                    send!(Item::Record(json, position));
                    let _ = metrics.out.inc();
                }
                Ok(None) => break,
                Err(why) => return End::Close(1011, format!("cannot read the topic back: {why}")),
            }
        }
        if start.resumed {
            send!(Item::Control(
                "recovery",
                frame::control(
                    "recovery",
                    &[
                        ("recovered", Value::from(true)),
                        ("position", Value::from(start.cursor.position())),
                    ],
                )
            ));
        }
        flush!();
    }

    let mut pending = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return End::Close(1001, "sluice is stopping".to_owned()),
            _ = dropped.cancelled() => return slow(&start.cursor),
            Some(answer) = pending.next(), if !pending.is_empty() => {
                let (kind, json) = answer;
                send!(Item::Control(kind, json));
                flush!();
            }
            frame = start.sub.frames.recv() => {
                let Some(frame) = frame else {
                    return End::Close(1001, "the stream stopped".to_owned());
                };
                let mut sent: u64 = 0;
                let mut next = Some(frame);
                while let Some(frame) = next.take() {
                    if let Some((json, position)) = start.cursor.live(&frame) {
                        send!(Item::Record(json, position));
                        sent += 1;
                    }
                    if sent < BATCH as u64 {
                        next = start.sub.frames.try_recv().ok();
                    }
                }
                let _ = metrics.out.inc_by(sent);
                flush!();
            }
            message = next_input(&mut input), if input.is_some() && pending.len() < MOST_PENDING => {
                let Some(message) = message else {
                    return End::Gone;
                };
                let outgoing = match message {
                    WsMessage::Text(text) => from_text(text.as_str()),
                    WsMessage::Binary(bytes) => Outgoing { key: None, value: bytes, headers: Vec::new(), id: None },
                    WsMessage::Close(_) => return End::Gone,
                    // Pings are answered by the WebSocket layer.
                    WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
                };
                let Some(publisher) = context.publisher.clone() else {
                    let json = answer_error(outgoing.id.as_deref(), "this stream does not take messages from this client");
                    send!(Item::Control("error", json));
                    flush!();
                    continue;
                };
                let _ = metrics.messages_in.inc();
                let topic = hub.settings().topic.clone();
                pending.push(async move {
                    let id = outgoing.id.clone();
                    match publisher.send(&topic, &outgoing).await {
                        Ok(stored) => ("ack", frame::control("ack", &[
                            ("id", id.map_or(Value::Null, Value::from)),
                            ("partition", Value::from(stored.partition)),
                            ("offset", Value::from(stored.offset)),
                        ])),
                        Err(err) => ("error", answer_error(id.as_deref(), &err.to_string())),
                    }
                });
            }
        }
    }
}

async fn next_input(input: &mut Option<&mut SplitStream<WebSocket>>) -> Option<WsMessage> {
    match input {
        Some(stream) => match stream.next().await {
            Some(Ok(message)) => Some(message),
            _ => None,
        },
        None => std::future::pending().await,
    }
}

fn answer_error(id: Option<&str>, why: &str) -> Bytes {
    frame::control(
        "error",
        &[
            ("id", id.map_or(Value::Null, Value::from)),
            ("error", Value::from(why)),
        ],
    )
}

/// A text message: `{"id", "key", "value", "headers"}` when it is such a JSON object, else
/// the text itself as the value.
fn from_text(text: &str) -> Outgoing {
    #[derive(serde::Deserialize)]
    struct Publish {
        #[serde(default)]
        id: Option<Value>,
        #[serde(default)]
        key: Option<String>,
        value: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    }
    match serde_json::from_str::<Publish>(text) {
        Ok(publish) => Outgoing {
            key: publish.key.map(Bytes::from),
            value: Bytes::from(publish.value),
            headers: publish
                .headers
                .into_iter()
                .map(|(name, value)| (name, Bytes::from(value)))
                .collect(),
            id: publish.id.map(|id| match id {
                Value::String(text) => text,
                other => other.to_string(),
            }),
        },
        Err(_) => Outgoing {
            key: None,
            value: Bytes::copy_from_slice(text.as_bytes()),
            headers: Vec::new(),
            id: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_gets_another_position_in_place() {
        let json = Bytes::from_static(
            br#"{"type":"record","value":"a,\"position\":\"x","position":"0:1,1:5"}"#,
        );
        let moved = with_position(&json, "0:1,1:9");
        let value: Value = serde_json::from_slice(&moved).unwrap();
        assert_eq!(value["position"], "0:1,1:9");
        assert_eq!(value["value"], "a,\"position\":\"x");
    }

    #[test]
    fn published_text_is_a_message_object_or_the_value_itself() {
        let message =
            from_text(r#"{"id":"c-1","key":"ada","value":"hi","headers":{"user":"ada"}}"#);
        assert_eq!(message.id.as_deref(), Some("c-1"));
        assert_eq!(message.key.as_deref(), Some(&b"ada"[..]));
        assert_eq!(message.value, Bytes::from_static(b"hi"));
        assert_eq!(
            message.headers,
            vec![("user".to_owned(), Bytes::from_static(b"ada"))]
        );
        let message = from_text("just text");
        assert_eq!(
            (message.key, message.value),
            (None, Bytes::from_static(b"just text"))
        );
        let message = from_text(r#"{"id":7,"value":"v"}"#);
        assert_eq!(message.id.as_deref(), Some("7"));
    }

    #[test]
    fn a_cursor_skips_what_the_client_has_and_keeps_its_own_position() {
        let frame = |partition, offset, position: &str| Frame {
            partition,
            offset,
            position: position.to_owned(),
            json: Bytes::from(format!(r#"{{"offset":{offset},"position":"{position}"}}"#)),
        };
        // Ahead on partition 1 (from another replica): the hub's frames below 7 are skipped,
        // and positions are the client's own until the hub catches up.
        let mut cursor = Cursor::new(vec![3, 7], &[3, 5]);
        assert!(!cursor.aligned);
        assert!(cursor.live(&frame(1, 5, "0:3,1:6")).is_none());
        let (json, position) = cursor.live(&frame(0, 3, "0:4,1:6")).unwrap();
        assert_eq!(position, "0:4,1:7");
        assert!(String::from_utf8_lossy(&json).contains("\"position\":\"0:4,1:7\""));
        assert!(cursor.live(&frame(1, 6, "0:4,1:7")).is_none());
        let (json, position) = cursor.live(&frame(1, 7, "0:4,1:8")).unwrap();
        assert_eq!(position, "0:4,1:8");
        assert!(cursor.aligned);
        assert_eq!(json, frame(1, 7, "0:4,1:8").json);
    }
}
