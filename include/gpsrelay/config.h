/*
 * config.h - the configuration file (docs/configuration.md).
 *
 * gr_config_load() parses a file into a fresh struct and validates all of it; nothing is
 * applied by loading. Directives are rows of one table in config.c: add a row (and a
 * field here) when a feature arrives.
 */
#ifndef GPSRELAY_CONFIG_H
#define GPSRELAY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gpsrelay/cidr.h"

/* A numeric listen address, "127.0.0.1:7000" or "[::1]:7000". Port 0 means "any free". */
struct gr_addr {
    struct sockaddr_storage sa; /* AF_INET or AF_INET6, port set */
    char host[46];              /* numeric address without brackets, for libraries that want text */
    int port;
    char text[64]; /* as written in the file, for log lines */
};

enum gr_auth { GR_AUTH_JWT, GR_AUTH_NONE };

#define GR_LISTEN_MAX       16     /* listeners of one kind; a config with more is an error */
#define GR_CONFIG_SPEED_MAX 100000 /* m/s; anything above is a typo, not a vehicle */
#define GR_ORIGINS_MAX      32     /* allowed_origin directives */
#define GR_ORIGIN_LEN_MAX   256    /* an Origin header is scheme://host[:port] */
#define GR_INGEST_ALLOW_MAX 256    /* ingest_allow directives */
/* Largest configuration file read: every directive at its bound, with comments, is tens
 * of KiB; a file larger than this is a mistake (a log or a disk image under the name), and
 * reading it would hold the event loop on a reload. */
#define GR_CONFIG_FILE_MAX (1u << 20)
/* merge_window's ceiling: a modem's sentences of one fix come within milliseconds; a
 * second is a 1 Hz modem's whole cycle, past which waiting only delays the fix. */
#define GR_CONFIG_MERGE_WINDOW_MAX 1000

#define GR_CLUSTER_NATS_MAX     16 /* cluster_nats directives */
#define GR_CLUSTER_NAME_MAX     32 /* cluster_name: a NATS subject token and a stream name */
#define GR_NODE_NAME_MAX        64
#define GR_CLUSTER_REPLICAS_MAX 5 /* JetStream's own limit */

#define GR_ARCHIVE_RETENTION_MAX 3660       /* archive_retention_days: ten years */
#define GR_ARCHIVE_SPOOL_MIN     (1L << 20) /* archive_spool_max: 1 MiB */
#define GR_ARCHIVE_SPOOL_MAX     (1L << 40) /* ...to 1 TiB */

struct gr_config {
    char *path; /* the file this came from */

    struct gr_addr listen_udp[GR_LISTEN_MAX];
    size_t n_listen_udp;
    struct gr_addr listen_tcp[GR_LISTEN_MAX];
    size_t n_listen_tcp;
    struct gr_addr listen_ws[GR_LISTEN_MAX];
    size_t n_listen_ws;
    struct gr_addr listen_http_ingest[GR_LISTEN_MAX]; /* phones (OsmAnd); TLS as listen_ws */
    size_t n_listen_http_ingest;

    /* The mapping comes from exactly one of these two. */
    char *mapping_file;  /* absolute, or relative to the config file's folder when written so */
    char *postgres;      /* libpq conninfo; needs no DNS lookup (numeric host or hostaddr) */
    char *mapping_cache; /* with postgres: the last mapping loaded, for starts during outages */
    enum gr_auth auth;
    char *auth_secret_file;   /* HS256 key file (required with auth jwt); paths as mapping_file */
    char *tls_cert, *tls_key; /* both or neither: listen_ws (HTTPS/WSS) and
                               * listen_http_ingest (HTTPS) then serve TLS only */
    char *allowed_origin[GR_ORIGINS_MAX]; /* none: any Origin (see gr_config_origin_ok) */
    size_t n_allowed_origin;
    struct gr_cidr ingest_allow[GR_INGEST_ALLOW_MAX]; /* none: every source may send */
    size_t n_ingest_allow;
    int ingest_rate_limit;          /* reports per second per source address */
    int merge_window;               /* ms to wait for the rest of a fix; 0: per payload */
    int max_connections_per_source; /* consoles from one address at once */
    int tcp_max_per_source;         /* modem TCP connections from one address at once */
    int log_level;                  /* LOG_* */
    int max_future_skew;            /* seconds */
    int max_speed;                  /* metres per second a unit may plausibly move between fixes */
    int tcp_idle_timeout; /* seconds of silence after which a modem's TCP link is closed */
    int stale_after;      /* seconds without a position after which a unit is stale */
    int slow_timeout;     /* seconds a console may take nothing while positions wait */
    int idle_timeout;     /* seconds a console may send nothing (heartbeats included) */
    char *static_dir;     /* files served at / (the demo console); NULL: none. Paths as
                           * mapping_file; read per request, so a rebuild needs no restart */

    /* A cluster node (cluster.h) when n_cluster_nats > 0. */
    char *cluster_nats[GR_CLUSTER_NATS_MAX]; /* nats://HOST:PORT */
    size_t n_cluster_nats;
    char *cluster_name;   /* the stream's name and the subjects' prefix */
    char *node_name;      /* the host name unless set */
    int cluster_replicas; /* of the stream */
    int cluster_history;  /* seconds the stream keeps positions */

    /* The position archive (archive.h) when archive_postgres is set. */
    char *archive_postgres;     /* libpq conninfo, as postgres */
    int archive_retention_days; /* whole UTC days kept besides today */
    char *archive_spool;        /* the spool file; NULL: positions wait in memory only */
    uint64_t archive_spool_max; /* bytes waiting, beyond which the oldest are dropped */
};

/*
 * Reads and validates path into *out (zeroed first). On failure returns a negative errno
 * (-EINVAL: what the file says is wrong; -ENOMEM; or why it could not be read, as
 * gr_file_read() says), *out holds nothing to free, and err holds "file:line: what is
 * wrong" (or "file: ..." for a problem with the whole file). Returns 0 on success; free
 * with gr_config_free(). path must be a regular file of at most GR_CONFIG_FILE_MAX bytes
 * (file.h): a FIFO, a device or a directory is refused at once, never waited on.
 */
int gr_config_load(const char *path, struct gr_config *out, char *err, size_t errlen);

/* Frees what cfg holds (not cfg itself); NULL is fine. */
void gr_config_free(struct gr_config *cfg);

/*
 * Whether a console's Origin header may connect: always without one (non-browser
 * clients send none), else only an exact match of an allowed_origin. With no
 * allowed_origin at all any Origin passes: the operator has not restricted browsers
 * (tokens, not cookies, authenticate consoles, so this is defence in depth).
 */
bool gr_config_origin_ok(const struct gr_config *cfg, const char *origin);

/*
 * For a reload: puts back into fresh (a configuration just loaded) the running value from
 * old of every directive a running daemon cannot change (the table's GR_DIR_RESTART rows:
 * bound sockets, TLS files, the token key, the PostgreSQL connection and its cache; and
 * every mapping source directive when fresh names another source than old), logging a
 * warning for each that differed. Returns 0, or -ENOMEM (fresh must then be freed).
 */
int gr_config_keep_running(const struct gr_config *old, struct gr_config *fresh);

#endif
