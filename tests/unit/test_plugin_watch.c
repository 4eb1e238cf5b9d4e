/* Unit tests for server/plugin_watch.c.
 *
 * Each test owns an ev_loop, a fresh mkdtemp folder and a recorder callback,
 * and runs the loop under a watchdog timer, so a watch that never reports
 * fails a test instead of hanging the run. File changes are made before the
 * loop runs, so the kernel has queued every event of a burst by the time the
 * watch reads them: "one callback per burst" does not depend on timing. After
 * the expected reports arrive the loop runs a little longer (SETTLE_SECONDS,
 * many debounce periods) to catch any extra report. Log lines are captured by
 * pointing stderr at a temporary file. */
#include "check.h"
#include "plugin_watch.h"
#include "support.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define WATCHDOG_SECONDS 10.0
#define SETTLE_SECONDS   0.08
#define MAX_RECORDS      64

/* ---- helpers ---- */

struct record {
    char name[256];
    bool present;
};

struct fixture {
    struct ev_loop *loop;
    struct plugin_watch *w;
    char dir[64];
    struct record recs[MAX_RECORDS];
    int n;
    int want;              /* ev_break once n reaches it */
    int scans_in_callback; /* how many more times the callback calls scan */
    int nested_scan_result;
};

static void record_fn(void *ud, const char *name, bool present)
{
    struct fixture *f = ud;
    CHECK(f->n < MAX_RECORDS);
    if (f->n < MAX_RECORDS) {
        snprintf(f->recs[f->n].name, sizeof f->recs[f->n].name, "%s", name);
        f->recs[f->n].present = present;
    }
    f->n++;
    if (f->scans_in_callback > 0) {
        f->scans_in_callback--;
        f->nested_scan_result = plugin_watch_scan(f->w);
    }
    if (f->n == f->want)
        ev_break(f->loop, EVBREAK_ALL);
}

/* Runs the loop until want reports in total have arrived (0 on watchdog),
 * then SETTLE_SECONDS more so that extra reports would be counted. */
static int run_until(struct fixture *f, int want)
{
    f->want = want;
    int ok = f->n >= want || run_bounded(f->loop, WATCHDOG_SECONDS);
    f->want = -1;

    ev_timer settle;
    ev_timer_init(&settle, break_loop_cb, SETTLE_SECONDS, 0.);
    settle.data = NULL;
    ev_timer_start(f->loop, &settle);
    ev_run(f->loop, 0);
    ev_timer_stop(f->loop, &settle);
    return ok;
}

static void settle_only(struct fixture *f)
{
    run_until(f, 0);
}

static void fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    f->want = -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/evicorn-pw-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(f->dir) != NULL);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    CHECK(f->loop != NULL);
    char err[300];
    f->w = plugin_watch_new(f->loop, f->dir, record_fn, f, err, sizeof err);
    CHECK(f->w != NULL);
    if (!f->w)
        fprintf(stderr, "  %s\n", err);
}

static void path_of(const struct fixture *f, const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s", f->dir, name);
}

