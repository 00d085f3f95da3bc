/*
 * dm_submit: a load generator for a node's internal API, used by the scenario
 * tests and bench/gossip. Submits N shares of S random bytes over keep-alive
 * connections (libcurl multi, C requests in flight), retrying 503 (pending
 * limit) and 429 (rate limit) with a short pause, and prints one JSON line with
 * the results.
 *
 *   dm_submit --url http://127.0.0.1:8080 --token-file F --count N [--size S]
 *             [--concurrency C] [--ids FILE] [--recipient 0x…] [--rate R]
 *
 * --ids writes "<share id> <unix ms at acknowledgement>" per line (for latency
 * measurement). Exit 0 only if every share was acknowledged with 201.
 */
#include "crypto_mem.h"
#include "dm_buf.h"
#include "dm_enc.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    CURL *h;
    dm_buf body;
    dm_buf reply;
    int attempts;
    long slot;
} req_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static size_t sink(char *p, size_t sz, size_t n, void *arg)
{
    return dm_buf_append(arg, p, sz * n) == 0 ? sz * n : 0;
}

static int make_body(dm_buf *b, size_t size, const char *recipient, unsigned long i)
{
    uint8_t *data = malloc(size ? size : 1);
    dm_buf b64 = DM_BUF_INIT;
    int rc = data ? crypto_random(data, size) : -1;
    if (!rc)
        rc = dm_b64_encode(&b64, data, size, DM_B64_STD);
    dm_buf_reset(b);
    if (!rc)
        rc = dm_buf_printf(b, "{\"recipient\":\"%s\",\"amount\":\"%lu\",\"data\":\"%s\"}", recipient,
                           i + 1, dm_buf_cstr(&b64));
    free(data);
    dm_buf_free(&b64);
    return rc;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *token_file = NULL, *ids_file = NULL;
    const char *recipient = "0x742d35Cc6634C0532925a3b844Bc454e4438f44e";
    unsigned long count = 0, size = 1024, conc = 16;
    double rate = 0; /* shares/s; 0 = as fast as the node accepts */
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--url"))
            url = argv[i + 1];
        else if (!strcmp(argv[i], "--token-file"))
            token_file = argv[i + 1];
        else if (!strcmp(argv[i], "--count"))
            count = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--size"))
            size = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--concurrency"))
            conc = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--ids"))
            ids_file = argv[i + 1];
        else if (!strcmp(argv[i], "--rate"))
            rate = strtod(argv[i + 1], NULL);
        else if (!strcmp(argv[i], "--recipient"))
            recipient = argv[i + 1];
        else {
            fprintf(stderr, "dm_submit: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!url || !token_file || !count || !conc || conc > 1024) {
        fprintf(stderr, "usage: dm_submit --url URL --token-file F --count N [--size S] "
                        "[--concurrency C] [--ids FILE]\n");
        return 2;
    }
    char token[300];
    FILE *tf = fopen(token_file, "r");
    if (!tf || !fgets(token, sizeof token, tf)) {
        fprintf(stderr, "dm_submit: cannot read %s\n", token_file);
        return 2;
    }
    fclose(tf);
    token[strcspn(token, "\r\n")] = 0;
    char auth[340];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    crypto_memzero(token, sizeof token);
    FILE *ids = ids_file ? fopen(ids_file, "w") : NULL;
    char target[512];
    snprintf(target, sizeof target, "%s/v1/shares", url);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conc);
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    req_t *reqs = calloc(conc, sizeof *reqs);
    unsigned long next = 0, ok = 0, failed = 0, retries = 0;
    uint64_t t0 = now_ms();
    int running = 0;
    for (unsigned long i = 0; i < conc && next < count; i++, next++) {
        req_t *r = &reqs[i];
        r->h = curl_easy_init();
        r->slot = (long)i;
        make_body(&r->body, size, recipient, next);
        curl_easy_setopt(r->h, CURLOPT_URL, target);
        curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(r->h, CURLOPT_POSTFIELDS, (const char *)r->body.data);
        curl_easy_setopt(r->h, CURLOPT_POSTFIELDSIZE, (long)r->body.len);
        curl_easy_setopt(r->h, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(r->h, CURLOPT_WRITEDATA, &r->reply);
        curl_easy_setopt(r->h, CURLOPT_PRIVATE, r);
        curl_easy_setopt(r->h, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(r->h, CURLOPT_TIMEOUT, 120L);
        curl_multi_add_handle(m, r->h);
    }
    do {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            req_t *r;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            long status = 0;
            curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &status);
            curl_multi_remove_handle(m, r->h);
            bool retry = false;
            if (msg->data.result == CURLE_OK && status == 201) {
                ok++;
                if (ids) {
                    const char *p = strstr(dm_buf_cstr(&r->reply), "\"id\":\"");
                    if (p)
                        fprintf(ids, "%.64s %llu\n", p + 6, (unsigned long long)now_ms());
                }
            } else if (msg->data.result == CURLE_OK && status == 503 && r->attempts < 200) {
                retry = true; /* the node's pending limit: back off briefly */
                retries++;
                usleep(5000);
            } else if (msg->data.result == CURLE_OK && status == 429 && r->attempts < 600) {
                retry = true; /* the API's rate limit: a token comes back within a second */
                retries++;
                usleep(100000);
            } else {
                failed++;
                fprintf(stderr, "dm_submit: request failed: %s status %ld: %s\n",
                        curl_easy_strerror(msg->data.result), status, dm_buf_cstr(&r->reply));
            }
            dm_buf_reset(&r->reply);
            if (retry) {
                r->attempts++;
            } else if (next < count) {
                r->attempts = 0;
                if (rate > 0) { /* pace: share k is due at t0 + k / rate */
                    uint64_t due = t0 + (uint64_t)((double)next * 1000.0 / rate);
                    uint64_t t = now_ms();
                    if (due > t)
                        usleep((useconds_t)(due - t) * 1000);
                }
                make_body(&r->body, size, recipient, next++);
                curl_easy_setopt(r->h, CURLOPT_POSTFIELDS, (const char *)r->body.data);
                curl_easy_setopt(r->h, CURLOPT_POSTFIELDSIZE, (long)r->body.len);
            } else {
                continue;
            }
            curl_multi_add_handle(m, r->h);
            running++;
        }
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    } while (running);
    uint64_t t1 = now_ms();
    double secs = (double)(t1 - t0) / 1000.0;
    printf("{\"tool\":\"dm_submit\",\"count\":%lu,\"ok\":%lu,\"failed\":%lu,\"retries_503\":%lu,"
           "\"size\":%lu,\"concurrency\":%lu,\"seconds\":%.3f,\"per_s\":%.1f,\"start_ms\":%llu}\n",
           count, ok, failed, retries, size, conc, secs, secs > 0 ? (double)ok / secs : 0.0,
           (unsigned long long)t0);
    for (unsigned long i = 0; i < conc; i++) {
        if (reqs[i].h)
            curl_easy_cleanup(reqs[i].h);
        dm_buf_free(&reqs[i].body);
        dm_buf_free(&reqs[i].reply);
    }
    free(reqs);
    curl_slist_free_all(hdrs);
    curl_multi_cleanup(m);
    curl_global_cleanup();
    if (ids)
        fclose(ids);
    return ok == count ? 0 : 1;
}
