/* The router's compiled data path (docs/router-data-path.md): the client side of HTTP/1.1 and the
 * warm call, in C, on the runtime's event loop.
 *
 * One Front owns the router's listening socket and an epoll set; the loop watches the epoll set's
 * descriptor and calls Front.run when anything in it is ready. Everything runs on the loop's
 * thread, holding the GIL: no lock, no race with the Python that keeps the state this reads.
 *
 * A connection's requests are parsed (llhttp) and answered strictly in order, one at a time, as
 * runtime.http.ServerProtocol answers them: a malformed request 400 and close, an upgrade 501 and
 * close, a body over the limit 413, ``100 Continue`` when the request asks for it (nothing is ever
 * ahead of it: the next request is read only once the one before it is answered).
 *
 * A request this can serve alone (``fast``) is one on an exact route the table holds (one function,
 * no capture policy, deployed), not HEAD, with no ``X-Faas-Invocation-Type``, whose namespace is
 * below its concurrency quota, with a specialized worker of the function below its requestsPerPod
 * that is not fresh from a cold start: the worker is taken as Executor._free and call_now take it,
 * the request goes to it as runtime.router and runtime.invoke would send it, and its answer comes
 * back as Router.complete makes it. The worker's capacity and the quota are given back at once;
 * the rest of the accounting (metrics, call records, a failed worker's removal, waking a waiting
 * call) is handed to Python in one batch per Front.run. Any other request goes to Python
 * (``fallback``: Router.dispatch), with a reply callable that writes its answer in turn. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "llhttp.h"

#define READ_CHUNK 65536
#define HELD_LIMIT (256 * 1024) /* unparsed bytes a connection holds before it stops reading */
#define POOL_SIZE 64
#define HEAD_LIMIT (1 << 20) /* a request's target and headers, or an answer's headers, at most */
#define DRAIN_DELAY_NS 1000000 /* finished calls wait at most this long for drain, unless one failed */

