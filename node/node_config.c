/*
 * Strict node configuration (DESIGN.md 13, 14; docs/CONFIG.md).
 *
 * One schema table (KEYS below) drives everything: the defaults are applied by
 * the same setter as files, environment and flags, so a default that broke its
 * own rule would fail node_config_init; the dump and the Markdown key reference
 * walk the same table. Every rejection names the key and the origin of the
 * value, because an operator reading "invalid port" without knowing whether it
 * came from the file, a unit file's Environment= or a flag loses time.
 *
 * Loads are all-or-nothing: they work on a deep copy and swap it in only when
 * the whole source was accepted, so a failed load never leaves half a file
 * applied.
 */
#include "node_config.h"
#include "dm_err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_MAX_FILE (1024u * 1024u) /* bytes in a config file */
#define CFG_MAX_LINE 4096u           /* bytes in one line, without its newline */
#define CFG_MAX_ITEMS 256u           /* items in one list */
#define CFG_MAX_STR 4095u            /* bytes in one string value */
#define CFG_MAX_URL 2048u
#define CFG_ENV_PREFIX "DMNODE_"
#define CFG_ENV_CONFIG "DMNODE_CONFIG"

typedef enum {
    KT_STRING,        /* char *, checked by flags (KF_NETID) */
    KT_PATH,          /* char *, "" = unset */
    KT_UINT,          /* uint32_t or uint64_t (by field size), min..max */
    KT_BOOL,          /* bool */
    KT_HOSTPORT,      /* node_hostport */
    KT_HOSTPORT_LIST, /* node_hostport * + size_t len */
    KT_NODEID_LIST,   /* char (*)[65] + size_t len */
    KT_LOGLEVEL,      /* dm_log_level */
    KT_ETHADDR,       /* char *, "" or 0x + 40 hex */
    KT_URL,           /* char *, "" or http(s)://... */
} key_type;

enum {
    KF_LISTEN = 1u << 0,   /* host:port may use port 0 (any free port) */
    KF_LOOPBACK = 1u << 1, /* host must be loopback: never reachable from the network */
    KF_NETID = 1u << 2,    /* 1..64 of [A-Za-z0-9._-] (min/max are the length bounds) */
    KF_RSABITS = 1u << 3,  /* only 2048 or 3072 */
};

typedef struct {
    const char *name;
    key_type type;
    size_t off;      /* offset of the field in node_config */
    size_t size;     /* size of the field (uint width) */
    size_t off_len;  /* lists: offset of the length field */
    const char *def; /* default, in environment/flag text form */
    uint64_t min, max;
    unsigned flags;
    const char *help;
} key_spec;

#define FLD(f) offsetof(node_config, f), sizeof(((node_config *)0)->f), 0
#define LST(f)                                                                                     \
    offsetof(node_config, f), sizeof(((node_config *)0)->f), offsetof(node_config, f##_len)
#define MAX_CHAIN_ID (UINT64_C(1) << 53) /* JavaScript-safe, as EIP-2294 proposes */

/* Keys of one section must be contiguous: the dump writes one [section] per run. */
static const key_spec KEYS[] = {
    {"datadir", KT_PATH, FLD(datadir), "", 0, 0, 0,
     "Data directory (RocksDB, keys, admin token). Empty: commands that need state refuse to "
     "run until it is given."},
    {"network.id", KT_STRING, FLD(network_id), "datamgmt-local", 1, 64, KF_NETID,
     "Name of the network; peers of another network are refused at the handshake."},
    {"p2p.listen", KT_HOSTPORT, FLD(p2p_listen), "0.0.0.0:8000", 0, 0, KF_LISTEN,
     "P2P listen address (port 0: any free port)."},
    {"p2p.bootstrap", KT_HOSTPORT_LIST, LST(p2p_bootstrap), "", 0, 0, 0, "Peers dialled at start."},
    {"p2p.allowlist", KT_NODEID_LIST, LST(p2p_allowlist), "", 0, 0, 0,
     "If not empty, only these node ids may connect or be connected to."},
    {"p2p.max_inbound", KT_UINT, FLD(p2p_max_inbound), "32", 0, 1024, 0,
     "Maximum inbound peer connections."},
    {"p2p.max_outbound", KT_UINT, FLD(p2p_max_outbound), "8", 0, 256, 0,
     "Maximum outbound peer connections."},
    {"p2p.ban_seconds", KT_UINT, FLD(p2p_ban_seconds), "3600", 1, 30u * 24u * 3600u, 0,
     "How long a misbehaving peer address stays banned (at most 30 days)."},
    {"api.internal.listen", KT_HOSTPORT, FLD(api_internal_listen), "127.0.0.1:8080", 0, 0,
     KF_LISTEN | KF_LOOPBACK, "Internal (admin) API listen address; loopback only."},
    {"api.internal.token_file", KT_PATH, FLD(api_internal_token_file), "", 0, 0, 0,
     "File holding the admin token. Empty: admin.token in the data directory."},
    {"api.internal.rate_per_sec", KT_UINT, FLD(api_internal_rate_per_sec), "50", 1, 1000000, 0,
     "Internal API token-bucket refill rate per client (requests/s)."},
    {"api.internal.rate_burst", KT_UINT, FLD(api_internal_rate_burst), "100", 1, 1000000, 0,
     "Internal API token-bucket size per client."},
    {"api.external.listen", KT_HOSTPORT, FLD(api_external_listen), "127.0.0.1:8081", 0, 0,
     KF_LISTEN, "External (client) API listen address; TLS is terminated by a reverse proxy."},
    {"api.external.rate_per_sec", KT_UINT, FLD(api_external_rate_per_sec), "10", 1, 1000000, 0,
     "External API token-bucket refill rate per client (requests/s)."},
    {"api.external.rate_burst", KT_UINT, FLD(api_external_rate_burst), "20", 1, 1000000, 0,
     "External API token-bucket size per client."},
    {"chain.rpc_url", KT_URL, FLD(chain_rpc_url), "", 0, 0, 0,
     "Ethereum JSON-RPC endpoint. Empty: anchoring disabled."},
    {"chain.chain_id", KT_UINT, FLD(chain_chain_id), "0", 0, MAX_CHAIN_ID, 0,
     "Expected chain id, checked at start; 0 = not set (required when chain.rpc_url is set)."},
    {"chain.contract", KT_ETHADDR, FLD(chain_contract), "", 0, 0, 0,
     "Audit contract address. Requires chain.rpc_url."},
    {"chain.batch_max_events", KT_UINT, FLD(chain_batch_max_events), "256", 1, 4096, 0,
     "Maximum audit events anchored by one transaction."},
    {"chain.batch_max_delay_ms", KT_UINT, FLD(chain_batch_max_delay_ms), "2000", 0, 3600000, 0,
     "Maximum time an event waits for its batch to fill."},
    {"chain.confirmations", KT_UINT, FLD(chain_confirmations), "1", 1, 1000, 0,
     "Blocks on top of an anchor's block (including it) before its events are recorded final."},
    {"chain.max_fee_gwei", KT_UINT, FLD(chain_max_fee_gwei), "500", 1, 1000000, 0,
     "Cap on the EIP-1559 max fee per gas of an anchoring transaction, in gwei."},
    {"storage.sync", KT_BOOL, FLD(storage_sync), "true", 0, 0, 0,
     "fsync every write batch (nothing acknowledged is lost on power loss)."},
    {"log.level", KT_LOGLEVEL, FLD(log_level), "info", 0, 0, 0, "Minimum level logged."},
    {"audit.retention_days", KT_UINT, FLD(audit_retention_days), "90", 1, 36500, 0,
     "Audit entries older than this are pruned; a checkpoint keeps the rest verifiable."},
    {"audit.head_anchor_interval_s", KT_UINT, FLD(audit_head_anchor_interval_s), "3600", 10,
     86400, 0, "How often the audit chain head is recorded as an audit event to be anchored."},
    {"keys.master_password_file", KT_PATH, FLD(keys_master_password_file), "", 0, 0, 0,
     "File holding the master password. Empty: the KEY_MASTER_PASSWORD environment variable."},
    {"keys.rsa_bits", KT_UINT, FLD(keys_rsa_bits), "2048", 2048, 3072, KF_RSABITS,
     "Size of a newly created RSA node key."},
    {"keys.kdf_iterations", KT_UINT, FLD(keys_kdf_iterations), "600000", 600000, 100000000, 0,
     "PBKDF2-HMAC-SHA256 iterations for a newly created key store."},
};
#define NKEYS (sizeof KEYS / sizeof KEYS[0])
_Static_assert(NKEYS == NODE_CONFIG_NKEYS, "NODE_CONFIG_NKEYS must match the schema table");

static const char *const LOG_LEVELS[] = {"debug", "info", "warning", "error"};

/* ---- small helpers ---- */

static void *fld(node_config *c, const key_spec *k)
{
    return (char *)c + k->off;
}

static const void *cfld(const node_config *c, const key_spec *k)
{
    return (const char *)c + k->off;
}

static size_t *flen(node_config *c, const key_spec *k)
{
    return (size_t *)(void *)((char *)c + k->off_len);
}

static size_t cflen(const node_config *c, const key_spec *k)
{
    return *(const size_t *)(const void *)((const char *)c + k->off_len);
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_hex(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int key_index(const char *key)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].name, key) == 0)
            return (int)i;
    return -1;
}

