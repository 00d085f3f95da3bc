#ifndef DM_NET_HTTP_INTERNAL_H
#define DM_NET_HTTP_INTERNAL_H

#include "net_http.h"

#include <uv.h>

/*
 * Module-internal hooks of net_http.c, for the fuzz harness (fuzz/fuzz_http.c)
 * and tests only. Not part of the public API.
 */

/**
 * Serve one connection over an already connected stream socket `fd` (e.g. one
 * end of a socketpair) exactly as if it had been accepted by the listener: the
 * same parser, limits, timeouts and handler. The server takes `fd` in every
 * case (it is closed on failure). The connection counts against
 * max_connections (DM_ELIMIT when full). net_http_start need not have been
 * called. Loop thread only. DM_ENOMEM, DM_EIO, DM_ECLOSED (server closing).
 */
int net__http_adopt_fd(net_http_server_t *s, uv_os_sock_t fd);

#endif
