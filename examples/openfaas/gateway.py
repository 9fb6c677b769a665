#!/usr/bin/env python3
"""A stand-in for the OpenFaaS gateway, used by sluice's tests and the `examples/openfaas`
walk-through when no real gateway is there. Python 3.11 standard library only.

    gateway.py --listen HOST:PORT --functions FILE [--user NAME --password-file FILE]
               [--upstream-timeout SECONDS]

It answers as an OpenFaaS Community Edition gateway in front of faas-netes would (see
RESEARCH.md beside it for the sources):

  GET  /healthz                       200, empty body; never asks for credentials.
  GET  /system/functions[?namespace=] the functions of one namespace (default `openfaas-fn`)
                                      as faas-provider `FunctionStatus` JSON; 400
                                      `namespace not valid` for a namespace nobody uses.
  GET  /system/function/NAME[?namespace=]  one function; 404 with an empty body if unknown.
  GET  /system/namespaces             `["openfaas-fn", ...]`: the default, then every other
                                      namespace the functions file uses.
  GET  /system/info                   gateway and provider versions.
  ANY  /function/NAME[.NAMESPACE][/PATH]   invokes the function (synchronously).
  POST /async-function/NAME[.NAMESPACE][/PATH]  202 at once, invokes in the background.

With `--user` and `--password-file` (whose content is trimmed, as the gateway reads its
`basic-auth-password` secret) every `/system/*` route wants HTTP basic auth, and answers 401
with `WWW-Authenticate: Basic realm="Restricted"` and the body `invalid credentials` when the
credentials are missing or wrong. `/healthz` and the function routes never want them.

The functions file is read again on every request, so a test adds or removes a function, or
changes its `topic` annotation, by rewriting the file (write it to a temporary name and
rename it over the old one, so that no request reads half a file). It is a JSON list:

    [{"name": "figlet",                       required; letters, digits, `-` and `_`
      "namespace": "openfaas-fn",             optional, this default
      "annotations": {"topic": "a,b"},        optional
      "labels": {"com.example": "x"},         optional
      "image": "ghcr.io/openfaas/figlet:latest",   optional, made up from the name
      "envVars": {"K": "V"},                  optional, in the listing and the command's env
      "command": ["figlet"]},                 either this ...
     {"name": "echo", "upstream": "http://127.0.0.1:8081/path"}]   ... or this

A `command` function runs like a classic-watchdog function: the program is started for each
request, in the functions file's directory, with the request body on its stdin and the
request headers in `Http_*` environment variables (`Http_X_Call_Id`, `Http_Method`,
`Http_Path`, ...). Exit 0 answers 200 with its stdout (`X-Duration-Seconds` set); any other
exit answers 500 with `exit status N`, a newline, its stdout and its stderr. What it prints
on stderr is also copied to this process's stderr.

An `upstream` function forwards the request (method, path below the function's name, query,
body and headers, minus hop-by-hop ones) to the URL and relays the response's status,
headers and body. If the upstream cannot be reached the answer is 500 `Can't reach service
for: NAME.`, as faas-provider's proxy answers.

The gateway adds `X-Call-Id` (unless the request has one; then it is not echoed back),
`X-Start-Time` (Unix nanoseconds) and `X-Forwarded-For`/`X-Forwarded-Host` to the request,
and `X-Call-Id`, `X-Start-Time` and `X-Served-By` to the response. An unknown function
answers 404 `error finding function NAME.NAMESPACE: server returned non-200 status code
(404) for function, NAME, body: ` (the gateway's scale-from-zero lookup, on by default). An
invocation that takes longer than `--upstream-timeout` (default 60 seconds, the gateway's)
answers 502 with an empty body. `invocationCount` in the listing counts the invocations that
reached a function. Each invocation is logged to stderr as one line.

The first line on stdout is `listening on http://HOST:PORT` (the bound port when PORT is 0).
SIGTERM or SIGINT stops the server and exits with status 0.
"""

import argparse
import base64
import binascii
import hmac
import http.client
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_NAMESPACE = "openfaas-fn"
VERSION = "stand-in"
# The gateway's route expression for a function name, namespace suffix included.
FUNCTION_ROUTE = re.compile(r"^/(function|async-function)/([-a-zA-Z_0-9.]+)(/.*)?$")
STATUS_ROUTE = re.compile(r"^/system/function/([-a-zA-Z_0-9.]+)$")
# A name or namespace in the functions file: no dot, which would split a namespace off.
PLAIN_NAME = re.compile(r"^[-a-zA-Z_0-9]+$")
# Methods faas-provider's function proxy forwards; others answer 405.
PROXY_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
# Removed from a forwarded request and from a relayed response.
HOP_HEADERS = {
    "connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade",
}
TEXT = "text/plain; charset=utf-8"
FIELDS = {"name", "namespace", "annotations", "labels", "image", "envVars", "command", "upstream"}


