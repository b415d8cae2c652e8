/*
 * harness.h - talk to the real gpsrelayd over real loopback sockets (STYLE.md, Tests).
 *
 * Everything here speaks to 127.0.0.1 only, with plain POSIX sockets and poll(). Every
 * call is bounded in time: it blocks at most its timeout (or a fixed, documented bound) and
 * never sleeps. Failures are reported on stderr with the reason, so a ctest log explains
 * itself; the return values are for the test's assertions.
 *
 * Ownership: functions returning json_t * return a new reference (json_decref() it);
 * ws_recv() returns a malloc'd payload (free() it). File descriptors returned by
 * ws_connect() belong to the caller (close() them).
 */
#ifndef GR_TEST_HARNESS_H
#define GR_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

/* Milliseconds on CLOCK_MONOTONIC, for timing what the daemon does. */
int64_t now_ms(void);

/* ---- The daemon under test ------------------------------------------------------------ */

#define GR_NOTIFY_LOG_MAX 8192 /* every notify datagram received, for assertions after stop */

struct gr_daemon {
    pid_t pid;     /* 0 when no child was started */
    int pidfd;     /* pidfd_open(pid), readable when the child exits; -1 if unavailable */
    int notify_fd; /* our AF_UNIX datagram socket at <dir>/notify ($NOTIFY_SOCKET) */
    bool exited;   /* the child was reaped; wstatus holds its waitpid() status */
    int wstatus;
    bool term_sent; /* SIGTERM already sent (daemon_stop() does not send it twice) */
    int udp_port;   /* listen_udp 127.0.0.1:<udp_port> */
    int ws_port;    /* listen_ws 127.0.0.1:<ws_port> (HTTP, WebSocket) */
    char dir[96];   /* temp dir: gpsrelay.conf, devices.csv, notify, stderr.log; short
                     * enough for <dir>/notify to fit a sockaddr_un */
    char notify_log[GR_NOTIFY_LOG_MAX]; /* all notify datagrams so far, newline-separated */
    size_t notify_log_len;
};

/*
 * Starts `binary -c <dir>/gpsrelay.conf` in a fresh temp dir, with listen_udp/listen_ws on
 * free loopback ports, mapping_file devices.csv (holding csv; NULL: header only),
 * auth none, log_level debug, then extra_conf (may be NULL) appended verbatim. The child
 * runs in <dir> with NOTIFY_SOCKET=<dir>/notify and stdout/stderr in <dir>/stderr.log.
 * Waits up to 10 s for READY=1 (failing at once if the child exits), then checks that
 * GET /healthz answers 200. Returns 0; or -1 with the reason and the daemon's log on
 * stderr, and nothing left running or on disk.
 */
int daemon_start(struct gr_daemon *d, const char *binary, const char *extra_conf, const char *csv);

/* daemon_start with flags: */
#define DAEMON_NO_MAPPING_FILE 1u /* no mapping_file line (extra_conf names the source) */
#define DAEMON_NO_WAIT_READY   2u /* wait for /healthz to answer 200 instead of READY=1 */
#define HEALTHZ_POLL_MS        20 /* between tries of /healthz while it does not answer */
int daemon_start_ex(struct gr_daemon *d, const char *binary, const char *extra_conf,
                    const char *csv, unsigned flags);

/* Sends sig to the daemon (SIGHUP to reload, SIGTERM to begin a stop). 0 or -1. */
int daemon_signal(struct gr_daemon *d, int sig);

/*
 * Waits for a notify datagram with a line beginning with needle ("READY=1", "STOPPING=1",
 * "STATUS="). Datagrams read while waiting are consumed (a later wait sees only newer
 * ones) and appended to d->notify_log. Returns 0, or -1 on timeout or when the daemon
 * exited without sending it.
 */
int daemon_notify_wait(struct gr_daemon *d, const char *needle, int timeout_ms);

