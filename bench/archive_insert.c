/*
 * archive_insert.c - the archive's peer (bench/run-archive.sh): the same rows the daemon
 * archives, inserted into the same positions table (config/archive.sql) the way an
 * application without COPY would, by multi-row INSERT ... ON CONFLICT DO NOTHING over libpq,
 * one statement per ROWS rows, each its own transaction (autocommit).
 *
 * The rows are lines of COPY's text format, as the daemon's spool holds them
 * (src/archive/row.c): 14 tab-separated values, \N for NULL. The file may be a copy of a
 * spool file: SKIP bytes (its header) are skipped, and so are NUL bytes (punched holes).
 *
 *   prepared   PQprepare once, PQexecPrepared per statement: parsed and planned once
 *   params     PQexecParams per statement: the same text, parsed and planned every time
 *
 * Output: one "result ..." line of key=value pairs on stdout.
 *
 * usage: archive_insert CONNINFO FILE [ROWS [prepared|params [SKIP]]]   (1000 prepared 0)
 */
#include <fcntl.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define COLUMNS 14
#define COLUMN_NAMES                                                                               \
    "device, time, lat, lon, speed, course, alt, hdop, sats, src, attrs, rx_time, epoch, seq"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* INSERT INTO positions (...) VALUES ($1, ..., $14), ... ON CONFLICT DO NOTHING. */
static char *statement(int rows)
{
    size_t cap = 256 + (size_t)rows * COLUMNS * 10, len = 0;
    char *s = malloc(cap);
    len += (size_t)snprintf(s + len, cap - len, "INSERT INTO positions (%s) VALUES ", COLUMN_NAMES);
    for (int r = 0; r < rows; r++) {
        len += (size_t)snprintf(s + len, cap - len, "%s(", r ? "," : "");
        for (int c = 0; c < COLUMNS; c++)
            len += (size_t)snprintf(s + len, cap - len, "%s$%d", c ? "," : "", r * COLUMNS + c + 1);
        len += (size_t)snprintf(s + len, cap - len, ")");
    }
    snprintf(s + len, cap - len, " ON CONFLICT (device, time) DO NOTHING");
    return s;
}

/* One COPY text value in place: NULL for \N, else the escapes undone. */
static char *value(char *v)
{
    if (strcmp(v, "\\N") == 0)
        return NULL;
    char *w = v;
    for (char *r = v; *r; r++) {
        if (*r != '\\' || r[1] == '\0') {
            *w++ = *r;
            continue;
        }
        r++;
        *w++ = *r == 't' ? '\t' : *r == 'n' ? '\n' : *r == 'r' ? '\r' : *r;
    }
    *w = '\0';
    return v;
}

struct run {
    PGconn *conn;
    bool prepared;
    int rows;
    char *sql;
    long long inserted, statements;
};

static int exec_rows(struct run *run, const char *const *params, int rows)
{
    PGresult *r;
    if (run->prepared && rows == run->rows) {
        r = PQexecPrepared(run->conn, "ins", rows * COLUMNS, params, NULL, NULL, 0);
    } else {
        char *sql = rows == run->rows ? run->sql : statement(rows);
        r = PQexecParams(run->conn, sql, rows * COLUMNS, NULL, params, NULL, NULL, 0);
        if (sql != run->sql)
            free(sql);
    }
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "archive_insert: %s", PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    run->inserted += atoll(PQcmdTuples(r));
    run->statements++;
    PQclear(r);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 6) {
        fprintf(stderr, "usage: %s CONNINFO FILE [ROWS [prepared|params [SKIP]]]\n", argv[0]);
        return 64;
    }
    struct run run = {.rows = argc > 3 ? atoi(argv[3]) : 1000,
                      .prepared = argc <= 4 || strcmp(argv[4], "prepared") == 0};
    long skip = argc > 5 ? atol(argv[5]) : 0;
    if (run.rows < 1 || run.rows * COLUMNS > 65535) {
        fprintf(stderr, "archive_insert: ROWS must be 1 to %d\n", 65535 / COLUMNS);
        return 64;
    }

    int fd = open(argv[2], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(argv[2]);
        return 1;
    }
    /* A private copy of the file to cut into values in place (MAP_PRIVATE: copy on write). */
    char *data = st.st_size > skip ? mmap(NULL, (size_t)st.st_size + 1, PROT_READ | PROT_WRITE,
                                          MAP_PRIVATE | MAP_POPULATE, fd, 0)
                                   : NULL;
    if (data == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    char *end = data ? data + st.st_size : NULL;

    run.conn = PQconnectdb(argv[1]);
    if (PQstatus(run.conn) != CONNECTION_OK) {
        fprintf(stderr, "archive_insert: %s", PQerrorMessage(run.conn));
        return 1;
    }
    run.sql = statement(run.rows);
    if (run.prepared) {
        PGresult *r = PQprepare(run.conn, "ins", run.sql, run.rows * COLUMNS, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "archive_insert: prepare: %s", PQresultErrorMessage(r));
            return 1;
        }
        PQclear(r);
    }

    const char **params = calloc((size_t)run.rows * COLUMNS, sizeof(*params));
    long long lines = 0;
    int n = 0;
    double t0 = now_s();
    for (char *p = data ? data + skip : NULL; p != NULL && p < end;) {
        while (p < end && *p == '\0')
            p++;
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            break; /* a torn last line: the daemon cuts it too */
        *nl = '\0';
        char *v = p;
        p = nl + 1;
        int c = 0;
        for (char *tab; c < COLUMNS - 1 && (tab = strchr(v, '\t')) != NULL; c++, v = tab + 1) {
            *tab = '\0';
            params[n * COLUMNS + c] = value(v);
        }
        if (c != COLUMNS - 1) {
            fprintf(stderr, "archive_insert: line %lld has %d values\n", lines + 1, c + 1);
            return 1;
        }
        params[n * COLUMNS + c] = value(v);
        lines++;
        if (++n == run.rows) {
            if (exec_rows(&run, params, n) < 0)
                return 1;
            n = 0;
        }
    }
    if (n > 0 && exec_rows(&run, params, n) < 0)
        return 1;
    double took = now_s() - t0;
    printf("result mode=%s rows_per_statement=%d rows=%lld inserted=%lld statements=%lld "
           "seconds=%.3f rows_per_s=%.0f\n",
           run.prepared ? "prepared" : "params", run.rows, lines, run.inserted, run.statements,
           took, (double)lines / took);
    PQfinish(run.conn);
    return 0;
}