enum { K_LISTEN = 1, K_CLIENT, K_LINK, K_TIMER, K_WAKE, K_DRAIN };
enum { OUT_OK = 0, OUT_TIMEOUT = 1, OUT_CRASH = 2 };

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_add(Buf *b, const char *s, size_t n) {
    if (buf_reserve(b, n)) return -1;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

#define BUF_LIT(b, s) buf_add((b), (s), sizeof(s) - 1)

static void buf_free(Buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* Header names and values, appended to one text as they come (llhttp may give each in pieces). */
typedef struct {
    uint32_t no, nl, vo, vl;
} Span;

typedef struct {
    Buf text;
    Span *h;
    size_t n, cap;
    int in_value;
} Heads;

static void heads_reset(Heads *hs) {
    hs->text.n = 0;
    hs->n = 0;
    hs->in_value = 0;
}

static void heads_free(Heads *hs) {
    buf_free(&hs->text);
    free(hs->h);
    hs->h = NULL;
    hs->n = hs->cap = 0;
}

static int heads_field(Heads *hs, const char *at, size_t len) {
    if (hs->text.n + len > HEAD_LIMIT) return -1; /* and so the 32-bit offsets never overflow */
    if (hs->n == 0 || hs->in_value) {
        if (hs->n == hs->cap) {
            size_t cap = hs->cap ? hs->cap * 2 : 16;
            Span *h = realloc(hs->h, cap * sizeof(Span));
            if (!h) return -1;
            hs->h = h;
            hs->cap = cap;
        }
        hs->h[hs->n++] = (Span){(uint32_t)hs->text.n, 0, (uint32_t)hs->text.n, 0};
        hs->in_value = 0;
    }
    if (buf_add(&hs->text, at, len)) return -1;
    hs->h[hs->n - 1].nl += (uint32_t)len;
    hs->h[hs->n - 1].vo = (uint32_t)hs->text.n;
    return 0;
}

static int heads_value(Heads *hs, const char *at, size_t len) {
    if (hs->n == 0 || hs->text.n + len > HEAD_LIMIT) return -1;
    hs->in_value = 1;
    if (buf_add(&hs->text, at, len)) return -1;
    hs->h[hs->n - 1].vl += (uint32_t)len;
    return 0;
}

#define NAME(hs, i) ((hs)->text.p + (hs)->h[i].no)
#define VALUE(hs, i) ((hs)->text.p + (hs)->h[i].vo)

static int name_is(Heads *hs, size_t i, const char *lower, size_t len) {
    return hs->h[i].nl == len && strncasecmp(NAME(hs, i), lower, len) == 0;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double epoch_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------ Python types declared */

typedef struct Front Front;
typedef struct Conn Conn;
typedef struct Up Up;
typedef struct Link Link;

/* A worker's idle connections (Worker.fast_pool). */
typedef struct {
    PyObject_HEAD
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    Front *front;
    Link *links[POOL_SIZE];
    int n;
    int closed;
} Pool;

/* A connection to a worker: in the epoll set for as long as it is open (idle in its pool, or
 * carrying ``up``), so that taking and returning it costs no system call. */
struct Link {
    int kind;
    int fd;
    Front *front;
    Pool *pool; /* whose worker it reaches (alive while the link is: an idle link is closed with it) */
    Up *up;
    int writing, dead;
    Link *next_grave;
};

typedef struct {
    PyObject_HEAD
    PyObject *namespace_; /* str */
    PyObject *function;   /* str */
    PyObject *key;        /* (namespace, function) */
    PyObject *path;       /* str: the trigger's path, as the metrics name it */
    PyObject *by_function; /* Executor.by_function: key -> [Worker] */
    PyObject *in_flight;  /* Quotas.in_flight: namespace -> int */
    PyObject *about;      /* bytes: the X-Fission-Function-* header lines, each ending CRLF */
    long per_pod;
    long limit;           /* the namespace's concurrency quota; -1: none */
    double timeout;       /* seconds; <= 0: none */
} Route;

typedef struct {
    PyObject_HEAD
    Conn *conn;
    unsigned long seq;
} Reply;

struct Conn {
    int kind;
    int fd;
    Front *front;
    llhttp_t parser;
    Buf in;
    size_t in_start;
    Buf url;
    Heads heads;
    Buf body;
    size_t body_size;
    int too_large, upgrade, complete, msg_keep_alive;
    Buf out;
    size_t out_off;
    int busy, keep_alive, head, closing, dead, reading, writing, ready, refs, buried;
    unsigned long seq;
    int64_t started;
    Up *up;
    Conn *next_ready, *next_grave;
    char client[INET6_ADDRSTRLEN];
};

struct Up {
    Link *link;
    Front *front;
    Conn *conn;
    Route *route;
    PyObject *worker;
    Pool *pool;
    PyObject *method; /* str */
    llhttp_t parser;
    Heads heads;
    Buf body;
    Buf out;
    size_t out_off;
    int status, complete, done;
    int64_t started, sent, deadline, taken;
    double began;
    char rid[130];
    size_t rid_len;
    Up *prev, *next; /* in flight, for the timer */
};

struct Front {
    PyObject_HEAD
    int epfd, listen_fd, timer_fd, wake_fd, drain_fd;
    int kinds[4]; /* K_LISTEN, K_TIMER, K_WAKE, K_DRAIN: what epoll's data.ptr points at for them */
    int drain_armed, drain_now;
    Link *link_graves;
    size_t max_body;
    PyObject *fallback;   /* (method, url, headers, body, client, reply) -> None */
    PyObject *drain;      /* ([records]) -> None */
    PyObject *table;      /* {path bytes: ((methods tuple of bytes, Route | None), ...)} */
    PyObject *records;    /* list, handed to drain at the end of each run */
    PyObject *status_lines; /* {int: bytes} */
    PyObject *canned;     /* {"400": bytes, "413": bytes, "413-close": bytes, "501": bytes} */
    PyObject *timing_name; /* bytes */
    int in_run;
    Conn *ready, *graves;
    Up *flying, *up_graves;
    int64_t armed;
    unsigned char ids[4096];
    size_t ids_left;
    unsigned long long served, handed; /* requests answered here, and handed to Python */
};

static PyTypeObject PoolType, RouteType, ReplyType, FrontType;
static PyObject *S_state, *S_active, *S_fresh, *S_specialized, *S_fast_pool, *S_socket, *S_head_only,
    *S_encode;

/* ------------------------------------------------------------------ epoll helpers */

static void watch(Front *f, int fd, void *ptr, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    epoll_ctl(f->epfd, op, fd, &ev);
}

static void link_close(Link *l) {
    if (l->dead) return;
    l->dead = 1;
    epoll_ctl(l->front->epfd, EPOLL_CTL_DEL, l->fd, NULL);
    close(l->fd);
    if (l->front->in_run) { /* an event for it may be in the batch being handled */
        l->next_grave = l->front->link_graves;
        l->front->link_graves = l;
    } else {
        free(l);
    }
}

static void pool_drop(Pool *p, Link *l) {
    for (int i = 0; i < p->n; i++) {
        if (p->links[i] == l) {
            p->links[i] = p->links[--p->n];
            break;
        }
    }
}

static void conn_interest(Conn *c) {
    int reading = !c->dead && !c->closing && (c->in.n - c->in_start) < HELD_LIMIT;
    int writing = c->out.n > c->out_off;
    if (reading == c->reading && writing == c->writing) return;
    c->reading = reading;
    c->writing = writing;
    watch(c->front, c->fd, c, (reading ? EPOLLIN : 0) | (writing ? EPOLLOUT : 0), EPOLL_CTL_MOD);
}

/* ------------------------------------------------------------------ client connections */

static void conn_free(Conn *c) {
    buf_free(&c->in);
    buf_free(&c->url);
    heads_free(&c->heads);
    buf_free(&c->body);
    buf_free(&c->out);
    free(c);
}

/* Freed once nothing refers to it; during Front.run only at its end (an event for it may still
 * be in the batch being handled). */
static void conn_maybe_free(Conn *c) {
    if (!c->dead || c->refs > 0 || c->up != NULL || c->ready || c->buried) return;
    if (c->front->in_run) {
        c->buried = 1;
        c->next_grave = c->front->graves;
        c->front->graves = c;
        return;
    }
    conn_free(c);
}

static void conn_close(Conn *c) {
    if (c->dead) return;
    c->dead = 1;
    epoll_ctl(c->front->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    conn_maybe_free(c);
}

static void conn_flush(Conn *c) {
    while (c->out.n > c->out_off) {
        ssize_t sent = send(c->fd, c->out.p + c->out_off, c->out.n - c->out_off, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            conn_close(c);
            return;
        }
        c->out_off += (size_t)sent;
    }
    if (c->out_off == c->out.n) {
        c->out.n = c->out_off = 0;
        if (c->closing) {
            conn_close(c);
            return;
        }
    }
    conn_interest(c);
}

static void conn_write(Conn *c, const char *data, size_t n) {
    if (c->dead) return;
    if (buf_add(&c->out, data, n)) {
        conn_close(c);
        return;
    }
    conn_flush(c);
}

static void conn_write_bytes(Conn *c, PyObject *bytes) {
    conn_write(c, PyBytes_AS_STRING(bytes), (size_t)PyBytes_GET_SIZE(bytes));
}

static void mark_ready(Conn *c) {
    if (c->ready || c->dead) return;
    c->ready = 1;
    c->next_ready = c->front->ready;
    c->front->ready = c;
    if (!c->front->in_run) {
        uint64_t one = 1;
        (void)!write(c->front->wake_fd, &one, sizeof one);
    }
}

/* llhttp callbacks, request side */

static int rq_begin(llhttp_t *p) {
    Conn *c = p->data;
    c->url.n = 0;
    heads_reset(&c->heads);
    c->body.n = 0;
    c->body_size = 0;
    c->too_large = c->upgrade = c->complete = 0;
    return 0;
}

static int rq_url(llhttp_t *p, const char *at, size_t len) {
    Buf *url = &((Conn *)p->data)->url;
    return url->n + len > HEAD_LIMIT || buf_add(url, at, len) ? -1 : 0;
}

static int rq_field(llhttp_t *p, const char *at, size_t len) {
    return heads_field(&((Conn *)p->data)->heads, at, len) ? -1 : 0;
}

static int rq_value(llhttp_t *p, const char *at, size_t len) {
    return heads_value(&((Conn *)p->data)->heads, at, len) ? -1 : 0;
}

static int rq_headers_complete(llhttp_t *p) {
    Conn *c = p->data;
    Heads *hs = &c->heads;
    for (size_t i = 0; i < hs->n; i++) {
        if (name_is(hs, i, "expect", 6)) {
            if (hs->h[i].vl == 12 && strncasecmp(VALUE(hs, i), "100-continue", 12) == 0)
                conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            break; /* ServerProtocol reads the last Expect; a request has one */
        }
    }
    return 0;
}

static int rq_body(llhttp_t *p, const char *at, size_t len) {
    Conn *c = p->data;
    c->body_size += len;
    if (c->body_size > c->front->max_body)
        c->too_large = 1;
    else if (!c->too_large && buf_add(&c->body, at, len))
        return -1;
    return 0;
}

static int rq_complete(llhttp_t *p) {
    Conn *c = p->data;
    c->complete = 1;
    c->msg_keep_alive = llhttp_should_keep_alive(p);
    c->upgrade = llhttp_get_upgrade(p);
    return HPE_PAUSED;
}

static llhttp_settings_t request_settings;

/* ------------------------------------------------------------------ the fast path */

static void up_free(Up *u) {
    heads_free(&u->heads);
    buf_free(&u->body);
    buf_free(&u->out);
    Py_XDECREF(u->route);
    Py_XDECREF(u->worker);
    Py_XDECREF(u->pool);
    Py_XDECREF(u->method);
    free(u);
}

static int rs_field(llhttp_t *p, const char *at, size_t len) {
    return heads_field(&((Up *)p->data)->heads, at, len) ? -1 : 0;
}

static int rs_value(llhttp_t *p, const char *at, size_t len) {
    return heads_value(&((Up *)p->data)->heads, at, len) ? -1 : 0;
}

static int rs_body(llhttp_t *p, const char *at, size_t len) {
    return buf_add(&((Up *)p->data)->body, at, len) ? -1 : 0;
}

static int rs_complete(llhttp_t *p) {
    Up *u = p->data;
    if (llhttp_get_status_code(p) < 200) { /* an interim answer: the final one follows */
        heads_reset(&u->heads);
        u->body.n = 0;
        return 0;
    }
    u->status = llhttp_get_status_code(p);
    u->complete = llhttp_should_keep_alive(p) ? 2 : 1;
    return HPE_PAUSED;
}

static llhttp_settings_t response_settings;

/* The timeout timer goes off at ``when`` (0: never). It is set only when a call's deadline comes
 * before it, and not cleared when calls end: when it goes off, expire finds what is due, if
 * anything, and sets it for the earliest deadline left. */
static void set_timer(Front *f, int64_t when) {
    f->armed = when;
    struct itimerspec spec = {0};
    spec.it_value.tv_sec = when / 1000000000;
    spec.it_value.tv_nsec = when % 1000000000;
    timerfd_settime(f->timer_fd, TFD_TIMER_ABSTIME, &spec, NULL);
}

static int is_hop(const char *name, size_t len) {
    static const char *hop[] = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                                "proxy-connection"};
    for (size_t i = 0; i < sizeof hop / sizeof *hop; i++)
        if (strlen(hop[i]) == len && strncasecmp(name, hop[i], len) == 0) return 1;
    return 0;
}

static void status_line(Front *f, Buf *b, int status) {
    PyObject *key = PyLong_FromLong(status);
    PyObject *line = key ? PyDict_GetItem(f->status_lines, key) : NULL;
    Py_XDECREF(key);
    if (line && PyBytes_Check(line)) {
        buf_add(b, PyBytes_AS_STRING(line), (size_t)PyBytes_GET_SIZE(line));
    } else {
        char text[32];
        int n = snprintf(text, sizeof text, "HTTP/1.1 %d ", status);
        buf_add(b, text, (size_t)n);
    }
    BUF_LIT(b, "\r\n");
}

/* The caller's answer, as Response.encode writes Router.complete's: the worker's headers but the
 * hop-by-hop ones, Content-Length and its request id; then the request id, Server-Timing and the
 * length; ``connection: close`` when the connection ends. */
static void answer(Up *u, int outcome, int64_t done) {
    Conn *c = u->conn;
    Front *f = u->front;
    Buf b = {0};
    const char *body;
    size_t body_len;
    char timing[96];
    int n;
    if (outcome == OUT_OK) {
        status_line(f, &b, u->status);
        Heads *hs = &u->heads;
        for (size_t i = 0; i < hs->n; i++) {
            size_t nl = hs->h[i].nl;
            if (is_hop(NAME(hs, i), nl) || name_is(hs, i, "content-length", 14) ||
                name_is(hs, i, "x-fission-request-id", 20))
                continue;
            buf_add(&b, NAME(hs, i), nl);
            BUF_LIT(&b, ": ");
            buf_add(&b, VALUE(hs, i), hs->h[i].vl);
            BUF_LIT(&b, "\r\n");
        }
        body = u->body.p ? u->body.p : "";
        body_len = u->body.n;
        n = snprintf(timing, sizeof timing, "router;dur=%.3f, function;dur=%.3f", (done - u->started) / 1e6,
                     (done - u->sent) / 1e6);
    } else {
        status_line(f, &b, outcome == OUT_TIMEOUT ? 504 : 502);
        body = outcome == OUT_TIMEOUT ? "the function timed out\n" : "the function's worker failed during the request\n";
        body_len = strlen(body);
        n = snprintf(timing, sizeof timing, "router;dur=%.3f", (done - u->started) / 1e6);
    }
    BUF_LIT(&b, "x-fission-request-id: ");
    buf_add(&b, u->rid, u->rid_len);
    BUF_LIT(&b, "\r\n");
    buf_add(&b, PyBytes_AS_STRING(f->timing_name), (size_t)PyBytes_GET_SIZE(f->timing_name));
    BUF_LIT(&b, ": ");
    buf_add(&b, timing, n < (int)sizeof timing ? (size_t)n : sizeof timing - 1);
    char length[48];
    n = snprintf(length, sizeof length, "\r\ncontent-length: %zu\r\n", body_len);
    buf_add(&b, length, (size_t)n);
    if (!c->keep_alive) BUF_LIT(&b, "connection: close\r\n");
    BUF_LIT(&b, "\r\n");
    buf_add(&b, body, body_len);
    if (!c->dead) {
        if (!c->keep_alive) c->closing = 1;
        conn_write(c, b.p, b.n);
    }
    buf_free(&b);
}

static long get_long(PyObject *o, PyObject *name) {
    PyObject *v = PyObject_GetAttr(o, name);
    long r = v ? PyLong_AsLong(v) : -1;
    Py_XDECREF(v);
    return r;
}

static int add_long(PyObject *o, PyObject *name, long delta) {
    long now = get_long(o, name);
    if (now == -1 && PyErr_Occurred()) return -1;
    PyObject *v = PyLong_FromLong(now + delta);
    int r = v ? PyObject_SetAttr(o, name, v) : -1;
    Py_XDECREF(v);
    return r;
}

static int quota_add(Route *r, long delta) {
    PyObject *v = PyDict_GetItemWithError(r->in_flight, r->namespace_);
    long now = v ? PyLong_AsLong(v) : 0;
    if (PyErr_Occurred()) return -1;
    PyObject *n = PyLong_FromLong(now + delta);
    int res = n ? PyDict_SetItem(r->in_flight, r->namespace_, n) : -1;
    Py_XDECREF(n);
    return res;
}

/* The end of a fast call: the caller answered, the worker's capacity and the quota given back at
 * once (so the next request can take them), the connection kept when it can be, the rest queued
 * for drain. */
static void up_finish(Up *u, int outcome) {
    Front *f = u->front;
    int64_t done = now_ns();
    Conn *c = u->conn;
    Link *l = u->link;
    if (u->prev) u->prev->next = u->next; else f->flying = u->next;
    if (u->next) u->next->prev = u->prev;
    answer(u, outcome, done);
    int status = outcome == OUT_OK ? u->status : outcome == OUT_TIMEOUT ? 504 : 502;
    l->up = NULL;
    if (outcome == OUT_OK && u->complete == 2 && !u->pool->closed && u->pool->n < POOL_SIZE) {
        if (l->writing) {
            l->writing = 0;
            watch(f, l->fd, l, EPOLLIN, EPOLL_CTL_MOD);
        }
        u->pool->links[u->pool->n++] = l;
    } else {
        link_close(l);
    }
    /* A worker that failed keeps its count until drain removes it: no call takes it meanwhile. */
    if ((outcome == OUT_OK && add_long(u->worker, S_active, -1)) || quota_add(u->route, -1))
        PyErr_WriteUnraisable((PyObject *)f);
    PyObject *record = Py_BuildValue("(OOOidddi)", u->route, u->worker, u->method, status,
                                     (done - u->started) / 1e9, u->began, (done - u->taken) / 1e9, outcome);
    if (!record || PyList_Append(f->records, record)) PyErr_WriteUnraisable((PyObject *)f);
    Py_XDECREF(record);
    if (outcome != OUT_OK) {
        f->drain_now = 1; /* the worker is removed before another call can take it */
    } else if (!f->drain_armed) {
        struct itimerspec spec = {.it_value = {.tv_nsec = DRAIN_DELAY_NS}};
        timerfd_settime(f->drain_fd, 0, &spec, NULL);
        f->drain_armed = 1;
    }
    c->up = NULL;
    c->busy = 0;
    c->refs--;
    u->done = 1;
    u->next = f->up_graves; /* freed at the end of the run: an event for it may be in the batch */
    f->up_graves = u;
    if (c->dead)
        conn_maybe_free(c);
    else
        mark_ready(c);
}

static void up_flush(Up *u) {
    Link *l = u->link;
    while (u->out.n > u->out_off) {
        ssize_t sent = send(l->fd, u->out.p + u->out_off, u->out.n - u->out_off, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            up_finish(u, OUT_CRASH);
            return;
        }
        u->out_off += (size_t)sent;
    }
    int writing = u->out.n > u->out_off;
    if (writing != l->writing) {
        l->writing = writing;
        watch(u->front, l->fd, l, EPOLLIN | (writing ? EPOLLOUT : 0), EPOLL_CTL_MOD);
    }
}

static void up_readable(Up *u) {
    char chunk[READ_CHUNK];
    for (;;) {
        ssize_t got = recv(u->link->fd, chunk, sizeof chunk, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            up_finish(u, OUT_CRASH);
            return;
        }
        if (got == 0) {
            up_finish(u, OUT_CRASH);
            return;
        }
        llhttp_errno_t err = llhttp_execute(&u->parser, chunk, (size_t)got);
        if (err == HPE_PAUSED && u->complete) {
            const char *end = llhttp_get_error_pos(&u->parser);
            if (end != chunk + got) u->complete = 1; /* bytes after the answer: not reused */
            up_finish(u, OUT_OK);
            return;
        }
        if (err != HPE_OK) {
            up_finish(u, OUT_CRASH);
            return;
        }
    }
}

static const char hexdigits[] = "0123456789abcdef";

static void new_id(Front *f, Up *u) {
    if (f->ids_left < 16) {
        ssize_t got = getrandom(f->ids, sizeof f->ids, 0);
        f->ids_left = got > 0 ? (size_t)got : 0;
        if (f->ids_left < 16) { /* never here: getrandom of 4 KiB does not fail once the pool is up */
            abort();
        }
    }
    unsigned char *raw = f->ids + f->ids_left - 16;
    for (int i = 0; i < 16; i++) {
        u->rid[2 * i] = hexdigits[raw[i] >> 4];
        u->rid[2 * i + 1] = hexdigits[raw[i] & 15];
    }
    f->ids_left -= 16;
    u->rid_len = 32;
}

static int plain_id(const char *s, size_t n) {
    if (n < 1 || n > 128) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

/* The worker Executor._free would choose, taken (active + 1); NULL when none is free. */
static PyObject *take_worker(Route *r) {
    PyObject *workers = PyDict_GetItemWithError(r->by_function, r->key);
    if (!workers || !PyList_Check(workers)) return NULL;
    PyObject *best = NULL;
    long best_active = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(workers); i++) {
        PyObject *w = PyList_GET_ITEM(workers, i);
        PyObject *state = PyObject_GetAttr(w, S_state);
        int specialized = state && PyUnicode_Check(state) && PyUnicode_Compare(state, S_specialized) == 0;
        Py_XDECREF(state);
        if (!specialized) continue;
        long active = get_long(w, S_active);
        if (active < 0 || active >= r->per_pod) continue;
        if (!best || active < best_active) {
            best = w;
            best_active = active;
            if (active == 0) break;
        }
    }
    if (!best) return NULL;
    PyObject *fresh = PyObject_GetAttr(best, S_fresh);
    int is_fresh = !fresh || !PyUnicode_Check(fresh) || PyUnicode_GET_LENGTH(fresh) != 0;
    Py_XDECREF(fresh);
    if (is_fresh) return NULL; /* its cold start's call: Python records it as cold */
    if (add_long(best, S_active, 1)) return NULL;
    Py_INCREF(best);
    return best;
}

static Pool *pool_of(PyObject *worker) {
    PyObject *pool = PyObject_GetAttr(worker, S_fast_pool);
    if (pool && Py_TYPE(pool) == &PoolType) return (Pool *)pool;
    Py_XDECREF(pool);
    PyErr_Clear();
    PyObject *path = PyObject_GetAttr(worker, S_socket);
    PyObject *text = path ? PyOS_FSPath(path) : NULL;
    Py_XDECREF(path);
    if (!text || !PyUnicode_Check(text)) {
        Py_XDECREF(text);
        return NULL;
    }
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(text, &len);
    Pool *p = s && (size_t)len < sizeof p->path ? PyObject_New(Pool, &PoolType) : NULL;
    if (p) {
        memcpy(p->path, s, (size_t)len + 1);
        p->front = NULL; /* set by its first taker */
        p->n = 0;
        p->closed = 0;
        if (PyObject_SetAttr(worker, S_fast_pool, (PyObject *)p)) Py_CLEAR(p);
    }
    Py_DECREF(text);
    return p;
}

/* An idle connection to the pool's worker, or a new one; NULL when it cannot be had. */
static Link *pool_connection(Pool *p, Front *f) {
    if (p->closed) return NULL;
    p->front = f;
    if (p->n > 0) return p->links[--p->n];
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return NULL;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, p->path, strlen(p->path) + 1);
    Link *l = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 ? calloc(1, sizeof *l) : NULL;
    if (!l) {
        close(fd);
        return NULL;
    }
    l->kind = K_LINK;
    l->fd = fd;
    l->front = f;
    l->pool = p;
    watch(f, fd, l, EPOLLIN, EPOLL_CTL_ADD);
    return l;
}

static void add_host(Buf *b, const char *host, size_t n) {
    int colons = 0;
    for (size_t i = 0; i < n; i++) colons += host[i] == ':';
    if ((n && host[0] == '[') || colons > 1) {
        BUF_LIT(b, "Forwarded: host=\"");
        buf_add(b, host, n);
        BUF_LIT(b, "\";\r\n");
    } else {
        BUF_LIT(b, "Forwarded: host=");
        buf_add(b, host, n);
        BUF_LIT(b, ";\r\n");
    }
    BUF_LIT(b, "X-Forwarded-Host: ");
    buf_add(b, host, n);
    BUF_LIT(b, "\r\n");
}

/* The request as runtime.router's proxy_headers and invoke.call_now make it, and as
 * UpstreamConnection.start writes it. */
static int build_request(Conn *c, Up *u, const char *method, const char *query, size_t query_len) {
    Buf *b = &u->out;
    Heads *hs = &c->heads;
    const char *host = NULL, *offered = NULL;
    size_t host_len = 0, offered_len = 0;
    int proxied = 0, chained = 0;
    buf_add(b, method, strlen(method));
    BUF_LIT(b, " /");
    if (query_len) {
        BUF_LIT(b, "?");
        buf_add(b, query, query_len);
    }
    BUF_LIT(b, " HTTP/1.1\r\nhost: worker\r\n");
    for (size_t i = 0; i < hs->n; i++) {
        const char *name = NAME(hs, i);
        size_t nl = hs->h[i].nl;
        if (nl >= 10 && strncasecmp(name, "x-fission-", 10) == 0) {
            if (!offered && name_is(hs, i, "x-fission-request-id", 20)) {
                offered = VALUE(hs, i);
                offered_len = hs->h[i].vl;
            }
        } else if (name_is(hs, i, "host", 4)) {
            if (!host) {
                host = VALUE(hs, i);
                host_len = hs->h[i].vl;
            }
        } else if (name_is(hs, i, "forwarded", 9) || name_is(hs, i, "x-forwarded-host", 16)) {
            proxied |= hs->h[i].vl > 0;
        } else if (name_is(hs, i, "x-forwarded-for", 15)) {
            chained = 1;
        } else if (!is_hop(name, nl) && !name_is(hs, i, "content-length", 14) && !name_is(hs, i, "expect", 6)) {
            buf_add(b, name, nl);
            BUF_LIT(b, ": ");
            buf_add(b, VALUE(hs, i), hs->h[i].vl);
            BUF_LIT(b, "\r\n");
        }
    }
    if (proxied) {
        for (size_t i = 0; i < hs->n; i++) {
            if (name_is(hs, i, "forwarded", 9) || name_is(hs, i, "x-forwarded-host", 16)) {
                buf_add(b, NAME(hs, i), hs->h[i].nl);
                BUF_LIT(b, ": ");
                buf_add(b, VALUE(hs, i), hs->h[i].vl);
                BUF_LIT(b, "\r\n");
            }
        }
    } else {
        add_host(b, host ? host : "", host_len);
    }
    if (chained || c->client[0]) {
        BUF_LIT(b, "X-Forwarded-For: ");
        int first = 1;
        for (size_t i = 0; i < hs->n; i++) {
            if (name_is(hs, i, "x-forwarded-for", 15)) {
                if (!first) BUF_LIT(b, ", ");
                buf_add(b, VALUE(hs, i), hs->h[i].vl);
                first = 0;
            }
        }
        if (c->client[0]) {
            if (!first) BUF_LIT(b, ", ");
            buf_add(b, c->client, strlen(c->client));
        }
        BUF_LIT(b, "\r\n");
    }
    BUF_LIT(b, "X-Fission-Full-Url: ");
    buf_add(b, c->url.p, c->url.n);
    if (offered && plain_id(offered, offered_len)) {
        memcpy(u->rid, offered, offered_len);
        u->rid_len = offered_len;
    } else {
        new_id(c->front, u);
    }
    BUF_LIT(b, "\r\nx-fission-request-id: ");
    buf_add(b, u->rid, u->rid_len);
    BUF_LIT(b, "\r\n");
    buf_add(b, PyBytes_AS_STRING(u->route->about), (size_t)PyBytes_GET_SIZE(u->route->about));
    char length[48];
    int n = snprintf(length, sizeof length, "content-length: %zu\r\n\r\n", c->body.n);
    buf_add(b, length, (size_t)n);
    return buf_add(b, c->body.p ? c->body.p : "", c->body.n);
}

/* The route for this request when it can be served here; NULL to hand it to Python. */
static Route *fast_route(Conn *c, const char *method, size_t *path_len) {
    Front *f = c->front;
    if (c->url.n == 0 || c->url.p[0] != '/' || memchr(c->url.p, '#', c->url.n) || strcmp(method, "HEAD") == 0)
        return NULL;
    for (size_t i = 0; i < c->heads.n; i++)
        if (name_is(&c->heads, i, "x-faas-invocation-type", 22)) return NULL;
    const char *q = memchr(c->url.p, '?', c->url.n);
    *path_len = q ? (size_t)(q - c->url.p) : c->url.n;
    PyObject *key = PyBytes_FromStringAndSize(c->url.p, (Py_ssize_t)*path_len);
    PyObject *entries = key ? PyDict_GetItemWithError(f->table, key) : NULL;
    Py_XDECREF(key);
    if (!entries || !PyTuple_Check(entries)) return NULL;
    size_t mlen = strlen(method);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(entries); i++) {
        PyObject *entry = PyTuple_GET_ITEM(entries, i);
        PyObject *methods = PyTuple_GET_ITEM(entry, 0);
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(methods); j++) {
            PyObject *m = PyTuple_GET_ITEM(methods, j);
            if ((size_t)PyBytes_GET_SIZE(m) == mlen && memcmp(PyBytes_AS_STRING(m), method, mlen) == 0) {
                PyObject *route = PyTuple_GET_ITEM(entry, 1);
                return Py_TYPE(route) == &RouteType ? (Route *)route : NULL;
            }
        }
    }
    return NULL;
}

