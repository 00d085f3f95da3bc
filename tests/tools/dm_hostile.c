/*
 * dm_hostile: a misbehaving peer for the hostile-peer scenario. It speaks raw
 * TCP to a node's P2P port on loopback and tries one attack per mode, then
 * reports as one JSON line what the node did: whether it closed the
 * connection, how long that took, and whether the node spoke first (a banned
 * address is closed at accept, before any HELLO).
 *
 *   dm_hostile --port P --network ID --mode MODE [--victim-port Q]
 *              [--source 127.x.y.z] [--wait-ms N]
 *
 * Modes: garbage, oversize, truncated, unknown-type, bad-signature, replay,
 * conflict, stolen-key (claims the identity of the node at --victim-port,
 * whose HELLO it reads first), honest (a full handshake and one valid share:
 * the connection must stay open).
 */
#include "crypto_hash.h"
#include "crypto_mem.h"
#include "crypto_rsa.h"
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "net_msg.h"
#include "node_share.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *g_source = "127.0.0.1";

/* Connect from g_source (any 127/8 address: each test case can be its own "host"). */
static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in src = {.sin_family = AF_INET};
    inet_pton(AF_INET, g_source, &src.sin_addr);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof src) != 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("dm_hostile: connect");
        exit(3);
    }
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the node may already have closed: that is what we measure */
        b += w;
        n -= (size_t)w;
    }
}

/* Read one frame (payload into out) within timeout. 0 ok, -1 closed, -2 timeout. */
static int read_frame(int fd, dm_buf *out, int timeout_ms)
{
    uint8_t hdr[4];
    size_t got = 0, want = 4;
    uint8_t *dst = hdr;
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    dm_buf_reset(out);
    for (int phase = 0; phase < 2; phase++) {
        while (got < want) {
            int left = (int)(deadline - now_ms());
            if (left <= 0)
                return -2;
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, left) <= 0)
                continue;
            ssize_t r = recv(fd, dst + got, want - got, 0);
            if (r <= 0)
                return -1;
            got += (size_t)r;
        }
        if (phase == 0) {
            size_t len = dm_get_u32be(hdr);
            if (len > NET_FRAME_MAX || dm_buf_reserve(out, len))
                return -1;
            dst = out->data;
            got = 0;
            want = len;
            out->len = len;
        }
    }
    return 0;
}

/* Wait until the node closes the connection (reading and discarding). ms or -1. */
static long wait_closed(int fd, int timeout_ms)
{
    uint64_t t0 = now_ms(), deadline = t0 + (uint64_t)timeout_ms;
    char buf[4096];
    for (;;) {
        int left = (int)(deadline - now_ms());
        if (left <= 0)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r <= 0)
            return (long)(now_ms() - t0);
    }
}

typedef struct {
    crypto_rsa_t *key;
    uint8_t id[32];
    dm_buf spki;
    uint8_t nonce[32];
} ident;

static void ident_new(ident *me)
{
    memset(me, 0, sizeof *me);
    if (crypto_rsa_generate(&me->key, 2048) || crypto_rsa_spki(me->key, &me->spki) ||
        crypto_sha256(me->id, me->spki.data, me->spki.len))
        exit(3);
    crypto_random(me->nonce, 32);
}

/* The AUTH transcript of net_host.h: label || network || signer || verifier || their nonce || ours */
static void auth_msg(dm_buf *m, const char *network, const uint8_t signer[32],
                     const uint8_t verifier[32], const uint8_t vnonce[32], const uint8_t snonce[32])
{
    dm_buf_puts(m, "dmnode-auth-v1");
    dm_buf_puts(m, network);
    dm_buf_append(m, signer, 32);
    dm_buf_append(m, verifier, 32);
    dm_buf_append(m, vnonce, 32);
    dm_buf_append(m, snonce, 32);
}

