/*
 * The overlay host on a real libuv loop over loopback TCP: several hosts on
 * one loop (127.0.0.1, port 0), RSA-2048 keys generated once for the group,
 * and "raw" clients written here on plain non-blocking sockets, driven from
 * the same thread while the loop runs (so no test needs a second thread).
 * The raw handshake client builds the AUTH transcript itself, which pins the
 * exact bytes the contract in net_host.h specifies.
 *
 * Every wait runs the loop with a deadline, and every test ends by closing
 * its hosts and asserting uv_loop_close() == 0.
 */
#include "dm_test.h"

#include "groups.h"

#include "crypto_hash.h"
#include "crypto_mem.h"
#include "crypto_rsa.h"
#include "dm_buf.h"
#include "dm_err.h"
#include "dm_log.h"
#include "net_host.h"
#include "net_msg.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <uv.h>

#define NKEYS 5
#define NET_A "dm-test-net"

typedef struct {
    crypto_rsa_t *key[NKEYS];
    uint8_t id[NKEYS][NET_ID_LEN];
    dm_buf spki[NKEYS];
} keyring;

static keyring *g_keys;

static int group_setup(void **state)
{
    (void)state;
    const char *v = getenv("DM_TEST_VERBOSE");
    dm_log_set_level(v && *v ? DM_LOG_DEBUG : DM_LOG_ERROR);
    g_keys = calloc(1, sizeof *g_keys);
    if (!g_keys)
        return -1;
    for (int i = 0; i < NKEYS; i++) {
        if (crypto_rsa_generate(&g_keys->key[i], 2048) ||
            crypto_rsa_spki(g_keys->key[i], &g_keys->spki[i]) ||
            crypto_sha256(g_keys->id[i], g_keys->spki[i].data, g_keys->spki[i].len))
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_keys) {
        for (int i = 0; i < NKEYS; i++) {
            crypto_rsa_destroy(g_keys->key[i]);
            dm_buf_free(&g_keys->spki[i]);
        }
        free(g_keys);
        g_keys = NULL;
    }
    dm_log_set_level(DM_LOG_INFO);
    return 0;
}

/* ------------------------------------------------------------ loop runner */

typedef bool (*pred_fn)(void *arg);

typedef struct {
    pred_fn pred;
    void *arg;
    bool done, timed_out;
    int closed;
    uv_timer_t check, deadline;
} runner;

static void run_check_cb(uv_timer_t *t)
{
    runner *r = t->data;
    if (r->pred && r->pred(r->arg)) {
        r->done = true;
        uv_stop(t->loop);
    }
}

static void run_deadline_cb(uv_timer_t *t)
{
    runner *r = t->data;
    r->timed_out = true;
    uv_stop(t->loop);
}

static void run_close_cb(uv_handle_t *hd)
{
    runner *r = hd->data;
    r->closed++;
}

/* Run the loop until pred(arg) holds (checked every 2 ms) or `ms` pass.
 * pred NULL: just run for `ms`. Returns whether pred held. Never hangs. */
static bool run_until(uv_loop_t *loop, pred_fn pred, void *arg, uint64_t ms)
{
    if (pred && pred(arg))
        return true;
    runner r = {.pred = pred, .arg = arg};
    uv_timer_init(loop, &r.check);
    uv_timer_init(loop, &r.deadline);
    r.check.data = r.deadline.data = &r;
    uv_timer_start(&r.check, run_check_cb, 2, 2);
    uv_timer_start(&r.deadline, run_deadline_cb, ms, 0);
    while (!r.done && !r.timed_out)
        uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&r.check, run_close_cb);
    uv_close((uv_handle_t *)&r.deadline, run_close_cb);
    while (r.closed < 2)
        uv_run(loop, UV_RUN_NOWAIT);
    return r.done;
}

static void run_for(uv_loop_t *loop, uint64_t ms)
{
    (void)run_until(loop, NULL, NULL, ms);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------ hosts under test */

#define TH_MAXP 16

typedef struct {
    net_host_t *h;
    int key;
    int ready, closed, msgs, last_type;
    net_peer_t *peer[TH_MAXP];
    uint8_t peer_id[TH_MAXP][NET_ID_LEN];
    size_t npeer;
    uint8_t body[64];
    size_t body_len;
    uint32_t misbehave_score; /* on_message reports this much (and disconnects) if set */
    bool host_closed;
} th;

static void cb_ready(net_peer_t *p, void *arg)
{
    th *t = arg;
    t->ready++;
    assert_true(t->npeer < TH_MAXP);
    t->peer[t->npeer] = p;
    memcpy(t->peer_id[t->npeer], net_peer_node_id(p), NET_ID_LEN);
    t->npeer++;
}

static void cb_closed(net_peer_t *p, void *arg)
{
    th *t = arg;
    t->closed++;
    for (size_t i = 0; i < t->npeer; i++) {
        if (t->peer[i] == p) {
            t->npeer--;
            t->peer[i] = t->peer[t->npeer];
            memcpy(t->peer_id[i], t->peer_id[t->npeer], NET_ID_LEN);
            return;
        }
    }
    fail_msg("on_peer_closed for a peer that was never ready");
}

static void cb_msg(net_peer_t *p, const net_msg *m, const uint8_t *frame, size_t frame_len,
                   void *arg)
{
    th *t = arg;
    t->msgs++;
    t->last_type = m->type;
    assert_true(frame_len >= 4 && dm_get_u32be(frame) == frame_len - 4);
    if (m->type == NET_MSG_SHARE && m->u.share.body.n <= sizeof t->body) {
        memcpy(t->body, m->u.share.body.p, m->u.share.body.n);
        t->body_len = m->u.share.body.n;
    }
    if (t->misbehave_score)
        net_peer_misbehave(p, t->misbehave_score, true, "test: invalid share");
}

static void th_opts(net_host_opts *o, const char *network)
{
    net_host_opts_default(o);
    o->network_id = network ? network : NET_A;
    snprintf(o->listen.host, sizeof o->listen.host, "127.0.0.1");
    o->listen.port = 0;
    o->ping_interval_ms = 200;
    o->idle_timeout_ms = 5000;
    o->handshake_timeout_ms = 3000;
    o->reconnect_min_ms = 50;
    o->reconnect_max_ms = 400;
}

static void th_start(th *t, uv_loop_t *loop, net_host_opts *o, int key)
{
    memset(t, 0, sizeof *t);
    t->key = key;
    o->key = g_keys->key[key];
    net_host_cbs cbs = {
        .on_peer_ready = cb_ready, .on_peer_closed = cb_closed, .on_message = cb_msg};
    assert_int_equal(net_host_create(&t->h, loop, o, &cbs, t), DM_OK);
    assert_int_equal(net_host_start(t->h), DM_OK);
    assert_int_not_equal(net_host_listen_port(t->h), 0);
}

static net_addr addr_of(const th *t)
{
    net_addr a;
    memset(&a, 0, sizeof a);
    snprintf(a.host, sizeof a.host, "127.0.0.1");
    a.port = net_host_listen_port(t->h);
    return a;
}

static bool th_has_peer(const th *t, int key)
{
    for (size_t i = 0; i < t->npeer; i++)
        if (memcmp(t->peer_id[i], g_keys->id[key], NET_ID_LEN) == 0)
            return true;
    return false;
}

static void on_host_closed(void *arg)
{
    th *t = arg;
    t->host_closed = true;
}

typedef struct {
    th *t;
    size_t n;
} th_set;

static bool all_closed(void *arg)
{
    th_set *s = arg;
    for (size_t i = 0; i < s->n; i++)
        if (s->t[i].h && !s->t[i].host_closed)
            return false;
    return true;
}

static void th_close(uv_loop_t *loop, th *t)
{
    net_host_close(t->h, on_host_closed, t);
    th_set s = {t, 1};
    assert_true(run_until(loop, all_closed, &s, 5000));
    assert_int_equal(t->npeer, 0); /* every ready peer got on_peer_closed */
    t->h = NULL;
}

/* Close every host, then require a clean loop. */
static void finish(uv_loop_t *loop, th *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].h && !t[i].host_closed)
            net_host_close(t[i].h, on_host_closed, &t[i]);
    th_set s = {t, n};
    assert_true(run_until(loop, all_closed, &s, 5000));
    for (size_t i = 0; i < n; i++)
        if (t[i].h)
            assert_int_equal(t[i].npeer, 0);
    uv_run(loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(loop);
    if (rc) {
        uv_print_all_handles(loop, stderr);
        fail_msg("uv_loop_close: %s", uv_strerror(rc));
    }
}