static void write_file(const struct fixture *f, const char *name, const char *content)
{
    char p[PATH_MAX];
    path_of(f, name, p, sizeof p);
    int fd = open(p, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    size_t len = strlen(content);
    CHECK_EQ_INT(write(fd, content, len), (long long)len);
    CHECK_EQ_INT(close(fd), 0);
}

static void remove_file(const struct fixture *f, const char *name)
{
    char p[PATH_MAX];
    path_of(f, name, p, sizeof p);
    CHECK_EQ_INT(unlink(p), 0);
}

static void rename_file(const struct fixture *f, const char *from, const char *to)
{
    char a[PATH_MAX], b[PATH_MAX];
    path_of(f, from, a, sizeof a);
    path_of(f, to, b, sizeof b);
    CHECK_EQ_INT(rename(a, b), 0);
}

static void fixture_destroy(struct fixture *f)
{
    plugin_watch_free(f->w);
    ev_loop_destroy(f->loop);
    remove_tree(f->dir, true); /* a test may have removed or moved it */
}

static void forget_records(struct fixture *f)
{
    f->n = 0;
}

#define CHECK_RECORD(f, i, want_name, want_present)                                                \
    do {                                                                                           \
        CHECK((i) < (f)->n);                                                                       \
        if ((i) < (f)->n) {                                                                        \
            CHECK_EQ_STR((f)->recs[i].name, want_name);                                            \
            CHECK_EQ_INT((f)->recs[i].present, want_present);                                      \
        }                                                                                          \
    } while (0)

/* Points stderr at a temporary file until capture_end returns its text. */
struct capture {
    int saved, fd;
    char text[8192];
};

static void capture_begin(struct capture *c)
{
    fflush(stderr);
    char path[] = "/tmp/evicorn-pw-log-XXXXXX";
    c->fd = mkstemp(path);
    CHECK(c->fd >= 0);
    CHECK_EQ_INT(unlink(path), 0);
    c->saved = dup(STDERR_FILENO);
    CHECK(c->saved >= 0);
    CHECK(dup2(c->fd, STDERR_FILENO) >= 0);
}

static const char *capture_end(struct capture *c)
{
    fflush(stderr);
    CHECK(dup2(c->saved, STDERR_FILENO) >= 0);
    CHECK_EQ_INT(close(c->saved), 0);
    ssize_t n = pread(c->fd, c->text, sizeof c->text - 1, 0);
    CHECK(n >= 0);
    c->text[n > 0 ? n : 0] = '\0';
    CHECK_EQ_INT(close(c->fd), 0);
    return c->text;
}

static int count_substr(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* ---- tests ---- */

TEST(new_file_written_reports_present_once)
{
    struct fixture f;
    fixture_init(&f);
    write_file(&f, "hello.so", "v1");
    CHECK(run_until(&f, 1));
    CHECK_EQ_INT(f.n, 1);
    CHECK_RECORD(&f, 0, "hello.so", true);
    fixture_destroy(&f);
}

TEST(rename_from_temp_name_reports_only_the_candidate)
{
    struct fixture f;
    fixture_init(&f);
    write_file(&f, "x.tmp", "v1");
    rename_file(&f, "x.tmp", "x.so");
    CHECK(run_until(&f, 1));
    CHECK_EQ_INT(f.n, 1);
    CHECK_RECORD(&f, 0, "x.so", true);
    fixture_destroy(&f);
}

TEST(overwrite_reports_once)
{
    struct fixture f;
    fixture_init(&f);
    write_file(&f, "a.so", "v1");
    CHECK(run_until(&f, 1));
    forget_records(&f);
    write_file(&f, "a.so", "version two");
    CHECK(run_until(&f, 1));
    CHECK_EQ_INT(f.n, 1);
    CHECK_RECORD(&f, 0, "a.so", true);
    fixture_destroy(&f);
}

TEST(delete_and_move_away_report_absent)
{
    struct fixture f;
    fixture_init(&f);
    write_file(&f, "a.so", "v1");
    write_file(&f, "b.so", "v1");
    CHECK(run_until(&f, 2));
    forget_records(&f);
    remove_file(&f, "a.so");
    CHECK(run_until(&f, 1));
    CHECK_EQ_INT(f.n, 1);
    CHECK_RECORD(&f, 0, "a.so", false);

    forget_records(&f);
    rename_file(&f, "b.so", ".b.so.old");
    CHECK(run_until(&f, 1));
    CHECK_EQ_INT(f.n, 1);
    CHECK_RECORD(&f, 0, "b.so", false);
    fixture_destroy(&f);
}

TEST(dotfiles_temp_names_directories_and_other_files_are_ignored)
{
    struct fixture f;
    fixture_init(&f);
    write_file(&f, ".hidden.so", "x");
    write_file(&f, "notes.txt", "x");
    write_file(&f, "p.so.tmp", "x");
    write_file(&f, "p.so.part", "x");
    write_file(&f, "p.so~", "x");
    write_file(&f, "libz.so.1", "x");
    char p[PATH_MAX];
    path_of(&f, "dir.so", p, sizeof p);
    CHECK_EQ_INT(mkdir(p, 0700), 0);
    remove_file(&f, ".hidden.so");
    /* Events arrive in order: once this one is reported, the rest were seen. */
    write_file(&f, "real.so", "x");
    CHECK(run_until(&f, 1));
    CHECK_EQ_INT(f.n, 1);
    CHECK_RECORD(&f, 0, "real.so", true);
    fixture_destroy(&f);
}

TEST(burst_of_writes_to_one_file_reports_once)
{
    struct fixture f;
    fixture_init(&f);
    for (int i = 0; i < 20; i++) {
        char content[32];
        snprintf(content, sizeof content, "version %d", i);
        write_file(&f, "busy.so", content);
    }
    CHECK(run_until(&f, 1));
    CHECK_EQ_INT(f.n, 1);
    CHECK_RECORD(&f, 0, "busy.so", true);
    fixture_destroy(&f);
}

TEST(delete_then_recreate_within_debounce_reports_present_once)
{
    struct fixture f;
    fixture_init(&f);
    write_file(&f, "a.so", "v1");
    CHECK(run_until(&f, 1));
    forget_records(&f);
    remove_file(&f, "a.so");
    write_file(&f, "a.so", "v2");
    CHECK(run_until(&f, 1));
    CHECK_EQ_INT(f.n, 1);
    CHECK_RECORD(&f, 0, "a.so", true);

    /* And the other way round: created then deleted is one absent. */
    forget_records(&f);
    write_file(&f, "brief.so", "v1");
    remove_file(&f, "brief.so");
    CHECK(run_until(&f, 1));
    CHECK_EQ_INT(f.n, 1);
    CHECK_RECORD(&f, 0, "brief.so", false);
    fixture_destroy(&f);
}

TEST(two_files_report_once_each)
{
    struct fixture f;
    fixture_init(&f);
    write_file(&f, "one.so", "1");
    write_file(&f, "two.so", "2");
    write_file(&f, "one.so", "1b");
    CHECK(run_until(&f, 2));
    CHECK_EQ_INT(f.n, 2);
    if (f.n == 2) {
        int one = strcmp(f.recs[0].name, "one.so") == 0 ? 0 : 1;
        CHECK_RECORD(&f, one, "one.so", true);
        CHECK_RECORD(&f, 1 - one, "two.so", true);
    }
    fixture_destroy(&f);
}

static void write_then_reschedule(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    const struct fixture *f = t->data;
    write_file(f, "never-quiet.so", "x");
}

/* A name written more often than the debounce period is still reported,
 * within PLUGIN_WATCH_DEBOUNCE_MAX_SECONDS, while the writes go on. */
TEST(a_name_that_never_goes_quiet_is_still_reported)
{
    struct fixture f;
    fixture_init(&f);
    ev_timer writer;
    ev_timer_init(&writer, write_then_reschedule, 0., PLUGIN_WATCH_DEBOUNCE_SECONDS / 3);
    writer.data = &f;
    ev_timer_start(f.loop, &writer);
    f.want = 1;
    ev_timer stop;
    ev_timer_init(&stop, break_loop_cb, PLUGIN_WATCH_DEBOUNCE_MAX_SECONDS * 3, 0.);
    int timed_out = 0;
    stop.data = &timed_out;
    ev_timer_start(f.loop, &stop);
    ev_run(f.loop, 0);
    ev_timer_stop(f.loop, &stop);
    ev_timer_stop(f.loop, &writer);
    CHECK(!timed_out);
    CHECK_EQ_INT(f.n, 1);
    CHECK_RECORD(&f, 0, "never-quiet.so", true);
    fixture_destroy(&f);
}

TEST(scan_reports_existing_candidates_in_name_order)
{
    struct fixture f;
    fixture_init(&f);
    const char *names[] = {"c.so", "a.so", "b.so", ".h.so", "x.txt", "y.so.swp", "B.so"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        write_file(&f, names[i], "x");
    char p[PATH_MAX];
    path_of(&f, "e.so", p, sizeof p);
    CHECK_EQ_INT(mkdir(p, 0700), 0);
    /* A fresh watch sees none of that as events; scan finds the files. */
    plugin_watch_free(f.w);
    char err[300];
    f.w = plugin_watch_new(f.loop, f.dir, record_fn, &f, err, sizeof err);
    CHECK(f.w != NULL);
    if (!f.w)
        return;
    CHECK_EQ_INT(plugin_watch_scan(f.w), 4);
    CHECK_EQ_INT(f.n, 4);
    CHECK_RECORD(&f, 0, "B.so", true);
    CHECK_RECORD(&f, 1, "a.so", true);
    CHECK_RECORD(&f, 2, "b.so", true);
    CHECK_RECORD(&f, 3, "c.so", true);
    forget_records(&f);
    settle_only(&f);
    CHECK_EQ_INT(f.n, 0);
    fixture_destroy(&f);
}

TEST(scan_of_empty_folder_returns_zero)
{
    struct fixture f;
    fixture_init(&f);
    CHECK_EQ_INT(plugin_watch_scan(f.w), 0);
    CHECK_EQ_INT(f.n, 0);
    fixture_destroy(&f);
}

TEST(callback_may_call_scan)
{
    struct fixture f;
    fixture_init(&f);
    write_file(&f, "old.so", "x");
    CHECK(run_until(&f, 1));
    forget_records(&f);
    f.scans_in_callback = 1;
    write_file(&f, "new.so", "x");
    CHECK(run_until(&f, 3));
    CHECK_EQ_INT(f.n, 3);
    CHECK_EQ_INT(f.nested_scan_result, 2);
    CHECK_RECORD(&f, 0, "new.so", true);
    CHECK_RECORD(&f, 1, "new.so", true);
    CHECK_RECORD(&f, 2, "old.so", true);
    fixture_destroy(&f);
}

TEST(watching_a_missing_folder_fails_with_a_message)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char dir[64], missing[128], err[300], want[400];
    snprintf(dir, sizeof dir, "/tmp/evicorn-pw-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(missing, sizeof missing, "%s/plugins", dir);
    CHECK(plugin_watch_new(loop, missing, record_fn, NULL, err, sizeof err) == NULL);
    snprintf(want, sizeof want, "cannot watch %s: No such file or directory", missing);
    CHECK_EQ_STR(err, want);

    int fd = open(missing, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ_INT(close(fd), 0);
    CHECK(plugin_watch_new(loop, missing, record_fn, NULL, err, sizeof err) == NULL);
    snprintf(want, sizeof want, "cannot watch %s: Not a directory", missing);
    CHECK_EQ_STR(err, want);
    CHECK_EQ_INT(unlink(missing), 0);
    CHECK_EQ_INT(rmdir(dir), 0);
    ev_loop_destroy(loop);
}

TEST(free_drops_pending_reports)
{
    struct fixture f;
    fixture_init(&f);
    write_file(&f, "a.so", "x");
    /* One non-blocking iteration reads the event and starts its debounce. */
    ev_run(f.loop, EVRUN_NOWAIT);
    CHECK_EQ_INT(f.n, 0);
    plugin_watch_free(f.w);
    f.w = NULL;
    ev_timer t;
    ev_timer_init(&t, break_loop_cb, SETTLE_SECONDS, 0.);
    t.data = NULL;
    ev_timer_start(f.loop, &t);
    ev_run(f.loop, 0);
    ev_timer_stop(f.loop, &t);
    CHECK_EQ_INT(f.n, 0);
    fixture_destroy(&f);
}

static long max_queued_events(void)
{
    FILE *fp = fopen("/proc/sys/fs/inotify/max_queued_events", "re");
    long n = -1;
    if (fp) {
        if (fscanf(fp, "%ld", &n) != 1)
            n = -1;
        CHECK_EQ_INT(fclose(fp), 0);
    }
    return n;
}

/* Floods the queue past its limit; the changes made after the overflow have
 * no events, and the rescan reports them, including the deletion. */
TEST(queue_overflow_rescans_and_reports_what_changed)
{
    long max = max_queued_events();
    CHECK(max > 0);
    if (max <= 0 || max > 1000000)
        return;
    struct fixture f;
    fixture_init(&f);
    write_file(&f, "gone.so", "x");
    write_file(&f, "kept.so", "x");
    CHECK_EQ_INT(plugin_watch_scan(f.w), 2);
    settle_only(&f); /* reads and reports the two writes as well */
    forget_records(&f);

    /* Alternating names: the kernel merges only identical consecutive events. */
    char a[PATH_MAX], b[PATH_MAX];
    path_of(&f, "flood-a.txt", a, sizeof a);
    path_of(&f, "flood-b.txt", b, sizeof b);
    for (long i = 0; i < max + 16; i++) {
        int fd = open(i % 2 ? a : b, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        CHECK(fd >= 0);
        if (fd < 0)
            break;
        CHECK_EQ_INT(close(fd), 0);
    }
    remove_file(&f, "gone.so");
    write_file(&f, "new.so", "x");

    struct capture c;
    capture_begin(&c);
    int ok = run_until(&f, 3);
    const char *log = capture_end(&c);
    CHECK(ok);
    CHECK_EQ_INT(count_substr(log, "overflow"), 1);
    CHECK_EQ_INT(f.n, 3);
    /* Each name through its own debounce timer: any order. */
    const char *want_names[] = {"kept.so", "new.so", "gone.so"};
    const bool want_present[] = {true, true, false};
    for (int i = 0; i < 3; i++) {
        int seen = 0;
        for (int j = 0; j < f.n && j < MAX_RECORDS; j++) {
            if (strcmp(f.recs[j].name, want_names[i]) != 0)
                continue;
            seen++;
            CHECK_EQ_INT(f.recs[j].present, want_present[i]);
        }
        if (seen != 1)
            fprintf(stderr, "  %s reported %d times\n", want_names[i], seen);
        CHECK_EQ_INT(seen, 1);
    }
    fixture_destroy(&f);
}

TEST(folder_removed_is_logged_once)
{
    struct fixture f;
    fixture_init(&f);
    struct capture c;
    capture_begin(&c);
    CHECK_EQ_INT(rmdir(f.dir), 0);
    settle_only(&f);
    const char *log = capture_end(&c);
    char want[200];
    snprintf(want, sizeof want, "plugins folder %s was removed; no further changes will be seen",
             f.dir);
    CHECK_EQ_INT(count_substr(log, want), 1);
    CHECK_EQ_INT(count_substr(log, "ERROR"), 1);
    CHECK_EQ_INT(f.n, 0);
    fixture_destroy(&f);
}

TEST(folder_moved_away_is_logged_once_and_no_longer_watched)
{
    struct fixture f;
    fixture_init(&f);
    char moved[128];
    snprintf(moved, sizeof moved, "%s-moved", f.dir);
    struct capture c;
    capture_begin(&c);
    CHECK_EQ_INT(rename(f.dir, moved), 0);
    settle_only(&f);
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/late.so", moved);
    int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ_INT(close(fd), 0);
    settle_only(&f);
    const char *log = capture_end(&c);
    CHECK_EQ_INT(count_substr(log, "was moved away; no further changes will be seen"), 1);
    CHECK_EQ_INT(count_substr(log, "ERROR"), 1);
    CHECK_EQ_INT(f.n, 0);
    plugin_watch_free(f.w);
    f.w = NULL;
    ev_loop_destroy(f.loop);
    remove_tree(moved, true);
}

CHECK_MAIN()
