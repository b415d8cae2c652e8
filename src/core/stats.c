/*
 * stats.c - counters and their Prometheus text exposition.
 */
#include "gpsrelay/stats.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>

/* Delivery: the aim is well under a second; the interesting part is sub-millisecond. */
static const double latency_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                        0.01,   0.025,   0.05,   0.1,   0.25,   1};
/* Age of a position as it is written: a console on a slow link gets each unit's newest
 * position a second or two old; tens of seconds means a console is far behind or modems
 * send late (compare with delivery latency, which starts at receipt). */
static const double age_bounds[] = {0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300};
/* Loop work per iteration: anything near 20 ms delays every console and modem. */
static const double busy_bounds[] = {0.0001, 0.0005, 0.001, 0.002, 0.005,
                                     0.01,   0.02,   0.05,  0.1,   0.5};
/* One archive batch, BEGIN to COMMIT: tens of ms for thousands of positions; seconds mean
 * PostgreSQL is slow, and the spool grows. */
static const double batch_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_BOUNDS(a) ((int)(sizeof(a) / sizeof((a)[0])))

struct gr_stats gr_stats = {
    .delivery_latency = {.bounds = latency_bounds, .n_bounds = N_BOUNDS(latency_bounds)},
    .position_age = {.bounds = age_bounds, .n_bounds = N_BOUNDS(age_bounds)},
    .loop_busy = {.bounds = busy_bounds, .n_bounds = N_BOUNDS(busy_bounds)},
    .archive_batch = {.bounds = batch_bounds, .n_bounds = N_BOUNDS(batch_bounds)},
};

/* Writes one histogram family: cumulative buckets, +Inf, sum and count. */
static void histogram(FILE *f, const char *name, const char *help, const struct gr_histogram *h)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cumulative += h->counts[i];
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
                (unsigned long long)cumulative);
    }
    cumulative += h->counts[h->n_bounds];
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9f\n%s_count %llu\n", name,
            (unsigned long long)cumulative, name, h->sum, name, (unsigned long long)h->count);
}

/* A gauge holding seconds. */
static void seconds_gauge(FILE *f, const char *name, const char *help, double value)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n%s %.9f\n", name, help, name, name, value);
}

#define GR_LABEL(name, label) label,
static const char *const close_labels[] = {GR_CLOSE_REASONS(GR_LABEL)};
static const char *const join_labels[] = {GR_JOIN_REFUSALS(GR_LABEL)};
static const char *const refusal_labels[] = {GR_CONSOLE_REFUSALS(GR_LABEL)};
static const char *const reject_labels[] = {GR_REASONS(GR_LABEL)};
static const char *const tcp_refusal_labels[] = {GR_TCP_REFUSALS(GR_LABEL)};
static const char *const cluster_skip_labels[] = {GR_CLUSTER_SKIPS(GR_LABEL)};
static const char *const history_labels[] = {GR_HISTORY_STATUSES(GR_LABEL)};
static const char *const phone_labels[] = {GR_PHONE_STATUSES(GR_LABEL)};
#undef GR_LABEL

const char *gr_tcp_refusal_label(enum gr_tcp_refusal r)
{
    return tcp_refusal_labels[r];
}

/* Writes one metric family: HELP, TYPE and an unlabelled sample. */
static void family(FILE *f, const char *name, const char *type, const char *help, uint64_t value)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
            (unsigned long long)value);
}

/* Writes one labelled counter family: a sample per label value, labels[i] for values[i]. */
static void labelled(FILE *f, const char *name, const char *help, const char *label,
                     const char *const *labels, const uint64_t *values, int from, int to)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (int i = from; i < to; i++)
        fprintf(f, "%s{%s=\"%s\"} %llu\n", name, label, labels[i], (unsigned long long)values[i]);
}

