"""A tiny function: logs every CloudEvent it receives and answers 200.

Python standard library only. Listens on $PORT, which sluice sets when it runs the function;
run by hand, it listens on 8081.
"""
import http.server
import os
import sys
import threading

# Requests are handled on threads; print writes a line and its newline separately, so
# without the lock two events' lines can run into each other.
output = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        attributes = {
            name[3:]: value
            for name, value in self.headers.items()
            if name.lower().startswith("ce-")
        }
        with output:
            print(
                f"event id={attributes.get('id')} source={attributes.get('source')} "
                f"type={attributes.get('type')} key={attributes.get('key')} "
                f"data={body.decode('utf-8', 'replace')}",
                flush=True,
            )
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


port = int(os.environ.get("PORT", "8081"))
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
print(f"function listening on http://127.0.0.1:{port}/", file=sys.stderr, flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    # Ctrl-C in the terminal is how it is meant to stop, so no traceback.
    pass