class FunctionsFileError(Exception):
    pass


def string_map(entry, key, where):
    value = entry.get(key, {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise FunctionsFileError(f"{where}: {key} must be an object of strings")
    return dict(value)


def load_functions(path):
    """The functions file as {(name, namespace): function}; FunctionsFileError if invalid."""
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError) as e:
        raise FunctionsFileError(f"cannot read {path}: {e}") from None
    if not isinstance(entries, list):
        raise FunctionsFileError(f"{path}: the top level must be a list")
    functions = {}
    for i, entry in enumerate(entries):
        where = f"{path}: function {i}"
        if not isinstance(entry, dict):
            raise FunctionsFileError(f"{where}: must be an object")
        unknown = sorted(set(entry) - FIELDS)
        if unknown:
            raise FunctionsFileError(f"{where}: unknown field(s) {', '.join(unknown)}")
        name = entry.get("name")
        namespace = entry.get("namespace", DEFAULT_NAMESPACE)
        for key, value in (("name", name), ("namespace", namespace)):
            if not isinstance(value, str) or not PLAIN_NAME.match(value):
                raise FunctionsFileError(f"{where}: {key} must be letters, digits, - and _")
        where = f"{path}: function {name}.{namespace}"
        if (name, namespace) in functions:
            raise FunctionsFileError(f"{where}: listed twice")
        command, upstream = entry.get("command"), entry.get("upstream")
        if (command is None) == (upstream is None):
            raise FunctionsFileError(f"{where}: give either command or upstream")
        if command is not None and (
            not isinstance(command, list) or not command
            or not all(isinstance(a, str) for a in command)
        ):
            raise FunctionsFileError(f"{where}: command must be a non-empty list of strings")
        if upstream is not None:
            url = urllib.parse.urlsplit(upstream) if isinstance(upstream, str) else None
            if url is None or url.scheme not in ("http", "https") or not url.hostname:
                raise FunctionsFileError(f"{where}: upstream must be an http:// or https:// URL")
        image = entry.get("image", f"ghcr.io/openfaas/{name}:latest")
        if not isinstance(image, str):
            raise FunctionsFileError(f"{where}: image must be a string")
        labels = {"faas_function": name}
        labels.update(string_map(entry, "labels", where))
        # faas-netes adds this annotation to every function it deploys.
        annotations = {"prometheus.io.scrape": "false"}
        annotations.update(string_map(entry, "annotations", where))
        functions[(name, namespace)] = {
            "name": name,
            "namespace": namespace,
            "image": image,
            "labels": labels,
            "annotations": annotations,
            "envVars": string_map(entry, "envVars", where),
            "command": command,
            "upstream": upstream,
        }
    return functions


def namespaces_of(functions):
    others = sorted({ns for (_, ns) in functions} - {DEFAULT_NAMESPACE})
    return [DEFAULT_NAMESPACE] + others


def split_name(name):
    """NAME.NAMESPACE → (NAME, NAMESPACE), split at the last dot, as the gateway does."""
    if "." in name:
        i = name.rindex(".")
        return name[:i], name[i + 1:]
    return name, DEFAULT_NAMESPACE


def canonical_header(key):
    """Go's textproto.CanonicalMIMEHeaderKey for ordinary header names."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in key.split("-"))


GO_SIGNALS = {
    signal.SIGKILL: "killed", signal.SIGTERM: "terminated", signal.SIGINT: "interrupt",
    signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted", signal.SIGPIPE: "broken pipe",
    signal.SIGHUP: "hangup", signal.SIGQUIT: "quit",
}


class Gateway:
    """What outlives a request: the configuration, counters and running programs."""

    def __init__(self, functions_path, user, password, upstream_timeout):
        self.functions_path = os.path.abspath(functions_path)
        self.workdir = os.path.dirname(self.functions_path)
        self.user = user
        self.password = password
        self.upstream_timeout = upstream_timeout
        self.lock = threading.Lock()
        self.invocations = {}
        self.first_seen = {}
        self.children = set()

    def load(self):
        functions = load_functions(self.functions_path)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.lock:
            for key in functions:
                self.first_seen.setdefault(key, now)
        return functions

    def status(self, fn):
        """faas-provider's FunctionStatus as faas-netes fills it, fields in Go's order."""
        key = (fn["name"], fn["namespace"])
        with self.lock:
            count = self.invocations.get(key, 0)
            created = self.first_seen.get(key)
        out = {"name": fn["name"], "image": fn["image"], "namespace": fn["namespace"]}
        if fn["command"]:
            out["envProcess"] = " ".join(fn["command"])
        if fn["envVars"]:
            out["envVars"] = fn["envVars"]
        out["labels"] = fn["labels"]
        out["annotations"] = fn["annotations"]
        if count:
            out["invocationCount"] = count
        out["replicas"] = 1
        out["availableReplicas"] = 1
        out["createdAt"] = created
        return out

    def count(self, fn):
        with self.lock:
            key = (fn["name"], fn["namespace"])
            self.invocations[key] = self.invocations.get(key, 0) + 1

    def authorized(self, header):
        if self.user is None:
            return True
        if not header or not header[:6].lower() == "basic ":
            return False
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(":")
        return (
            bool(sep)
            and user == self.user
            and hmac.compare_digest(password.encode(), self.password.encode())
        )

    # -- invoking -------------------------------------------------------------------------

    def run_command(self, fn, path_name, method, sub, query, headers, body):
        """(status, headers, body) as the classic watchdog answers."""
        env = dict(os.environ)
        env.update(fn["envVars"])
        env["fprocess"] = " ".join(fn["command"])
        cgi = {}
        for key, value in headers:
            if key.lower() != "host":  # Go keeps Host out of the request's headers
                cgi.setdefault("Http_" + canonical_header(key).replace("-", "_"), value)
        env.update(cgi)
        env["Http_Method"] = method
        env["Http_ContentLength"] = env["Http_Content_Length"] = str(len(body))
        env["Http_Path"] = sub or "/"
        if query:
            env["Http_Query"] = query
        start = time.monotonic()
        try:
            child = subprocess.Popen(
                fn["command"], cwd=self.workdir, env=env, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
        except FileNotFoundError:
            text = f'exec: "{fn["command"][0]}": executable file not found in $PATH\n'
            return 500, [("Content-Type", TEXT)], text.encode()
        except OSError as e:
            text = f"fork/exec {fn['command'][0]}: {e.strerror or e}\n"
            return 500, [("Content-Type", TEXT)], text.encode()
        with self.lock:
            self.children.add(child)
        try:
            out, err = child.communicate(body, timeout=self.upstream_timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            return None
        finally:
            with self.lock:
                self.children.discard(child)
        for line in err.decode("utf-8", "replace").splitlines():
            log(f"[{path_name}] {line}")
        if child.returncode != 0:
            rc = child.returncode
            reason = (
                f"signal: {GO_SIGNALS.get(-rc, -rc)}" if rc < 0 else f"exit status {rc}"
            )
            return 500, [("Content-Type", TEXT)], f"{reason}\n".encode() + out + err
        reply_headers = []
        content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
        if content_type:
            reply_headers.append(("Content-Type", content_type))
        reply_headers.append(("X-Duration-Seconds", f"{time.monotonic() - start:f}"))
        return 200, reply_headers, out

    def forward(self, fn, path_name, method, sub, query, headers, body):
        """(status, headers, body) relayed from the upstream, or None after the timeout."""
        url = urllib.parse.urlsplit(fn["upstream"])
        target = (url.path.rstrip("/") + sub) or "/"
        queries = [q for q in (url.query, query) if q]
        if queries:
            target += "?" + "&".join(queries)
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = cls(url.hostname, url.port, timeout=self.upstream_timeout)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for key, value in headers:
                if key.lower() not in HOP_HEADERS and key.lower() not in ("host", "content-length"):
                    conn.putheader(key, value)
            if body or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            response = conn.getresponse()
            data = response.read()
            relayed = [
                (k, v) for k, v in response.getheaders()
                if k.lower() not in HOP_HEADERS and k.lower() != "content-length"
            ]
            return response.status, relayed, data
        except (TimeoutError, socket.timeout):
            return None
        except (OSError, http.client.HTTPException) as e:
            log(f"error with proxy request to: {fn['upstream']}, {e}")
            return 500, [("Content-Type", TEXT), ("X-Openfaas-Internal", "proxy")], (
                f"Can't reach service for: {path_name}.\n".encode()
            )
        finally:
            conn.close()

    def invoke(self, path_name, method, sub, query, headers, body, client):
        """The gateway's answer to /function/PATH_NAME: (status, headers, body, function,
        call id)."""
        name, namespace = split_name(path_name)
        try:
            functions = self.load()
        except FunctionsFileError as e:
            log(str(e))
            return 500, [("Content-Type", TEXT)], f"{e}\n".encode(), None, None
        fn = functions.get((name, namespace))
        if fn is None:
            if namespace in namespaces_of(functions):
                code, provider_body = 404, ""
            else:
                code, provider_body = 400, "namespace not valid\n"
            text = (
                f"error finding function {name}.{namespace}: server returned non-200 status "
                f"code ({code}) for function, {name}, body: {provider_body}"
            )
            return 404, [("Content-Type", TEXT)], text.encode(), None, None

        headers = [(k, v) for k, v in headers if k.lower() not in HOP_HEADERS]
        reply_headers = []
        call_id = next((v for k, v in headers if k.lower() == "x-call-id"), None)
        if call_id is None:
            call_id = str(uuid.uuid4())
            headers.append(("X-Call-Id", call_id))
            reply_headers.append(("X-Call-Id", call_id))
        start = str(time.time_ns())
        headers.append(("X-Start-Time", start))
        reply_headers.append(("X-Start-Time", start))
        reply_headers.append(("X-Served-By", f"openfaas-ce/{VERSION}"))
        if not any(k.lower() == "x-forwarded-host" for k, _ in headers):
            host = next((v for k, v in headers if k.lower() == "host"), None)
            if host:
                headers.append(("X-Forwarded-Host", host))
        if not any(k.lower() == "x-forwarded-for" for k, _ in headers):
            headers.append(("X-Forwarded-For", f"{client[0]}:{client[1]}"))
        if method not in PROXY_METHODS:
            return 405, reply_headers, b"", fn, call_id

        self.count(fn)
        run = self.run_command if fn["command"] else self.forward
        result = run(fn, path_name, method, sub, query, headers, body)
        if result is None:
            return 502, reply_headers, b"", fn, call_id
        status, function_headers, data = result
        if not any(k.lower() == "content-type" for k, _ in function_headers):
            request_type = next((v for k, v in headers if k.lower() == "content-type"), None)
            function_headers = function_headers + [("Content-Type", request_type or "text/plain")]
        return status, function_headers + reply_headers, data, fn, call_id


def log(line):
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sys.stderr.write(f"{stamp} {line}\n")
    sys.stderr.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openfaas-gateway-stand-in"

    def log_message(self, format, *args):
        pass

    @property
    def gateway(self):
        return self.server.gateway

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def reply(self, status, body=b"", headers=()):
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        for key, value in headers:
            if key.lower() not in ("content-length", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def text(self, status, text, extra=()):
        self.reply(status, text.encode(), [("Content-Type", TEXT), *extra])

    def json(self, value):
        data = json.dumps(value, separators=(",", ":")).encode()  # compact, as Go writes it
        self.reply(200, data, [("Content-Type", "application/json")])

    def not_found(self):
        self.text(404, "404 page not found\n", [("X-Content-Type-Options", "nosniff")])

    def http_error(self, status, text):
        """Go's http.Error."""
        self.text(status, text + "\n", [("X-Content-Type-Options", "nosniff")])

    def authorized(self):
        if self.gateway.authorized(self.headers.get("Authorization")):
            return True
        self.text(401, "invalid credentials", [("Www-Authenticate", 'Basic realm="Restricted"')])
        return False

    def dispatch(self):
        path, _, query = self.path.partition("?")
        body = self.read_body()
        method = self.command
        params = urllib.parse.parse_qs(query)
        if path == "/healthz":
            return self.reply(200) if method in ("GET", "HEAD") else self.reply(405)
        match = FUNCTION_ROUTE.match(path)
        if match:
            kind, name, sub = match.group(1), match.group(2), match.group(3) or ""
            if kind == "function":
                return self.invoke(name, sub, query, body)
            if method != "POST":
                return self.reply(405)
            return self.invoke_async(name, sub, query, body)
        if path == "/system/functions":
            if method not in ("GET", "POST", "PUT", "DELETE"):
                return self.reply(405)
            if not self.authorized():
                return
            if method != "GET":
                return self.http_error(501, "not implemented by the stand-in gateway: "
                                            "edit its functions file instead")
            return self.list_functions(params.get("namespace", [""])[0])
        match = STATUS_ROUTE.match(path)
        if match:
            if method != "GET":
                return self.reply(405)
            if self.authorized():
                self.function_status(match.group(1), params.get("namespace", [""])[0])
            return
        if path == "/system/namespaces":
            if method != "GET":
                return self.reply(405)
            if self.authorized():
                functions = self.load()
                if functions is not None:
                    self.json(namespaces_of(functions))
            return
        if path == "/system/info":
            if method != "GET":
                return self.reply(405)
            if self.authorized():
                self.json({
                    "provider": {
                        "provider": "openfaas-gateway-stand-in",
                        "version": {"sha": "", "release": VERSION},
                        "orchestration": "none",
                    },
                    "version": {"commit_message": "sluice's stand-in gateway", "sha": "",
                                "release": VERSION},
                    "arch": platform.machine(),
                })
            return
        self.not_found()

    def __getattr__(self, name):
        # Every method reaches dispatch (http.server answers 501 for a method without do_X).
        if name.startswith("do_"):
            return self.dispatch
        raise AttributeError(name)

    def load(self):
        try:
            return self.gateway.load()
        except FunctionsFileError as e:
            log(str(e))
            self.http_error(500, str(e))
            return None

    def list_functions(self, namespace):
        functions = self.load()
        if functions is None:
            return
        namespace = namespace or DEFAULT_NAMESPACE
        if namespace not in namespaces_of(functions):
            # The provider's http.Error, passed on by the gateway's http.Error: two newlines.
            return self.http_error(400, "namespace not valid\n")
        self.json([
            self.gateway.status(fn) for (_, ns), fn in functions.items() if ns == namespace
        ])

    def function_status(self, name, namespace):
        functions = self.load()
        if functions is None:
            return
        namespace = namespace or DEFAULT_NAMESPACE
        if namespace not in namespaces_of(functions):
            return self.http_error(400, "namespace not valid")
        fn = functions.get((name, namespace))
        if fn is None:
            return self.reply(404)
        self.json(self.gateway.status(fn))

    def invoke(self, name, sub, query, body):
        started = time.monotonic()
        status, headers, data, fn, call_id = self.gateway.invoke(
            name, self.command, sub, query, list(self.headers.items()), body, self.client_address
        )
        self.reply(status, data, headers)
        log_invocation(self.command, self.path, fn, status, started, body, data, call_id)

    def invoke_async(self, name, sub, query, body):
        request_headers = list(self.headers.items())
        reply_headers = []
        if self.headers.get("X-Call-Id") is None:
            call_id = str(uuid.uuid4())
            request_headers.append(("X-Call-Id", call_id))
            reply_headers.append(("X-Call-Id", call_id))
        start = str(time.time_ns())
        reply_headers += [("X-Start-Time", start), ("X-Served-By", f"openfaas-ce/{VERSION}")]
        self.reply(202, b"", reply_headers)
        path, client = self.path, self.client_address

        def run():
            started = time.monotonic()
            status, _, data, fn, call_id = self.gateway.invoke(
                name, "POST", sub, query, request_headers, body, client
            )
            log_invocation("async POST", path, fn, status, started, body, data, call_id)

        threading.Thread(target=run, daemon=True).start()