static int try_fast(Conn *c, const char *method) {
    size_t path_len = 0;
    Route *r = fast_route(c, method, &path_len);
    if (!r) return 0;
    if (r->limit >= 0) {
        PyObject *v = PyDict_GetItemWithError(r->in_flight, r->namespace_);
        long now = v ? PyLong_AsLong(v) : 0;
        if (PyErr_Occurred() || now >= r->limit) return 0; /* Python answers 429 */
    }
    PyObject *worker = take_worker(r);
    if (!worker) return 0;
    Pool *pool = pool_of(worker);
    Link *link = pool ? pool_connection(pool, c->front) : NULL;
    if (!link || quota_add(r, 1)) {
        if (link) link_close(link);
        add_long(worker, S_active, -1);
        Py_XDECREF(pool);
        Py_DECREF(worker);
        PyErr_Clear();
        return 0;
    }
    Up *u = calloc(1, sizeof *u);
    u->link = link;
    link->up = u;
    u->front = c->front;
    u->conn = c;
    u->route = r;
    Py_INCREF(r);
    u->worker = worker;
    u->pool = pool;
    u->method = PyUnicode_FromString(method);
    u->started = c->started;
    u->taken = now_ns();
    u->began = epoch_s();
    llhttp_init(&u->parser, HTTP_RESPONSE, &response_settings);
    u->parser.data = u;
    const char *q = c->url.p + path_len;
    size_t qlen = path_len < c->url.n ? c->url.n - path_len - 1 : 0;
    build_request(c, u, method, q + 1, qlen);
    c->up = u;
    c->busy = 1;
    c->refs++;
    u->next = c->front->flying;
    if (u->next) u->next->prev = u;
    c->front->flying = u;
    u->deadline = r->timeout > 0 ? u->taken + (int64_t)(r->timeout * 1e9) : 0;
    if (u->deadline && (!c->front->armed || u->deadline < c->front->armed)) set_timer(c->front, u->deadline);
    u->sent = now_ns();
    c->front->served++;
    up_flush(u);
    return 1;
}