/* "p2p.listen" -> "DMNODE_P2P_LISTEN". */
static void env_name(const char *key, char *out, size_t n)
{
    size_t j = 0;
    for (const char *p = CFG_ENV_PREFIX; *p && j + 1 < n; p++)
        out[j++] = *p;
    for (const char *p = key; *p && j + 1 < n; p++)
        out[j++] = *p == '.' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - ('a' - 'A') : *p);
    out[j] = '\0';
}

/* A bounded, printable rendering of user text for messages: control and non-ASCII bytes
 * become \xNN and long text is cut with "...". */
typedef struct {
    char s[320];
} qbuf;

static const char *show(qbuf *q, const char *s, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (j + 8 >= sizeof q->s) {
            memcpy(q->s + j, "...", 4);
            return q->s;
        }
        if (c < 0x20 || c >= 0x7f) {
            snprintf(q->s + j, sizeof q->s - j, "\\x%02x", c);
            j += 4;
        } else {
            q->s[j++] = (char)c;
        }
    }
    q->s[j] = '\0';
    return q->s;
}

static const char *shows(qbuf *q, const char *s)
{
    return show(q, s, strlen(s));
}

/* Append "config: <key>: <problem> (<origin>)" to err and return DM_ECONFIG. */
static int fail(dm_buf *err, const char *key, const char *origin, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(dm_buf *err, const char *key, const char *origin, const char *fmt, ...)
{
    if (!err)
        return DM_ECONFIG;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (key)
        dm_buf_printf(err, "config: %s: %s (%s)", key, msg, origin ? origin : "default");
    else
        dm_buf_printf(err, "config: %s (%s)", msg, origin ? origin : "default");
    return DM_ECONFIG;
}

/* ---- suggestions for unknown names ---- */

#define SUGGEST_MAX 64

/* Optimal string alignment distance (Damerau-Levenshtein without repeated edits),
 * case-insensitive. Inputs longer than SUGGEST_MAX get no suggestion. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > SUGGEST_MAX || lb > SUGGEST_MAX)
        return SIZE_MAX;
    unsigned short d[SUGGEST_MAX + 1][SUGGEST_MAX + 1];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (unsigned short)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (unsigned short)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            unsigned cost = lower(a[i - 1]) != lower(b[j - 1]);
            unsigned v = d[i - 1][j] + 1u;
            if (d[i][j - 1] + 1u < v)
                v = d[i][j - 1] + 1u;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
                lower(a[i - 2]) == lower(b[j - 1]) && d[i - 2][j - 2] + 1u < v)
                v = d[i - 2][j - 2] + 1u;
            d[i][j] = (unsigned short)v;
        }
    }
    return d[la][lb];
}

/* Nearest of `n` candidates (names(i)) to `s`, or NULL when nothing is close. A bare name
 * that is the last component of exactly one key ("listen" is not: three keys end so) is
 * also suggested. */
static const char *nearest(const char *s, size_t n, const char *(*names)(size_t, char *, size_t),
                           char *buf, size_t bufn)
{
    size_t best = SIZE_MAX, besti = 0;
    for (size_t i = 0; i < n; i++) {
        char tmp[96];
        size_t d = edit_distance(s, names(i, tmp, sizeof tmp));
        if (d < best) {
            best = d;
            besti = i;
        }
    }
    size_t len = strlen(s);
    size_t limit = len >= 10 ? 3 : len >= 4 ? 2 : 1;
    if (best != SIZE_MAX && best <= limit)
        return names(besti, buf, bufn);
    /* "max_inbound" for "p2p.max_inbound": the section was left out. */
    size_t hits = 0, hit = 0;
    for (size_t i = 0; len > 0 && i < n; i++) {
        char tmp[96];
        const char *nm = names(i, tmp, sizeof tmp);
        size_t ln = strlen(nm);
        if (ln > len && (nm[ln - len - 1] == '.' || nm[ln - len - 1] == '_') &&
            strcasecmp(nm + ln - len, s) == 0) {
            hits++;
            hit = i;
        }
    }
    return hits == 1 ? names(hit, buf, bufn) : NULL;
}

static const char *key_name_at(size_t i, char *buf, size_t n)
{
    (void)buf;
    (void)n;
    return KEYS[i].name;
}

static const char *env_suffix_at(size_t i, char *buf, size_t n)
{
    env_name(KEYS[i].name, buf, n);
    return buf + strlen(CFG_ENV_PREFIX);
}

static int fail_unknown_key(dm_buf *err, const char *key, const char *origin)
{
    char buf[96];
    qbuf q;
    const char *sug = nearest(key, NKEYS, key_name_at, buf, sizeof buf);
    if (sug)
        return fail(err, shows(&q, key), origin, "unknown key, did you mean %s?", sug);
    return fail(err, shows(&q, key), origin, "unknown key (docs/CONFIG.md lists every key)");
}

/* ---- value parsers (shared by all sources) ---- */

/* Unsigned decimal, no sign, no leading zeros (is "010" eight or ten?). 0, -1 syntax,
 * -2 overflow. */
static int parse_uint(const char *s, uint64_t *out)
{
    if (!is_digit((unsigned char)s[0]) || (s[0] == '0' && s[1]))
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (!is_digit((unsigned char)*p))
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -2;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static bool host_name_ok(const char *h, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!(is_alpha((unsigned char)c) || is_digit((unsigned char)c) || c == '-'))
            return false;
        if (c == '-' && label == 0)
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && h[n - 1] != '-';
}

/* Parse "host:port" / "[v6]:port". Returns 0, DM_EINVAL or DM_ERANGE with `why` set. */
static int hostport_parse(node_hostport *out, const char *s, bool allow_zero, const char **why)
{
    node_hostport hp;
    memset(&hp, 0, sizeof hp);
    const char *port;
    size_t n = strlen(s);
    if (n == 0) {
        *why = "empty, expected host:port";
        return DM_EINVAL;
    }
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb) {
            *why = "missing ']' after the IPv6 address";
            return DM_EINVAL;
        }
        if (rb[1] != ':') {
            *why = "expected [IPv6]:port";
            return DM_EINVAL;
        }
        size_t hl = (size_t)(rb - s - 1);
        struct in6_addr a6;
        if (hl == 0 || hl >= INET6_ADDRSTRLEN) {
            *why = "invalid IPv6 address";
            return DM_EINVAL;
        }
        memcpy(hp.host, s + 1, hl);
        hp.host[hl] = '\0';
        if (inet_pton(AF_INET6, hp.host, &a6) != 1) {
            *why = "invalid IPv6 address";
            return DM_EINVAL;
        }
        port = rb + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) {
            *why = "missing :port";
            return DM_EINVAL;
        }
        size_t hl = (size_t)(colon - s);
        if (memchr(s, ':', hl)) {
            *why = "IPv6 addresses must be written in brackets, e.g. [::1]:8000";
            return DM_EINVAL;
        }
        if (hl == 0) {
            *why = "missing host";
            return DM_EINVAL;
        }
        if (!host_name_ok(s, hl)) {
            *why = "invalid host (an IPv4 address, [IPv6] or a DNS name)";
            return DM_EINVAL;
        }
        memcpy(hp.host, s, hl);
        hp.host[hl] = '\0';
        bool numeric = true;
        for (size_t i = 0; i < hl; i++)
            if (!is_digit((unsigned char)s[i]) && s[i] != '.')
                numeric = false;
        struct in_addr a4;
        if (numeric && inet_pton(AF_INET, hp.host, &a4) != 1) {
            *why = "invalid IPv4 address";
            return DM_EINVAL;
        }
        port = colon + 1;
    }
    uint64_t p;
    int rc = parse_uint(port, &p);
    if (rc == -1 || (rc == 0 && strlen(port) > 5)) {
        *why = "invalid port (expected a decimal number)";
        return DM_EINVAL;
    }
    if (rc == -2 || p > 65535 || (p == 0 && !allow_zero)) {
        *why = allow_zero ? "port out of range 0..65535" : "port out of range 1..65535";
        return DM_ERANGE;
    }
    hp.port = (uint16_t)p;
    *out = hp;
    return DM_OK;
}

