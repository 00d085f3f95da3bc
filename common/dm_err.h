#ifndef DM_COMMON_ERR_H
#define DM_COMMON_ERR_H

/*
 * The project-wide error enum. Every function that can fail returns 0 (DM_OK)
 * or one of these negative codes; results come back through out-params.
 * dm_err_name() gives the stable identifier used in JSON error bodies and in
 * logs; dm_strerror() gives a sentence for people. Both are switches without
 * a default, so -Wswitch flags a code that lacks a name.
 */
typedef enum {
    DM_OK = 0,
    DM_ENOMEM = -1,      /* allocation failed */
    DM_EINVAL = -2,      /* invalid argument or malformed input */
    DM_ETOOBIG = -3,     /* input exceeds a hard limit */
    DM_EIO = -4,         /* operating-system I/O error */
    DM_ENOTFOUND = -5,   /* no such record / file */
    DM_EEXIST = -6,      /* already exists */
    DM_ECRYPTO = -7,     /* a cryptographic library call failed */
    DM_EBADSIG = -8,     /* signature does not verify */
    DM_EBADTOKEN = -9,   /* Fernet token malformed or its MAC does not verify */
    DM_EEXPIRED = -10,   /* token or credential past its lifetime / from the future */
    DM_EBADPASS = -11,   /* wrong master password */
    DM_ENOPASS = -12,    /* master password missing */
    DM_ETAMPER = -13,    /* stored security record altered */
    DM_ECONFIG = -14,    /* configuration rejected */
    DM_ESTORE = -15,     /* RocksDB reported an error */
    DM_EBUSY = -16,      /* resource locked by another process (database in use) */
    DM_ECORRUPT = -17,   /* stored data fails its integrity checks */
    DM_EPARSE = -18,     /* input could not be parsed */
    DM_ERANGE = -19,     /* value outside its permitted range */
    DM_EPERM = -20,      /* operation not permitted (file mode, policy) */
    DM_ENOTINIT = -21,   /* node data directory not initialised */
    DM_EUNSUPPORTED = -22, /* valid but unsupported request (e.g. key size) */
    DM_EPROTO = -23,     /* peer violated the wire protocol */
    DM_ETIMEDOUT = -24,  /* operation timed out */
    DM_EAGAIN = -25,     /* not enough input yet / try again later */
    DM_ECLOSED = -26,    /* connection or object already closed */
    DM_EAUTH = -27,      /* authentication failed (handshake, token, API key) */
    DM_ELIMIT = -28,     /* a configured limit was reached (queue full, rate limit, peers) */
    DM_ECONN = -29,      /* connection failed */
    DM_EBANNED = -30     /* address banned for misbehaviour */
} dm_err;

/** Stable upper-case identifier, e.g. "EINVAL". Never NULL. */
const char *dm_err_name(int err);
/** Human-readable description. Never NULL. */
const char *dm_strerror(int err);

#endif