/* ------------------------------------------------------------------ the Python path */

static PyObject *canned(Front *f, const char *name) {
    return PyDict_GetItemString(f->canned, name);
}

static void fallback(Conn *c, const char *method) {
    Front *f = c->front;
    if (PyErr_Occurred()) PyErr_WriteUnraisable((PyObject *)f); /* the fast path's, never the caller's */
    Reply *reply = PyObject_New(Reply, &ReplyType);
    if (reply) reply->conn = NULL;
    PyObject *headers = PyList_New((Py_ssize_t)c->heads.n);
    if (!reply || !headers) goto failed;
    reply->conn = c;
    reply->seq = ++c->seq;
    c->refs++;
    for (size_t i = 0; i < c->heads.n; i++) {
        PyObject *pair = Py_BuildValue("(y#y#)", NAME(&c->heads, i), (Py_ssize_t)c->heads.h[i].nl,
                                       VALUE(&c->heads, i), (Py_ssize_t)c->heads.h[i].vl);
        if (!pair) goto failed;
        PyList_SET_ITEM(headers, (Py_ssize_t)i, pair);
    }
    c->busy = 1;
    f->handed++;
    PyObject *result = PyObject_CallFunction(f->fallback, "sy#Oy#sO", method, c->url.p ? c->url.p : "",
                                             (Py_ssize_t)c->url.n, headers, c->body.p ? c->body.p : "",
                                             (Py_ssize_t)c->body.n, c->client, (PyObject *)reply);
    if (!result) PyErr_WriteUnraisable(f->fallback);
    Py_XDECREF(result);
    Py_DECREF(headers);
    unsigned long seq = reply->seq;
    Py_DECREF(reply);
    if (!result && !c->dead && c->busy && c->seq == seq) { /* it raised before any answer */
        c->busy = 0;
        c->closing = 1;
        conn_write_bytes(c, canned(f, "502"));
    }
    return;
failed:
    PyErr_WriteUnraisable((PyObject *)f);
    Py_XDECREF(headers);
    Py_XDECREF((PyObject *)reply);
    c->closing = 1;
    conn_write_bytes(c, canned(f, "502"));
}

