#!/usr/bin/env python3
"""What one sluice costs as triggers, partitions and functions grow: the figures SCALE.md
projects from.

    python3 bench/scale.py            (after `cargo build --release`)

A `sluice broker` process (memory storage unless STORAGE=sqlite) holds 10 topics of 100
partitions each: the broker runs on the same two cores, and on SQLite it, not sluice, is what
gives out under the load below. Against it, one
`sluice up` at a time runs, each measured on its own, next to a baseline `sluice up` with no
triggers and no functions in the same run:

  baseline     the topics declared (10 of 100 partitions, 10 of 1), nothing else
  triggers     100 triggers, 10 per topic, to an nginx that answers 200; idle
  narrow       100 triggers, 10 per topic, on 10 more topics of 1 partition each; idle
               (with `triggers`, it separates a trigger's fixed cost from its partitions')
  load         the same 100 triggers while 20,000 records (100 bytes, PER_TOPIC=2,000 per
               topic) are produced: 200,000 deliveries
  functions    1,000 `command` functions at zero, with no triggers
  subscribed   1,000 `command` functions at zero, each subscribed to one of the topics
               (an implicit trigger each), idle

For each: RSS (VmRSS), threads, open file descriptors, TCP connections to the broker, and
CPU in cores (ticks from /proc over the measured window). Needs Debian's nginx.

Env: SETTLE (seconds to wait after ready, 20), WINDOW (idle CPU window, 20),
SKIP (comma-separated scenario names to leave out), STORAGE (memory), PER_TOPIC (2000).
"""

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "target", "release", "sluice"))
SETTLE = int(os.environ.get("SETTLE", "20"))
WINDOW = int(os.environ.get("WINDOW", "20"))
SKIP = set(filter(None, os.environ.get("SKIP", "").split(",")))
STORAGE = os.environ.get("STORAGE", "memory")
PER_TOPIC = int(os.environ.get("PER_TOPIC", "2000"))
TOPICS = 10
PARTITIONS = 100
TICK = os.sysconf("SC_CLK_TCK")
# Every sluice started, stopped at the end whatever happens.
RUNNING = []
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on 127.0.0.1:{port} after {limit} s")


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.status, r.read().decode()


def wait_ready(port, limit=300):
    """Whether sluice answered /readyz with 200 within `limit` seconds."""
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            if get(port, "/readyz")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def connections(pid, port):
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"dport = :{port}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return sum(1 for line in out.splitlines() if f"pid={pid}," in line)


