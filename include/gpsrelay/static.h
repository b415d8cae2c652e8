/*
 * static.h - static_dir: the demo console's files, served by the console server at every
 * path outside /socket/ (GET and HEAD; "/" and "/dir/" are their index.html; nothing
 * outside the folder; anything else 404).
 *
 * A download is streamed a chunk per writeable callback and held in a struct
 * gr_static_file, which lives in the connection's lws per-session data (*filep): from
 * gr_static_serve() until its last chunk is written, it fails, or the connection closes
 * (gr_static_done(), which the lws callback calls at LWS_CALLBACK_CLOSED_HTTP and
 * LWS_CALLBACK_WSI_DESTROY). Each function that ends the download frees it and sets *filep
 * to NULL.
 */
#ifndef GPSRELAY_STATIC_H
#define GPSRELAY_STATIC_H

struct lws;
struct gr_static_file;

/*
 * LWS_CALLBACK_HTTP for path under dir (borrowed for the call; the folder is looked up
 * per request, so a rebuilt console needs no restart). Answers at once (a HEAD, an empty
 * file, a refusal) or starts a download in *filep (NULL before). Returns what the lws
 * callback must return.
 */
int gr_static_serve(const char *dir, struct lws *wsi, const char *path,
                    struct gr_static_file **filep);

/* LWS_CALLBACK_HTTP_WRITEABLE of a download: its next chunk; the last one completes the
 * transaction. Returns what the lws callback must return. */
int gr_static_writeable(struct lws *wsi, struct gr_static_file **filep);

/* Ends a download the client walked away from; nothing when *filep is NULL. */
void gr_static_done(struct gr_static_file **filep);

#endif