/* Answer what is parsed, in order, until a request is being answered or more bytes are needed. */
static void pump(Conn *c) {
    while (!c->dead && !c->closing && !c->busy) {
        if (!c->complete) {
            size_t left = c->in.n - c->in_start;
            if (!left) break;
            const char *at = c->in.p + c->in_start;
            llhttp_errno_t err = llhttp_execute(&c->parser, at, left);
            if (err == HPE_OK) {
                c->in_start = c->in.n = 0;
                break;
            }
            if (err == HPE_PAUSED && c->complete) {
                c->in_start += (size_t)(llhttp_get_error_pos(&c->parser) - at);
                llhttp_resume(&c->parser);
            } else if (err == HPE_PAUSED_UPGRADE || c->upgrade) {
                c->closing = 1; /* what follows is another protocol's */
                conn_write_bytes(c, canned(c->front, "501"));
                break;
            } else {
                c->closing = 1;
                conn_write_bytes(c, canned(c->front, "400"));
                break;
            }
            if (c->in_start == c->in.n) c->in_start = c->in.n = 0;
        }
        c->complete = 0;
        c->started = now_ns();
        if (c->upgrade) {
            c->closing = 1;
            conn_write_bytes(c, canned(c->front, "501"));
            break;
        }
        if (c->too_large) {
            if (!c->msg_keep_alive) c->closing = 1;
            conn_write_bytes(c, canned(c->front, c->msg_keep_alive ? "413" : "413-close"));
            continue;
        }
        const char *method = llhttp_method_name(llhttp_get_method(&c->parser));
        c->keep_alive = c->msg_keep_alive;
        c->head = strcmp(method, "HEAD") == 0;
        if (!try_fast(c, method)) fallback(c, method);
    }
    if (!c->dead) {
        if (c->in_start > 0 && c->in_start == c->in.n) c->in_start = c->in.n = 0;
        conn_interest(c);
    }
}

