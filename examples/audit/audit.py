"""Flags cheaters: counts each player's hits and reports a player once past 10 hits.

Python standard library only. A CloudEvents function over HTTP on $PORT (default 8082):
each event is one hit, keyed by the player: the record key (the `ce-key` header), or the
partition key of a hit posted as a CloudEvent (`ce-partitionkey`). Counts
live in a SQLite file ($AUDIT_DB, default `audit.db`), so any number of instances share
them. The hit that takes a player past 10 is answered 200 with a `com.example.cheater`
CloudEvent; every other hit is answered 204 with no body.
"""
import http.server
import json
import os
import sqlite3
import sys
import threading
import urllib.parse
import uuid

LIMIT = 10
DB_PATH = os.environ.get("AUDIT_DB", "audit.db")
# How long a transaction waits for another instance's to finish before giving up.
BUSY_TIMEOUT_SECONDS = 10

SCHEMA = """
CREATE TABLE IF NOT EXISTS players (player TEXT PRIMARY KEY, hits INTEGER NOT NULL);
-- Every event counted, with the count it produced: a redelivered event (sluice delivers at
-- least once) is answered as before instead of being counted twice.
CREATE TABLE IF NOT EXISTS events (
  id TEXT PRIMARY KEY, player TEXT NOT NULL, hits INTEGER NOT NULL
);
"""

local = threading.local()
# Hits are handled on threads; print writes a line and its newline separately, so without
# the lock two hits' lines can run into each other.
output = threading.Lock()


def say(line):
    """Prints one line to stdout, whole."""
    with output:
        print(line, flush=True)


def connect():
    """A connection in autocommit mode, so that transactions are opened explicitly."""
    db = sqlite3.connect(DB_PATH, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_SECONDS * 1000}")
    return db


def database():
    """This thread's connection: sqlite3 connections are not shared between threads."""
    if not hasattr(local, "db"):
        local.db = connect()
    return local.db


def count_hit(event_id, player):
    """Counts one hit; returns the player's hits after it, and whether it was counted before.

    `event_id` None (an event without `ce-id`) is counted without remembering it.
    BEGIN IMMEDIATE takes the write lock before reading, so two instances counting hits for
    the same player at once are serialized instead of both reading the same old count.
    """
    db = database()
    db.execute("BEGIN IMMEDIATE")
    try:
        row = None
        if event_id is not None:
            row = db.execute("SELECT hits FROM events WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            db.execute(
                "INSERT INTO players (player, hits) VALUES (?, 1) "
                "ON CONFLICT (player) DO UPDATE SET hits = hits + 1",
                (player,),
            )
            (hits,) = db.execute(
                "SELECT hits FROM players WHERE player = ?", (player,)
            ).fetchone()
            if event_id is not None:
                db.execute(
                    "INSERT INTO events (id, player, hits) VALUES (?, ?, ?)",
                    (event_id, player, hits),
                )
        else:
            (hits,) = row
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return hits, row is not None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        key = self.headers.get("ce-key") or self.headers.get("ce-partitionkey")
        if key is None:
            say("hit without a player key: rejected")
            body = b"a hit needs the player as its key\n"
            self.answer(400, body, {"Content-Type": "text/plain"})
            return
        # A key that is not UTF-8 arrives base64-encoded (`ce-sluicebase64` says so); that
        # text names the player just as well.
        player = urllib.parse.unquote(key)
        # A CloudEvents id is unique only together with the source.
        event_id = None
        if "ce-id" in self.headers:
            event_id = f"{self.headers.get('ce-source', '')} {self.headers['ce-id']}"
        try:
            hits, again = count_hit(event_id, player)
        except sqlite3.OperationalError as err:
            # The database stayed locked or could not be written: worth retrying later.
            say(f"hit by {player}: cannot count it: {err}")
            self.answer(503, b"", {})
            return
        seen = " (delivered before, not counted again)" if again else ""
        if hits != LIMIT + 1:
            say(f"hit by {player}: {hits}{seen}")
            self.answer(204, None, {})
            return
        say(f"hit by {player}: {hits}, over {LIMIT}: reported as a cheater{seen}")
        body = json.dumps({"player": player, "hits": hits}).encode()
        self.answer(
            200,
            body,
            {
                "ce-specversion": "1.0",
                # Derived from the hit, so a redelivered hit gets the same report id.
                "ce-id": str(uuid.uuid5(uuid.NAMESPACE_URL, event_id or str(uuid.uuid4()))),
                "ce-source": "/audit",
                "ce-type": "com.example.cheater",
                "Content-Type": "application/json",
            },
        )

    def do_GET(self):
        # Answers a readiness check (`readiness_path`) on any path.
        self.answer(200, b"ok\n", {"Content-Type": "text/plain"})

    def answer(self, status, body, headers):
        """Sends a response; body None means none at all, as 204 requires."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    # sluice may open a connection per event it has in flight, all at once.
    request_queue_size = 128


def main():
    os.makedirs(os.path.dirname(DB_PATH) or ".", exist_ok=True)
    db = connect()
    # WAL lets instances read while one writes; it is a property of the file, set once.
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript(SCHEMA)
    db.close()

    port = int(os.environ.get("PORT", "8082"))
    server = Server(("127.0.0.1", port), Handler)
    print(f"audit listening on http://127.0.0.1:{port}/, counting in {DB_PATH}",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