def delivered(port):
    _, text = get(port, "/metrics")
    total = 0.0
    for line in text.splitlines():
        if line.startswith("sluice_events_delivered_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def mib(n):
    return f"{n / 1048576:.1f}"


class Run:
    """One `sluice up` with a config, measured."""

    def __init__(self, work, name, config, broker_port):
        self.name = name
        self.admin = free_port()
        path = os.path.join(work, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(config.replace("ADMIN", f"127.0.0.1:{self.admin}"))
        self.log = open(os.path.join(work, f"{name}.log"), "w")
        self.started = time.time()
        self.proc = subprocess.Popen(
            [BIN, "-c", path, "up"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=work,
        )
        self.broker_port = broker_port
        RUNNING.append(self.proc)
        ready = wait_ready(self.admin)
        self.ready_after = time.time() - self.started if ready else None

    def sample(self):
        pid = self.proc.pid
        return {
            "rss": rss(pid),
            "threads": threads(pid),
            "fds": fds(pid),
            "conns": connections(pid, self.broker_port),
        }

    def idle(self):
        time.sleep(SETTLE)
        pid = self.proc.pid
        t0 = ticks(pid)
        time.sleep(WINDOW)
        cores = (ticks(pid) - t0) / TICK / WINDOW
        figures = self.sample()
        figures["cores"] = cores
        return figures

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} is missing: cargo build --release first")
    if not shutil.which("nginx"):
        sys.exit("bench/scale.py needs Debian's nginx (apt-get install nginx)")
    # 1,000 consumers need more descriptors than the usual soft limit of 1,024.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix="sluice-scale-")
    procs = []
    try:
        broker_port = free_port()
        os.makedirs(os.path.join(work, "broker"))
        broker = subprocess.Popen(
            [BIN, "broker", "--listen", f"127.0.0.1:{broker_port}",
             "--data-dir", os.path.join(work, "broker"), "--storage", STORAGE],
            stdout=open(os.path.join(work, "broker.log"), "w"),
            stderr=subprocess.STDOUT,
        )
        procs.append(broker)
        wait_port(broker_port)

        nginx_port = free_port()
        ndir = os.path.join(work, "nginx")
        os.makedirs(os.path.join(ndir, "logs"))
        with open(os.path.join(ndir, "nginx.conf"), "w") as f:
            f.write(f"""daemon off;
worker_processes 1;
pid {ndir}/nginx.pid;
error_log {ndir}/logs/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {ndir}/body;
  server {{
    listen 127.0.0.1:{nginx_port};
    location / {{ return 200 ''; }}
  }}
}}
""")
        nginx = subprocess.Popen(["nginx", "-p", ndir, "-c", os.path.join(ndir, "nginx.conf")])
        procs.append(nginx)
        wait_port(nginx_port)

        common = f"""kafka: {{bootstrap_servers: "127.0.0.1:{broker_port}"}}
admin: {{listen: "ADMIN"}}
topics:
""" + "".join(f"  - {{name: topic-{t}, partitions: {PARTITIONS}}}\n" for t in range(TOPICS)) \
            + "".join(f"  - {{name: narrow-{t}, partitions: 1}}\n" for t in range(TOPICS))
        triggers = "triggers:\n" + "".join(
            f"""  - name: t{t}-{j}
    topics: [topic-{t}]
    url: http://127.0.0.1:{nginx_port}/
    initial_offset: latest
    ordering: unordered
"""
            for t in range(TOPICS)
            for j in range(10)
        )
        narrow = triggers.replace("topics: [topic-", "topics: [narrow-")
        functions = "functions:\n" + "".join(
            f"""  f{i}:
    command: [python3, -m, http.server]
    idle_timeout: 30s
"""
            for i in range(1000)
        )
        subscribed = "functions:\n" + "".join(
            f"""  f{i}:
    command: [python3, -m, http.server]
    topics: [topic-{i % TOPICS}]
"""
            for i in range(1000)
        )

        print(f"scale: sluice {BIN}; broker: sluice broker ({STORAGE}), {TOPICS} topics x "
              f"{PARTITIONS} partitions; {os.cpu_count()} cores; idle figures after "
              f"{SETTLE} s settling, CPU over {WINDOW} s")
        rows = []

        def row(name, what, figures, ready):
            rows.append((name, what, figures, ready))
            ready = f"{ready:5.1f} s" if ready is not None else "never"
            print(f"{name:<11} {what:<46} ready {ready:>7}  RSS {mib(figures['rss']):>7} MiB  "
                  f"threads {figures['threads']:>5}  fds {figures['fds']:>5}  "
                  f"broker conns {figures['conns']:>4}  cpu {figures['cores']:.3f} cores",
                  flush=True)

        run = Run(work, "baseline", common, broker_port)
        row("baseline", "20 topics declared, no triggers", run.idle(), run.ready_after)
        run.stop()

        if "triggers" not in SKIP:
            run = Run(work, "triggers", common + triggers, broker_port)
            row("triggers", "100 triggers (10 per topic), idle", run.idle(), run.ready_after)
            if "load" not in SKIP:
                per_topic = PER_TOPIC
                want = per_topic * TOPICS * 10
                before = delivered(run.admin)
                pid = run.proc.pid
                t0, w0 = ticks(pid), time.time()
                producers = [
                    subprocess.Popen(
                        [BIN, "produce", "-b", f"127.0.0.1:{broker_port}", "-t", f"topic-{t}",
                         "--count", str(per_topic), "--size", "100"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    for t in range(TOPICS)
                ]
                peak = rss(pid)
                deadline = time.time() + 300
                while time.time() < deadline:
                    peak = max(peak, rss(pid))
                    if delivered(run.admin) - before >= want:
                        break
                    time.sleep(0.5)
                for p in producers:
                    p.wait()
                took = time.time() - w0
                got = delivered(run.admin) - before
                figures = run.sample()
                figures["cores"] = (ticks(pid) - t0) / TICK / took
                row("load", f"{want} deliveries in {took:.1f} s ({got / took:,.0f}/s)",
                    figures, 0.0)
                print(f"{'':<11} peak RSS during the load {mib(peak)} MiB", flush=True)
            run.stop()

        if "narrow" not in SKIP:
            run = Run(work, "narrow", common + narrow, broker_port)
            row("narrow", "100 triggers on 1-partition topics, idle", run.idle(), run.ready_after)
            run.stop()

        if "functions" not in SKIP:
            run = Run(work, "functions", common + functions, broker_port)
            row("functions", "1,000 command functions at zero, no triggers", run.idle(),
                run.ready_after)
            run.stop()

        if "subscribed" not in SKIP:
            run = Run(work, "subscribed", common + subscribed, broker_port)
            row("subscribed", "1,000 functions at zero, each subscribed", run.idle(),
                run.ready_after)
            run.stop()

        base = rows[0][2]
        print()
        for name, _, figures, _ in rows[1:]:
            n = {"triggers": 100, "narrow": 100, "load": 100, "functions": 1000,
                 "subscribed": 1000}[name]
            unit = "trigger" if name in ("triggers", "narrow", "load") else "function"
            print(f"{name:<11} over the baseline: {mib(figures['rss'] - base['rss'])} MiB "
                  f"({(figures['rss'] - base['rss']) / n / 1024:.1f} KiB per {unit}), "
                  f"{figures['threads'] - base['threads']} threads "
                  f"({(figures['threads'] - base['threads']) / n:.1f} per {unit}), "
                  f"{figures['conns'] - base['conns']} broker connections, "
                  f"{figures['fds'] - base['fds']} descriptors")
    finally:
        for p in RUNNING + procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
