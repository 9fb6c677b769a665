/*
 * hello: the function the benchmarks deliver to, in two shapes that run the same logic
 * (upper-casing the ASCII letters of the event data).
 *
 *   hello           an HTTP/1.1 server, for `command` functions. It listens on fd 3 when
 *                   LISTEN_FDS=1 and LISTEN_PID is its own pid (socket activation), else on
 *                   127.0.0.1:$PORT. Each request is answered 200 with the transformed body.
 *   hello --stdin   reads stdin and writes the transformed bytes to stdout, for `exec`.
 *
 * With HELLO_STAMP=FILE, the server appends the wall-clock time (nanoseconds since the epoch)
 * at which each request arrived to FILE, one line per request: the cold-start benchmark
 * reads it.
 *
 * Build: gcc -O2 -Wall -Wextra -pthread -o hello hello.c
 *
 * The server takes one thread per connection and keeps connections alive. It reads requests
 * with a Content-Length body (or none); anything else it cannot parse, chunked bodies
 * included, is answered 400 and the connection is closed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <fcntl.h>

#include <time.h>

#define MAX_HEAD (64 * 1024)
#define MAX_BODY (64 * 1024 * 1024)
#define READ_CHUNK (64 * 1024)

/* Where arrival times go (HELLO_STAMP), or -1. */
static int stamp_fd = -1;

static void stamp(void)
{
    if (stamp_fd < 0)
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char line[32];
    int n = snprintf(line, sizeof line, "%lld\n",
                     (long long)now.tv_sec * 1000000000LL + (long long)now.tv_nsec);
    if (n > 0)
        (void)!write(stamp_fd, line, (size_t)n);
}

/* The program logic: what the function does to an event's data. */
static void transform(char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (data[i] >= 'a' && data[i] <= 'z')
            data[i] = (char)(data[i] - 'a' + 'A');
    }
}

/* Writes every byte of the vectors, resuming after short writes. */
static int write_all(int fd, struct iovec *iov, int count)
{
    while (count > 0) {
        ssize_t n = writev(fd, iov, count);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (count > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            count--;
        }
        if (count > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

static int run_stdin(void)
{
    char *buf = malloc(READ_CHUNK);
    if (buf == NULL)
        return 1;
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            perror("hello: read stdin");
            return 1;
        }
        if (n == 0)
            break;
        transform(buf, (size_t)n);
        struct iovec iov = {buf, (size_t)n};
        if (write_all(STDOUT_FILENO, &iov, 1) < 0) {
            perror("hello: write stdout");
            return 1;
        }
    }
    free(buf);
    return 0;
}

/* Bytes read from one connection and not yet consumed. */
struct conn {
    int fd;
    char *buf;
    size_t len;
    size_t cap;
};

/* Reads more bytes into the buffer; returns the count, 0 at end of stream, -1 on error. */
static ssize_t fill(struct conn *c, size_t want)
{
    if (c->cap - c->len < want) {
        size_t cap = c->cap;
        while (cap - c->len < want)
            cap *= 2;
        char *grown = realloc(c->buf, cap);
        if (grown == NULL)
            return -1;
        c->buf = grown;
        c->cap = cap;
    }
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0)
            c->len += (size_t)n;
        return n;
    }
}

static void respond(int fd, const char *status, const char *content_type, const char *body,
                    size_t body_len, int keep_alive)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n",
                     status, content_type, body_len, keep_alive ? "" : "Connection: close\r\n");
    struct iovec iov[2] = {{head, (size_t)n}, {(void *)body, body_len}};
    (void)write_all(fd, iov, body_len > 0 ? 2 : 1);
}

static int is_tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* What the head of a request says about how to read and answer it. */
struct request {
    size_t content_length;
    int keep_alive;
    int expect_continue;
    char content_type[256];
};

/* Parses the request line and headers in head[0..len) (CRLF line ends, without the final
 * empty line). Returns 0 when the request is usable, -1 when it must be answered 400. */
static int parse_head(char *head, size_t len, struct request *req)
{
    char *end = head + len;
    char *line_end = memmem(head, len, "\r\n", 2);
    if (line_end == NULL)
        line_end = end;

    /* Request line: method SP target SP HTTP/1.x */
    char *p = head;
    while (p < line_end && is_tchar(*p))
        p++;
    if (p == head || p >= line_end || *p != ' ')
        return -1;
    char *target = ++p;
    while (p < line_end && *p > ' ' && *p != 0x7f)
        p++;
    if (p == target || p >= line_end || *p != ' ')
        return -1;
    p++;
    if (line_end - p != 8 || memcmp(p, "HTTP/1.", 7) != 0)
        return -1;
    if (p[7] == '1')
        req->keep_alive = 1;
    else if (p[7] == '0')
        req->keep_alive = 0;
    else
        return -1;

    req->content_length = 0;
    req->expect_continue = 0;
    strcpy(req->content_type, "application/octet-stream");
    int seen_length = 0;

    p = line_end;
    while (p < end) {
        p += 2; /* the CRLF that ended the previous line */
        line_end = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (line_end == NULL)
            line_end = end;
        char *colon = p;
        while (colon < line_end && is_tchar(*colon))
            colon++;
        if (colon == p || colon >= line_end || *colon != ':')
            return -1; /* no name, whitespace before the colon, or obsolete line folding */
        size_t name_len = (size_t)(colon - p);
        char *value = colon + 1;
        while (value < line_end && (*value == ' ' || *value == '\t'))
            value++;
        char *value_end = line_end;
        while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t'))
            value_end--;
        size_t value_len = (size_t)(value_end - value);
        for (char *v = value; v < value_end; v++) {
            if ((unsigned char)*v < ' ' && *v != '\t')
                return -1;
        }

#define NAME_IS(lit) (name_len == sizeof(lit) - 1 && strncasecmp(p, lit, name_len) == 0)
#define VALUE_IS(lit) (value_len == sizeof(lit) - 1 && strncasecmp(value, lit, value_len) == 0)
        if (NAME_IS("content-length")) {
            if (value_len == 0)
                return -1;
            size_t n = 0;
            for (char *v = value; v < value_end; v++) {
                if (*v < '0' || *v > '9' || n > (MAX_BODY + 9) / 10)
                    return -1;
                n = n * 10 + (size_t)(*v - '0');
            }
            if (seen_length && n != req->content_length)
                return -1;
            seen_length = 1;
            req->content_length = n;
        } else if (NAME_IS("transfer-encoding")) {
            return -1;
        } else if (NAME_IS("connection")) {
            if (VALUE_IS("close"))
                req->keep_alive = 0;
            else if (VALUE_IS("keep-alive"))
                req->keep_alive = 1;
        } else if (NAME_IS("expect")) {
            if (!VALUE_IS("100-continue"))
                return -1;
            req->expect_continue = 1;
        } else if (NAME_IS("content-type")) {
            if (value_len == 0 || value_len >= sizeof req->content_type)
                return -1;
            memcpy(req->content_type, value, value_len);
            req->content_type[value_len] = '\0';
        }
#undef NAME_IS
#undef VALUE_IS
        p = line_end;
    }
    return 0;
}