int node_hostport_parse(node_hostport *out, const char *s)
{
    const char *why;
    if (!out || !s)
        return DM_EINVAL;
    return hostport_parse(out, s, false, &why);
}

void node_hostport_format(const node_hostport *hp, char *out, size_t n)
{
    size_t hl = strnlen(hp->host, sizeof hp->host);
    if (memchr(hp->host, ':', hl))
        snprintf(out, n, "[%.*s]:%u", (int)hl, hp->host, (unsigned)hp->port);
    else
        snprintf(out, n, "%.*s:%u", (int)hl, hp->host, (unsigned)hp->port);
}

bool node_hostport_is_loopback(const node_hostport *hp)
{
    char host[sizeof hp->host];
    size_t hl = strnlen(hp->host, sizeof hp->host);
    if (hl == sizeof hp->host)
        return false;
    memcpy(host, hp->host, hl + 1);
    if (strcasecmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return false;
}

/* Canonical text of a host for comparisons: IP literals through inet_ntop, names lowered. */
static void host_canon(const char *h, char *out, size_t n)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, h, &a4) == 1 && inet_ntop(AF_INET, &a4, out, (socklen_t)n))
        return;
    if (inet_pton(AF_INET6, h, &a6) == 1 && inet_ntop(AF_INET6, &a6, out, (socklen_t)n))
        return;
    size_t i = 0;
    for (; h[i] && i + 1 < n; i++)
        out[i] = (char)lower((unsigned char)h[i]);
    out[i] = '\0';
}

static bool host_is_wildcard(const char *h)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, h, &a4) == 1)
        return a4.s_addr == htonl(INADDR_ANY);
    if (inet_pton(AF_INET6, h, &a6) == 1)
        return IN6_IS_ADDR_UNSPECIFIED(&a6);
    return false;
}

/* Two listeners that cannot both bind: same non-zero port and the same address, or one of
 * them on a wildcard address (which takes the port on every address). */
static bool hostport_conflict(const node_hostport *a, const node_hostport *b)
{
    if (a->port == 0 || a->port != b->port)
        return false;
    if (host_is_wildcard(a->host) || host_is_wildcard(b->host))
        return true;
    char ca[INET6_ADDRSTRLEN + 256], cb[INET6_ADDRSTRLEN + 256];
    host_canon(a->host, ca, sizeof ca);
    host_canon(b->host, cb, sizeof cb);
    return strcmp(ca, cb) == 0;
}

/* ---- applying one value ---- */

typedef enum { V_TEXT, V_STRING, V_INT, V_BOOL, V_LIST } vkind;

/* A value as it arrives: raw text (environment, flags, defaults) or a typed file value. */
typedef struct {
    vkind kind;
    const char *s;      /* scalar text, NUL-terminated */
    char *const *items; /* V_LIST */
    size_t n;
} cvalue;

static const char *kind_name(vkind k)
{
    switch (k) {
    case V_TEXT:
        return "text";
    case V_STRING:
        return "a string";
    case V_INT:
        return "an integer";
    case V_BOOL:
        return "a boolean";
    case V_LIST:
        return "a list";
    }
    return "?";
}

static vkind file_kind(key_type t)
{
    switch (t) {
    case KT_UINT:
        return V_INT;
    case KT_BOOL:
        return V_BOOL;
    case KT_HOSTPORT_LIST:
    case KT_NODEID_LIST:
        return V_LIST;
    case KT_STRING:
    case KT_PATH:
    case KT_HOSTPORT:
    case KT_LOGLEVEL:
    case KT_ETHADDR:
    case KT_URL:
        return V_STRING;
    }
    return V_STRING;
}

static const char *expect_text(key_type t)
{
    switch (t) {
    case KT_UINT:
        return "an integer, e.g. 32";
    case KT_BOOL:
        return "true or false";
    case KT_HOSTPORT_LIST:
        return "a list of \"host:port\" strings, e.g. [\"10.0.0.2:8000\"]";
    case KT_NODEID_LIST:
        return "a list of node id strings, e.g. [\"<64 hex>\"]";
    case KT_STRING:
    case KT_PATH:
    case KT_HOSTPORT:
    case KT_LOGLEVEL:
    case KT_ETHADDR:
    case KT_URL:
        return "a \"double-quoted string\"";
    }
    return "?";
}

static size_t utf8_len(const unsigned char *s, size_t n);

/* Checks common to every string value: bounded, no control characters, valid UTF-8 (so that
 * the dump, a file, can always carry it). */
static int check_text(const key_spec *k, const char *s, const char *origin, dm_buf *err)
{
    size_t n = strlen(s);
    if (n > CFG_MAX_STR)
        return fail(err, k->name, origin, "value longer than %u bytes", CFG_MAX_STR);
    for (size_t i = 0; i < n;) {
        if (is_ctl((unsigned char)s[i]))
            return fail(err, k->name, origin, "value contains a control character (\\x%02x)",
                        (unsigned)(unsigned char)s[i]);
        size_t ul = utf8_len((const unsigned char *)s + i, n - i);
        if (!ul)
            return fail(err, k->name, origin, "value is not valid UTF-8");
        i += ul;
    }
    return DM_OK;
}

static int check_string(const key_spec *k, const char *s, const char *origin, dm_buf *err)
{
    qbuf q;
    int rc = check_text(k, s, origin, err);
    if (rc)
        return rc;
    size_t n = strlen(s);
    switch (k->type) {
    case KT_STRING:
        if (k->flags & KF_NETID) {
            bool ok = n >= k->min && n <= k->max;
            for (size_t i = 0; ok && i < n; i++)
                ok = is_alpha((unsigned char)s[i]) || is_digit((unsigned char)s[i]) ||
                     s[i] == '.' || s[i] == '_' || s[i] == '-';
            if (!ok)
                return fail(err, k->name, origin,
                            "\"%s\" is not %llu..%llu characters of A-Z a-z 0-9 . _ -",
                            shows(&q, s), (unsigned long long)k->min, (unsigned long long)k->max);
        }
        return DM_OK;
    case KT_ETHADDR: {
        bool ok = n == 0 || (n == 42 && s[0] == '0' && s[1] == 'x');
        for (size_t i = 2; ok && n && i < n; i++)
            ok = is_hex((unsigned char)s[i]);
        if (!ok)
            return fail(err, k->name, origin,
                        "\"%s\" is not an Ethereum address (0x followed by 40 hex digits)",
                        shows(&q, s));
        return DM_OK;
    }
    case KT_URL: {
        if (n == 0)
            return DM_OK;
        size_t pre = strncasecmp(s, "http://", 7) == 0    ? 7
                     : strncasecmp(s, "https://", 8) == 0 ? 8
                                                          : 0;
        if (!pre)
            return fail(err, k->name, origin, "\"%s\" is not an http:// or https:// URL",
                        shows(&q, s));
        if (n > CFG_MAX_URL)
            return fail(err, k->name, origin, "URL longer than %u bytes", CFG_MAX_URL);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
                return fail(err, k->name, origin, "URL \"%s\" contains a space or non-ASCII byte",
                            shows(&q, s));
        size_t auth = strcspn(s + pre, "/?#");
        if (auth == 0)
            return fail(err, k->name, origin, "URL \"%s\" has no host", shows(&q, s));
        /* Credentials do not belong in the configuration (it is dumped and logged). */
        if (memchr(s + pre, '@', auth))
            return fail(err, k->name, origin, "URL must not contain credentials (user:password@)");
        return DM_OK;
    }
    case KT_PATH:
    case KT_UINT:
    case KT_BOOL:
    case KT_HOSTPORT:
    case KT_HOSTPORT_LIST:
    case KT_NODEID_LIST:
    case KT_LOGLEVEL:
        return DM_OK;
    }
    return DM_OK;
}

