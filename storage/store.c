#include "store.h"
#include "dm_err.h"
#include "dm_log.h"
#include "store_keys.h"

#include <rocksdb/c.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/*
 * Sizing for a small node: eight nodes share a 100 MB RSS budget, so every
 * memory pool RocksDB would otherwise size generously is bounded here. All
 * column families of one store share one LRU block cache (index and filter
 * blocks included, so table readers do not grow outside it) and one memtable
 * budget: db_write_buffer_size flushes the largest memtable once all of them
 * together pass it, so the per-CF write_buffer_size is only a ceiling.
 * Measured with 64k 1 KiB shares written in 64-share batches, RSS above a
 * freshly opened store: about +17 MB with 8 MiB of memtables + 8 MiB of cache,
 * about +13 MB with 4 + 4 (used here).
 * The WAL is always on: acknowledged writes must survive kill -9.
 */
#define STORE_WRITE_BUFFER (4u << 20)    /* per-CF memtable ceiling */
#define STORE_MAX_WRITE_BUFFERS 2        /* active + one being flushed */
#define STORE_DB_WRITE_BUFFER (4u << 20) /* all memtables of the store together */
#define STORE_BLOCK_CACHE (4u << 20)     /* shared LRU block cache */
#define STORE_MAX_TOTAL_WAL (32u << 20)  /* forces flushes of CFs that pin old WALs */
#define STORE_MAX_OPEN_FILES 64
#define STORE_INFO_LOG_WARN 2 /* rocksdb InfoLogLevel::WARN_LEVEL */

struct store {
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf[STORE_CF__COUNT]; /* NULL: absent (read-only) */
    rocksdb_column_family_handle_t **extra;              /* CFs of a newer layout, kept open only */
    size_t nextra;
    rocksdb_options_t *opts;
    rocksdb_block_based_table_options_t *bbto;
    rocksdb_cache_t *cache;
    rocksdb_writeoptions_t *wopts;
    rocksdb_readoptions_t *ropts;
    bool read_only;
    bool sync;
};

/* Batches are recorded as an op log and replayed into a rocksdb_writebatch_t at
 * commit: store_batch_create takes no store, and RocksDB needs the store's CF
 * handles for every put. One op: header, key, value. */
typedef struct {
    uint8_t op; /* 'P' put, 'D' delete */
    uint8_t cf;
    uint32_t klen;
    uint32_t vlen;
} batch_op;

struct store_batch {
    dm_buf ops;
    size_t count;
    rocksdb_writebatch_t *wb; /* reused across commits */
};

struct store_iter {
    rocksdb_iterator_t *it; /* NULL: the CF is absent, the range is empty */
    rocksdb_readoptions_t *ro;
    uint8_t *prefix;
    size_t plen;
    uint8_t *upper; /* exclusive bound; must outlive `it` */
    size_t ulen;
    bool started;
    bool done;
    int status;
};

static _Thread_local char errbuf[512];

const char *store_errmsg(void)
{
    return errbuf;
}