static void *serve(void *arg)
{
    struct conn c = {(int)(intptr_t)arg, malloc(READ_CHUNK), 0, READ_CHUNK};
    if (c.buf == NULL)
        goto done;
    for (;;) {
        /* Read until the blank line that ends the head. */
        char *head_end;
        size_t scanned = 0;
        while ((head_end = memmem(c.buf + scanned, c.len - scanned, "\r\n\r\n", 4)) == NULL) {
            scanned = c.len > 3 ? c.len - 3 : 0;
            if (c.len > MAX_HEAD) {
                respond(c.fd, "400 Bad Request", "text/plain", "bad request\n", 12, 0);
                goto done;
            }
            if (fill(&c, 4096) <= 0)
                goto done; /* the client went away, which ends a kept-alive connection */
        }
        size_t head_len = (size_t)(head_end - c.buf);
        struct request req;
        if (head_len > MAX_HEAD || parse_head(c.buf, head_len, &req) < 0) {
            respond(c.fd, "400 Bad Request", "text/plain", "bad request\n", 12, 0);
            goto done;
        }
        if (req.content_length > MAX_BODY) {
            respond(c.fd, "413 Content Too Large", "text/plain", "too large\n", 10, 0);
            goto done;
        }
        size_t body_start = head_len + 4;
        size_t total = body_start + req.content_length;
        if (req.expect_continue && c.len < total) {
            struct iovec iov = {"HTTP/1.1 100 Continue\r\n\r\n", 25};
            if (write_all(c.fd, &iov, 1) < 0)
                goto done;
        }
        while (c.len < total) {
            if (fill(&c, total - c.len) <= 0)
                goto done;
        }

        char *body = c.buf + body_start;
        stamp();
        transform(body, req.content_length);
        respond(c.fd, "200 OK", req.content_type, body, req.content_length, req.keep_alive);
        if (!req.keep_alive)
            goto done;

        /* Keep what a pipelining client already sent of the next request. */
        memmove(c.buf, c.buf + total, c.len - total);
        c.len -= total;
        if (c.cap > 4 * READ_CHUNK && c.len < READ_CHUNK) {
            char *shrunk = realloc(c.buf, READ_CHUNK);
            if (shrunk != NULL) {
                c.buf = shrunk;
                c.cap = READ_CHUNK;
            }
        }
    }
done:
    free(c.buf);
    close(c.fd);
    return NULL;
}

/* The listening socket: the one handed over by socket activation, else a new one. */
static int listener(void)
{
    const char *fds = getenv("LISTEN_FDS");
    const char *pid = getenv("LISTEN_PID");
    if (fds != NULL && pid != NULL && strcmp(fds, "1") == 0 && atol(pid) == (long)getpid()) {
        /* As sd_listen_fds does, so that programs this one starts do not take the socket. */
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDNAMES");
        (void)fcntl(3, F_SETFD, FD_CLOEXEC);
        fprintf(stderr, "hello: listening on the socket at fd 3\n");
        return 3;
    }

    const char *port_text = getenv("PORT");
    long port = port_text != NULL ? strtol(port_text, NULL, 10) : 8080;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "hello: PORT must be a port number, got %s\n", port_text);
        exit(64);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("hello: socket");
        exit(1);
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 1024) < 0) {
        perror("hello: bind 127.0.0.1");
        exit(1);
    }
    fprintf(stderr, "hello: listening on 127.0.0.1:%ld\n", port);
    return fd;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--stdin") == 0)
        return run_stdin();
    if (argc != 1) {
        fprintf(stderr, "usage: hello [--stdin]\n");
        return 64;
    }

    signal(SIGPIPE, SIG_IGN);
    const char *stamp_path = getenv("HELLO_STAMP");
    if (stamp_path != NULL && *stamp_path != '\0') {
        stamp_fd = open(stamp_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (stamp_fd < 0) {
            perror("hello: HELLO_STAMP");
            return 1;
        }
    }
    int fd = listener();
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (;;) {
        int client = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                usleep(10000); /* out of resources: let connections finish, then go on */
                continue;
            }
            perror("hello: accept");
            return 1;
        }
        int one = 1;
        (void)setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t thread;
        if (pthread_create(&thread, &attr, serve, (void *)(intptr_t)client) != 0)
            close(client);
    }
}