def log_invocation(method, path, fn, status, started, body, data, call_id):
    target = f"{fn['name']}.{fn['namespace']}" if fn else "unknown function"
    log(
        f"invoke {method} {path} -> {target}: {status} in {time.monotonic() - started:.3f}s, "
        f"{len(body)} bytes in, {len(data)} bytes out, call id {call_id or '-'}"
    )


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Server6(Server):
    address_family = socket.AF_INET6


def parse_listen(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen wants HOST:PORT, not {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


def main():
    parser = argparse.ArgumentParser(
        description="A stand-in for the OpenFaaS gateway (see the top of this file)."
    )
    parser.add_argument("--listen", required=True, type=parse_listen, metavar="HOST:PORT")
    parser.add_argument("--functions", required=True, metavar="FILE")
    parser.add_argument("--user", metavar="NAME", help="require basic auth on /system/*")
    parser.add_argument("--password-file", metavar="FILE")
    parser.add_argument("--upstream-timeout", type=float, default=60.0, metavar="SECONDS")
    args = parser.parse_args()
    if (args.user is None) != (args.password_file is None):
        parser.error("--user and --password-file go together")
    password = None
    if args.password_file is not None:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                password = f.read().strip()
        except OSError as e:
            parser.error(f"cannot read --password-file: {e}")
    try:
        load_functions(args.functions)
    except FunctionsFileError as e:
        parser.error(str(e))

    host, port = args.listen
    server_class = Server6 if ":" in host else Server
    server = server_class((host, port), Handler)
    server.gateway = Gateway(args.functions, args.user, password, args.upstream_timeout)
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"listening on http://{shown}:{bound_port}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    serving.daemon = True
    serving.start()
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    with server.gateway.lock:
        children = list(server.gateway.children)
    for child in children:
        child.kill()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