static int check_hostport(const key_spec *k, const char *s, node_hostport *out, const char *what,
                          const char *origin, dm_buf *err)
{
    qbuf q;
    const char *why = "";
    int rc = check_text(k, s, origin, err);
    if (rc)
        return rc;
    if (hostport_parse(out, s, (k->flags & KF_LISTEN) != 0, &why))
        return fail(err, k->name, origin, "%s\"%s\" is not a valid host:port: %s", what,
                    shows(&q, s), why);
    if ((k->flags & KF_LOOPBACK) && !node_hostport_is_loopback(out))
        return fail(err, k->name, origin,
                    "\"%s\" is not a loopback address; this API must only listen on "
                    "127.0.0.0/8, ::1 or localhost",
                    shows(&q, s));
    return DM_OK;
}

/* Split raw list text on commas; items are trimmed of spaces. "" is the empty list. */
static int split_list(const key_spec *k, const char *s, char *buf, char **items, size_t *n,
                      const char *origin, dm_buf *err)
{
    size_t cnt = 0;
    *n = 0;
    if (*s == '\0')
        return DM_OK;
    strcpy(buf, s);
    char *p = buf;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        size_t l = strlen(p);
        while (l && (p[l - 1] == ' ' || p[l - 1] == '\t'))
            p[--l] = '\0';
        if (l == 0)
            return fail(err, k->name, origin, "empty item %zu in the comma-separated list",
                        cnt + 1);
        if (cnt == CFG_MAX_ITEMS)
            return fail(err, k->name, origin, "more than %u items", CFG_MAX_ITEMS);
        items[cnt++] = p;
        if (!comma)
            break;
        p = comma + 1;
    }
    *n = cnt;
    return DM_OK;
}

static void free_field(node_config *c, const key_spec *k)
{
    switch (k->type) {
    case KT_STRING:
    case KT_PATH:
    case KT_ETHADDR:
    case KT_URL: {
        char **p = fld(c, k);
        free(*p);
        *p = NULL;
        break;
    }
    case KT_HOSTPORT_LIST:
    case KT_NODEID_LIST: {
        void **p = fld(c, k);
        free(*p);
        *p = NULL;
        *flen(c, k) = 0;
        break;
    }
    case KT_UINT:
    case KT_BOOL:
    case KT_HOSTPORT:
    case KT_LOGLEVEL:
        break;
    }
}

/* Validate `v` for key `ki` and store it with its origin (NULL = default). On any error
 * `c` is unchanged. */
static int apply(node_config *c, size_t ki, const cvalue *v, const char *origin, dm_buf *err)
{
    const key_spec *k = &KEYS[ki];
    qbuf q;
    int rc = DM_OK;
    char *text = NULL; /* new string value */
    void *list = NULL; /* new list value */
    size_t list_n = 0;
    char **split = NULL; /* items of a V_TEXT list */
    char *splitbuf = NULL;
    char *orig = NULL;
    uint64_t u = 0;
    bool b = false;
    dm_log_level lvl = DM_LOG_INFO;
    node_hostport hp;
    memset(&hp, 0, sizeof hp);

    if (v->kind != V_TEXT && v->kind != file_kind(k->type))
        return fail(err, k->name, origin, "expected %s, got %s", expect_text(k->type),
                    kind_name(v->kind));
    if (origin && !(orig = strdup(origin)))
        return DM_ENOMEM;

    switch (k->type) {
    case KT_STRING:
    case KT_PATH:
    case KT_ETHADDR:
    case KT_URL:
        if ((rc = check_string(k, v->s, origin, err)))
            goto out;
        if (!(text = strdup(v->s))) {
            rc = DM_ENOMEM;
            goto out;
        }
        break;
    case KT_UINT: {
        int pr = parse_uint(v->s, &u);
        if (pr == -1) {
            rc = fail(err, k->name, origin,
                      "\"%s\" is not an unsigned decimal integer (no sign, no leading zeros)",
                      shows(&q, v->s));
            goto out;
        }
        if ((k->flags & KF_RSABITS) && pr == 0 && u != 2048 && u != 3072) {
            rc = fail(err, k->name, origin, "%s is not supported: must be 2048 or 3072",
                      shows(&q, v->s));
            goto out;
        }
        if (pr == -2 || u < k->min || u > k->max) {
            rc = fail(err, k->name, origin, "%s is out of range %llu..%llu", shows(&q, v->s),
                      (unsigned long long)k->min, (unsigned long long)k->max);
            goto out;
        }
        break;
    }
    case KT_BOOL:
        if (strcmp(v->s, "true") == 0)
            b = true;
        else if (strcmp(v->s, "false") == 0)
            b = false;
        else {
            rc = fail(err, k->name, origin, "\"%s\" is not true or false", shows(&q, v->s));
            goto out;
        }
        break;
    case KT_LOGLEVEL: {
        size_t i;
        for (i = 0; i < 4; i++)
            if (strcmp(v->s, LOG_LEVELS[i]) == 0)
                break;
        if (i == 4) {
            rc = fail(err, k->name, origin, "\"%s\" is not one of debug, info, warning, error",
                      shows(&q, v->s));
            goto out;
        }
        lvl = (dm_log_level)i;
        break;
    }
    case KT_HOSTPORT:
        if ((rc = check_hostport(k, v->s, &hp, "", origin, err)))
            goto out;
        break;
    case KT_HOSTPORT_LIST:
    case KT_NODEID_LIST: {
        char *const *items = v->items;
        size_t n = v->n;
        if (v->kind == V_TEXT) {
            if ((rc = check_text(k, v->s, origin, err)))
                goto out;
            splitbuf = malloc(strlen(v->s) + 1);
            split = calloc(CFG_MAX_ITEMS, sizeof *split);
            if (!splitbuf || !split) {
                rc = DM_ENOMEM;
                goto out;
            }
            if ((rc = split_list(k, v->s, splitbuf, split, &n, origin, err)))
                goto out;
            items = split;
        }
        if (n > CFG_MAX_ITEMS) {
            rc = fail(err, k->name, origin, "more than %u items", CFG_MAX_ITEMS);
            goto out;
        }
        if (n == 0)
            break;
        if (k->type == KT_HOSTPORT_LIST) {
            node_hostport *l = calloc(n, sizeof *l);
            if (!(list = l)) {
                rc = DM_ENOMEM;
                goto out;
            }
            for (size_t i = 0; i < n; i++) {
                char what[32];
                snprintf(what, sizeof what, "item %zu: ", i + 1);
                if ((rc = check_hostport(k, items[i], &l[i], what, origin, err)))
                    goto out;
                for (size_t j = 0; j < i; j++)
                    if (l[j].port == l[i].port && strcasecmp(l[j].host, l[i].host) == 0) {
                        rc = fail(err, k->name, origin, "item %zu: \"%s\" is listed twice", i + 1,
                                  shows(&q, items[i]));
                        goto out;
                    }
            }
        } else {
            char(*l)[65] = calloc(n, sizeof *l);
            if (!(list = l)) {
                rc = DM_ENOMEM;
                goto out;
            }
            for (size_t i = 0; i < n; i++) {
                size_t len = strlen(items[i]);
                bool ok = len == 64;
                for (size_t j = 0; ok && j < 64; j++)
                    ok = is_hex((unsigned char)items[i][j]);
                if (!ok) {
                    rc = fail(err, k->name, origin,
                              "item %zu: \"%s\" is not a node id (64 hex digits)", i + 1,
                              shows(&q, items[i]));
                    goto out;
                }
                /* node ids are lower-case hex SHA-256: normalise for comparisons */
                for (size_t j = 0; j < 64; j++)
                    l[i][j] = (char)lower((unsigned char)items[i][j]);
                l[i][64] = '\0';
                for (size_t j = 0; j < i; j++)
                    if (strcmp(l[j], l[i]) == 0) {
                        rc = fail(err, k->name, origin,
                                  "item %zu: node id %.16s... is listed twice", i + 1, l[i]);
                        goto out;
                    }
            }
        }
        list_n = n;
        break;
    }
    }

    /* Commit: nothing below can fail. */
    free_field(c, k);
    switch (k->type) {
    case KT_STRING:
    case KT_PATH:
    case KT_ETHADDR:
    case KT_URL:
        *(char **)fld(c, k) = text;
        text = NULL;
        break;
    case KT_UINT:
        if (k->size == sizeof(uint64_t))
            *(uint64_t *)fld(c, k) = u;
        else
            *(uint32_t *)fld(c, k) = (uint32_t)u;
        break;
    case KT_BOOL:
        *(bool *)fld(c, k) = b;
        break;
    case KT_LOGLEVEL:
        *(dm_log_level *)fld(c, k) = lvl;
        break;
    case KT_HOSTPORT:
        *(node_hostport *)fld(c, k) = hp;
        break;
    case KT_HOSTPORT_LIST:
    case KT_NODEID_LIST:
        *(void **)fld(c, k) = list;
        *flen(c, k) = list_n;
        list = NULL;
        break;
    }
    free(c->origins[ki]);
    c->origins[ki] = orig;
    orig = NULL;
out:
    free(orig);
    free(text);
    free(list);
    free(split);
    free(splitbuf);
    return rc;
}

