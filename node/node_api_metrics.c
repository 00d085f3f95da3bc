/*
 * GET /metrics on the internal API: Prometheus text format (version 0.0.4) built from
 * the counters the modules already keep (net_host, node_share, chain_anchor, the two
 * HTTP fronts and their rate limiters). Names start with dmnode_; docs in README.
 */
#include "node_api_internal.h"

#include "dm_err.h"

#include <string.h>

static const char *const API_NAMES[API__COUNT] = {"internal", "external"};

#define LBL_API(k) NODE_METRICS_LABELS({"api", API_NAMES[k]})

/* One family with a sample per running front. */
static int per_front(dm_buf *out, node_api_t *a, const char *name, node_metrics_type type,
                     const char *help, uint64_t (*get)(const api_front *f))
{
    node_metrics_family fam;
    int rc = node_metrics_begin(&fam, out, name, type, help);
    for (int k = 0; !rc && k < API__COUNT; k++)
        if (a->front[k].http)
            rc = node_metrics_sample_u64(&fam, LBL_API(k), get(&a->front[k]));
    return rc;
}

static uint64_t get_limited(const api_front *f)
{
    return f->rate_limited;
}

static uint64_t get_auth_fail(const api_front *f)
{
    return f->auth_failures;
}

static uint64_t get_audit_supp(const api_front *f)
{
    return f->audit_suppressed;
}

static uint64_t get_clients(const api_front *f)
{
    node_ratelimit_stats st;
    node_ratelimit_get_stats(f->limit, &st);
    return st.clients;
}