static void conn_readable(Conn *c) {
    if (c->in_start) { /* what is parsed has been copied out: keep only what is not */
        memmove(c->in.p, c->in.p + c->in_start, c->in.n - c->in_start);
        c->in.n -= c->in_start;
        c->in_start = 0;
    }
    for (;;) {
        if (c->in.n >= HELD_LIMIT) break;
        if (buf_reserve(&c->in, READ_CHUNK)) {
            conn_close(c);
            return;
        }
        ssize_t got = recv(c->fd, c->in.p + c->in.n, READ_CHUNK, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            conn_close(c);
            return;
        }
        if (got == 0) { /* the client went: a call under way finishes, its answer has nowhere to go */
            conn_close(c);
            return;
        }
        c->in.n += (size_t)got;
        if ((size_t)got < READ_CHUNK) break;
    }
    pump(c);
}

static void accept_all(Front *f) {
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd = accept4(f->listen_fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        Conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->kind = K_CLIENT;
        c->fd = fd;
        c->front = f;
        c->reading = 1;
        if (peer.ss_family == AF_INET) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            inet_ntop(AF_INET, &((struct sockaddr_in *)&peer)->sin_addr, c->client, sizeof c->client);
        } else if (peer.ss_family == AF_INET6) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&peer)->sin6_addr, c->client, sizeof c->client);
        }
        llhttp_init(&c->parser, HTTP_REQUEST, &request_settings);
        c->parser.data = c;
        watch(f, fd, c, EPOLLIN, EPOLL_CTL_ADD);
    }
}

static void expire(Front *f) {
    uint64_t ticks;
    (void)!read(f->timer_fd, &ticks, sizeof ticks);
    f->armed = 0;
    int64_t now = now_ns(), earliest = 0;
    for (Up *u = f->flying, *next; u; u = next) {
        next = u->next;
        if (u->deadline && u->deadline <= now)
            up_finish(u, OUT_TIMEOUT);
        else if (u->deadline && (!earliest || u->deadline < earliest))
            earliest = u->deadline;
    }
    if (earliest) set_timer(f, earliest);
}