/* ---- lifetime ---- */

void node_config_free(node_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < NKEYS; i++) {
        free_field(cfg, &KEYS[i]);
        free(cfg->origins[i]);
    }
    memset(cfg, 0, sizeof *cfg);
}

int node_config_init(node_config *cfg)
{
    if (!cfg)
        return DM_EINVAL;
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NKEYS; i++) {
        cvalue v = {V_TEXT, KEYS[i].def, NULL, 0};
        int rc = apply(cfg, i, &v, NULL, NULL);
        if (rc) {
            node_config_free(cfg);
            return rc == DM_ENOMEM ? DM_ENOMEM : DM_ECONFIG;
        }
    }
    return DM_OK;
}

/* Deep copy, for all-or-nothing loads. */
static int config_copy(node_config *dst, const node_config *src)
{
    memcpy(dst, src, sizeof *dst);
    for (size_t i = 0; i < NKEYS; i++) {
        const key_spec *k = &KEYS[i];
        dst->origins[i] = NULL;
        if (k->type == KT_STRING || k->type == KT_PATH || k->type == KT_ETHADDR ||
            k->type == KT_URL)
            *(char **)fld(dst, k) = NULL;
        else if (k->type == KT_HOSTPORT_LIST || k->type == KT_NODEID_LIST)
            *(void **)fld(dst, k) = NULL;
    }
    for (size_t i = 0; i < NKEYS; i++) {
        const key_spec *k = &KEYS[i];
        if (src->origins[i] && !(dst->origins[i] = strdup(src->origins[i])))
            goto nomem;
        if (k->type == KT_STRING || k->type == KT_PATH || k->type == KT_ETHADDR ||
            k->type == KT_URL) {
            const char *s = *(char *const *)cfld(src, k);
            if (s && !(*(char **)fld(dst, k) = strdup(s)))
                goto nomem;
        } else if (k->type == KT_HOSTPORT_LIST || k->type == KT_NODEID_LIST) {
            const void *p = *(void *const *)cfld(src, k);
            size_t n = cflen(src, k);
            size_t isz = k->type == KT_HOSTPORT_LIST ? sizeof(node_hostport) : 65;
            if (p && n) {
                void *q = malloc(n * isz);
                if (!q)
                    goto nomem;
                memcpy(q, p, n * isz);
                *(void **)fld(dst, k) = q;
            }
        }
    }
    return DM_OK;
nomem:
    node_config_free(dst);
    return DM_ENOMEM;
}

bool node_config_is_key(const char *key)
{
    return key && key_index(key) >= 0;
}

const char *node_config_origin(const node_config *cfg, const char *key)
{
    int i = key ? key_index(key) : -1;
    if (i < 0)
        return "unknown key";
    return cfg->origins[i] ? cfg->origins[i] : "default";
}

size_t node_config_key_count(void)
{
    return NKEYS;
}

const char *node_config_key_name(size_t i)
{
    return i < NKEYS ? KEYS[i].name : NULL;
}

int node_config_set(node_config *cfg, const char *key, const char *value, const char *origin,
                    dm_buf *err)
{
    if (!cfg || !key)
        return DM_EINVAL;
    if (!origin)
        origin = "node_config_set";
    int ki = key_index(key);
    if (ki < 0)
        return fail_unknown_key(err, key, origin);
    if (!value)
        return fail(err, key, origin, "missing value");
    cvalue v = {V_TEXT, value, NULL, 0};
    return apply(cfg, (size_t)ki, &v, origin, err);
}

/* ---- environment ---- */

int node_config_load_env(node_config *cfg, char *const *envp, dm_buf *err)
{
    if (!cfg)
        return DM_EINVAL;
    if (!envp)
        return DM_OK;
    node_config tmp;
    int rc = config_copy(&tmp, cfg);
    if (rc)
        return rc;
    dm_buf origin = DM_BUF_INIT;
    for (char *const *e = envp; *e; e++) {
        const char *ent = *e;
        if (strncmp(ent, CFG_ENV_PREFIX, strlen(CFG_ENV_PREFIX)) != 0)
            continue;
        const char *eq = strchr(ent, '=');
        if (!eq)
            continue;
        size_t nl = (size_t)(eq - ent);
        if (nl == strlen(CFG_ENV_CONFIG) && memcmp(ent, CFG_ENV_CONFIG, nl) == 0)
            continue;
        int ki = -1;
        for (size_t i = 0; i < NKEYS && ki < 0; i++) {
            char en[96];
            env_name(KEYS[i].name, en, sizeof en);
            if (strlen(en) == nl && memcmp(en, ent, nl) == 0)
                ki = (int)i;
        }
        qbuf q;
        show(&q, ent, nl);
        if (ki < 0) {
            char sbuf[96], name[128];
            snprintf(name, sizeof name, "%.*s", (int)(nl < 100 ? nl : 100), ent);
            const char *sug =
                nearest(name + strlen(CFG_ENV_PREFIX), NKEYS, env_suffix_at, sbuf, sizeof sbuf);
            if (sug)
                rc = fail(err, NULL, "environment",
                          "unknown configuration variable %s, did you mean " CFG_ENV_PREFIX "%s?",
                          q.s, sug);
            else
                rc = fail(err, NULL, "environment", "unknown configuration variable %s", q.s);
            goto out;
        }
        dm_buf_reset(&origin);
        if ((rc = dm_buf_printf(&origin, "environment %s", q.s)))
            goto out;
        cvalue v = {V_TEXT, eq + 1, NULL, 0};
        if ((rc = apply(&tmp, (size_t)ki, &v, dm_buf_cstr(&origin), err)))
            goto out;
    }
out:
    dm_buf_free(&origin);
    if (rc) {
        node_config_free(&tmp);
        return rc;
    }
    node_config_free(cfg);
    *cfg = tmp;
    return DM_OK;
}

/* ---- the file format: a strict TOML subset ---- */