/* Full honest handshake as `me`; returns 0 when both AUTHs are exchanged. */
static int handshake(int fd, const char *network, ident *me, const uint8_t *claim_id,
                     const uint8_t *claim_spki, size_t claim_spki_len, net_msg *their_hello,
                     dm_buf *their_payload)
{
    dm_buf out = DM_BUF_INIT;
    net_msg_encode_hello(&out, network, claim_id ? claim_id : me->id,
                         claim_spki ? claim_spki : me->spki.data,
                         claim_spki ? claim_spki_len : me->spki.len, me->nonce, 0, "dm_hostile/1");
    send_all(fd, out.data, out.len);
    int rc = read_frame(fd, their_payload, 5000);
    if (rc || net_msg_decode(their_payload->data, their_payload->len, their_hello) ||
        their_hello->type != NET_MSG_HELLO) {
        dm_buf_free(&out);
        return -1;
    }
    dm_buf m = DM_BUF_INIT, sig = DM_BUF_INIT;
    auth_msg(&m, network, claim_id ? claim_id : me->id, their_hello->u.hello.node_id,
             their_hello->u.hello.nonce, me->nonce);
    crypto_rsa_sign(me->key, m.data, m.len, &sig);
    dm_buf_reset(&out);
    net_msg_encode_auth(&out, sig.data, sig.len);
    send_all(fd, out.data, out.len);
    dm_buf_free(&m);
    dm_buf_free(&sig);
    dm_buf_free(&out);
    return 0;
}

static void share_frame(dm_buf *frame, ident *me, uint64_t seq, const char *amount, bool bad_sig)
{
    node_share_fields f;
    memset(&f, 0, sizeof f);
    memcpy(f.origin, me->id, 32);
    f.seq = seq;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    f.timestamp_ms = (uint64_t)ts.tv_sec * 1000;
    memset(f.recipient, 0x42, 20);
    snprintf(f.amount, sizeof f.amount, "%s", amount);
    uint8_t data[64];
    crypto_random(data, sizeof data);
    f.data = data;
    f.data_len = sizeof data;
    crypto_sha256(f.data_hash, data, sizeof data);
    dm_buf body = DM_BUF_INIT, sig = DM_BUF_INIT;
    if (node_share_body_encode(&body, &f))
        exit(3);
    crypto_rsa_sign(me->key, body.data, body.len, &sig);
    if (bad_sig)
        sig.data[sig.len / 2] ^= 0x01;
    net_msg_encode_share(frame, body.data, body.len, sig.data, sig.len);
    dm_buf_free(&body);
    dm_buf_free(&sig);
}