/*
 * Stops the daemon: SIGTERM (unless daemon_signal() sent it), waits up to 10 s, then
 * SIGKILL. Prints stderr.log, removes the temp dir. Returns the exit status
 * (WEXITSTATUS), or -1 when it was killed by a signal or did not stop in time. The daemon
 * is built with ASan in CI, where a leak makes the status non-zero: assert 0.
 */
int daemon_stop(struct gr_daemon *d);

/* Copies <dir>/stderr.log to our stderr (daemon_stop() and failures do this already). */
void daemon_dump_log(const struct gr_daemon *d);

/* ---- Plain sockets ------------------------------------------------------------------- */

/* One datagram to 127.0.0.1:port. Returns 0 or -1. */
int udp_send(int port, const void *data, size_t len);

/* One "DEVICE,$GPRMC,...*hh" report for a fix at time_ms (UTC, milliseconds kept) at
 * lat/lon (degrees), 1 knot at 90 degrees, sent to 127.0.0.1:port. 0 or -1. */
int udp_send_rmc(int port, const char *device, int64_t time_ms, double lat, double lon);

/*
 * HTTP/1.1 GET http://127.0.0.1:port/path with Connection: close. Reads until EOF or
 * Content-Length (chunked bodies are decoded). The body (truncated to cap - 1) is
 * NUL-terminated in body when body is not NULL. Returns the status code, or -1.
 */
int http_get(int port, const char *path, char *body, size_t cap, int timeout_ms);

/* ---- A minimal RFC 6455 client -------------------------------------------------------- */

