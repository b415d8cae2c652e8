/*
 * test_history_query.c - the query strings of /api/history and /api/snapshot
 * (history_query.h): every parameter, the defaults, and every refusal a 400 gives.
 */
#include <string.h>

#include "check.h"
#include "gpsrelay/history_query.h"

static const char *history(const char *qs, struct gr_history_query *q)
{
    return gr_history_query_parse(qs, strlen(qs), q);
}

static void test_history_ok(void)
{
    struct gr_history_query q;
    CHECK(history("device=AMB-12&from=2026-11-23T18:00:00Z&to=2026-11-23T19:00:00.5%2B01:00", &q) ==
          NULL);
    CHECK_STR(q.device, "AMB-12");
    CHECK_INT(q.from_ms, 1795456800000LL);
    CHECK_INT(q.to_ms, 1795456800500LL); /* 19:00:00.5+01:00 is 18:00:00.5Z */
    CHECK_INT(q.limit, GR_HISTORY_LIMIT_DEFAULT);
    CHECK_INT(q.format, GR_HISTORY_NDJSON);

    CHECK(history("token=x.y.z&from=1795456800&to=1795456800.25&device=Medic+12%2F7&limit=100000&"
                  "format=geojson",
                  &q) == NULL);
    CHECK_STR(q.device, "Medic 12/7");
    CHECK_INT(q.from_ms, 1795456800000LL);
    CHECK_INT(q.to_ms, 1795456800250LL);
    CHECK_INT(q.limit, 100000);
    CHECK_INT(q.format, GR_HISTORY_GEOJSON);
    CHECK(history("device=A&from=0&to=0&limit=1&&", &q) == NULL); /* from == to; empty pairs */
}

static void test_history_refused(void)
{
    struct gr_history_query q;
    const char *bad[][2] = {
        {"", "device is required"},
        {"device=A&to=1", "from is required"},
        {"device=A&from=1", "to is required"},
        {"device=A&from=2&to=1", "from is after to"},
        {"device=A&from=x&to=1", "bad from: RFC 3339 or seconds since 1970"},
        {"device=A&from=1&to=2026-02-30T00:00:00Z", "bad to: RFC 3339 or seconds since 1970"},
        {"device=A&from=2026-11-23T18:00:00&to=1", "bad from: RFC 3339 or seconds since 1970"},
        {"device=A&from=-5&to=1", "bad from: RFC 3339 or seconds since 1970"},
        {"device=A&from=1.&to=2", "bad from: RFC 3339 or seconds since 1970"},
        {"device=A&from=99999999999999999999&to=2", "bad from: RFC 3339 or seconds since 1970"},
        {"device=A&from=253402300800&to=253402300800", "bad from: RFC 3339 or seconds since 1970"},
        {"device=A&from=1&to=2&limit=0", "limit must be 1 to 100000"},
        {"device=A&from=1&to=2&limit=100001", "limit must be 1 to 100000"},
        {"device=A&from=1&to=2&limit=-1", "limit must be 1 to 100000"},
        {"device=A&from=1&to=2&limit=99999999999999999999", "limit must be 1 to 100000"},
        {"device=A&from=1&to=2&limit=", "limit must be 1 to 100000"},
        {"device=A&from=1&to=2&format=csv", "format must be ndjson or geojson"},
        {"device=A&from=1&to=2&format=NDJSON", "format must be ndjson or geojson"},
        {"device=A&device=B&from=1&to=2", "device given twice"},
        {"device=A&from=1&from=1&to=2", "from given twice"},
        {"device=A&from=1&to=2&limit=5&limit=5", "limit given twice"},
        {"device=&from=1&to=2", "bad device"},
        {"device=A%0Ab&from=1&to=2", "bad device"},
        {"device=A%2&from=1&to=2", "bad device"},
        {"device=A%zz&from=1&to=2", "bad device"},
        {"device=A%00&from=1&to=2", "bad device"},
        {"device=A&from=1&to=2&agency=x", "unknown parameter"},
        {"device=A&from=1&to=2&since", "unknown parameter"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = history(bad[i][0], &q);
        CHECK(why != NULL && strcmp(why, bad[i][1]) == 0);
        if (why == NULL || strcmp(why, bad[i][1]) != 0)
            fprintf(stderr, "  \"%s\": %s\n", bad[i][0], why ? why : "(accepted)");
    }
    char longest[GR_DEVICE_ID_MAX + 32] = "device=";
    memset(longest + 7, 'x', GR_DEVICE_ID_MAX + 1);
    strcpy(longest + 7 + GR_DEVICE_ID_MAX + 1, "&from=1&to=2");
    CHECK_STR(history(longest, &q), "bad device");
    char huge[GR_HISTORY_QUERY_MAX + 2];
    memset(huge, 'a', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    CHECK_STR(history(huge, &q), "query too long");
}

static void test_snapshot(void)
{
    struct gr_snapshot_query s;
    const char *ok = "agency=county-ems&at=2026-11-23T18:20:01.250Z&token=t";
    CHECK(gr_snapshot_query_parse(ok, strlen(ok), &s) == NULL);
    CHECK_STR(s.agency, "county-ems");
    CHECK_INT(s.at_ms, 1795458001250LL);
    const char *bad[][2] = {
        {"at=1", "agency is required"},
        {"agency=a", "at is required"},
        {"agency=a&at=tomorrow", "bad at: RFC 3339 or seconds since 1970"},
        {"agency=a&agency=b&at=1", "agency given twice"},
        {"agency=a&at=1&device=x", "unknown parameter"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = gr_snapshot_query_parse(bad[i][0], strlen(bad[i][0]), &s);
        CHECK(why != NULL && strcmp(why, bad[i][1]) == 0);
    }
}

int main(void)
{
    test_history_ok();
    test_history_refused();
    test_snapshot();
    return check_result("test_history_query");
}