typedef struct {
    node_config *cfg;
    dm_buf *err;
    const char *name;
    unsigned line;
    dm_buf origin;                        /* "file NAME line N" */
    char section[64];                     /* current [section], "" at top level */
    unsigned key_line[NODE_CONFIG_NKEYS]; /* line where each key was set, 0 = not yet */
    struct {
        char name[64];
        unsigned line;
    } seen[NODE_CONFIG_NKEYS];
    size_t nseen;
    char scratch[CFG_MAX_LINE + 2]; /* decoded strings of the current line */
    char *items[CFG_MAX_ITEMS];
} fparser;

static const char *org(fparser *P)
{
    return dm_buf_cstr(&P->origin);
}

/* Structural error on the current line. `key` may be NULL. */
#define PFAIL(P, key, ...) fail((P)->err, (key), org(P), __VA_ARGS__)

static bool is_bare(int c)
{
    return is_alpha(c) || is_digit(c) || c == '_' || c == '-';
}

static bool is_section(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < NKEYS; i++) {
        const char *dot = strrchr(KEYS[i].name, '.');
        if (dot && (size_t)(dot - KEYS[i].name) == n && memcmp(KEYS[i].name, s, n) == 0)
            return true;
    }
    return false;
}

static const char *section_at(size_t i, char *buf, size_t n)
{
    const char *dot = strrchr(KEYS[i].name, '.');
    size_t l = dot ? (size_t)(dot - KEYS[i].name) : 0;
    snprintf(buf, n, "%.*s", (int)l, KEYS[i].name);
    return buf;
}

static void skip_ws(const char *l, size_t *p)
{
    while (l[*p] == ' ' || l[*p] == '\t')
        (*p)++;
}

/* After a value or header: optional whitespace and comment, then the end of the line. */
static int expect_eol(fparser *P, const char *l, size_t p, const char *key, const char *what)
{
    qbuf q;
    skip_ws(l, &p);
    if (l[p] == '\0')
        return DM_OK;
    if (l[p] != '#')
        return PFAIL(P, key, "unexpected text after %s: %s", what, shows(&q, l + p));
    for (p++; l[p]; p++)
        if (l[p] != '\t' && is_ctl((unsigned char)l[p]))
            return PFAIL(P, key, "control character in comment");
    return DM_OK;
}

/* A basic string at l[*p] == '"', decoded into *dst (NUL-terminated). */
static int parse_string(fparser *P, const char *l, size_t *p, char **dst, const char *key)
{
    size_t i = *p + 1;
    char *o = *dst;
    if (l[i] == '"' && l[i + 1] == '"')
        return PFAIL(P, key, "multi-line strings (\"\"\") are not supported");
    for (;;) {
        unsigned char c = (unsigned char)l[i];
        if (c == '\0')
            return PFAIL(P, key, "unterminated string (strings end on the same line)");
        if (c == '"')
            break;
        if (c == '\\') {
            char e = l[i + 1];
            if (e == '"' || e == '\\')
                *o++ = e;
            else if (e == 'n')
                *o++ = '\n';
            else if (e == 't')
                *o++ = '\t';
            else {
                qbuf q;
                return PFAIL(P, key, "unsupported escape \\%s in string (only \\\" \\\\ \\n \\t)",
                             show(&q, l + i + 1, e ? 1 : 0));
            }
            i += 2;
            continue;
        }
        if (is_ctl(c))
            return PFAIL(P, key, "control character \\x%02x in string (write \\n or \\t)", c);
        *o++ = (char)c;
        i++;
    }
    *o++ = '\0';
    *dst = o;
    *p = i + 1;
    return DM_OK;
}

/* Parse the value at l[*p] into v; strings are decoded into P->scratch. */
static int parse_value(fparser *P, const char *l, size_t *p, cvalue *v, const char *key)
{
    qbuf q;
    char *dst = P->scratch;
    size_t i = *p;
    char c = l[i];
    memset(v, 0, sizeof *v);
    if (c == '"') {
        v->kind = V_STRING;
        v->s = dst;
        if (parse_string(P, l, &i, &dst, key))
            return DM_ECONFIG;
    } else if (c == '[') {
        v->kind = V_LIST;
        v->items = P->items;
        i++;
        skip_ws(l, &i);
        while (l[i] != ']') {
            if (l[i] == '\0')
                return PFAIL(P, key, "unterminated list (a list must fit on one line)");
            if (l[i] != '"')
                return PFAIL(P, key, "a list may only hold \"double-quoted strings\", found %s",
                             shows(&q, l + i));
            if (v->n == CFG_MAX_ITEMS)
                return PFAIL(P, key, "more than %u items", CFG_MAX_ITEMS);
            P->items[v->n++] = dst;
            if (parse_string(P, l, &i, &dst, key))
                return DM_ECONFIG;
            skip_ws(l, &i);
            if (l[i] == ',') {
                i++;
                skip_ws(l, &i);
            } else if (l[i] != ']' && l[i] != '\0') {
                return PFAIL(P, key, "expected ',' or ']' in list, found %s", shows(&q, l + i));
            }
        }
        i++;
    } else {
        /* a bare token: integer or boolean; anything else is reported whole */
        size_t t = i;
        while (l[t] && l[t] != ' ' && l[t] != '\t' && l[t] != '#')
            t++;
        size_t n = t - i;
        bool num = n > 0;
        for (size_t j = i; num && j < t; j++)
            num =
                is_digit((unsigned char)l[j]) || ((l[j] == '-' || l[j] == '+') && j == i && n > 1);
        if (num) {
            v->kind = V_INT;
        } else if ((n == 4 && memcmp(l + i, "true", 4) == 0) ||
                   (n == 5 && memcmp(l + i, "false", 5) == 0)) {
            v->kind = V_BOOL;
        } else if (n == 0) {
            return PFAIL(P, key, "missing value after '='");
        } else if (c == '\'') {
            return PFAIL(P, key, "single-quoted strings are not supported, use \"double quotes\"");
        } else if (c == '{') {
            return PFAIL(P, key, "inline tables are not supported");
        } else {
            return PFAIL(P, key,
                         "invalid value %s: expected a \"double-quoted string\", a decimal "
                         "integer, true, false or a [\"list\"]",
                         show(&q, l + i, n));
        }
        memcpy(dst, l + i, n);
        dst[n] = '\0';
        v->s = dst;
        i = t;
    }
    *p = i;
    return DM_OK;
}

static int parse_header(fparser *P, const char *l, size_t p)
{
    qbuf q;
    char sbuf[96];
    p++; /* '[' */
    if (l[p] == '[')
        return PFAIL(P, NULL, "arrays of tables ([[...]]) are not supported: %s", shows(&q, l));
    skip_ws(l, &p);
    size_t s = p;
    while (is_bare((unsigned char)l[p]) || l[p] == '.')
        p++;
    size_t n = p - s;
    skip_ws(l, &p);
    if (l[p] != ']' || n == 0)
        return PFAIL(P, NULL, "malformed section header %s (expected [name])", shows(&q, l));
    bool ok = l[s] != '.' && l[s + n - 1] != '.';
    for (size_t i = s; ok && i + 1 < s + n; i++)
        ok = !(l[i] == '.' && l[i + 1] == '.');
    if (!ok)
        return PFAIL(P, NULL, "malformed section header %s", shows(&q, l));
    char name[64];
    if (n >= sizeof name || (memcpy(name, l + s, n), name[n] = '\0', !is_section(name))) {
        show(&q, l + s, n);
        const char *sug =
            n < sizeof name ? nearest(name, NKEYS, section_at, sbuf, sizeof sbuf) : NULL;
        if (sug)
            return PFAIL(P, NULL, "unknown section [%s], did you mean [%s]?", q.s, sug);
        return PFAIL(P, NULL, "unknown section [%s]", q.s);
    }
    for (size_t i = 0; i < P->nseen; i++)
        if (strcmp(P->seen[i].name, name) == 0)
            return PFAIL(P, NULL, "section [%s] appears twice (first at line %u)", name,
                         P->seen[i].line);
    /* is_section() bounds the distinct names by the number of keys */
    memcpy(P->seen[P->nseen].name, name, n + 1);
    P->seen[P->nseen++].line = P->line;
    memcpy(P->section, name, n + 1);
    return expect_eol(P, l, p + 1, NULL, "the section header");
}