static void drain(Front *f) {
    f->drain_now = 0;
    if (!PyList_GET_SIZE(f->records)) return;
    PyObject *records = f->records;
    f->records = PyList_New(0);
    PyObject *r = PyObject_CallOneArg(f->drain, records);
    if (!r) PyErr_WriteUnraisable(f->drain);
    Py_XDECREF(r);
    Py_DECREF(records);
}

/* ------------------------------------------------------------------ Front */

static PyObject *front_run(Front *f, PyObject *unused) {
    struct epoll_event events[64];
    if (f->epfd < 0) Py_RETURN_NONE;
    f->in_run = 1;
    int n = epoll_wait(f->epfd, events, 64, 0);
    for (int i = 0; i < n; i++) {
        int kind = *(int *)events[i].data.ptr;
        uint32_t ev = events[i].events;
        if (kind == K_LISTEN) {
            accept_all(f);
        } else if (kind == K_CLIENT) {
            Conn *c = events[i].data.ptr;
            if (!c->dead && (ev & (EPOLLHUP | EPOLLERR)) && !c->reading) conn_close(c); /* gone, and unread */
            if (!c->dead && (ev & EPOLLOUT)) conn_flush(c);
            if (!c->dead && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) conn_readable(c);
        } else if (kind == K_LINK) {
            Link *l = events[i].data.ptr;
            if (l->dead) continue;
            Up *u = l->up;
            if (!u) { /* idle, and the worker closed it (or spoke out of turn): not reused */
                pool_drop(l->pool, l);
                link_close(l);
                continue;
            }
            if (ev & EPOLLOUT) up_flush(u);
            if (!u->done && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) up_readable(u);
        } else if (kind == K_DRAIN) {
            uint64_t ticks;
            (void)!read(f->drain_fd, &ticks, sizeof ticks);
            f->drain_armed = 0;
            f->drain_now = 1;
        } else if (kind == K_TIMER) {
            expire(f);
        } else if (kind == K_WAKE) {
            uint64_t count;
            (void)!read(f->wake_fd, &count, sizeof count);
        }
    }
    while (f->ready) {
        Conn *c = f->ready;
        f->ready = c->next_ready;
        c->ready = 0;
        if (c->dead)
            conn_maybe_free(c);
        else
            pump(c);
    }
    f->in_run = 0;
    while (f->graves) {
        Conn *c = f->graves;
        f->graves = c->next_grave;
        conn_free(c);
    }
    while (f->up_graves) {
        Up *u = f->up_graves;
        f->up_graves = u->next;
        up_free(u);
    }
    while (f->link_graves) {
        Link *l = f->link_graves;
        f->link_graves = l->next_grave;
        free(l);
    }
    if (f->drain_now) drain(f);
    Py_RETURN_NONE;
}

static PyObject *front_flush(Front *f, PyObject *unused) {
    if (!f->in_run) drain(f);
    Py_RETURN_NONE;
}

static PyObject *front_fileno(Front *f, PyObject *unused) {
    return PyLong_FromLong(f->epfd);
}

static PyObject *front_set_table(Front *f, PyObject *table) {
    if (!PyDict_Check(table)) {
        PyErr_SetString(PyExc_TypeError, "the table is a dict");
        return NULL;
    }
    Py_INCREF(table);
    Py_SETREF(f->table, table);
    Py_RETURN_NONE;
}

static PyObject *front_stop_listening(Front *f, PyObject *unused) {
    if (f->listen_fd >= 0) { /* the socket is its owner's to close */
        epoll_ctl(f->epfd, EPOLL_CTL_DEL, f->listen_fd, NULL);
        f->listen_fd = -1;
    }
    Py_RETURN_NONE;
}

static PyObject *front_counts(Front *f, PyObject *unused) {
    return Py_BuildValue("(KK)", f->served, f->handed);
}

static int front_init(Front *f, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"listen_fd", "max_body", "fallback", "drain", "status_lines", "canned", "timing_name",
                             NULL};
    int fd;
    Py_ssize_t max_body;
    PyObject *fb, *drain, *lines, *canned_, *timing;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "inOOO!O!O!", kwlist, &fd, &max_body, &fb, &drain, &PyDict_Type,
                                     &lines, &PyDict_Type, &canned_, &PyBytes_Type, &timing))
        return -1;
    f->epfd = epoll_create1(EPOLL_CLOEXEC);
    f->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    f->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    f->drain_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (f->epfd < 0 || f->timer_fd < 0 || f->wake_fd < 0 || f->drain_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    f->listen_fd = fd;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    f->max_body = (size_t)max_body;
    f->kinds[0] = K_LISTEN;
    f->kinds[1] = K_TIMER;
    f->kinds[2] = K_WAKE;
    f->kinds[3] = K_DRAIN;
    watch(f, fd, &f->kinds[0], EPOLLIN, EPOLL_CTL_ADD);
    watch(f, f->timer_fd, &f->kinds[1], EPOLLIN, EPOLL_CTL_ADD);
    watch(f, f->wake_fd, &f->kinds[2], EPOLLIN, EPOLL_CTL_ADD);
    watch(f, f->drain_fd, &f->kinds[3], EPOLLIN, EPOLL_CTL_ADD);
    Py_INCREF(fb);
    f->fallback = fb;
    Py_INCREF(drain);
    f->drain = drain;
    Py_INCREF(lines);
    f->status_lines = lines;
    Py_INCREF(canned_);
    f->canned = canned_;
    Py_INCREF(timing);
    f->timing_name = timing;
    f->table = PyDict_New();
    f->records = PyList_New(0);
    return 0;
}

static PyObject *front_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Front *f = (Front *)type->tp_alloc(type, 0);
    if (f) f->epfd = f->listen_fd = f->timer_fd = f->wake_fd = f->drain_fd = -1;
    return (PyObject *)f;
}

static void front_dealloc(Front *f) {
    /* Connections are closed with the process; a Front lives as long as the runtime. */
    Py_XDECREF(f->fallback);
    Py_XDECREF(f->drain);
    Py_XDECREF(f->table);
    Py_XDECREF(f->records);
    Py_XDECREF(f->status_lines);
    Py_XDECREF(f->canned);
    Py_XDECREF(f->timing_name);
    Py_TYPE(f)->tp_free((PyObject *)f);
}

static PyMethodDef front_methods[] = {
    {"run", (PyCFunction)front_run, METH_NOARGS, "Handle what is ready; then hand the finished calls to drain."},
    {"fileno", (PyCFunction)front_fileno, METH_NOARGS, "The epoll set's descriptor, for the loop to watch."},
    {"set_table", (PyCFunction)front_set_table, METH_O, "{path: ((methods, Route | None), ...)}"},
    {"stop_listening", (PyCFunction)front_stop_listening, METH_NOARGS, "Close the listening socket."},
    {"flush", (PyCFunction)front_flush, METH_NOARGS, "Hand the calls finished so far to drain now."},
    {"counts", (PyCFunction)front_counts, METH_NOARGS, "(requests answered here, requests handed to Python)"},
    {NULL}};