/* Resident set size from /proc/self/statm (second field, in pages). */
static uint64_t resident_bytes(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t open_fds(void)
{
    uint64_t n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n > 0 ? n - 1 : 0; /* not counting opendir's own descriptor */
}

long gr_stats_render(const struct gr_gauges *g, char **out)
{
    size_t len = 0;
    FILE *f = open_memstream(out, &len);
    if (f == NULL)
        return -errno;

    family(f, "gpsrelay_ingest_datagrams_total", "counter", "UDP datagrams received.",
           gr_stats.ingest_datagrams);
    family(f, "gpsrelay_ingest_receive_errors_total", "counter", "UDP reads that failed.",
           gr_stats.ingest_receive_errors);
    family(f, "gpsrelay_ingest_socket_drops_total", "counter",
           "UDP datagrams the kernel dropped because a socket's receive buffer was full.",
           g->ingest_socket_drops);
    family(f, "gpsrelay_ingest_reports_total", "counter", "Report lines received.",
           gr_stats.ingest_reports);
    labelled(f, "gpsrelay_ingest_rejected_total", "Reports or fixes not published, by reason.",
             "reason", reject_labels, gr_stats.ingest_rejected, GR_OK + 1, GR_REASON_COUNT);
    family(f, "gpsrelay_ingest_no_checksum_total", "counter",
           "NMEA or TAIP sentences accepted without a checksum.", gr_stats.ingest_no_checksum);
    family(f, "gpsrelay_ingest_spliced_total", "counter",
           "Broken sentences cut off by a newer one on the same line.", gr_stats.ingest_spliced);
    family(f, "gpsrelay_ingest_identity_evicted_total", "counter",
           "Remembered sender ids forgotten to make room.", gr_stats.ingest_identity_evicted);
    family(f, "gpsrelay_tcp_accepted_total", "counter", "Modem TCP connections accepted.",
           gr_stats.tcp_accepted);
    labelled(f, "gpsrelay_tcp_refused_total",
             "Modem TCP connections closed as soon as they were accepted, by the limit hit.",
             "reason", tcp_refusal_labels, gr_stats.tcp_refused, 0, GR_TCP_REFUSAL_COUNT);
    family(f, "gpsrelay_tcp_accept_errors_total", "counter",
           "Times accept(2) failed on a listen_tcp socket (out of descriptors, memory); each "
           "pauses accepting modems for 100 ms.",
           gr_stats.tcp_accept_errors);
    family(f, "gpsrelay_tcp_idle_closed_total", "counter",
           "Modem TCP connections closed after tcp_idle_timeout of silence.",
           gr_stats.tcp_idle_closed);
    family(f, "gpsrelay_tcp_connections", "gauge", "Modem TCP connections open now.",
           g->tcp_connections);
    family(f, "gpsrelay_ingest_http_connections", "gauge",
           "Phones' connections (listen_http_ingest) open now.", g->phone_connections);
    family(f, "gpsrelay_positions_published_total", "counter", "Positions accepted and published.",
           gr_stats.positions_published);
    family(f, "gpsrelay_ws_frames_sent_total", "counter", "WebSocket frames sent to consoles.",
           gr_stats.ws_frames_sent);
    family(f, "gpsrelay_ws_accept_waiting_full_total", "counter",
           "Times console listeners stopped accepting because ACCEPT_WAITING_MAX accepted "
           "connections were waiting for their turn.",
           gr_stats.accept_waiting_full);
    family(f, "gpsrelay_ws_accept_errors_total", "counter",
           "Console connections the kernel had but accept(2) could not take (descriptors, "
           "memory).",
           gr_stats.accept_errors);
    labelled(f, "gpsrelay_consoles_closed_total", "Consoles closed, by reason.", "reason",
             close_labels, gr_stats.consoles_closed, 0, GR_CLOSE_REASON_COUNT);
    labelled(f, "gpsrelay_consoles_refused_total",
             "Console connections refused before the upgrade, by reason.", "reason", refusal_labels,
             gr_stats.consoles_refused, 0, GR_CONSOLE_REFUSAL_COUNT);
    labelled(f, "gpsrelay_joins_refused_total", "Channel joins refused, by reason.", "reason",
             join_labels, gr_stats.joins_refused, 0, GR_JOIN_REFUSAL_COUNT);
    family(f, "gpsrelay_ingest_not_allowed_total", "counter",
           "Reports from sources outside ingest_allow.", gr_stats.ingest_not_allowed);
    family(f, "gpsrelay_ingest_rate_limited_total", "counter",
           "Reports over ingest_rate_limit for their source.", gr_stats.ingest_rate_limited);
    labelled(f, "gpsrelay_ingest_http_requests_total",
             "Phones' requests on listen_http_ingest, by the HTTP status answered.", "status",
             phone_labels, gr_stats.phone_requests, 0, GR_PHONE_STATUS_COUNT);
    family(f, "gpsrelay_ingest_http_incomplete_total", "counter",
           "Phones' requests whose body never came whole (the phone went, or was too slow).",
           gr_stats.phone_incomplete);
    family(f, "gpsrelay_ingest_http_refused_total", "counter",
           "Phone connections closed at once: 10,000 open, or a quarter of the descriptors.",
           gr_stats.phone_refused);
    family(f, "gpsrelay_ingest_rate_evicted_total", "counter",
           "Sources the rate limiter forgot to make room.", gr_stats.ingest_rate_evicted);
    family(f, "gpsrelay_consoles_connected", "gauge", "Consoles connected now.",
           g->consoles_connected);
    family(f, "gpsrelay_ws_accept_waiting", "gauge",
           "Console connections accepted and waiting for their turn to be served.",
           g->consoles_accept_waiting);
    family(f, "gpsrelay_channels_joined", "gauge", "Channels joined now, over all consoles.",
           g->channels_joined);
    family(f, "gpsrelay_units_stale", "gauge", "Units with no position for stale_after.",
           g->units_stale);
    family(f, "gpsrelay_mapping_devices", "gauge", "Devices in the mapping in force.",
           g->mapping_devices);
    family(f, "gpsrelay_mapping_loads_total", "counter", "Mappings loaded and put in force.",
           gr_stats.mapping_loads);
    family(f, "gpsrelay_mapping_load_failures_total", "counter",
           "Mappings refused (a bad row, a conflict, a file not regular or too large); the one "
           "in force stayed.",
           gr_stats.mapping_load_failures);
    family(f, "gpsrelay_config_reload_failures_total", "counter",
           "Reloads whose configuration file was refused; the running configuration stayed.",
           gr_stats.config_reload_failures);
    family(f, "gpsrelay_mapping_rows_rejected_total", "counter",
           "Rows from PostgreSQL a load left out, or whose device lost a source_addr it shares; "
           "counted at every load while they stay.",
           gr_stats.mapping_rows_rejected);
    family(f, "gpsrelay_postgres_up", "gauge",
           "1 while connected to PostgreSQL and listening for mapping changes.", g->postgres_up);
    family(f, "gpsrelay_postgres_failures_total", "counter",
           "PostgreSQL connection attempts that failed and connections lost.",
           gr_stats.postgres_failures);
    family(f, "gpsrelay_postgres_timeouts_total", "counter",
           "PostgreSQL connections dropped because a query got no answer in time (a hung server).",
           gr_stats.postgres_timeouts);
    family(f, "gpsrelay_postgres_notifications_total", "counter",
           "Mapping change notifications received from PostgreSQL.",
           gr_stats.postgres_notifications);
    family(f, "gpsrelay_cluster_up", "gauge",
           "1 while this cluster node is connected to NATS and receiving the position stream; "
           "0 when not a cluster node.",
           g->cluster_up);
    family(f, "gpsrelay_cluster_published_total", "counter",
           "Accepted fixes this node stored in the position stream (acknowledged).",
           g->cluster_published);
    family(f, "gpsrelay_cluster_applied_total", "counter",
           "Positions of the stream this node applied, from every node.", gr_stats.cluster_applied);
    labelled(f, "gpsrelay_cluster_skipped_total",
             "Messages of the stream this node did not apply, by reason.", "reason",
             cluster_skip_labels, gr_stats.cluster_skipped, 0, GR_CLUSTER_SKIP_COUNT);
    family(f, "gpsrelay_cluster_lag", "gauge",
           "Messages in the stream after the last one this node applied.", g->cluster_lag);
    family(f, "gpsrelay_cluster_publish_failures_total", "counter",
           "Publishes to the stream that failed (and were retried) or were refused (queue "
           "full).",
           g->cluster_publish_failures);
    family(f, "gpsrelay_cluster_queued", "gauge",
           "Accepted fixes waiting to be stored in the stream, or sent and not yet acknowledged.",
           g->cluster_queued);
    family(f, "gpsrelay_archive_up", "gauge",
           "1 while the position archive is connected to PostgreSQL and writing; 0 when down or "
           "not configured.",
           g->archive_up);
    family(f, "gpsrelay_archive_written_total", "counter",
           "Positions the archive added to PostgreSQL.", gr_stats.archive_written);
    family(f, "gpsrelay_archive_duplicates_total", "counter",
           "Positions an archive batch carried that were archived already (a batch sent again, "
           "another cluster node).",
           gr_stats.archive_duplicates);
    family(f, "gpsrelay_archive_refused_total", "counter",
           "Positions left out of the archive because PostgreSQL refused the row itself (a data "
           "error or a constraint), each logged; the rest of their batch was archived.",
           gr_stats.archive_refused);
    family(f, "gpsrelay_archive_expired_total", "counter",
           "Positions not archived because they were older than archive_retention_days already.",
           gr_stats.archive_expired);
    family(f, "gpsrelay_archive_undated_total", "counter",
           "Positions archived into positions_default: their day had no partition.",
           gr_stats.archive_undated);
    family(f, "gpsrelay_archive_queued", "gauge",
           "Positions accepted and not yet archived (in memory and in the spool).",
           g->archive_queued);
    family(f, "gpsrelay_archive_spool_bytes", "gauge",
           "Bytes of positions waiting in the archive spool.", g->archive_spool_bytes);
    family(f, "gpsrelay_archive_dropped_total", "counter",
           "Positions the archive gave up: the spool over archive_spool_max (oldest first), the "
           "disk not keeping up, or arriving while stopping.",
           g->archive_dropped);
    family(f, "gpsrelay_archive_failures_total", "counter",
           "Archive connection attempts that failed and connections lost (each batch then "
           "comes again).",
           gr_stats.archive_failures);
    family(f, "gpsrelay_archive_timeouts_total", "counter",
           "Archive connections dropped because PostgreSQL went silent (a hung server).",
           gr_stats.archive_timeouts);
    histogram(f, "gpsrelay_archive_batch_seconds",
              "One archive batch, from BEGIN to the COMMIT's answer.", &gr_stats.archive_batch);

    labelled(f, "gpsrelay_history_requests_total",
             "Answers of /api/history and /api/snapshot, by HTTP status.", "status", history_labels,
             gr_stats.history_requests, 0, GR_HISTORY_STATUS_COUNT);
    family(f, "gpsrelay_positions_conflated_total", "counter",
           "Positions a console never got because a newer one of the same unit replaced them "
           "while it was busy (one per console).",
           gr_stats.positions_conflated);
    histogram(f, "gpsrelay_delivery_latency_seconds",
              "From receiving a report to writing its position to a console, per console.",
              &gr_stats.delivery_latency);
    histogram(f, "gpsrelay_position_age_seconds",
              "From a position's fix time to writing it to a console, per console.",
              &gr_stats.position_age);
    histogram(f, "gpsrelay_loop_busy_seconds",
              "Event loop work between two polls: how long everything else waited.",
              &gr_stats.loop_busy);
    seconds_gauge(f, "gpsrelay_loop_busy_max_seconds",
                  "The longest single event loop iteration since start.", gr_stats.loop_busy.max);

    family(f, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
           resident_bytes());
    family(f, "process_open_fds", "gauge", "Number of open file descriptors.", open_fds());

    if (fclose(f) != 0) {
        int err = errno;
        free(*out);
        *out = NULL;
        return -err;
    }
    return (long)len;
}