/* ------------------------------------------------------------ raw client */

typedef struct {
    int fd;
    dm_buf in;
    bool eof;
} raw_t;

static void raw_open(raw_t *r, uint16_t port, int rcvbuf)
{
    memset(r, 0, sizeof *r);
    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(r->fd >= 0);
    if (rcvbuf)
        assert_int_equal(setsockopt(r->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* the kernel completes a loopback connect from the backlog: no loop needed */
    assert_int_equal(connect(r->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(fcntl(r->fd, F_SETFL, fcntl(r->fd, F_GETFL) | O_NONBLOCK), 0);
}

static void raw_close(raw_t *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    dm_buf_free(&r->in);
}

static void raw_send(raw_t *r, const void *data, size_t n)
{
    const uint8_t *p = data;
    int spins = 0;
    while (n) {
        ssize_t k = send(r->fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (++spins > 2000)
                fail_msg("raw_send: the host does not read");
            usleep(1000);
            continue;
        }
        if (k < 0)
            return; /* the host already hung up: the test checks that elsewhere */
        p += k;
        n -= (size_t)k;
    }
}

/* Non-blocking drain into r->in; true once the host has closed the connection. */
static bool raw_poll(void *arg)
{
    raw_t *r = arg;
    uint8_t tmp[16384];
    while (!r->eof) {
        ssize_t k = recv(r->fd, tmp, sizeof tmp, 0);
        if (k > 0) {
            assert_int_equal(dm_buf_append(&r->in, tmp, (size_t)k), DM_OK);
        } else if (k == 0) {
            r->eof = true;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            r->eof = true; /* reset */
        }
    }
    return r->eof;
}

static bool raw_frame_ready(void *arg)
{
    raw_t *r = arg;
    raw_poll(r);
    size_t plen;
    return r->eof ||
           (net_frame_header(r->in.data, r->in.len, &plen) == DM_OK && r->in.len >= 4 + plen);
}

/* Pop one complete frame into `payload` (which m then borrows). False if none. */
static bool raw_pop(raw_t *r, net_msg *m, dm_buf *payload)
{
    size_t plen;
    if (net_frame_header(r->in.data, r->in.len, &plen) != DM_OK || r->in.len < 4 + plen)
        return false;
    dm_buf_reset(payload);
    assert_int_equal(dm_buf_append(payload, r->in.data + 4, plen), DM_OK);
    memmove(r->in.data, r->in.data + 4 + plen, r->in.len - 4 - plen);
    r->in.len -= 4 + plen;
    assert_int_equal(net_msg_decode(payload->data, payload->len, m), DM_OK);
    return true;
}

static size_t transcript(uint8_t *out, const char *network, const uint8_t *signer,
                         const uint8_t *verifier, const uint8_t *vnonce, const uint8_t *snonce)
{
    size_t n = 0, nl = strlen(network);
    memcpy(out + n, "dmnode-auth-v1", 14);
    n += 14;
    memcpy(out + n, network, nl);
    n += nl;
    memcpy(out + n, signer, 32);
    n += 32;
    memcpy(out + n, verifier, 32);
    n += 32;
    memcpy(out + n, vnonce, 32);
    n += 32;
    memcpy(out + n, snonce, 32);
    n += 32;
    return n;
}

typedef enum {
    RAW_SIGN,    /* an honest client */
    RAW_BAD_SIG, /* someone else's key: a random "signature" */
} raw_mode;

/* Handshake as the holder of key `claim` (whose SPKI goes into HELLO) with host `t`.
 * RAW_SIGN: expects the host's AUTH and verifies it independently; returns true.
 * RAW_BAD_SIG: returns true if the host then hangs up. */
static bool raw_handshake(uv_loop_t *loop, raw_t *r, const th *t, int claim, raw_mode mode)
{
    net_msg *m = malloc(sizeof *m);
    dm_buf out = DM_BUF_INIT, pl = DM_BUF_INIT, sig = DM_BUF_INIT;
    uint8_t my_nonce[32], host_nonce[32], msg[512];
    const uint8_t *host_id = g_keys->id[t->key];
    assert_non_null(m);
    assert_int_equal(crypto_random(my_nonce, sizeof my_nonce), DM_OK);
    assert_int_equal(net_msg_encode_hello(&out, NET_A, g_keys->id[claim], g_keys->spki[claim].data,
                                          g_keys->spki[claim].len, my_nonce, 0, "raw-test"),
                     DM_OK);
    raw_send(r, out.data, out.len);
    dm_buf_reset(&out);

    assert_true(run_until(loop, raw_frame_ready, r, 5000));
    assert_true(raw_pop(r, m, &pl));
    assert_int_equal(m->type, NET_MSG_HELLO);
    assert_memory_equal(m->u.hello.node_id, host_id, 32);
    assert_int_equal(m->u.hello.listen_port, net_host_listen_port(t->h));
    assert_int_equal(m->u.hello.version, NET_PROTO_VERSION);
    assert_true(m->u.hello.spki.n == g_keys->spki[t->key].len &&
                memcmp(m->u.hello.spki.p, g_keys->spki[t->key].data, m->u.hello.spki.n) == 0);
    memcpy(host_nonce, m->u.hello.nonce, 32);

    if (mode == RAW_SIGN) {
        size_t n = transcript(msg, NET_A, g_keys->id[claim], host_id, host_nonce, my_nonce);
        assert_int_equal(crypto_rsa_sign(g_keys->key[claim], msg, n, &sig), DM_OK);
    } else {
        assert_int_equal(dm_buf_reserve(&sig, 256), DM_OK);
        assert_int_equal(crypto_random(sig.data, 256), DM_OK);
        sig.len = 256;
    }
    assert_int_equal(net_msg_encode_auth(&out, sig.data, sig.len), DM_OK);
    raw_send(r, out.data, out.len);

    bool ok;
    if (mode == RAW_SIGN) {
        assert_true(run_until(loop, raw_frame_ready, r, 5000));
        assert_true(raw_pop(r, m, &pl));
        assert_int_equal(m->type, NET_MSG_AUTH);
        /* the host's proof: its signature over our nonce, in the documented transcript */
        size_t n = transcript(msg, NET_A, host_id, g_keys->id[claim], my_nonce, host_nonce);
        assert_int_equal(
            crypto_rsa_verify(g_keys->key[t->key], msg, n, m->u.auth.sig.p, m->u.auth.sig.n),
            DM_OK);
        ok = true;
    } else {
        ok = run_until(loop, raw_poll, r, 5000);
        /* its own AUTH may have crossed ours, but nothing of a ready session follows */
        while (raw_pop(r, m, &pl))
            assert_true(m->type == NET_MSG_AUTH || m->type == NET_MSG_BYE);
    }
    dm_buf_free(&out);
    dm_buf_free(&pl);
    dm_buf_free(&sig);
    free(m);
    return ok;
}

/* ------------------------------------------------------------ predicates */

typedef struct {
    th *t;
    size_t n;
    size_t want;
} peers_want;

/* every host has exactly `want` ready peers */
static bool pred_peers(void *arg)
{
    peers_want *w = arg;
    for (size_t i = 0; i < w->n; i++)
        if (w->t[i].npeer != w->want || net_host_peer_count(w->t[i].h) != w->want)
            return false;
    return true;
}

static bool wait_peers(uv_loop_t *loop, th *t, size_t n, size_t want, uint64_t ms)
{
    peers_want w = {t, n, want};
    return run_until(loop, pred_peers, &w, ms);
}

static bool pred_msgs1(void *arg)
{
    return ((th *)arg)->msgs >= 1;
}

static bool pred_closed1(void *arg)
{
    return ((th *)arg)->closed >= 1;
}

static void share_frame(dm_buf *out, const char *body)
{
    static const uint8_t sig[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(
        net_msg_encode_share(out, (const uint8_t *)body, strlen(body), sig, sizeof sig), DM_OK);
}

/* ----------------------------------------------------------------- tests */

static void test_host_connect_and_message(void **state)
{
    (void)state;
    uv_loop_t loop;
    th t[2];
    net_host_opts o;
    assert_int_equal(uv_loop_init(&loop), 0);
    th_opts(&o, NULL);
    th_start(&t[0], &loop, &o, 0);
    net_addr a = addr_of(&t[0]);
    th_opts(&o, NULL);
    o.bootstrap = &a;
    o.bootstrap_len = 1;
    th_start(&t[1], &loop, &o, 1);

    assert_true(wait_peers(&loop, t, 2, 1, 5000));
    assert_true(th_has_peer(&t[0], 1));
    assert_true(th_has_peer(&t[1], 0));
    assert_false(net_peer_outbound(t[0].peer[0]));
    assert_true(net_peer_outbound(t[1].peer[0]));
    char hex[65];
    assert_int_equal(crypto_rsa_node_id(g_keys->key[1], hex), DM_OK);
    assert_string_equal(net_peer_node_id_hex(t[0].peer[0]), hex);
    size_t n;
    const uint8_t *spki = net_peer_spki(t[0].peer[0], &n);
    assert_true(n == g_keys->spki[1].len && memcmp(spki, g_keys->spki[1].data, n) == 0);
    assert_non_null(strstr(net_peer_remote(t[0].peer[0]), "127.0.0.1:"));
    net_peer_set_data(t[0].peer[0], &t[0]);
    assert_ptr_equal(net_peer_data(t[0].peer[0]), &t[0]);

    net_peer_info info[4];
    assert_int_equal(net_host_peers(t[0].h, info, 4), 1);
    assert_string_equal(info[0].node_id, hex);
    assert_int_equal(info[0].listen_port, net_host_listen_port(t[1].h));
    net_host_stats st;
    net_host_get_stats(t[0].h, &st);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.handshakes_ok, 1);
    assert_int_equal(st.handshakes_failed, 0);
    net_host_get_stats(t[1].h, &st);
    assert_int_equal(st.dialed, 1);

    /* the bootstrap address now carries the node id it proved */
    net_known_addr k[4];
    assert_int_equal(net_host_known(t[1].h, k, 4), 1);
    assert_memory_equal(k[0].node_id, g_keys->id[0], 32);
    assert_true(k[0].last_seen > 0);

    /* a SHARE frame reaches on_message, intact */
    dm_buf f = DM_BUF_INIT;
    share_frame(&f, "hello overlay");
    assert_int_equal(net_peer_send_bytes(t[1].peer[0], f.data, f.len), DM_OK);
    assert_true(run_until(&loop, pred_msgs1, &t[0], 5000));
    assert_int_equal(t[0].last_type, NET_MSG_SHARE);
    assert_int_equal(t[0].body_len, strlen("hello overlay"));
    assert_memory_equal(t[0].body, "hello overlay", t[0].body_len);
    /* not a frame: refused before queueing */
    assert_int_equal(net_peer_send_bytes(t[1].peer[0], f.data, 3), DM_EINVAL);

    /* misbehaviour reported from inside on_message: closed after the callback returns,
     * scored below the ban threshold */
    t[0].misbehave_score = 10;
    assert_int_equal(net_peer_send_bytes(t[1].peer[0], f.data, f.len), DM_OK);
    assert_true(run_until(&loop, pred_closed1, &t[0], 5000));
    assert_true(run_until(&loop, pred_closed1, &t[1], 5000));
    net_host_get_stats(t[0].h, &st);
    assert_int_equal(st.disconnects_misbehaviour, 1);
    assert_int_equal(st.bans, 0);
    assert_int_equal(st.banned_now, 0);
    dm_buf_free(&f);
    finish(&loop, t, 2);
}

static void test_host_broadcast(void **state)
{
    (void)state;
    uv_loop_t loop;
    th t[4]; /* hub, then three spokes that dial only the hub */
    net_host_opts o;
    assert_int_equal(uv_loop_init(&loop), 0);
    th_opts(&o, NULL);
    th_start(&t[0], &loop, &o, 0);
    net_addr hub = addr_of(&t[0]);
    for (int i = 1; i < 4; i++) {
        th_opts(&o, NULL);
        o.bootstrap = &hub;
        o.bootstrap_len = 1;
        o.max_outbound = 1;
        th_start(&t[i], &loop, &o, i);
    }
    peers_want w = {&t[1], 3, 1};
    assert_true(run_until(&loop, pred_peers, &w, 5000));
    peers_want wh = {&t[0], 1, 3};
    assert_true(run_until(&loop, pred_peers, &wh, 5000));

    /* except spoke 1 */
    net_peer_t *except = NULL;
    for (size_t i = 0; i < t[0].npeer; i++)
        if (memcmp(t[0].peer_id[i], g_keys->id[1], 32) == 0)
            except = t[0].peer[i];
    assert_non_null(except);
    dm_buf b = DM_BUF_INIT;
    share_frame(&b, "to all but one");
    net_frame_t *f = net_frame_new(b.data, b.len);
    assert_non_null(f);
    size_t fl;
    assert_memory_equal(net_frame_data(f, &fl), b.data, b.len);
    assert_int_equal(fl, b.len);
    /* one shared buffer: each send holds a reference until its write completes */
    assert_int_equal(net_host_broadcast(t[0].h, f, except), 2);
    net_frame_release(f);
    dm_buf_free(&b);
    assert_true(run_until(&loop, pred_msgs1, &t[2], 5000));
    assert_true(run_until(&loop, pred_msgs1, &t[3], 5000));
    run_for(&loop, 100);
    assert_int_equal(t[1].msgs, 0);
    assert_int_equal(t[2].msgs, 1);
    assert_int_equal(t[3].msgs, 1);
    assert_memory_equal(t[3].body, "to all but one", t[3].body_len);
    /* NULL except: everyone */
    share_frame(&b, "to all");
    f = net_frame_new(b.data, b.len);
    assert_int_equal(net_host_broadcast(t[0].h, f, NULL), 3);
    net_frame_release(f);
    dm_buf_free(&b);
    assert_true(run_until(&loop, pred_msgs1, &t[1], 5000));
    finish(&loop, t, 4);
}

static void test_host_peer_exchange(void **state)
{
    (void)state;
    uv_loop_t loop;
    th t[3]; /* A knows B, B knows C: a line that must become a triangle */
    net_host_opts o;
    assert_int_equal(uv_loop_init(&loop), 0);
    th_opts(&o, NULL);
    o.ping_interval_ms = 100; /* peers are asked again every 4 pings */
    th_start(&t[2], &loop, &o, 2);
    net_addr c = addr_of(&t[2]);
    o.bootstrap = &c;
    o.bootstrap_len = 1;
    th_start(&t[1], &loop, &o, 1);
    /* B-C first, so that B's very first PEERS answer to A already names C */
    assert_true(wait_peers(&loop, &t[1], 2, 1, 5000));
    net_addr b = addr_of(&t[1]);
    o.bootstrap = &b;
    th_start(&t[0], &loop, &o, 0);

    assert_true(wait_peers(&loop, t, 3, 2, 10000));
    assert_true(th_has_peer(&t[0], 2));
    assert_true(th_has_peer(&t[2], 0));
    /* A learnt C's address (with its node id) from B */
    net_known_addr k[8];
    size_t n = net_host_known(t[0].h, k, 8);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        if (memcmp(k[i].node_id, g_keys->id[2], 32) == 0 &&
            k[i].addr.port == net_host_listen_port(t[2].h))
            found = true;
    assert_true(found);
    /* stable: the mesh does not churn */
    int ready0 = t[0].ready + t[1].ready + t[2].ready;
    run_for(&loop, 500);
    assert_true(wait_peers(&loop, t, 3, 2, 10));
    assert_int_equal(t[0].ready + t[1].ready + t[2].ready, ready0);
    finish(&loop, t, 3);
}

static void test_host_duplicate(void **state)
{
    (void)state;
    uv_loop_t loop;
    th t[2];
    net_host_opts o;
    assert_int_equal(uv_loop_init(&loop), 0);
    /* both listen first, then each is told about the other: two simultaneous dials */
    th_opts(&o, NULL);
    th_start(&t[0], &loop, &o, 0);
    th_start(&t[1], &loop, &o, 1);
    net_known_addr ka, kb;
    memset(&ka, 0, sizeof ka);
    memset(&kb, 0, sizeof kb);
    ka.addr = addr_of(&t[1]);
    kb.addr = addr_of(&t[0]);
    assert_int_equal(net_host_add_known(t[0].h, &ka), DM_OK);
    assert_int_equal(net_host_add_known(t[1].h, &kb), DM_OK);
    assert_true(wait_peers(&loop, t, 2, 1, 5000));
    run_for(&loop, 500);
    assert_true(wait_peers(&loop, t, 2, 1, 10));
    /* both ends kept the same connection: the one dialled by the lower node id */
    bool a_dialled = memcmp(g_keys->id[0], g_keys->id[1], 32) < 0;
    assert_int_equal(net_peer_outbound(t[0].peer[0]), a_dialled);
    assert_int_equal(net_peer_outbound(t[1].peer[0]), !a_dialled);
    net_host_stats st;
    for (int i = 0; i < 2; i++) {
        net_host_get_stats(t[i].h, &st);
        assert_int_equal(st.disconnects_misbehaviour, 0);
        assert_int_equal(st.bans, 0);
    }
    finish(&loop, t, 2);
}

static bool pred_failed_both(void *arg)
{
    th *t = arg;
    net_host_stats a, b;
    net_host_get_stats(t[0].h, &a);
    net_host_get_stats(t[1].h, &b);
    return a.handshakes_failed >= 1 && b.handshakes_failed >= 1;
}

static void test_host_wrong_network(void **state)
{
    (void)state;
    uv_loop_t loop;
    th t[2];
    net_host_opts o;
    assert_int_equal(uv_loop_init(&loop), 0);
    th_opts(&o, "beta-net");
    th_start(&t[0], &loop, &o, 0);
    net_addr a = addr_of(&t[0]);
    th_opts(&o, NULL);
    o.bootstrap = &a;
    o.bootstrap_len = 1;
    th_start(&t[1], &loop, &o, 1);
    assert_true(run_until(&loop, pred_failed_both, t, 5000));
    run_for(&loop, 300);
    assert_int_equal(t[0].ready + t[1].ready, 0);
    /* a configuration mismatch, not misbehaviour: no score, no ban; still retried */
    net_host_stats st;
    for (int i = 0; i < 2; i++) {
        net_host_get_stats(t[i].h, &st);
        assert_int_equal(st.disconnects_misbehaviour, 0);
        assert_int_equal(st.bans, 0);
        assert_int_equal(st.handshakes_ok, 0);
    }
    net_host_get_stats(t[1].h, &st);
    assert_true(st.dialed >= 2);
    finish(&loop, t, 2);
}

static void test_host_allowlist(void **state)
{
    (void)state;
    uv_loop_t loop;
    th t[3];
    net_host_opts o;
    assert_int_equal(uv_loop_init(&loop), 0);
    th_opts(&o, NULL);
    o.allowlist = (const uint8_t(*)[NET_ID_LEN])g_keys->id[2]; /* only C */
    o.allowlist_len = 1;
    th_start(&t[0], &loop, &o, 0);
    net_addr a = addr_of(&t[0]);
    th_opts(&o, NULL);
    o.bootstrap = &a;
    o.bootstrap_len = 1;
    th_start(&t[1], &loop, &o, 1); /* B: not on the list */
    th_start(&t[2], &loop, &o, 2); /* C: on it */
    peers_want w = {&t[2], 1, 1};
    assert_true(run_until(&loop, pred_peers, &w, 5000));
    run_for(&loop, 500);
    assert_true(th_has_peer(&t[0], 2));
    assert_false(th_has_peer(&t[0], 1));
    assert_int_equal(t[1].ready, 0);
    assert_int_equal(t[0].npeer, 1);
    net_host_stats st;
    net_host_get_stats(t[0].h, &st);
    assert_true(st.handshakes_failed >= 1);
    assert_int_equal(st.bans, 0);
    finish(&loop, t, 3);
}

/* Connect, send `bytes`, and require that the host hangs up. */
static void hostile(uv_loop_t *loop, const th *v, const void *bytes, size_t n)
{
    raw_t r;
    raw_open(&r, net_host_listen_port(v->h), 0);
    raw_send(&r, bytes, n);
    assert_true(run_until(loop, raw_poll, &r, 5000));
    raw_close(&r);
}

/* Connect and require an immediate close, before any HELLO. */
static void refused_at_accept(uv_loop_t *loop, const th *v)
{
    raw_t r;
    raw_open(&r, net_host_listen_port(v->h), 0);
    assert_true(run_until(loop, raw_poll, &r, 5000));
    assert_int_equal(r.in.len, 0);
    raw_close(&r);
}

static void test_host_hostile_bans(void **state)
{
    (void)state;
    uv_loop_t loop;
    th t[2];
    net_host_opts o;
    net_host_stats st;
    assert_int_equal(uv_loop_init(&loop), 0);
    th_opts(&o, NULL);
    o.handshake_timeout_ms = 300;
    th_start(&t[0], &loop, &o, 0);
    th_start(&t[1], &loop, &o, 1);

    /* a truncated frame: just a timeout, no score */
    static const uint8_t truncated[] = {0, 0, 0, 100, 0x98, 1, 1};
    uint64_t t0 = mono_ms();
    hostile(&loop, &t[0], truncated, sizeof truncated);
    assert_true(mono_ms() - t0 >= 250);
    net_host_get_stats(t[0].h, &st);
    assert_int_equal(st.handshakes_failed, 1);
    assert_int_equal(st.disconnects_misbehaviour, 0);

    /* malformed msgpack, then an unknown message type: two offences, banned */
    static const uint8_t garbage[] = {0, 0, 0, 5, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1};
    static const uint8_t unknown[] = {0, 0, 0, 2, 0x91, 0x63}; /* [99] */
    hostile(&loop, &t[0], garbage, sizeof garbage);
    net_host_get_stats(t[0].h, &st);
    assert_int_equal(st.disconnects_misbehaviour, 1);
    assert_int_equal(st.bans, 0);
    hostile(&loop, &t[0], unknown, sizeof unknown);
    net_host_get_stats(t[0].h, &st);
    assert_int_equal(st.disconnects_misbehaviour, 2);
    assert_int_equal(st.bans, 1);
    assert_int_equal(st.banned_now, 1);
    refused_at_accept(&loop, &t[0]);
    refused_at_accept(&loop, &t[0]);
    net_host_get_stats(t[0].h, &st);
    assert_int_equal(st.rejected_banned, 2);
    assert_int_equal(st.handshakes_ok, 0);

    /* second host: an oversize length prefix (refused before any allocation), then a
     * HELLO whose node id is not the hash of its key */
    static const uint8_t oversize[] = {0x7f, 0xff, 0xff, 0xff, 0x92};
    hostile(&loop, &t[1], oversize, sizeof oversize);
    net_host_get_stats(t[1].h, &st);
    assert_int_equal(st.disconnects_misbehaviour, 1);
    assert_int_equal(st.bans, 0);
    dm_buf hello = DM_BUF_INIT;
    uint8_t nonce[32] = {7}, fake_id[32];
    memcpy(fake_id, g_keys->id[3], 32);
    fake_id[31] ^= 1;
    assert_int_equal(net_msg_encode_hello(&hello, NET_A, fake_id, g_keys->spki[3].data,
                                          g_keys->spki[3].len, nonce, 0, "liar"),
                     DM_OK);
    hostile(&loop, &t[1], hello.data, hello.len);
    dm_buf_free(&hello);
    net_host_get_stats(t[1].h, &st);
    assert_int_equal(st.disconnects_misbehaviour, 2);
    assert_int_equal(st.bans, 1);
    refused_at_accept(&loop, &t[1]);
    net_host_get_stats(t[1].h, &st);
    assert_int_equal(st.rejected_banned, 1);

    finish(&loop, t, 2);

    /* before the handshake, frames are capped far below NET_FRAME_MAX: a header just
     * over the cap is refused at once (not after a timeout waiting for its payload) */
    assert_int_equal(uv_loop_init(&loop), 0);
    th_opts(&o, NULL);
    th_start(&t[0], &loop, &o, 0);
    static const uint8_t over_cap[] = {0, 0, 0x20, 0x01, 0x98}; /* 8193 */
    t0 = mono_ms();
    hostile(&loop, &t[0], over_cap, sizeof over_cap);
    assert_true(mono_ms() - t0 < 2000);
    net_host_get_stats(t[0].h, &st);
    assert_int_equal(st.disconnects_misbehaviour, 1);
    finish(&loop, t, 1);
}

static void test_host_raw_handshake_and_foreign_key(void **state)
{
    (void)state;
    uv_loop_t loop;
    th t[1];
    net_host_opts o;
    net_host_stats st;
    assert_int_equal(uv_loop_init(&loop), 0);
    th_opts(&o, NULL);
    th_start(&t[0], &loop, &o, 0);

    /* someone else's key: key 2's real SPKI and id, but no way to sign */
    raw_t r;
    raw_open(&r, net_host_listen_port(t[0].h), 0);
    assert_true(raw_handshake(&loop, &r, &t[0], 2, RAW_BAD_SIG));
    raw_close(&r);
    net_host_get_stats(t[0].h, &st);
    assert_int_equal(st.handshakes_failed, 1);
    assert_int_equal(st.disconnects_misbehaviour, 1);
    assert_int_equal(st.handshakes_ok, 0);
    assert_int_equal(t[0].ready, 0);

    /* an honest client written from the contract alone completes the handshake
     * (this pins the AUTH transcript bytes), and is then asked for peers */
    raw_open(&r, net_host_listen_port(t[0].h), 0);
    assert_true(raw_handshake(&loop, &r, &t[0], 3, RAW_SIGN));
    peers_want w = {&t[0], 1, 1};
    assert_true(run_until(&loop, pred_peers, &w, 5000));
    assert_true(th_has_peer(&t[0], 3));
    net_msg *m = malloc(sizeof *m);
    dm_buf pl = DM_BUF_INIT;
    assert_non_null(m);
    assert_true(run_until(&loop, raw_frame_ready, &r, 5000));
    assert_true(raw_pop(&r, m, &pl));
    assert_int_equal(m->type, NET_MSG_GETPEERS);
    /* a second HELLO after the handshake is a violation */
    dm_buf hello = DM_BUF_INIT;
    uint8_t nonce[32] = {1};
    assert_int_equal(net_msg_encode_hello(&hello, NET_A, g_keys->id[3], g_keys->spki[3].data,
                                          g_keys->spki[3].len, nonce, 0, NULL),
                     DM_OK);
    raw_send(&r, hello.data, hello.len);
    assert_true(run_until(&loop, raw_poll, &r, 5000));
    assert_true(run_until(&loop, pred_closed1, &t[0], 5000));
    net_host_get_stats(t[0].h, &st);
    assert_int_equal(st.disconnects_misbehaviour, 2);
    assert_int_equal(st.bans, 1); /* 127.0.0.1 offended twice */
    dm_buf_free(&hello);
    dm_buf_free(&pl);
    free(m);
    raw_close(&r);
    finish(&loop, t, 1);
}

typedef struct {
    th *v;
    net_frame_t *f;
    uv_timer_t timer;
} flood;

static void flood_cb(uv_timer_t *tm)
{
    flood *fl = tm->data;
    net_host_broadcast(fl->v->h, fl->f, NULL);
}

static bool pred_dropped(void *arg)
{
    th *v = arg;
    net_host_stats st;
    net_host_get_stats(v->h, &st);
    return st.dropped_slow >= 1;
}

static void test_host_slow_reader(void **state)
{
    (void)state;
    uv_loop_t loop;
    th t[2];
    net_host_opts o;
    assert_int_equal(uv_loop_init(&loop), 0);
    th_opts(&o, NULL);
    o.send_queue_max = 256 * 1024;
    o.idle_timeout_ms = 30000;
    th_start(&t[0], &loop, &o, 0);
    net_addr a = addr_of(&t[0]);
    th_opts(&o, NULL);
    o.bootstrap = &a;
    o.bootstrap_len = 1;
    th_start(&t[1], &loop, &o, 1); /* an honest reader */
    raw_t r;                       /* completes the handshake, then never reads again */
    raw_open(&r, net_host_listen_port(t[0].h), 4096);
    assert_true(raw_handshake(&loop, &r, &t[0], 3, RAW_SIGN));
    peers_want w = {&t[0], 1, 2};
    assert_true(run_until(&loop, pred_peers, &w, 5000));

    static uint8_t body[32 * 1024];
    memset(body, 0x5a, sizeof body);
    static const uint8_t sig[4] = {1, 2, 3, 4};
    dm_buf b = DM_BUF_INIT;
    assert_int_equal(net_msg_encode_share(&b, body, sizeof body, sig, sizeof sig), DM_OK);
    flood fl = {.v = &t[0], .f = net_frame_new(b.data, b.len)};
    dm_buf_free(&b);
    assert_non_null(fl.f);
    uv_timer_init(&loop, &fl.timer);
    fl.timer.data = &fl;
    uv_timer_start(&fl.timer, flood_cb, 2, 2);
    assert_true(run_until(&loop, pred_dropped, &t[0], 20000));
    uv_timer_stop(&fl.timer);
    uv_close((uv_handle_t *)&fl.timer, NULL);
    net_frame_release(fl.f);
    run_for(&loop, 100);
    /* the reader is still there and got the traffic; the stalled one is gone */
    assert_int_equal(t[0].npeer, 1);
    assert_true(th_has_peer(&t[0], 1));
    assert_true(t[1].msgs > 10);
    assert_int_equal(t[1].closed, 0);
    net_host_stats st;
    net_host_get_stats(t[0].h, &st);
    assert_int_equal(st.dropped_slow, 1);
    assert_int_equal(st.bans, 0);
    raw_close(&r);
    finish(&loop, t, 2);
}

static bool pred_ready2(void *arg)
{
    th *t = arg;
    return t->ready >= 2 && t->npeer == 1;
}

static void test_host_reconnect(void **state)
{
    (void)state;
    uv_loop_t loop;
    th t[2];
    net_host_opts o;
    assert_int_equal(uv_loop_init(&loop), 0);
    th_opts(&o, NULL);
    th_start(&t[1], &loop, &o, 1);
    uint16_t port = net_host_listen_port(t[1].h);
    net_addr b = addr_of(&t[1]);
    o.bootstrap = &b;
    o.bootstrap_len = 1;
    o.reconnect_max_ms = 200;
    th_start(&t[0], &loop, &o, 0);
    assert_true(wait_peers(&loop, t, 2, 1, 5000));

    th_close(&loop, &t[1]);
    assert_true(run_until(&loop, pred_closed1, &t[0], 5000));
    assert_int_equal(t[0].npeer, 0);
    run_for(&loop, 400); /* a few failed dials: backoff grows to its cap */

    th_opts(&o, NULL);
    o.listen.port = port;
    th_start(&t[1], &loop, &o, 1);
    uint64_t t0 = mono_ms();
    assert_true(run_until(&loop, pred_ready2, &t[0], 3000));
    assert_true(mono_ms() - t0 < 2000);
    assert_true(th_has_peer(&t[0], 1));
    net_host_stats st;
    net_host_get_stats(t[0].h, &st);
    assert_true(st.dialed >= 3);
    finish(&loop, t, 2);
}

static void test_host_ping_idle(void **state)
{
    (void)state;
    uv_loop_t loop;
    th t[2];
    net_host_opts o;
    assert_int_equal(uv_loop_init(&loop), 0);
    th_opts(&o, NULL);
    o.ping_interval_ms = 50;
    o.idle_timeout_ms = 300;
    th_start(&t[0], &loop, &o, 0);
    net_addr a = addr_of(&t[0]);
    o.bootstrap = &a;
    o.bootstrap_len = 1;
    th_start(&t[1], &loop, &o, 1);
    assert_true(wait_peers(&loop, t, 2, 1, 5000));
    /* pings keep a quiet but live connection open for many idle periods */
    run_for(&loop, 1200);
    assert_int_equal(t[0].closed + t[1].closed, 0);
    net_peer_info info;
    assert_int_equal(net_host_peers(t[0].h, &info, 1), 1);
    assert_true(info.frames_in >= 20); /* its pings and its pongs to ours */
    assert_true(info.frames_out >= 20);

    /* a client that completes the handshake, then never answers: idle timeout */
    raw_t r;
    raw_open(&r, net_host_listen_port(t[0].h), 0);
    assert_true(raw_handshake(&loop, &r, &t[0], 3, RAW_SIGN));
    uint64_t t0 = mono_ms();
    assert_true(run_until(&loop, raw_poll, &r, 3000));
    assert_true(mono_ms() - t0 >= 250);
    net_msg *m = malloc(sizeof *m);
    dm_buf pl = DM_BUF_INIT;
    int pings = 0;
    while (raw_pop(&r, m, &pl))
        pings += m->type == NET_MSG_PING;
    assert_true(pings >= 2);
    free(m);
    dm_buf_free(&pl);
    raw_close(&r);
    assert_int_equal(t[0].closed, 1);
    assert_int_equal(t[0].npeer, 1);
    finish(&loop, t, 2);
}

static void test_host_limits_and_self(void **state)
{
    (void)state;
    uv_loop_t loop;
    th t[2];
    net_host_opts o;
    assert_int_equal(uv_loop_init(&loop), 0);
    th_opts(&o, NULL);
    o.max_inbound = 1;
    th_start(&t[0], &loop, &o, 0);
    net_addr a = addr_of(&t[0]);
    th_opts(&o, NULL);
    o.bootstrap = &a;
    o.bootstrap_len = 1;
    th_start(&t[1], &loop, &o, 1);
    assert_true(wait_peers(&loop, t, 2, 1, 5000));

    /* inbound limit: closed right after accept with a BYE, no HELLO */
    raw_t r;
    raw_open(&r, net_host_listen_port(t[0].h), 0);
    assert_true(run_until(&loop, raw_poll, &r, 5000));
    net_msg *m = malloc(sizeof *m);
    dm_buf pl = DM_BUF_INIT;
    assert_non_null(m);
    assert_true(raw_pop(&r, m, &pl));
    assert_int_equal(m->type, NET_MSG_BYE);
    assert_int_equal(m->u.bye.code, NET_BYE_FULL);
    assert_int_equal(r.in.len, 0);
    raw_close(&r);
    net_host_stats st;
    net_host_get_stats(t[0].h, &st);
    assert_int_equal(st.accepted, 2);
    assert_int_equal(st.handshakes_failed, 0);
    assert_int_equal(t[0].npeer, 1);

    /* our own address: dialled once, recognised, forgotten */
    net_known_addr self;
    memset(&self, 0, sizeof self);
    self.addr = addr_of(&t[1]);
    assert_int_equal(net_host_add_known(t[1].h, &self), DM_OK);
    net_known_addr k[4];
    assert_int_equal(net_host_known(t[1].h, k, 4), 2);
    /* known with our own id: refused outright */
    memcpy(self.node_id, g_keys->id[1], 32);
    assert_int_equal(net_host_add_known(t[1].h, &self), DM_EINVAL);
    th *tb = &t[1];
    peers_want w = {tb, 1, 1};
    assert_true(run_until(&loop, pred_peers, &w, 10));
    /* wait until the self entry is gone (the bootstrap entry stays) */
    bool gone = false;
    for (int i = 0; i < 200 && !gone; i++) {
        run_for(&loop, 10);
        gone = net_host_known(t[1].h, k, 4) == 1;
    }
    assert_true(gone);
    assert_int_equal(k[0].addr.port, net_host_listen_port(t[0].h));
    assert_int_equal(t[1].ready, 1);
    free(m);
    dm_buf_free(&pl);
    finish(&loop, t, 2);
}

static void test_host_lifecycle(void **state)
{
    (void)state;
    uv_loop_t loop;
    th t[2];
    net_host_opts o;
    net_host_cbs cbs = {0};
    net_host_t *h = NULL;
    assert_int_equal(uv_loop_init(&loop), 0);

    /* invalid options */
    th_opts(&o, NULL);
    o.key = g_keys->key[0];
    o.network_id = "";
    assert_int_equal(net_host_create(&h, &loop, &o, &cbs, NULL), DM_EINVAL);
    assert_null(h);
    o.network_id = NET_A;
    o.idle_timeout_ms = 0;
    assert_int_equal(net_host_create(&h, &loop, &o, &cbs, NULL), DM_EINVAL);
    th_opts(&o, NULL);
    net_addr bad = {.host = "", .port = 1};
    o.key = g_keys->key[0];
    o.bootstrap = &bad;
    o.bootstrap_len = 1;
    assert_int_equal(net_host_create(&h, &loop, &o, &cbs, NULL), DM_EINVAL);

    /* created but never started, then closed: nothing left on the loop */
    th_opts(&o, NULL);
    o.key = g_keys->key[0];
    memset(&t[0], 0, sizeof t[0]);
    assert_int_equal(net_host_create(&t[0].h, &loop, &o, &cbs, &t[0]), DM_OK);
    net_host_close(t[0].h, on_host_closed, &t[0]);
    th_set s = {t, 1};
    assert_true(run_until(&loop, all_closed, &s, 5000));

    /* a port that is taken: DM_ECONN from start, and the host still closes cleanly */
    th_opts(&o, NULL);
    th_start(&t[0], &loop, &o, 0);
    th_opts(&o, NULL);
    o.listen.port = net_host_listen_port(t[0].h);
    o.key = g_keys->key[1];
    memset(&t[1], 0, sizeof t[1]);
    assert_int_equal(net_host_create(&t[1].h, &loop, &o, &cbs, &t[1]), DM_OK);
    assert_int_equal(net_host_start(t[1].h), DM_ECONN);
    /* a host name as listen address is refused */
    th_opts(&o, NULL);
    snprintf(o.listen.host, sizeof o.listen.host, "no.such.host.invalid");
    o.key = g_keys->key[2];
    net_host_t *h2 = NULL;
    assert_int_equal(net_host_create(&h2, &loop, &o, &cbs, NULL), DM_OK);
    assert_int_equal(net_host_start(h2), DM_ECONN);
    net_host_close(h2, NULL, NULL);
    finish(&loop, t, 2);
}

static void test_host_dial_by_name(void **state)
{
    (void)state;
    uv_loop_t loop;
    th t[2];
    net_host_opts o;
    assert_int_equal(uv_loop_init(&loop), 0);
    th_opts(&o, NULL);
    th_start(&t[0], &loop, &o, 0);
    net_addr a = addr_of(&t[0]);
    snprintf(a.host, sizeof a.host, "localhost"); /* resolved with uv_getaddrinfo */
    th_opts(&o, NULL);
    o.bootstrap = &a;
    o.bootstrap_len = 1;
    th_start(&t[1], &loop, &o, 1);
    assert_true(wait_peers(&loop, t, 2, 1, 5000));
    /* close while a name is being resolved: the request must not outlive the host */
    th_opts(&o, NULL);
    net_addr nx = {.host = "localhost", .port = 1};
    o.bootstrap = &nx;
    o.bootstrap_len = 1;
    th tmp;
    th_start(&tmp, &loop, &o, 2);
    run_for(&loop, 1);
    th_close(&loop, &tmp);
    finish(&loop, t, 2);
}

int test_net_host(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_connect_and_message),
        cmocka_unit_test(test_host_broadcast),
        cmocka_unit_test(test_host_peer_exchange),
        cmocka_unit_test(test_host_duplicate),
        cmocka_unit_test(test_host_wrong_network),
        cmocka_unit_test(test_host_allowlist),
        cmocka_unit_test(test_host_hostile_bans),
        cmocka_unit_test(test_host_raw_handshake_and_foreign_key),
        cmocka_unit_test(test_host_slow_reader),
        cmocka_unit_test(test_host_reconnect),
        cmocka_unit_test(test_host_ping_idle),
        cmocka_unit_test(test_host_limits_and_self),
        cmocka_unit_test(test_host_lifecycle),
        cmocka_unit_test(test_host_dial_by_name),
    };
    return cmocka_run_group_tests_name("net_host", tests, group_setup, group_teardown);
}
