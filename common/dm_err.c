#include "dm_err.h"

const char *dm_err_name(int err)
{
    switch ((dm_err)err) {
    case DM_OK: return "OK";
    case DM_ENOMEM: return "ENOMEM";
    case DM_EINVAL: return "EINVAL";
    case DM_ETOOBIG: return "ETOOBIG";
    case DM_EIO: return "EIO";
    case DM_ENOTFOUND: return "ENOTFOUND";
    case DM_EEXIST: return "EEXIST";
    case DM_ECRYPTO: return "ECRYPTO";
    case DM_EBADSIG: return "EBADSIG";
    case DM_EBADTOKEN: return "EBADTOKEN";
    case DM_EEXPIRED: return "EEXPIRED";
    case DM_EBADPASS: return "EBADPASS";
    case DM_ENOPASS: return "ENOPASS";
    case DM_ETAMPER: return "ETAMPER";
    case DM_ECONFIG: return "ECONFIG";
    case DM_ESTORE: return "ESTORE";
    case DM_EBUSY: return "EBUSY";
    case DM_ECORRUPT: return "ECORRUPT";
    case DM_EPARSE: return "EPARSE";
    case DM_ERANGE: return "ERANGE";
    case DM_EPERM: return "EPERM";
    case DM_ENOTINIT: return "ENOTINIT";
    case DM_EUNSUPPORTED: return "EUNSUPPORTED";
    case DM_EPROTO: return "EPROTO";
    case DM_ETIMEDOUT: return "ETIMEDOUT";
    case DM_EAGAIN: return "EAGAIN";
    case DM_ECLOSED: return "ECLOSED";
    case DM_EAUTH: return "EAUTH";
    case DM_ELIMIT: return "ELIMIT";
    case DM_ECONN: return "ECONN";
    case DM_EBANNED: return "EBANNED";
    }
    return "EUNKNOWN";
}

const char *dm_strerror(int err)
{
    switch ((dm_err)err) {
    case DM_OK: return "success";
    case DM_ENOMEM: return "out of memory";
    case DM_EINVAL: return "invalid argument";
    case DM_ETOOBIG: return "input exceeds a size limit";
    case DM_EIO: return "I/O error";
    case DM_ENOTFOUND: return "not found";
    case DM_EEXIST: return "already exists";
    case DM_ECRYPTO: return "cryptographic operation failed";
    case DM_EBADSIG: return "signature verification failed";
    case DM_EBADTOKEN: return "invalid token";
    case DM_EEXPIRED: return "expired or not yet valid";
    case DM_EBADPASS: return "wrong master password";
    case DM_ENOPASS: return "master password not provided";
    case DM_ETAMPER: return "stored security record was altered";
    case DM_ECONFIG: return "invalid configuration";
    case DM_ESTORE: return "storage error";
    case DM_EBUSY: return "resource busy (in use by another process)";
    case DM_ECORRUPT: return "stored data is corrupt";
    case DM_EPARSE: return "parse error";
    case DM_ERANGE: return "value out of range";
    case DM_EPERM: return "operation not permitted";
    case DM_ENOTINIT: return "data directory not initialised";
    case DM_EUNSUPPORTED: return "unsupported";
    case DM_EPROTO: return "protocol violation";
    case DM_ETIMEDOUT: return "timed out";
    case DM_EAGAIN: return "try again";
    case DM_ECLOSED: return "closed";
    case DM_EAUTH: return "authentication failed";
    case DM_ELIMIT: return "limit reached";
    case DM_ECONN: return "connection failed";
    case DM_EBANNED: return "banned";
    }
    return "unknown error";
}