enum {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* OR these into ws_send_frame()'s opcode to send deliberately odd frames. */
#define WS_FLAG_NOFIN 0x100 /* a non-final fragment (FIN bit clear) */
#define WS_FLAG_RSV1  0x200 /* RSV1 set, invalid without a negotiated extension */

/* SO_RCVBUF for the next connections (0: the kernel's default), to play a console that
 * stops reading: its window closes after a few kilobytes. */
extern int harness_rcvbuf;

/* "KEY=VALUE" strings (NULL-terminated) set in the environment of the next daemon_start()
 * children, after the harness has cleared systemd's variables (WATCHDOG_USEC, ...). */
extern char **harness_child_env;

/* How long the rest of a frame may take once its first byte arrived (ws_recv). */
#define WS_FRAME_TIMEOUT_MS 5000

/*
 * Connects to 127.0.0.1:port and upgrades GET path_and_query to a WebSocket. extra_headers
 * ("Origin: x\r\nSec-WebSocket-Protocol: y\r\n", may be NULL) go into the request as
 * given. Checks 101, Upgrade, Connection and Sec-WebSocket-Accept. Returns the socket, or
 * -1 with the HTTP status in *http_status (may be NULL): the server's status when it
 * refused (403, ...), 101 when the 101 response was invalid, 0 when no response came.
 * Bounded by 5 s.
 */
int ws_connect(int port, const char *path_and_query, const char *extra_headers, int *http_status);

/* Same, and copies the raw response head (status line and headers) into resp (cap). */
int ws_connect_ex(int port, const char *path_and_query, const char *extra_headers, int *http_status,
                  char *resp, size_t cap);

/* One masked text frame of any length. Returns 0 or -1. */
int ws_send_text(int fd, const char *text);

/*
 * One frame as given: opcode (plus WS_FLAG_*), masked with a random key or not (an
 * unmasked client frame is a protocol error the server must reject). Returns 0 or -1.
 */
int ws_send_frame(int fd, int opcode, const void *p, size_t len, bool masked);

/* A close frame with code (a negative code sends an empty close payload). 0 or -1. */
int ws_send_close(int fd, int code);

/*
 * Receives one message. Fragmented messages are reassembled; pings are answered with
 * pongs and pongs dropped, transparently; a close frame is returned with *opcode 8 (read
 * its code with ws_close_code()). On 0, *payload is a malloc'd NUL-terminated copy of *len
 * bytes. timeout_ms bounds the wait for a message to begin; once it began, the rest must
 * arrive within WS_FRAME_TIMEOUT_MS. Returns 0, 1 on timeout (nothing consumed), -1 on
 * EOF, socket error or protocol violation by the server (reported on stderr).
 */
int ws_recv(int fd, char **payload, size_t *len, int *opcode, int timeout_ms);

/* The status code of a close payload; 1005 (none given) when empty, -1 when malformed. */
int ws_close_code(const char *payload, size_t len);

/*
 * Reads and skips messages until a close frame, answers it (echoing its code, as RFC
 * 6455 section 5.5.1 asks) and returns its code; -1 on timeout or EOF without a close.
 */
int ws_wait_close(int fd, int timeout_ms);

/* One text message parsed as JSON; NULL on timeout, close frame, binary frame or error. */
json_t *ws_recv_json(int fd, int timeout_ms);

/* The value of one sample of GET /metrics ("name{labels}" exactly), or -1 when absent. */
long long http_metric(int port, const char *sample);

/*
 * Waits until that sample equals want, looking every METRIC_POLL_MS for at most
 * timeout_ms. Returns how many ms it took, or -1 (reported on stderr with the value it has).
 */
#define METRIC_POLL_MS 20
long http_metric_wait(int port, const char *sample, long long want, int timeout_ms);

/* A port that was free on 127.0.0.1 a moment ago (SOCK_STREAM or SOCK_DGRAM), or -1. */
int free_loopback_port(int type);

/* ---- Phoenix Channels v2 (JSON array frames) ------------------------------------------ */

/*
 * Sends [join_ref, ref, topic, event, payload]; NULL join_ref/ref are JSON null,
 * payload_json is JSON text (NULL: {}). Returns 0 or -1.
 */
int phx_send(int fd, const char *join_ref, const char *ref, const char *topic, const char *event,
             const char *payload_json);

/*
 * Reads frames until one with this topic and event (and ref, when not NULL) arrives;
 * returns that whole 5-element array. Frames in between are appended to skipped (a JSON
 * array; their count is json_array_size()) or dropped when skipped is NULL. NULL on
 * timeout, close or error (reported on stderr).
 */
json_t *phx_recv_match(int fd, const char *topic, const char *event, const char *ref,
                       int timeout_ms, json_t *skipped);

/* phx_recv_match() with any ref, dropping the frames in between. */
json_t *phx_recv_event(int fd, const char *topic, const char *event, int timeout_ms);

/*
 * A console joined to topic: connects to ws_port (vsn 2.0.0, no token), sends phx_join
 * with ref "1" and waits for its reply. Returns the descriptor (the caller closes it), with
 * the reply's response object in *response when not NULL (a reference: json_decref it);
 * or -1 when the connection fails or the reply does not come or is not "ok" (reported on
 * stderr).
 */
int phx_join_console(int ws_port, const char *topic, json_t **response);

/* "prefix$body*hh\r\n" into out: body with its NMEA checksum, as a modem sends it. */
void nmea_line(char *out, size_t cap, const char *prefix, const char *body);

/* Degrees v as NMEA "ddmm.mmmmm,H" (width 2 for latitude, 3 for longitude; H pos or neg). */
void nmea_angle(char *out, size_t cap, double v, int width, char pos, char neg);

/* The next position of device on topic, skipping other devices' positions (and the frames
 * that carry only those), or NULL after timeout_ms of none (reported on stderr). Returns a
 * new reference. */
json_t *phx_next_position(int fd, const char *topic, const char *device, int timeout_ms);

/*
 * Reads every frame arriving within ms and appends it to frames (a JSON array). Returns
 * how many arrived, or -1 when the socket was closed or failed meanwhile.
 */
int phx_collect(int fd, int ms, json_t *frames);

#endif