static int set_msg(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int set_msg(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return code;
}

static int map_err(const char *msg)
{
    /* corruption first: "block checksum mismatch" contains "lock" */
    if (strstr(msg, "Corruption"))
        return DM_ECORRUPT;
    /* another process ("While lock file: ...: Resource temporarily unavailable")
     * or another handle in this one ("lock hold by current process") */
    if (strstr(msg, "While lock file") || strstr(msg, "lock hold by current process") ||
        strstr(msg, "Resource temporarily unavailable") || strstr(msg, "No locks available") ||
        strstr(msg, "/LOCK:"))
        return DM_EBUSY;
    if (strstr(msg, "does not exist (create_if_missing is false)"))
        return DM_ENOTFOUND;
    return DM_ESTORE;
}

/* Translate and free an errptr received from RocksDB. */
static int take_err(char *err)
{
    snprintf(errbuf, sizeof errbuf, "%s", err);
    rocksdb_free(err);
    int code = map_err(errbuf);
    if (code == DM_ECORRUPT)
        dm_log(DM_LOG_ERROR, "storage", "rocksdb: %s", errbuf);
    else
        dm_log(DM_LOG_DEBUG, "storage", "rocksdb: %s", errbuf);
    return code;
}

static bool cf_valid(store_cf cf)
{
    return (unsigned)cf < STORE_CF__COUNT;
}

static int make_options(store_t *s, const store_opts *o)
{
    s->opts = rocksdb_options_create();
    s->bbto = rocksdb_block_based_options_create();
    s->cache = rocksdb_cache_create_lru(STORE_BLOCK_CACHE);
    s->wopts = rocksdb_writeoptions_create();
    s->ropts = rocksdb_readoptions_create();
    if (!s->opts || !s->bbto || !s->cache || !s->wopts || !s->ropts)
        return DM_ENOMEM;
    rocksdb_block_based_options_set_block_cache(s->bbto, s->cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(s->bbto, 1);
    /* point lookups by share_id (duplicate checks) mostly miss: a bloom filter
     * answers them without reading data blocks; the policy is owned by bbto */
    rocksdb_block_based_options_set_filter_policy(s->bbto,
                                                  rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_options_set_block_based_table_factory(s->opts, s->bbto);

    rocksdb_options_set_create_if_missing(s->opts, o->create && !o->read_only);
    rocksdb_options_set_create_missing_column_families(s->opts, !o->read_only);
    rocksdb_options_set_write_buffer_size(s->opts, STORE_WRITE_BUFFER);
    rocksdb_options_set_max_write_buffer_number(s->opts, STORE_MAX_WRITE_BUFFERS);
    rocksdb_options_set_db_write_buffer_size(s->opts, STORE_DB_WRITE_BUFFER);
    rocksdb_options_set_max_total_wal_size(s->opts, STORE_MAX_TOTAL_WAL);
    rocksdb_options_set_max_open_files(s->opts, STORE_MAX_OPEN_FILES);
    rocksdb_options_set_max_background_jobs(s->opts, 2);
    /* a torn tail after kill -9 or power loss is cut at the last complete record */
    rocksdb_options_set_wal_recovery_mode(s->opts, rocksdb_point_in_time_recovery);
    rocksdb_options_set_info_log_level(s->opts, STORE_INFO_LOG_WARN);
    rocksdb_options_set_max_log_file_size(s->opts, 1u << 20);
    rocksdb_options_set_keep_log_file_num(s->opts, 2);

    rocksdb_writeoptions_set_sync(s->wopts, o->sync ? 1 : 0);
    return DM_OK;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Which column families to open: every existing one (RocksDB refuses a
 * read-write open that leaves one out), plus, read-write, the ones this
 * version knows and the database lacks yet (created by the open). */
static int plan_cfs(char **existing, size_t nexisting, bool read_only, char ***names_out,
                    size_t *n_out)
{
    size_t cap = nexisting + STORE_CF__COUNT;
    char **names = calloc(cap, sizeof *names);
    size_t n = 0;
    if (!names)
        return DM_ENOMEM;
    for (size_t i = 0; i < nexisting; i++) {
        if (!(names[n++] = strdup(existing[i])))
            goto nomem;
    }
    for (int c = 0; c < STORE_CF__COUNT; c++) {
        const char *want = store_cf_name((store_cf)c);
        bool have = false;
        for (size_t i = 0; i < nexisting && !have; i++)
            have = strcmp(existing[i], want) == 0;
        if (have || read_only)
            continue;
        if (!(names[n++] = strdup(want)))
            goto nomem;
    }
    *names_out = names;
    *n_out = n;
    return DM_OK;
nomem:
    free_names(names, n);
    return DM_ENOMEM;
}

/* Record the layout version in a new database; refuse a newer one. */
static int check_schema(store_t *s)
{
    dm_buf v = DM_BUF_INIT;
    const char *k = STORE_META_SCHEMA_VERSION;
    int rc = store_get(s, STORE_CF_META, k, strlen(k), &v);
    if (rc == DM_ENOTFOUND) {
        if (s->read_only) {
            rc = DM_OK;
            goto out;
        }
        uint8_t enc[8];
        dm_put_u64be(enc, STORE_SCHEMA_VERSION);
        rc = store_put(s, STORE_CF_META, k, strlen(k), enc, sizeof enc);
        goto out;
    }
    if (rc != DM_OK)
        goto out;
    if (v.len != 8) {
        rc = set_msg(DM_ECORRUPT, "meta/%s: malformed value", k);
        goto out;
    }
    uint64_t ver = dm_get_u64be(v.data);
    if (ver > STORE_SCHEMA_VERSION) {
        rc = set_msg(DM_EUNSUPPORTED, "database layout version %llu is newer than this node's (%d)",
                     (unsigned long long)ver, STORE_SCHEMA_VERSION);
    }
out:
    dm_buf_free(&v);
    return rc;
}

int store_open(store_t **out, const char *path, const store_opts *opts)
{
    int rc = DM_OK;
    store_t *s = NULL;
    char **existing = NULL, **names = NULL;
    size_t nexisting = 0, nnames = 0;
    const rocksdb_options_t **cfopts = NULL;
    rocksdb_column_family_handle_t **handles = NULL;
    char *err = NULL;
    store_opts o = {0};

    if (!out || !path || !*path)
        return set_msg(DM_EINVAL, "%s", "store_open: no path");
    *out = NULL;
    if (opts)
        o = *opts;

    s = calloc(1, sizeof *s);
    if (!s)
        return DM_ENOMEM;
    s->read_only = o.read_only;
    s->sync = o.sync;
    if ((rc = make_options(s, &o)) != DM_OK)
        goto out;

    /* CURRENT names the live MANIFEST: without it there is no database */
    char current[PATH_MAX];
    struct stat st;
    if ((size_t)snprintf(current, sizeof current, "%s/CURRENT", path) >= sizeof current) {
        rc = set_msg(DM_EINVAL, "store_open: path too long: %s", path);
        goto out;
    }
    bool exists = stat(current, &st) == 0;
    if (!exists && errno != ENOENT) {
        rc = set_msg(DM_EIO, "cannot stat %s", current);
        goto out;
    }
    if (!exists && (!o.create || o.read_only)) {
        rc = set_msg(DM_ENOTFOUND, "no database in %s", path);
        goto out;
    }
    if (exists) {
        existing = rocksdb_list_column_families(s->opts, path, &nexisting, &err);
        if (err) {
            rc = take_err(err);
            goto out;
        }
    }
    if ((rc = plan_cfs(existing, nexisting, o.read_only, &names, &nnames)) != DM_OK)
        goto out;
    cfopts = calloc(nnames, sizeof *cfopts);
    handles = calloc(nnames, sizeof *handles);
    if (!cfopts || !handles) {
        rc = DM_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nnames; i++)
        cfopts[i] = s->opts;
    if (o.read_only)
        s->db = rocksdb_open_for_read_only_column_families(
            s->opts, path, (int)nnames, (const char *const *)names, cfopts, handles, 0, &err);
    else
        s->db = rocksdb_open_column_families(s->opts, path, (int)nnames, (const char *const *)names,
                                             cfopts, handles, &err);
    if (err) {
        rc = take_err(err);
        s->db = NULL;
        goto out;
    }
    for (size_t i = 0; i < nnames; i++) {
        bool known = false;
        for (int c = 0; c < STORE_CF__COUNT && !known; c++) {
            if (strcmp(names[i], store_cf_name((store_cf)c)) == 0) {
                s->cf[c] = handles[i];
                known = true;
            }
        }
        if (!known) {
            /* a CF of a newer layout: RocksDB wants it open; keep it, unused */
            if (!s->extra && !(s->extra = calloc(nnames, sizeof *s->extra))) {
                rc = DM_ENOMEM;
                goto out;
            }
            s->extra[s->nextra++] = handles[i];
        }
        handles[i] = NULL;
    }
    if ((rc = check_schema(s)) != DM_OK)
        goto out;
    dm_log(DM_LOG_DEBUG, "storage", "opened %s (%s%s)", path,
           o.read_only ? "read-only" : "read-write", o.sync ? ", sync" : "");
    *out = s;
    s = NULL;
out:
    if (handles) {
        for (size_t i = 0; i < nnames; i++)
            if (handles[i])
                rocksdb_column_family_handle_destroy(handles[i]);
    }
    free(handles);
    free(cfopts);
    free_names(names, nnames);
    if (existing)
        rocksdb_list_column_families_destroy(existing, nexisting);
    store_close(s);
    return rc;
}

void store_close(store_t *s)
{
    if (!s)
        return;
    if (s->db && !s->read_only && !s->sync) {
        /* a clean shutdown leaves the WAL on disk even without storage.sync */
        char *err = NULL;
        rocksdb_flush_wal(s->db, 1, &err);
        if (err)
            take_err(err);
    }
    for (int c = 0; c < STORE_CF__COUNT; c++)
        if (s->cf[c])
            rocksdb_column_family_handle_destroy(s->cf[c]);
    for (size_t i = 0; i < s->nextra; i++)
        rocksdb_column_family_handle_destroy(s->extra[i]);
    free(s->extra);
    if (s->db)
        rocksdb_close(s->db);
    if (s->ropts)
        rocksdb_readoptions_destroy(s->ropts);
    if (s->wopts)
        rocksdb_writeoptions_destroy(s->wopts);
    if (s->opts)
        rocksdb_options_destroy(s->opts);
    if (s->bbto)
        rocksdb_block_based_options_destroy(s->bbto);
    if (s->cache)
        rocksdb_cache_destroy(s->cache);
    free(s);
}

int store_get(store_t *s, store_cf cf, const void *key, size_t klen, dm_buf *out)
{
    if (!s || !cf_valid(cf) || (!key && klen) || !out)
        return DM_EINVAL;
    if (!s->cf[cf])
        return DM_ENOTFOUND;
    char *err = NULL;
    rocksdb_pinnableslice_t *v =
        rocksdb_get_pinned_cf(s->db, s->ropts, s->cf[cf], key ? key : "", klen, &err);
    if (err)
        return take_err(err);
    if (!v)
        return DM_ENOTFOUND;
    size_t vlen = 0;
    const char *p = rocksdb_pinnableslice_value(v, &vlen);
    int rc = dm_buf_append(out, p, vlen);
    rocksdb_pinnableslice_destroy(v);
    return rc;
}

static int absent_cf(store_cf cf)
{
    return set_msg(DM_ESTORE, "column family %s is absent (read-only open of an older database)",
                   store_cf_name(cf));
}

int store_put(store_t *s, store_cf cf, const void *key, size_t klen, const void *val, size_t vlen)
{
    if (!s || !cf_valid(cf) || (!key && klen) || (!val && vlen))
        return DM_EINVAL;
    if (!s->cf[cf])
        return absent_cf(cf);
    char *err = NULL;
    rocksdb_put_cf(s->db, s->wopts, s->cf[cf], key ? key : "", klen, val ? val : "", vlen, &err);
    return err ? take_err(err) : DM_OK;
}

int store_delete(store_t *s, store_cf cf, const void *key, size_t klen)
{
    if (!s || !cf_valid(cf) || (!key && klen))
        return DM_EINVAL;
    if (!s->cf[cf])
        return absent_cf(cf);
    char *err = NULL;
    rocksdb_delete_cf(s->db, s->wopts, s->cf[cf], key ? key : "", klen, &err);
    return err ? take_err(err) : DM_OK;
}

/* ---- batches ---- */

int store_batch_create(store_batch_t **out)
{
    if (!out)
        return DM_EINVAL;
    *out = calloc(1, sizeof **out);
    return *out ? DM_OK : DM_ENOMEM;
}

static int batch_add(store_batch_t *b, uint8_t op, store_cf cf, const void *key, size_t klen,
                     const void *val, size_t vlen)
{
    if (!b || !cf_valid(cf) || (!key && klen) || (!val && vlen))
        return DM_EINVAL;
    if (klen > UINT32_MAX || vlen > UINT32_MAX)
        return DM_ETOOBIG;
    batch_op h = {op, (uint8_t)cf, (uint32_t)klen, (uint32_t)vlen};
    size_t mark = b->ops.len;
    int rc = dm_buf_reserve(&b->ops, sizeof h + klen + vlen);
    if (rc == DM_OK)
        rc = dm_buf_append(&b->ops, &h, sizeof h);
    if (rc == DM_OK && klen)
        rc = dm_buf_append(&b->ops, key, klen);
    if (rc == DM_OK && vlen)
        rc = dm_buf_append(&b->ops, val, vlen);
    if (rc != DM_OK) {
        b->ops.len = mark;
        return rc;
    }
    b->count++;
    return DM_OK;
}

int store_batch_put(store_batch_t *b, store_cf cf, const void *key, size_t klen, const void *val,
                    size_t vlen)
{
    return batch_add(b, 'P', cf, key, klen, val, vlen);
}

int store_batch_delete(store_batch_t *b, store_cf cf, const void *key, size_t klen)
{
    return batch_add(b, 'D', cf, key, klen, NULL, 0);
}

size_t store_batch_count(const store_batch_t *b)
{
    return b ? b->count : 0;
}

void store_batch_clear(store_batch_t *b)
{
    if (!b)
        return;
    dm_buf_reset(&b->ops);
    b->count = 0;
}

int store_write(store_t *s, store_batch_t *b)
{
    if (!s || !b)
        return DM_EINVAL;
    if (b->count == 0)
        return DM_OK;
    if (!b->wb && !(b->wb = rocksdb_writebatch_create()))
        return DM_ENOMEM;
    rocksdb_writebatch_clear(b->wb);
    int rc = DM_OK;
    for (size_t off = 0; off < b->ops.len;) {
        batch_op h;
        memcpy(&h, b->ops.data + off, sizeof h);
        const char *k = (const char *)b->ops.data + off + sizeof h;
        const char *v = k + h.klen;
        off += sizeof h + h.klen + h.vlen;
        rocksdb_column_family_handle_t *cfh = s->cf[h.cf];
        if (!cfh) {
            rc = absent_cf((store_cf)h.cf);
            goto out;
        }
        if (h.op == 'P')
            rocksdb_writebatch_put_cf(b->wb, cfh, k, h.klen, v, h.vlen);
        else
            rocksdb_writebatch_delete_cf(b->wb, cfh, k, h.klen);
    }
    char *err = NULL;
    rocksdb_write(s->db, s->wopts, b->wb, &err);
    if (err)
        rc = take_err(err);
out:
    /* the replayed copy is not needed again: drop it, keep the allocation */
    rocksdb_writebatch_clear(b->wb);
    return rc;
}

void store_batch_destroy(store_batch_t *b)
{
    if (!b)
        return;
    if (b->wb)
        rocksdb_writebatch_destroy(b->wb);
    dm_buf_free(&b->ops);
    free(b);
}

/* ---- iterators ---- */

/* The smallest key greater than every key starting with `p`: drop trailing
 * 0xff bytes and increment the last one left. None if `p` is all 0xff. */
static size_t prefix_successor(uint8_t *p, size_t n)
{
    while (n > 0 && p[n - 1] == 0xff)
        n--;
    if (n > 0)
        p[n - 1]++;
    return n;
}

static int bytes_cmp(const void *a, size_t al, const void *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return al < bl ? -1 : al > bl;
}

int store_iter_create(store_iter_t **out, store_t *s, store_cf cf, const void *prefix, size_t plen,
                      const void *start, size_t slen)
{
    int rc = DM_OK;
    store_iter_t *it = NULL;
    if (!out || !s || !cf_valid(cf) || (!prefix && plen) || (!start && slen))
        return DM_EINVAL;
    *out = NULL;
    it = calloc(1, sizeof *it);
    if (!it)
        return DM_ENOMEM;
    if (plen) {
        it->prefix = malloc(plen);
        it->upper = malloc(plen);
        if (!it->prefix || !it->upper) {
            rc = DM_ENOMEM;
            goto out;
        }
        memcpy(it->prefix, prefix, plen);
        memcpy(it->upper, prefix, plen);
        it->plen = plen;
        it->ulen = prefix_successor(it->upper, plen);
    }
    if (!s->cf[cf]) {
        it->done = true; /* absent CF: an empty range */
        goto done;
    }
    if (!(it->ro = rocksdb_readoptions_create())) {
        rc = DM_ENOMEM;
        goto out;
    }
    /* the bound keeps RocksDB from reading (and caching) blocks past the prefix */
    if (it->ulen)
        rocksdb_readoptions_set_iterate_upper_bound(it->ro, (const char *)it->upper, it->ulen);
    if (!(it->it = rocksdb_create_iterator_cf(s->db, it->ro, s->cf[cf]))) {
        rc = DM_ENOMEM;
        goto out;
    }
    if (start && (!plen || bytes_cmp(start, slen, it->prefix, it->plen) > 0))
        rocksdb_iter_seek(it->it, start, slen);
    else if (plen)
        rocksdb_iter_seek(it->it, (const char *)it->prefix, plen);
    else
        rocksdb_iter_seek_to_first(it->it);
done:
    *out = it;
    it = NULL;
out:
    store_iter_destroy(it);
    return rc;
}

bool store_iter_next(store_iter_t *it, const uint8_t **key, size_t *klen, const uint8_t **val,
                     size_t *vlen)
{
    if (!it || it->done || it->status)
        return false;
    if (it->started)
        rocksdb_iter_next(it->it);
    it->started = true;
    if (!rocksdb_iter_valid(it->it)) {
        char *err = NULL;
        rocksdb_iter_get_error(it->it, &err);
        if (err)
            it->status = take_err(err);
        it->done = true;
        return false;
    }
    size_t kl = 0, vl = 0;
    const char *k = rocksdb_iter_key(it->it, &kl);
    /* with no upper bound (an all-0xff prefix) the prefix itself ends the range */
    if (it->plen && (kl < it->plen || memcmp(k, it->prefix, it->plen) != 0)) {
        it->done = true;
        return false;
    }
    const char *v = rocksdb_iter_value(it->it, &vl);
    if (key)
        *key = (const uint8_t *)k;
    if (klen)
        *klen = kl;
    if (val)
        *val = (const uint8_t *)v;
    if (vlen)
        *vlen = vl;
    return true;
}

int store_get_last(store_t *s, store_cf cf, const void *prefix, size_t plen, dm_buf *key,
                   dm_buf *val)
{
    store_iter_t *it = NULL;
    int rc = store_iter_create(&it, s, cf, prefix, plen, NULL, 0);
    if (rc)
        return rc;
    rc = DM_ENOTFOUND;
    if (it->it) {
        /* the iterator's upper bound makes seek_to_last land on the prefix's last key */
        rocksdb_iter_seek_to_last(it->it);
        it->started = true;
        if (rocksdb_iter_valid(it->it)) {
            size_t kl = 0, vl = 0;
            const char *k = rocksdb_iter_key(it->it, &kl);
            if (!plen || (kl >= plen && memcmp(k, prefix, plen) == 0)) {
                const char *v = rocksdb_iter_value(it->it, &vl);
                rc = key ? dm_buf_append(key, k, kl) : DM_OK;
                if (!rc && val)
                    rc = dm_buf_append(val, v, vl);
            }
        } else {
            char *err = NULL;
            rocksdb_iter_get_error(it->it, &err);
            if (err)
                rc = take_err(err);
        }
    }
    store_iter_destroy(it);
    return rc;
}

int store_iter_status(const store_iter_t *it)
{
    return it ? it->status : DM_EINVAL;
}

void store_iter_destroy(store_iter_t *it)
{
    if (!it)
        return;
    if (it->it)
        rocksdb_iter_destroy(it->it);
    if (it->ro)
        rocksdb_readoptions_destroy(it->ro);
    free(it->prefix);
    free(it->upper);
    free(it);
}