static int render(node_api_t *a, dm_buf *out)
{
    int rc = DM_OK;
    net_host_stats hs;
    net_host_get_stats(a->ctx.host, &hs);
    node_share_stats ss;
    node_share_get_stats(a->ctx.shares, &ss);

#define C(name, help, v)                                                                           \
    if (!rc)                                                                                       \
    rc = node_metrics_counter(out, name, help, NODE_METRICS_NO_LABELS, (uint64_t)(v))
#define G(name, help, v)                                                                           \
    if (!rc)                                                                                       \
    rc = node_metrics_gauge(out, name, help, NODE_METRICS_NO_LABELS, (double)(v))

    G("dmnode_peers", "Connected peers (handshake done).", net_host_peer_count(a->ctx.host));
    C("dmnode_p2p_accepted_total", "Inbound P2P connections accepted.", hs.accepted);
    C("dmnode_p2p_dialed_total", "Outbound P2P connections dialled.", hs.dialed);
    C("dmnode_p2p_handshakes_failed_total", "P2P handshakes that failed.", hs.handshakes_failed);
    C("dmnode_p2p_misbehaviour_disconnects_total", "Peers disconnected for misbehaviour.",
      hs.disconnects_misbehaviour);
    C("dmnode_p2p_bans_total", "Peer addresses banned.", hs.bans);
    G("dmnode_p2p_banned", "Peer addresses banned now.", hs.banned_now);
    C("dmnode_p2p_dropped_slow_total", "Peers dropped because their send queue was full.",
      hs.dropped_slow);
    G("dmnode_shares_stored", "Shares in the store.", ss.stored);
    C("dmnode_shares_submitted_total", "Shares submitted locally (out).", ss.local_submitted);
    C("dmnode_shares_received_total", "Shares received from peers and stored (in).", ss.received);
    C("dmnode_shares_relayed_total", "Share frames relayed to peers.", ss.relayed);
    C("dmnode_gossip_duplicates_total", "Share copies dropped as duplicates before any crypto.",
      ss.duplicates);
    C("dmnode_shares_invalid_total", "Shares rejected (bad signature, schema or conflict).",
      ss.invalid);
    C("dmnode_verify_calls_total", "RSA signature verifications.", ss.verify_calls);
    C("dmnode_sync_in_total", "Shares pulled by anti-entropy.", ss.synced_in);
    C("dmnode_sync_out_total", "Shares served to peers by anti-entropy.", ss.synced_out);
    G("dmnode_shares_pending_commit", "Shares waiting for their RocksDB batch.", ss.pending_commit);
    C("dmnode_anchor_notices_sent_total", "Anchor notices this node published.", ss.notices_sent);
    C("dmnode_anchor_notices_received_total", "Anchor notices received from peers.",
      ss.notices_received);
    C("dmnode_anchor_notices_stored_total", "Verified anchor notices that added records.",
      ss.notices_stored);
    C("dmnode_anchor_notices_invalid_total", "Anchor notices rejected (signature, root, leaf).",
      ss.notices_invalid);
    C("dmnode_anchor_notices_dropped_total", "Anchor notices dropped (queue full, key never came).",
      ss.notices_dropped);
    C("dmnode_anchor_foreign_records_total", "Proof records stored from other origins' notices.",
      ss.anchor_records);

    if (a->ctx.anchor) {
        chain_anchor_stats cs;
        chain_anchor_stats_get(a->ctx.anchor, &cs);
        G("dmnode_anchor_queue_depth", "Audit events in the outbox not anchored yet.",
          cs.pending_events);
        C("dmnode_anchor_batches_sent_total", "Anchoring batches sent.", cs.batches_sent);
        C("dmnode_anchor_batches_final_total", "Anchoring batches final and recorded.",
          cs.batches_final);
        C("dmnode_anchor_events_total", "Audit events anchored and recorded.", cs.events_anchored);
        G("dmnode_anchor_last_latency_seconds",
          "Batch formed to records written, for the last batch.", cs.last_latency_ms / 1000.0);
        C("dmnode_anchor_resubmits_total", "Fee bumps and re-signed transactions.", cs.resubmits);
        C("dmnode_anchor_reorgs_total", "Anchors removed by a reorg before finality.", cs.reorgs);
        C("dmnode_anchor_nonce_gaps_total",
          "Batches re-signed because the chain lost transactions the node had counted.",
          cs.nonce_gaps);
        C("dmnode_anchor_rpc_errors_total", "Failed JSON-RPC calls (each retried).", cs.rpc_errors);
        G("dmnode_anchor_ready", "1 when anchoring runs.", cs.ready ? 1 : 0);
    }

    if (!rc)
        rc = per_front(out, a, "dmnode_api_rate_limited_total", NODE_METRICS_COUNTER,
                       "Requests answered 429 by the per-client token buckets.", get_limited);
    if (!rc)
        rc = per_front(out, a, "dmnode_api_auth_failures_total", NODE_METRICS_COUNTER,
                       "Requests refused 401 (missing, unknown, expired or revoked credentials).",
                       get_auth_fail);
    if (!rc)
        rc = per_front(out, a, "dmnode_api_audit_suppressed_total", NODE_METRICS_COUNTER,
                       "Auth and rate-limit events beyond the per-client audit rate (counted only).",
                       get_audit_supp);
    if (!rc)
        rc = per_front(out, a, "dmnode_api_rate_limit_clients", NODE_METRICS_GAUGE,
                       "Clients holding a token bucket.", get_clients);
    node_metrics_family fam;
    if (!rc)
        rc = node_metrics_begin(&fam, out, "dmnode_api_responses_total", NODE_METRICS_COUNTER,
                                "Responses sent, by API and status class.");
    static const char *const CLASSES[6] = {"0xx", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int k = 0; !rc && k < API__COUNT; k++)
        for (int c = 2; !rc && c < 6 && a->front[k].http; c++)
            rc = node_metrics_sample_u64(
                &fam, NODE_METRICS_LABELS({"api", API_NAMES[k]}, {"code", CLASSES[c]}),
                a->front[k].status_class[c]);
    if (!rc)
        rc = node_metrics_begin(&fam, out, "dmnode_api_request_duration_seconds",
                                NODE_METRICS_HISTOGRAM,
                                "Request dispatch to response queued, by API.");
    for (int k = 0; !rc && k < API__COUNT; k++)
        if (a->front[k].http)
            rc = node_metrics_sample_hist(&fam, LBL_API(k), &a->front[k].latency);
#undef C
#undef G
    return rc;
}

void api__metrics(node_api_t *a, net_http_req_t *r)
{
    dm_buf out = DM_BUF_INIT;
    int rc = render(a, &out);
    if (rc)
        api__reply_err(r, rc, NULL);
    else
        net_http_respond(r, 200, NODE_METRICS_CONTENT_TYPE, out.data, out.len, NULL);
    dm_buf_free(&out);
}