static int parse_line(fparser *P, const char *l)
{
    qbuf q;
    size_t p = 0;
    skip_ws(l, &p);
    if (l[p] == '\0' || l[p] == '#')
        return expect_eol(P, l, p, NULL, "");
    if (l[p] == '[')
        return parse_header(P, l, p);
    if (l[p] == '"' || l[p] == '\'')
        return PFAIL(P, NULL, "quoted keys are not supported: %s", shows(&q, l + p));
    size_t ks = p;
    while (is_bare((unsigned char)l[p]))
        p++;
    size_t kn = p - ks;
    if (kn == 0)
        return PFAIL(P, NULL, "expected key = value, [section] or # comment, found %s",
                     shows(&q, l + ks));
    char full[sizeof P->section + CFG_MAX_LINE + 2];
    if (P->section[0])
        snprintf(full, sizeof full, "%s.%.*s", P->section, (int)kn, l + ks);
    else
        snprintf(full, sizeof full, "%.*s", (int)kn, l + ks);
    if (l[p] == '.') {
        size_t e = p;
        while (is_bare((unsigned char)l[e]) || l[e] == '.')
            e++;
        return PFAIL(P, NULL, "dotted key %s is not supported: put the key under its [section]",
                     show(&q, l + ks, e - ks));
    }
    skip_ws(l, &p);
    if (l[p] != '=') {
        qbuf q2;
        return PFAIL(P, shows(&q, full), "expected '=' after the key, found %s",
                     l[p] ? shows(&q2, l + p) : "end of line");
    }
    p++;
    skip_ws(l, &p);
    int ki = key_index(full);
    if (ki < 0 && P->section[0] && key_index(full + strlen(P->section) + 1) >= 0)
        return PFAIL(P, full,
                     "unknown key; %s is a top-level key and must come before the "
                     "first [section]",
                     full + strlen(P->section) + 1);
    if (ki < 0)
        return fail_unknown_key(P->err, full, org(P));
    if (P->key_line[ki])
        return PFAIL(P, full, "set twice in the file (first at line %u)", P->key_line[ki]);
    cvalue v;
    if (parse_value(P, l, &p, &v, full))
        return DM_ECONFIG;
    int rc = expect_eol(P, l, p, full, "the value");
    if (rc)
        return rc;
    if ((rc = apply(P->cfg, (size_t)ki, &v, org(P), P->err)))
        return rc;
    P->key_line[ki] = P->line;
    return DM_OK;
}

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int node_config_load_text(node_config *cfg, const char *text, size_t n, const char *name,
                          dm_buf *err)
{
    if (!cfg || (!text && n))
        return DM_EINVAL;
    if (!name)
        name = "<text>";
    qbuf qn;
    char forigin[400];
    snprintf(forigin, sizeof forigin, "file %s", shows(&qn, name));
    if (n > CFG_MAX_FILE)
        return fail(err, NULL, forigin, "file larger than 1 MiB (%zu bytes)", n);

    fparser *P = calloc(1, sizeof *P);
    if (!P)
        return DM_ENOMEM;
    node_config tmp;
    int rc = config_copy(&tmp, cfg);
    if (rc) {
        free(P);
        return rc;
    }
    P->cfg = &tmp;
    P->err = err;
    P->name = name;
    char *line = malloc(CFG_MAX_LINE + 1);
    if (!line) {
        rc = DM_ENOMEM;
        goto out;
    }
    size_t pos = 0;
    if (n >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        pos = 3; /* a UTF-8 byte order mark, as some editors write */
    while (pos < n) {
        P->line++;
        dm_buf_reset(&P->origin);
        if ((rc = dm_buf_printf(&P->origin, "%s line %u", forigin, P->line)))
            goto out;
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - s) : n - pos;
        pos += len + (nl ? 1 : 0);
        if (len && s[len - 1] == '\r')
            len--;
        if (len > CFG_MAX_LINE) {
            rc = PFAIL(P, NULL, "line longer than %u bytes", CFG_MAX_LINE);
            goto out;
        }
        for (size_t i = 0; i < len;) {
            if (s[i] == '\0') {
                rc = PFAIL(P, NULL, "NUL byte at column %zu", i + 1);
                goto out;
            }
            size_t ul = utf8_len((const unsigned char *)s + i, len - i);
            if (!ul) {
                rc = PFAIL(P, NULL, "invalid UTF-8 at column %zu", i + 1);
                goto out;
            }
            i += ul;
        }
        memcpy(line, s, len);
        line[len] = '\0';
        if ((rc = parse_line(P, line)))
            goto out;
    }
out:
    free(line);
    dm_buf_free(&P->origin);
    free(P);
    if (rc) {
        node_config_free(&tmp);
        return rc;
    }
    node_config_free(cfg);
    *cfg = tmp;
    return DM_OK;
}

int node_config_load_file(node_config *cfg, const char *path, dm_buf *err)
{
    if (!cfg || !path)
        return DM_EINVAL;
    qbuf q;
    char origin[400];
    snprintf(origin, sizeof origin, "file %s", shows(&q, path));
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fail(err, NULL, origin, "cannot open the configuration file: %s", strerror(errno));
        return DM_ENOTFOUND;
    }
    int rc = DM_OK;
    char *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fail(err, NULL, origin, "not a regular file");
        rc = DM_ENOTFOUND;
        goto out;
    }
    /* The file names the password and token files: others must not be able to edit it. */
    if (st.st_mode & S_IWOTH) {
        rc = fail(err, NULL, origin,
                  "the configuration file is writable by other users "
                  "(chmod o-w)");
        goto out;
    }
    if ((uint64_t)st.st_size > CFG_MAX_FILE) {
        rc = fail(err, NULL, origin, "file larger than 1 MiB (%llu bytes)",
                  (unsigned long long)st.st_size);
        goto out;
    }
    /* Read up to the limit + 1, in case the file grew after fstat. */
    buf = malloc(CFG_MAX_FILE + 1);
    if (!buf) {
        rc = DM_ENOMEM;
        goto out;
    }
    size_t len = 0;
    while (len < CFG_MAX_FILE + 1) {
        ssize_t r = read(fd, buf + len, CFG_MAX_FILE + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fail(err, NULL, origin, "cannot read the configuration file: %s", strerror(errno));
            rc = DM_ENOTFOUND;
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    rc = node_config_load_text(cfg, buf, len, path, err);
out:
    free(buf);
    close(fd);
    return rc;
}

/* ---- cross checks ---- */

int node_config_validate(const node_config *cfg, dm_buf *err)
{
    if (!cfg)
        return DM_EINVAL;
    char a[300], b[300];
    static const char *const listens[] = {"p2p.listen", "api.internal.listen",
                                          "api.external.listen"};
    const node_hostport *hp[] = {&cfg->p2p_listen, &cfg->api_internal_listen,
                                 &cfg->api_external_listen};

    if (!node_hostport_is_loopback(&cfg->api_internal_listen)) {
        node_hostport_format(&cfg->api_internal_listen, a, sizeof a);
        qbuf q;
        return fail(err, "api.internal.listen", node_config_origin(cfg, "api.internal.listen"),
                    "\"%s\" is not a loopback address; this API must only listen on "
                    "127.0.0.0/8, ::1 or localhost",
                    shows(&q, a));
    }
    for (size_t i = 0; i < 3; i++)
        for (size_t j = i + 1; j < 3; j++)
            if (hostport_conflict(hp[i], hp[j])) {
                node_hostport_format(hp[i], a, sizeof a);
                node_hostport_format(hp[j], b, sizeof b);
                return fail(err, listens[j], node_config_origin(cfg, listens[j]),
                            "%s conflicts with %s %s (%s): they cannot listen on the same port", b,
                            listens[i], a, node_config_origin(cfg, listens[i]));
            }
    const char *rpc = cfg->chain_rpc_url ? cfg->chain_rpc_url : "";
    if (cfg->chain_contract && cfg->chain_contract[0] && !rpc[0])
        return fail(err, "chain.contract", node_config_origin(cfg, "chain.contract"),
                    "requires chain.rpc_url to be set");
    if (rpc[0] && cfg->chain_chain_id == 0)
        return fail(err, "chain.chain_id", node_config_origin(cfg, "chain.chain_id"),
                    "must be set because chain.rpc_url is set (%s): the node checks at start "
                    "that the endpoint serves the expected chain",
                    node_config_origin(cfg, "chain.rpc_url"));
    if (cfg->p2p_bootstrap_len > 0 && cfg->p2p_max_outbound == 0)
        return fail(err, "p2p.max_outbound", node_config_origin(cfg, "p2p.max_outbound"),
                    "is 0 but p2p.bootstrap (%s) lists peers to dial",
                    node_config_origin(cfg, "p2p.bootstrap"));
    if (cfg->api_internal_token_file && cfg->keys_master_password_file &&
        cfg->api_internal_token_file[0] &&
        strcmp(cfg->api_internal_token_file, cfg->keys_master_password_file) == 0)
        return fail(err, "api.internal.token_file",
                    node_config_origin(cfg, "api.internal.token_file"),
                    "must not be the same file as keys.master_password_file");
    return DM_OK;
}

/* ---- dump and docs ---- */

static int put_quoted(dm_buf *out, const char *s)
{
    int rc = dm_buf_putc(out, '"');
    for (; !rc && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            rc = dm_buf_putc(out, '\\');
            if (!rc)
                rc = dm_buf_putc(out, c);
        } else if (c == '\n') {
            rc = dm_buf_puts(out, "\\n");
        } else if (c == '\t') {
            rc = dm_buf_puts(out, "\\t");
        } else if (is_ctl(c)) {
            return DM_EINVAL; /* no key accepts these, and the format cannot carry them */
        } else {
            rc = dm_buf_putc(out, c);
        }
    }
    return rc ? rc : dm_buf_putc(out, '"');
}

