/*
 * replay_main.c - runs a fuzz target's LLVMFuzzerTestOneInput over saved inputs, without
 * libFuzzer: every build (gcc, and the ASan+UBSan build) replays the seed corpora in ctest.
 *
 *   fuzz_<t>_replay PATH...   each PATH a file, or a directory whose files are all inputs
 *
 * Prints how many inputs ran; fails when none did (an empty or mistyped corpus path must
 * not pass as a green test). Each input is copied into a heap buffer of exactly its size,
 * as libFuzzer does, so AddressSanitizer catches a read one byte past the end.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define REPLAY_SANITIZER 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define REPLAY_SANITIZER 1
#endif
#ifdef REPLAY_SANITIZER
#include <sanitizer/common_interface_defs.h>
#endif

/* The input being run, named when it crashes: an abort() or a sanitizer report. */
static char current[4096];

static void say_current(void)
{
    static const char what[] = "replay: crashed on input ";
    size_t n = strlen(current);

    /* Only write(2): this runs in a signal handler or in the sanitizer's dying process. */
    if (write(STDERR_FILENO, what, sizeof(what) - 1) < 0 || write(STDERR_FILENO, current, n) < 0 ||
        write(STDERR_FILENO, "\n", 1) < 0) {
        return;
    }
}

static void on_abort(int sig)
{
    say_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Reads a whole file into an exact-size heap buffer. Returns 0, or -1 after saying why. */
static int read_file(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;

    if (f == NULL || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        if (f != NULL) {
            fclose(f);
        }
        return -1;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL || fread(buf, 1, n, f) != n) {
        fprintf(stderr, "replay: %s: cannot read\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

static int run_file(const char *path)
{
    uint8_t *buf;
    size_t len;

    if (read_file(path, &buf, &len) != 0) {
        return -1;
    }
    snprintf(current, sizeof(current), "%s", path);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of dir (not recursing, skipping dot files), in name order. */
static long run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    long ran = 0;

    if (d == NULL) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(names, cap * sizeof(*names));
            if (grown == NULL) {
                ran = -1;
                break;
            }
            names = grown;
        }
        size_t sz = strlen(dir) + strlen(e->d_name) + 2;
        if ((names[n] = malloc(sz)) == NULL) {
            ran = -1;
            break;
        }
        snprintf(names[n++], sz, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (n > 0) {
        qsort(names, n, sizeof(*names), cmp_names);
    }
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (ran >= 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            ran = run_file(names[i]) == 0 ? ran + 1 : -1;
        }
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv)
{
    long total = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    signal(SIGABRT, on_abort);
#ifdef REPLAY_SANITIZER
    __sanitizer_set_death_callback(say_current);
#endif

    for (int i = 1; i < argc; i++) {
        struct stat st;
        long ran;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        ran = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]) == 0 ? 1 : -1;
        if (ran < 0) {
            return 1;
        }
        printf("replay: %s: %ld inputs\n", argv[i], ran);
        total += ran;
    }
    printf("replay: ran %ld inputs\n", total);
    if (total == 0) {
        fprintf(stderr, "replay: no inputs found\n");
        return 1;
    }
    return 0;
}