static PyTypeObject FrontType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "runtime.fastpath._front.Front",
    .tp_basicsize = sizeof(Front),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = front_new,
    .tp_init = (initproc)front_init,
    .tp_dealloc = (destructor)front_dealloc,
    .tp_methods = front_methods,
};

/* ------------------------------------------------------------------ Reply */

static PyObject *reply_call(Reply *self, PyObject *args, PyObject *kwds) {
    PyObject *response;
    if (!PyArg_ParseTuple(args, "O", &response)) return NULL;
    Conn *c = self->conn;
    if (!c || c->dead || !c->busy || c->up || self->seq != c->seq) Py_RETURN_NONE;
    c->busy = 0;
    if (PyObject_SetAttr(response, S_head_only, c->head ? Py_True : Py_False)) return NULL;
    PyObject *data = PyObject_CallMethodOneArg(response, S_encode, c->keep_alive ? Py_True : Py_False);
    if (!data) {
        c->closing = 1;
        conn_flush(c);
        return NULL;
    }
    if (!c->keep_alive) c->closing = 1;
    if (PyBytes_Check(data)) conn_write_bytes(c, data);
    Py_DECREF(data);
    mark_ready(c); /* the next request, once whoever replied has finished (as ServerProtocol does) */
    Py_RETURN_NONE;
}

static void reply_dealloc(Reply *self) {
    Conn *c = self->conn;
    if (c) {
        c->refs--;
        conn_maybe_free(c);
    }
    PyObject_Free(self);
}

static PyTypeObject ReplyType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "runtime.fastpath._front.Reply",
    .tp_basicsize = sizeof(Reply),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_call = (ternaryfunc)reply_call,
    .tp_dealloc = (destructor)reply_dealloc,
};

/* ------------------------------------------------------------------ Pool */

static PyObject *pool_close(Pool *p, PyObject *unused) {
    while (p->n > 0) link_close(p->links[--p->n]);
    p->closed = 1;
    Py_RETURN_NONE;
}

static void pool_dealloc(Pool *p) {
    while (p->n > 0) link_close(p->links[--p->n]);
    PyObject_Free(p);
}

static PyMethodDef pool_methods[] = {
    {"close", (PyCFunction)pool_close, METH_NOARGS, "Close the idle connections; use no more."},
    {NULL}};

static PyTypeObject PoolType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "runtime.fastpath._front.Pool",
    .tp_basicsize = sizeof(Pool),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)pool_dealloc,
    .tp_methods = pool_methods,
};

/* ------------------------------------------------------------------ Route */

static int route_init(Route *r, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"namespace", "function", "path", "by_function", "in_flight", "about", "per_pod",
                             "limit", "timeout", NULL};
    PyObject *ns, *fn, *path, *by, *flight, *about;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "UUUO!O!O!lld", kwlist, &ns, &fn, &path, &PyDict_Type, &by,
                                     &PyDict_Type, &flight, &PyBytes_Type, &about, &r->per_pod, &r->limit,
                                     &r->timeout))
        return -1;
    PyObject *key = PyTuple_Pack(2, ns, fn);
    if (!key) return -1;
    Py_XSETREF(r->key, key);
    Py_INCREF(ns);
    Py_XSETREF(r->namespace_, ns);
    Py_INCREF(fn);
    Py_XSETREF(r->function, fn);
    Py_INCREF(path);
    Py_XSETREF(r->path, path);
    Py_INCREF(by);
    Py_XSETREF(r->by_function, by);
    Py_INCREF(flight);
    Py_XSETREF(r->in_flight, flight);
    Py_INCREF(about);
    Py_XSETREF(r->about, about);
    return 0;
}

static void route_dealloc(Route *r) {
    Py_XDECREF(r->namespace_);
    Py_XDECREF(r->function);
    Py_XDECREF(r->key);
    Py_XDECREF(r->path);
    Py_XDECREF(r->by_function);
    Py_XDECREF(r->in_flight);
    Py_XDECREF(r->about);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *route_get_namespace(Route *r, void *unused) { return Py_NewRef(r->namespace_); }
static PyObject *route_get_function(Route *r, void *unused) { return Py_NewRef(r->function); }
static PyObject *route_get_key(Route *r, void *unused) { return Py_NewRef(r->key); }
static PyObject *route_get_path(Route *r, void *unused) { return Py_NewRef(r->path); }

static PyGetSetDef route_getset[] = {
    {"namespace", (getter)route_get_namespace, NULL, NULL, NULL},
    {"function", (getter)route_get_function, NULL, NULL, NULL},
    {"key", (getter)route_get_key, NULL, NULL, NULL},
    {"path", (getter)route_get_path, NULL, NULL, NULL},
    {NULL}};

static PyTypeObject RouteType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "runtime.fastpath._front.Route",
    .tp_basicsize = sizeof(Route),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)route_init,
    .tp_dealloc = (destructor)route_dealloc,
    .tp_getset = route_getset,
};

/* ------------------------------------------------------------------ module */

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_front", "The router's compiled data path.", -1, NULL};

PyMODINIT_FUNC PyInit__front(void) {
    llhttp_settings_init(&request_settings);
    request_settings.on_message_begin = rq_begin;
    request_settings.on_url = rq_url;
    request_settings.on_header_field = rq_field;
    request_settings.on_header_value = rq_value;
    request_settings.on_headers_complete = rq_headers_complete;
    request_settings.on_body = rq_body;
    request_settings.on_message_complete = rq_complete;
    llhttp_settings_init(&response_settings);
    response_settings.on_header_field = rs_field;
    response_settings.on_header_value = rs_value;
    response_settings.on_body = rs_body;
    response_settings.on_message_complete = rs_complete;
    if (PyType_Ready(&PoolType) < 0 || PyType_Ready(&RouteType) < 0 || PyType_Ready(&ReplyType) < 0 ||
        PyType_Ready(&FrontType) < 0)
        return NULL;
    S_state = PyUnicode_InternFromString("state");
    S_active = PyUnicode_InternFromString("active");
    S_fresh = PyUnicode_InternFromString("fresh");
    S_specialized = PyUnicode_InternFromString("specialized");
    S_fast_pool = PyUnicode_InternFromString("fast_pool");
    S_socket = PyUnicode_InternFromString("socket");
    S_head_only = PyUnicode_InternFromString("head_only");
    S_encode = PyUnicode_InternFromString("encode");
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    PyModule_AddObjectRef(m, "Front", (PyObject *)&FrontType);
    PyModule_AddObjectRef(m, "Route", (PyObject *)&RouteType);
    PyModule_AddObjectRef(m, "Pool", (PyObject *)&PoolType);
    PyModule_AddIntConstant(m, "OK", OUT_OK);
    PyModule_AddIntConstant(m, "TIMEOUT", OUT_TIMEOUT);
    PyModule_AddIntConstant(m, "CRASH", OUT_CRASH);
    return m;
}