static int put_value(dm_buf *out, const node_config *cfg, const key_spec *k)
{
    const void *p = cfld(cfg, k);
    char hp[300];
    int rc = DM_OK;
    switch (k->type) {
    case KT_STRING:
    case KT_PATH:
    case KT_ETHADDR:
    case KT_URL: {
        const char *s = *(char *const *)p;
        return put_quoted(out, s ? s : "");
    }
    case KT_UINT:
        return dm_buf_printf(out, "%llu",
                             (unsigned long long)(k->size == sizeof(uint64_t)
                                                      ? *(const uint64_t *)p
                                                      : *(const uint32_t *)p));
    case KT_BOOL:
        return dm_buf_puts(out, *(const bool *)p ? "true" : "false");
    case KT_LOGLEVEL: {
        unsigned l = (unsigned)*(const dm_log_level *)p;
        return put_quoted(out, LOG_LEVELS[l < 4 ? l : 1]);
    }
    case KT_HOSTPORT:
        node_hostport_format(p, hp, sizeof hp);
        return put_quoted(out, hp);
    case KT_HOSTPORT_LIST:
    case KT_NODEID_LIST: {
        size_t n = cflen(cfg, k);
        rc = dm_buf_putc(out, '[');
        for (size_t i = 0; !rc && i < n; i++) {
            if (i)
                rc = dm_buf_puts(out, ", ");
            if (rc)
                break;
            if (k->type == KT_HOSTPORT_LIST) {
                node_hostport_format(&(*(node_hostport *const *)p)[i], hp, sizeof hp);
                rc = put_quoted(out, hp);
            } else {
                rc = put_quoted(out, (*(char(*const *)[65])p)[i]);
            }
        }
        return rc ? rc : dm_buf_putc(out, ']');
    }
    }
    return rc;
}

int node_config_dump(const node_config *cfg, dm_buf *out)
{
    if (!cfg || !out)
        return DM_EINVAL;
    char cur[64] = "", sec[64];
    int rc = dm_buf_puts(out, "# dmnode configuration (effective values)\n");
    for (size_t i = 0; !rc && i < NKEYS; i++) {
        const key_spec *k = &KEYS[i];
        section_at(i, sec, sizeof sec);
        if (strcmp(sec, cur) != 0) {
            rc = dm_buf_printf(out, "\n[%s]\n", sec);
            memcpy(cur, sec, sizeof cur);
        }
        const char *dot = strrchr(k->name, '.');
        if (!rc)
            rc = dm_buf_printf(out, "%s = ", dot ? dot + 1 : k->name);
        if (!rc)
            rc = put_value(out, cfg, k);
        if (!rc)
            rc = dm_buf_putc(out, '\n');
    }
    return rc;
}

static const char *type_doc(const key_spec *k)
{
    switch (k->type) {
    case KT_STRING:
        return "string";
    case KT_PATH:
        return "path";
    case KT_UINT:
        return "integer";
    case KT_BOOL:
        return "bool";
    case KT_HOSTPORT:
        return "host:port";
    case KT_HOSTPORT_LIST:
        return "list of host:port";
    case KT_NODEID_LIST:
        return "list of node ids";
    case KT_LOGLEVEL:
        return "enum";
    case KT_ETHADDR:
        return "address";
    case KT_URL:
        return "URL";
    }
    return "?";
}

static int range_doc(dm_buf *out, const key_spec *k)
{
    switch (k->type) {
    case KT_STRING:
        if (k->flags & KF_NETID)
            return dm_buf_printf(out, "%llu..%llu of `A-Z a-z 0-9 . _ -`",
                                 (unsigned long long)k->min, (unsigned long long)k->max);
        return dm_buf_puts(out, "no control characters");
    case KT_PATH:
        return dm_buf_puts(out, "empty or a path");
    case KT_UINT:
        if (k->flags & KF_RSABITS)
            return dm_buf_puts(out, "2048 or 3072");
        return dm_buf_printf(out, "%llu..%llu", (unsigned long long)k->min,
                             (unsigned long long)k->max);
    case KT_BOOL:
        return dm_buf_puts(out, "`true` or `false`");
    case KT_HOSTPORT:
        return dm_buf_printf(out, "%sport %s", (k->flags & KF_LOOPBACK) ? "loopback host, " : "",
                             (k->flags & KF_LISTEN) ? "0..65535" : "1..65535");
    case KT_HOSTPORT_LIST:
        return dm_buf_printf(out, "at most %u, port 1..65535", CFG_MAX_ITEMS);
    case KT_NODEID_LIST:
        return dm_buf_printf(out, "at most %u, 64 hex digits each", CFG_MAX_ITEMS);
    case KT_LOGLEVEL:
        return dm_buf_puts(out, "`debug`, `info`, `warning`, `error`");
    case KT_ETHADDR:
        return dm_buf_puts(out, "empty or `0x` + 40 hex digits");
    case KT_URL:
        return dm_buf_puts(out, "empty or `http://` / `https://` URL");
    }
    return DM_OK;
}

int node_config_describe(dm_buf *out)
{
    if (!out)
        return DM_EINVAL;
    node_config d;
    int rc = node_config_init(&d);
    if (rc)
        return rc;
    dm_buf val = DM_BUF_INIT;
    rc = dm_buf_puts(out, "| Key | Type | Default | Allowed | Environment | Description |\n"
                          "|---|---|---|---|---|---|\n");
    for (size_t i = 0; !rc && i < NKEYS; i++) {
        const key_spec *k = &KEYS[i];
        char en[96];
        env_name(k->name, en, sizeof en);
        dm_buf_reset(&val);
        if ((rc = put_value(&val, &d, k)))
            break;
        rc = dm_buf_printf(out, "| `%s` | %s | `%s` | ", k->name, type_doc(k), dm_buf_cstr(&val));
        if (!rc)
            rc = range_doc(out, k);
        if (!rc)
            rc = dm_buf_printf(out, " | `%s` | %s |\n", en, k->help);
    }
    dm_buf_free(&val);
    node_config_free(&d);
    return rc;
}