int main(int argc, char **argv)
{
    int port = 0, victim = 0, wait_ms = 12000;
    const char *network = NULL, *mode = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--victim-port"))
            victim = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--network"))
            network = argv[i + 1];
        else if (!strcmp(argv[i], "--mode"))
            mode = argv[i + 1];
        else if (!strcmp(argv[i], "--source"))
            g_source = argv[i + 1];
        else if (!strcmp(argv[i], "--wait-ms"))
            wait_ms = atoi(argv[i + 1]);
    }
    if (!port || !network || !mode) {
        fprintf(stderr, "usage: dm_hostile --port P --network ID --mode MODE [--victim-port Q]\n");
        return 2;
    }
    int fd = dial(port);
    /* a node greets with its HELLO at once; a banned address is closed first */
    struct pollfd p = {fd, POLLIN, 0};
    bool greeted = poll(&p, 1, 2000) > 0;
    char peek;
    if (greeted && recv(fd, &peek, 1, MSG_PEEK) <= 0)
        greeted = false;
    long closed_ms = -1;
    bool stayed_open = false;
    dm_buf frame = DM_BUF_INIT, payload = DM_BUF_INIT;
    net_msg hello;
    ident me;
    ident_new(&me);

    if (!strcmp(mode, "garbage")) {
        uint8_t junk[512];
        crypto_random(junk, sizeof junk);
        /* a length prefix the bytes sent complete (256), then noise that starts with 0xc1,
         * the one byte msgpack never uses: always a malformed frame, never a partial one
         * the node would wait on (a random length could exceed what is sent) */
        junk[0] = 0;
        junk[1] = 0;
        junk[2] = 1;
        junk[3] = 0;
        junk[4] = 0xc1;
        send_all(fd, junk, sizeof junk);
    } else if (!strcmp(mode, "oversize")) {
        uint8_t hdr[4] = {0x7f, 0xff, 0xff, 0xff};
        send_all(fd, hdr, 4);
    } else if (!strcmp(mode, "truncated")) {
        net_msg_encode_hello(&frame, network, me.id, me.spki.data, me.spki.len, me.nonce, 0, "x");
        /* the length prefix promises the whole frame; the msgpack inside is cut short */
        size_t cut = frame.len / 2;
        dm_put_u32be(frame.data, (uint32_t)(cut - 4));
        send_all(fd, frame.data, cut);
    } else if (!strcmp(mode, "unknown-type")) {
        uint8_t f[] = {0, 0, 0, 2, 0x91, 0x63}; /* [99] */
        send_all(fd, f, sizeof f);
    } else if (!strcmp(mode, "stolen-key")) {
        /* learn a real node's identity from its HELLO, then claim it */
        int vfd = dial(victim);
        dm_buf vpay = DM_BUF_INIT;
        net_msg vh;
        if (read_frame(vfd, &vpay, 5000) || net_msg_decode(vpay.data, vpay.len, &vh) ||
            vh.type != NET_MSG_HELLO)
            return 3;
        close(vfd);
        handshake(fd, network, &me, vh.u.hello.node_id, vh.u.hello.spki.p, vh.u.hello.spki.n,
                  &hello, &payload);
        dm_buf_free(&vpay);
    } else {
        /* modes that need an authenticated session */
        if (handshake(fd, network, &me, NULL, NULL, 0, &hello, &payload) != 0) {
            printf("{\"mode\":\"%s\",\"error\":\"handshake failed\"}\n", mode);
            return 1;
        }
        /* wait for the node's AUTH */
        for (int i = 0; i < 10; i++) {
            net_msg m;
            if (read_frame(fd, &payload, 5000) != 0)
                break;
            if (net_msg_decode(payload.data, payload.len, &m) == DM_OK && m.type == NET_MSG_AUTH)
                break;
        }
        if (!strcmp(mode, "bad-signature")) {
            share_frame(&frame, &me, 1, "5", true);
            send_all(fd, frame.data, frame.len);
        } else if (!strcmp(mode, "honest") || !strcmp(mode, "replay")) {
            share_frame(&frame, &me, 1, "5", false);
            send_all(fd, frame.data, frame.len);
            if (!strcmp(mode, "replay"))
                for (int i = 0; i < 5; i++)
                    send_all(fd, frame.data, frame.len);
        } else if (!strcmp(mode, "conflict")) {
            share_frame(&frame, &me, 1, "5", false);
            send_all(fd, frame.data, frame.len);
            dm_buf_reset(&frame);
            share_frame(&frame, &me, 1, "6", false); /* same origin and seq, other body */
            usleep(300000);
            send_all(fd, frame.data, frame.len);
        } else {
            fprintf(stderr, "dm_hostile: unknown mode %s\n", mode);
            return 2;
        }
    }
    closed_ms = wait_closed(fd, wait_ms);
    if (closed_ms < 0)
        stayed_open = true;
    printf("{\"mode\":\"%s\",\"greeted\":%s,\"closed\":%s,\"closed_after_ms\":%ld,\"origin\":\"", mode,
           greeted ? "true" : "false", stayed_open ? "false" : "true", closed_ms);
    for (int i = 0; i < 32; i++)
        printf("%02x", me.id[i]);
    printf("\"}\n");
    close(fd);
    crypto_rsa_destroy(me.key);
    dm_buf_free(&me.spki);
    dm_buf_free(&frame);
    dm_buf_free(&payload);
    return 0;
}
