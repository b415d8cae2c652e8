/*
 * http.c - the console transports' view of an HTTP request, over libwebsockets. See http.h.
 */
#include "gpsrelay/http.h"

#include <string.h>

#include <libwebsockets.h>

#include "gpsrelay/buf.h"

int gr_http_reply(struct lws *wsi, unsigned int status, const char *type, const char *body,
                  size_t len)
{
    unsigned char hdr[LWS_PRE + 512];
    unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;
    if (lws_add_http_common_headers(wsi, status, type, len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;

    /* lws writes in place, LWS_PRE bytes before the body: copy it behind headroom. */
    unsigned char empty[LWS_PRE + 1];
    struct gr_buf b = gr_buf_make(LWS_PRE);
    unsigned char *at = empty + LWS_PRE;
    int rc = -1;
    if (len > 0) {
        if (gr_buf_append(&b, body, len) < 0)
            goto out;
        at = (unsigned char *)gr_buf_data(&b);
    }
    if (lws_write(wsi, at, len, LWS_WRITE_HTTP_FINAL) == (int)len)
        rc = lws_http_transaction_completed(wsi) ? -1 : 0;
out:
    gr_buf_free(&b);
    return rc;
}

long gr_http_query(struct lws *wsi, const char *skip, char *qs, size_t cap)
{
    static const char hexdigit[] = "0123456789ABCDEF";
    size_t skip_len = skip != NULL ? strlen(skip) : 0;
    char frag[GR_HTTP_ARG_MAX];
    size_t len = 0;
    for (int i = 0;; i++) {
        /* lws copies no fragment longer than the buffer; none fits a query this long. */
        if (lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i) >= (int)sizeof(frag))
            return -1;
        if (lws_hdr_copy_fragment(wsi, frag, sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i) < 0)
            break;
        if (skip != NULL && strncmp(frag, skip, skip_len) == 0 && frag[skip_len] == '=')
            continue;
        if (len > 0 && len < cap)
            qs[len++] = '&';
        bool eq = false;
        for (const unsigned char *c = (const unsigned char *)frag; *c != '\0'; c++) {
            bool plain =
                *c > 0x20 && *c < 0x7f && *c != '%' && *c != '&' && *c != '+' && (*c != '=' || !eq);
            eq |= *c == '=';
            if (len + 3 >= cap)
                return -1;
            if (plain) {
                qs[len++] = (char)*c;
            } else {
                qs[len++] = '%';
                qs[len++] = hexdigit[*c >> 4];
                qs[len++] = hexdigit[*c & 15];
            }
        }
    }
    if (cap == 0)
        return -1;
    qs[len] = '\0';
    return (long)len;
}

const char *gr_http_arg(struct lws *wsi, const char *name, bool last, char *buf)
{
    size_t n = strlen(name);
    const char *found = NULL;
    char frag[GR_HTTP_ARG_MAX];
    for (int i = 0; lws_hdr_copy_fragment(wsi, frag, sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i) >= 0;
         i++) {
        if (strncmp(frag, name, n) == 0 && frag[n] == '=') {
            strcpy(buf, frag + n + 1);
            found = buf;
            if (!last)
                break;
        }
    }
    return found;
}

int gr_http_origin(struct lws *wsi, char *buf, size_t cap)
{
    return lws_hdr_copy(wsi, buf, (int)cap, WSI_TOKEN_ORIGIN);
}

bool gr_http_ambiguous_length(struct lws *wsi)
{
    char v[32];
    return lws_hdr_copy_fragment(wsi, v, sizeof(v), WSI_TOKEN_HTTP_CONTENT_LENGTH, 1) >= 0 ||
           lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
}

int gr_http_refuse(struct lws *wsi, unsigned int status)
{
    lws_return_http_status(wsi, status, NULL);
    return 1;
}

int gr_http_completed(struct lws *wsi)
{
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

bool gr_http_is_post(struct lws *wsi)
{
    return lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
}

bool gr_http_peer(struct lws *wsi, union gr_peer *out)
{
    socklen_t len = sizeof(*out);
    return getpeername(lws_get_socket_fd(wsi), &out->sa, &len) == 0 &&
           (out->sa.sa_family == AF_INET || out->sa.sa_family == AF_INET6);
}

void gr_http_want_write(struct lws *wsi)
{
    lws_callback_on_writable(wsi);
}

void gr_http_set_deadline(struct lws *wsi, unsigned int secs)
{
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, (int)secs);
}
