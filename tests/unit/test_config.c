/* Unit tests for server/config.c: config_parse's defaults, both value forms
 * (--flag=value and --flag value), boolean pairs, sizes with suffixes, the
 * APP argument, --header, and the one-line error naming the flag for every
 * kind of bad input. */
#include "config.h"

#include "check.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct config cfg;
static char err[256];

static enum config_result parse_argv(char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    memset(err, 0, sizeof err);
    return config_parse(&cfg, argc, argv, err, sizeof err);
}

/* Parses "evicorn ARGS..." into cfg. */
#define PARSE(...) parse_argv((char *[]){"evicorn", __VA_ARGS__, NULL})

/* Expects the arguments to be refused with a message that contains want. */
#define CHECK_REFUSED(want, ...)                                                                   \
    do {                                                                                           \
        CHECK_EQ_INT(PARSE(__VA_ARGS__), CONFIG_ERROR);                                            \
        if (!strstr(err, want)) {                                                                  \
            fprintf(stderr, "  %s:%d: error \"%s\" does not mention \"%s\"\n", __FILE__, __LINE__, \
                    err, want);                                                                    \
            check_failed_now = 1;                                                                  \
        }                                                                                          \
        CHECK(strchr(err, '\n') == NULL);                                                          \
        config_free(&cfg);                                                                         \
    } while (0)

/* ---- defaults ---- */

TEST(defaults_without_arguments)
{
    CHECK_EQ_INT(parse_argv((char *[]){"evicorn", NULL}), CONFIG_OK);
    CHECK(cfg.app == NULL);
    CHECK_EQ_STR(cfg.app_dir, ".");
    CHECK(!cfg.factory);
    CHECK_EQ_INT(cfg.lifespan, LIFESPAN_AUTO);
    CHECK_EQ_STR(cfg.host, "127.0.0.1");
    CHECK_EQ_INT(cfg.port, 8000);
    CHECK(cfg.uds == NULL);
    CHECK_EQ_INT(cfg.fd, -1);
    CHECK_EQ_INT(cfg.backlog, 2048);
    CHECK_EQ_INT(cfg.threads, 40);
    CHECK_EQ_STR(cfg.plugins_dir, "./plugins");
    CHECK_EQ_INT(cfg.log_level, LOG_INFO);
    CHECK(cfg.access_log);
    CHECK(cfg.timeout_keep_alive == 5);
    CHECK(cfg.timeout_header == 10);
    CHECK(cfg.timeout_body == 30);
    CHECK(cfg.timeout_write == 60);
    CHECK(cfg.timeout_graceful_shutdown == 30);
    CHECK(cfg.timeout_worker == 30);
    CHECK(cfg.timeout_startup == 10);
    CHECK_EQ_INT(cfg.limit_concurrency, 0);
    CHECK_EQ_INT(cfg.limit_max_requests, 0);
    CHECK_EQ_INT(cfg.limit_body, 1048576);
    CHECK_EQ_INT(cfg.headers.n, 0);
    CHECK(cfg.server_header);
    CHECK(cfg.date_header);
    CHECK_EQ_STR(cfg.root_path, "");
    CHECK(cfg.proxy_headers);
    CHECK(cfg.forwarded_allow_ips == NULL); /* settled by config_apply_env */
    CHECK_EQ_INT(cfg.workers, -1);
    CHECK_EQ_STR(cfg.interface, "auto");
    CHECK_EQ_STR(cfg.loop, "auto");
    CHECK_EQ_INT(cfg.use_colors, -1);
    CHECK(cfg.timeout_worker_healthcheck == 5);
    CHECK_EQ_INT(cfg.max_head, 16384);
    CHECK_EQ_INT(cfg.limit_max_requests_jitter, 0);
    CHECK(cfg.env_file == NULL && cfg.log_config == NULL);
    config_free(&cfg);
}

/* ---- the environment (uvicorn's WEB_CONCURRENCY, FORWARDED_ALLOW_IPS) ---- */

TEST(workers_and_trusted_proxies_default_from_the_environment)
{
    unsetenv("WEB_CONCURRENCY");
    unsetenv("FORWARDED_ALLOW_IPS");
    CHECK_EQ_INT(PARSE("main:app"), CONFIG_OK);
    CHECK_EQ_INT(config_apply_env(&cfg, err, sizeof err), 0);
    CHECK_EQ_INT(cfg.workers, 1);
    CHECK_EQ_STR(cfg.forwarded_allow_ips, "127.0.0.1,::1");
    CHECK(cfg.proxy_trust != NULL);
    config_free(&cfg);

    setenv("WEB_CONCURRENCY", "3", 1);
    setenv("FORWARDED_ALLOW_IPS", "10.0.0.0/8", 1);
    CHECK_EQ_INT(PARSE("main:app"), CONFIG_OK);
    CHECK_EQ_INT(config_apply_env(&cfg, err, sizeof err), 0);
    CHECK_EQ_INT(cfg.workers, 3);
    CHECK_EQ_STR(cfg.forwarded_allow_ips, "10.0.0.0/8");
    config_free(&cfg);

    /* The flags win over the environment. */
    CHECK_EQ_INT(PARSE("main:app", "--workers", "2", "--forwarded-allow-ips", "*"), CONFIG_OK);
    CHECK_EQ_INT(config_apply_env(&cfg, err, sizeof err), 0);
    CHECK_EQ_INT(cfg.workers, 2);
    CHECK_EQ_STR(cfg.forwarded_allow_ips, "*");
    config_free(&cfg);

    setenv("WEB_CONCURRENCY", "many", 1);
    CHECK_EQ_INT(PARSE("main:app"), CONFIG_OK);
    CHECK_EQ_INT(config_apply_env(&cfg, err, sizeof err), -1);
    CHECK(strstr(err, "WEB_CONCURRENCY") != NULL);
    config_free(&cfg);
    unsetenv("WEB_CONCURRENCY");
    unsetenv("FORWARDED_ALLOW_IPS");
}

TEST(uvicorn_flags_parse)
{
    CHECK_EQ_INT(PARSE("main:app", "--interface", "wsgi", "--loop", "uvloop", "--env-file", ".env",
                       "--log-config", "log.yaml", "--use-colors", "--limit-max-requests-jitter",
                       "50", "--timeout-worker-healthcheck", "2.5",
                       "--h11-max-incomplete-event-size", "65536"),
                 CONFIG_OK);
    CHECK_EQ_STR(cfg.interface, "wsgi");
    CHECK_EQ_STR(cfg.loop, "uvloop");
    CHECK_EQ_STR(cfg.env_file, ".env");
    CHECK_EQ_STR(cfg.log_config, "log.yaml");
    CHECK_EQ_INT(cfg.use_colors, 1);
    CHECK_EQ_INT(cfg.limit_max_requests_jitter, 50);
    CHECK(cfg.timeout_worker_healthcheck == 2.5);
    CHECK_EQ_INT(cfg.max_head, 65536);
    config_free(&cfg);
    CHECK_EQ_INT(PARSE("main:app", "--no-use-colors", "--loop", "mymod:new_loop"), CONFIG_OK);
    CHECK_EQ_INT(cfg.use_colors, 0);
    CHECK_EQ_STR(cfg.loop, "mymod:new_loop");
    config_free(&cfg);
}

TEST(uvicorn_flags_refuse_bad_values)
{
    CHECK_REFUSED("--interface: invalid value 'asgi4' (expected auto, asgi3, asgi2 or wsgi)",
                  "main:app", "--interface", "asgi4");
    CHECK_REFUSED("expected auto, asyncio, uvloop, none or module:attr", "main:app", "--loop",
                  "trio");
    CHECK_REFUSED("--interface wsgi needs an APP", "--interface", "wsgi");
    CHECK_REFUSED("--h11-max-incomplete-event-size", "--h11-max-incomplete-event-size", "10");
    CHECK_REFUSED("--limit-max-requests-jitter", "--limit-max-requests-jitter", "-1");
    CHECK_REFUSED("--use-colors takes no value", "--use-colors=1");
    CHECK_REFUSED("--ws-per-message-deflate: invalid value 'maybe' (expected true or false)",
                  "--ws-per-message-deflate=maybe");
    CHECK_REFUSED("--ws: invalid value 'ws4py'", "--ws", "ws4py");
    CHECK_REFUSED("--env-file", "--env-file", "");
}

TEST(websocket_flags_as_uvicorn_spells_them)
{
    CHECK_EQ_INT(PARSE("main:app"), CONFIG_OK);
    CHECK_EQ_STR(cfg.ws, "auto");
    CHECK_EQ_INT((long)cfg.ws_max_size, 16 * 1024 * 1024);
    CHECK_EQ_INT(cfg.ws_max_queue, 32);
    CHECK(cfg.ws_ping_interval == 20 && cfg.ws_ping_timeout == 20);
    CHECK(cfg.ws_per_message_deflate);
    CHECK(cfg.timeout_websocket_drain == 60);
    config_free(&cfg);
    CHECK_EQ_INT(PARSE("main:app", "--ws", "websockets", "--ws-per-message-deflate", "false",
                       "--ws-max-size", "1K", "--ws-ping-interval", "0", "--ws-max-queue", "4"),
                 CONFIG_OK);
    CHECK_EQ_STR(cfg.ws, "websockets");
    CHECK(!cfg.ws_per_message_deflate);
    CHECK_EQ_INT((long)cfg.ws_max_size, 1024);
    CHECK(cfg.ws_ping_interval == 0);
    CHECK_EQ_INT(cfg.ws_max_queue, 4);
    CHECK_EQ_STR(cfg.app, "main:app");
    config_free(&cfg);
    /* A switch given alone, and its --no- form, as every other switch. */
    CHECK_EQ_INT(PARSE("--no-ws-per-message-deflate", "--ws-per-message-deflate=on"), CONFIG_OK);
    CHECK(cfg.ws_per_message_deflate);
    config_free(&cfg);
    CHECK_EQ_INT(PARSE("--ws-per-message-deflate", "main:app"), CONFIG_OK);
    CHECK(cfg.ws_per_message_deflate);
    CHECK_EQ_STR(cfg.app, "main:app");
    config_free(&cfg);
}

/* ---- value forms ---- */

TEST(port_with_equals_sign)
{
    CHECK_EQ_INT(PARSE("--port=9000"), CONFIG_OK);
    CHECK_EQ_INT(cfg.port, 9000);
    config_free(&cfg);
}

TEST(port_as_the_next_argument)
{
    CHECK_EQ_INT(PARSE("--port", "9000"), CONFIG_OK);
    CHECK_EQ_INT(cfg.port, 9000);
    config_free(&cfg);
}

TEST(port_range_ends_are_accepted)
{
    CHECK_EQ_INT(PARSE("--port", "0"), CONFIG_OK);
    CHECK_EQ_INT(cfg.port, 0);
    config_free(&cfg);
    CHECK_EQ_INT(PARSE("--port", "65535"), CONFIG_OK);
    CHECK_EQ_INT(cfg.port, 65535);
    config_free(&cfg);
}

TEST(later_flag_wins)
{
    CHECK_EQ_INT(PARSE("--port", "1", "--port=2"), CONFIG_OK);
    CHECK_EQ_INT(cfg.port, 2);
    config_free(&cfg);
}

TEST(value_after_equals_may_contain_equals)
{
    CHECK_EQ_INT(PARSE("--root-path=/a=b"), CONFIG_OK);
    CHECK_EQ_STR(cfg.root_path, "/a=b");
    config_free(&cfg);
}

TEST(string_and_integer_flags_fill_their_fields)
{
    CHECK_EQ_INT(PARSE("--host", "0.0.0.0", "--workers", "4", "--threads=8", "--backlog", "64",
                       "--plugins", "/srv/plugins", "--app-dir", "/srv/app", "--root-path", "/api",
                       "--forwarded-allow-ips", "*", "--limit-concurrency", "100",
                       "--limit-max-requests=5000"),
                 CONFIG_OK);
    CHECK_EQ_STR(cfg.host, "0.0.0.0");
    CHECK_EQ_INT(cfg.workers, 4);
    CHECK_EQ_INT(cfg.threads, 8);
    CHECK_EQ_INT(cfg.backlog, 64);
    CHECK_EQ_STR(cfg.plugins_dir, "/srv/plugins");
    CHECK_EQ_STR(cfg.app_dir, "/srv/app");
    CHECK_EQ_STR(cfg.root_path, "/api");
    CHECK_EQ_STR(cfg.forwarded_allow_ips, "*");
    CHECK_EQ_INT(cfg.limit_concurrency, 100);
    CHECK_EQ_INT(cfg.limit_max_requests, 5000);
    config_free(&cfg);
}

TEST(seconds_accept_fractions_and_zero)
{
    CHECK_EQ_INT(PARSE("--timeout-keep-alive", "2.5", "--timeout-header=0", "--timeout-body", "1e2",
                       "--timeout-write", "7", "--timeout-graceful-shutdown", "0.25"),
                 CONFIG_OK);
    CHECK(cfg.timeout_keep_alive == 2.5);
    CHECK(cfg.timeout_header == 0);
    CHECK(cfg.timeout_body == 100);
    CHECK(cfg.timeout_write == 7);
    CHECK(cfg.timeout_graceful_shutdown == 0.25);
    config_free(&cfg);
}

TEST(watchdog_timeouts_accept_seconds_and_zero_for_never)
{
    CHECK_EQ_INT(PARSE("--timeout-worker", "2.5", "--timeout-startup=0"), CONFIG_OK);
    CHECK(cfg.timeout_worker == 2.5);
    CHECK(cfg.timeout_startup == 0);
    config_free(&cfg);
    CHECK_EQ_INT(PARSE("--timeout-worker=0", "--timeout-startup", "120"), CONFIG_OK);
    CHECK(cfg.timeout_worker == 0);
    CHECK(cfg.timeout_startup == 120);
    config_free(&cfg);
}

TEST(bad_watchdog_timeouts_are_refused)
{
    CHECK_REFUSED("--timeout-worker", "--timeout-worker", "-1");
    CHECK_REFUSED("--timeout-worker", "--timeout-worker", "never");
    CHECK_REFUSED("--timeout-startup", "--timeout-startup", "10s");
    CHECK_REFUSED("--timeout-startup", "--timeout-startup", "nan");
}

TEST(log_level_names)
{
    static const char *const names[] = {"critical", "error", "warning", "info", "debug", "trace"};
    static const int levels[] = {LOG_CRITICAL, LOG_ERROR, LOG_WARNING,
                                 LOG_INFO,     LOG_DEBUG, LOG_TRACE};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        CHECK_EQ_INT(PARSE("--log-level", (char *)names[i]), CONFIG_OK);
        CHECK_EQ_INT(cfg.log_level, levels[i]);
        config_free(&cfg);
    }
}

TEST(lifespan_modes)
{
    CHECK_EQ_INT(PARSE("--lifespan", "on"), CONFIG_OK);
    CHECK_EQ_INT(cfg.lifespan, LIFESPAN_ON);
    config_free(&cfg);
    CHECK_EQ_INT(PARSE("--lifespan=off"), CONFIG_OK);
    CHECK_EQ_INT(cfg.lifespan, LIFESPAN_OFF);
    config_free(&cfg);
    CHECK_EQ_INT(PARSE("--lifespan", "auto"), CONFIG_OK);
    CHECK_EQ_INT(cfg.lifespan, LIFESPAN_AUTO);
    config_free(&cfg);
}

/* ---- booleans ---- */

TEST(no_access_log_disables_the_access_log)
{
    CHECK_EQ_INT(PARSE("--no-access-log"), CONFIG_OK);
    CHECK(!cfg.access_log);
    config_free(&cfg);
}

TEST(boolean_pair_later_one_wins)
{
    CHECK_EQ_INT(PARSE("--no-access-log", "--access-log"), CONFIG_OK);
    CHECK(cfg.access_log);
    config_free(&cfg);
}

TEST(negated_booleans_turn_off_their_headers)
{
    CHECK_EQ_INT(PARSE("--no-server-header", "--no-date-header", "--no-proxy-headers"), CONFIG_OK);
    CHECK(!cfg.server_header);
    CHECK(!cfg.date_header);
    CHECK(!cfg.proxy_headers);
    CHECK(cfg.access_log);
    config_free(&cfg);
}

TEST(factory_flag)
{
    CHECK_EQ_INT(PARSE("--factory"), CONFIG_OK);
    CHECK(cfg.factory);
    config_free(&cfg);
}

TEST(trust_and_privilege_flags)
{
    CHECK_EQ_INT(PARSE("--user", "www-data", "--group=www", "--plugins-insecure", "--plugin-pubkey",
                       "/etc/evicorn/plugins.pub"),
                 CONFIG_OK);
    CHECK_EQ_STR(cfg.user, "www-data");
    CHECK_EQ_STR(cfg.group, "www");
    CHECK(cfg.plugins_insecure);
    CHECK_EQ_STR(cfg.plugin_pubkey, "/etc/evicorn/plugins.pub");
    config_free(&cfg);
    CHECK_EQ_INT(PARSE("--port", "1"), CONFIG_OK);
    CHECK(cfg.user == NULL && cfg.group == NULL && !cfg.plugins_insecure);
    CHECK(cfg.plugin_pubkey == NULL);
    config_free(&cfg);
    CHECK_REFUSED("--user", "--user", "");
    CHECK_REFUSED("--plugin-pubkey", "--plugin-pubkey");
    CHECK_REFUSED("--plugins-insecure", "--plugins-insecure=yes");
}

TEST(boolean_with_a_value_is_refused)
{
    CHECK_REFUSED("--access-log", "--access-log=yes");
    CHECK_REFUSED("--no-access-log", "--no-access-log=1");
}

TEST(no_prefix_only_applies_to_booleans)
{
    CHECK_REFUSED("--no-port", "--no-port");
}

/* ---- sizes ---- */

static uint64_t limit_body_of(const char *value)
{
    CHECK_EQ_INT(PARSE("--limit-body", (char *)value), CONFIG_OK);
    uint64_t v = cfg.limit_body;
    config_free(&cfg);
    return v;
}

TEST(limit_body_in_plain_bytes)
{
    CHECK_EQ_INT(limit_body_of("0"), 0);
    CHECK_EQ_INT(limit_body_of("12345"), 12345);
}

TEST(limit_body_with_megabyte_suffix)
{
    CHECK_EQ_INT(limit_body_of("2M"), 2097152);
    CHECK_EQ_INT(limit_body_of("2m"), 2097152);
    CHECK_EQ_INT(limit_body_of("2MB"), 2097152);
}

TEST(limit_body_with_kibibyte_suffix)
{
    CHECK_EQ_INT(limit_body_of("1KiB"), 1024);
    CHECK_EQ_INT(limit_body_of("1k"), 1024);
    CHECK_EQ_INT(limit_body_of("1Ki"), 1024);
}

TEST(limit_body_with_gigabyte_suffix)
{
    CHECK_EQ_INT(limit_body_of("3G"), 3221225472LL);
}

TEST(limit_body_bad_values_are_refused)
{
    CHECK_REFUSED("--limit-body", "--limit-body", "1X");
    CHECK_REFUSED("--limit-body", "--limit-body", "-1");
    CHECK_REFUSED("--limit-body", "--limit-body", "");
    CHECK_REFUSED("--limit-body", "--limit-body", "M");
    CHECK_REFUSED("--limit-body", "--limit-body", "1MM");
    CHECK_REFUSED("--limit-body", "--limit-body", "1 M");
    CHECK_REFUSED("--limit-body", "--limit-body", "1.5M");
    CHECK_REFUSED("--limit-body", "--limit-body", "99999999999999999999");
    CHECK_REFUSED("--limit-body", "--limit-body", "17179869184G"); /* 2^64 bytes */
}

/* ---- bad values name their flag ---- */

TEST(port_that_is_not_a_number_is_refused)
{
    CHECK_REFUSED("--port", "--port", "abc");
    CHECK_REFUSED("--port", "--port", "80x");
    CHECK_REFUSED("--port", "--port", "");
    CHECK_REFUSED("--port", "--port=");
    CHECK_REFUSED("--port", "--port", "8.5");
}

TEST(port_out_of_range_is_refused)
{
    CHECK_REFUSED("--port", "--port", "70000");
    CHECK_REFUSED("--port", "--port", "65536");
    CHECK_REFUSED("--port", "--port", "-1");
    CHECK_REFUSED("--port", "--port", "99999999999999999999999");
}

TEST(port_error_states_the_range)
{
    CHECK_EQ_INT(PARSE("--port", "abc"), CONFIG_ERROR);
    CHECK_EQ_STR(err, "--port: invalid value 'abc' (expected an integer from 0 to 65535)");
    config_free(&cfg);
}

TEST(error_quoting_a_value_with_control_bytes_stays_on_one_line)
{
    CHECK_EQ_INT(PARSE("--port", "1\r\n2\x01"), CONFIG_ERROR);
    CHECK_EQ_STR(err,
                 "--port: invalid value '1\\r\\n2\\x01' (expected an integer from 0 to 65535)");
    config_free(&cfg);
}

TEST(long_error_is_truncated_to_the_buffer)
{
    char small[16];
    CHECK_EQ_INT(config_parse(&cfg, 3, (char *[]){"evicorn", "--port", "abcdefghijkl", NULL}, small,
                              sizeof small),
                 CONFIG_ERROR);
    CHECK_EQ_STR(small, "--port: invalid");
    config_free(&cfg);
}

TEST(workers_and_threads_out_of_range_are_refused)
{
    CHECK_REFUSED("--workers", "--workers", "-1");
    CHECK_REFUSED("--workers", "--workers", "1025");
    CHECK_REFUSED("--threads", "--threads", "0");
    CHECK_REFUSED("--backlog", "--backlog", "0");
    CHECK_REFUSED("--fd", "--fd", "-2");
    CHECK_REFUSED("--limit-concurrency", "--limit-concurrency", "-5");
}

TEST(unknown_log_level_is_refused)
{
    CHECK_REFUSED("--log-level", "--log-level", "loud");
    CHECK_REFUSED("--log-level", "--log-level", "INFO");
    CHECK_REFUSED("--log-level", "--log-level", "");
}

TEST(unknown_lifespan_is_refused)
{
    CHECK_REFUSED("--lifespan", "--lifespan", "maybe");
}

TEST(bad_seconds_are_refused)
{
    CHECK_REFUSED("--timeout-header", "--timeout-header", "-1");
    CHECK_REFUSED("--timeout-header", "--timeout-header", "abc");
    CHECK_REFUSED("--timeout-header", "--timeout-header", "nan");
    CHECK_REFUSED("--timeout-header", "--timeout-header", "inf");
    CHECK_REFUSED("--timeout-header", "--timeout-header", "1e400");
    CHECK_REFUSED("--timeout-header", "--timeout-header", "5s");
    CHECK_REFUSED("--timeout-keep-alive", "--timeout-keep-alive", "");
}

TEST(empty_string_values_are_refused)
{
    CHECK_REFUSED("--host", "--host", "");
    CHECK_REFUSED("--plugins", "--plugins=");
}

/* ---- --header ---- */

TEST(repeated_headers_are_collected_in_order)
{
    CHECK_EQ_INT(
        PARSE("--header", "X-A: 1", "--header=X-B:two", "--port", "1", "--header", "x-a: 3"),
        CONFIG_OK);
    CHECK_EQ_INT(cfg.headers.n, 3);
    if (cfg.headers.n == 3) {
        CHECK_EQ_STR(cfg.headers.items[0], "X-A: 1");
        CHECK_EQ_STR(cfg.headers.items[1], "X-B:two");
        CHECK_EQ_STR(cfg.headers.items[2], "x-a: 3");
    }
    config_free(&cfg);
    CHECK(cfg.headers.items == NULL);
    CHECK_EQ_INT(cfg.headers.n, 0);
}

TEST(header_value_may_be_empty_or_hold_tabs_and_colons)
{
    CHECK_EQ_INT(
        PARSE("--header", "X-Empty:", "--header", "X-T:\ta\tb", "--header", "X-Url: http://h:1/"),
        CONFIG_OK);
    CHECK_EQ_INT(cfg.headers.n, 3);
    config_free(&cfg);
}

TEST(header_without_colon_is_refused)
{
    CHECK_REFUSED("--header", "--header", "bad");
    CHECK_REFUSED("--header", "--header", "");
}

TEST(header_with_empty_name_is_refused)
{
    CHECK_REFUSED("--header", "--header", ":value");
}

TEST(header_name_must_be_a_token)
{
    CHECK_REFUSED("--header", "--header", "X A: b");
    CHECK_REFUSED("--header", "--header", "X-A : b");
    CHECK_REFUSED("--header", "--header", "X\r\nY: b");
}

TEST(header_value_with_cr_or_lf_is_refused)
{
    CHECK_REFUSED("--header", "--header", "a:b\r\nc");
    CHECK_REFUSED("--header", "--header", "a:b\rc");
    CHECK_REFUSED("--header", "--header", "a:b\nSet-Cookie: x=1");
}

TEST(header_value_with_control_bytes_is_refused)
{
    CHECK_REFUSED("--header", "--header", "a:b\x01");
    CHECK_REFUSED("--header", "--header", "a:\x1b[0m");
    CHECK_REFUSED("--header", "--header", "a:b\x7f");
}

TEST(refused_header_after_accepted_ones_frees_cleanly)
{
    CHECK_REFUSED("--header", "--header", "A: 1", "--header", "B: 2", "--header", "bad");
}

/* ---- flags and arguments ---- */

TEST(unknown_flag_is_refused)
{
    CHECK_REFUSED("--nope", "--nope");
    CHECK_REFUSED("--nope", "--nope=1");
    CHECK_REFUSED("-p", "-p", "80");
}

TEST(lone_dashes_are_refused)
{
    CHECK_REFUSED("'-'", "-");
    CHECK_REFUSED("'--'", "--");
}

TEST(missing_value_at_the_end_is_refused)
{
    CHECK_REFUSED("--port", "--port");
    CHECK_REFUSED("--header", "--workers", "2", "--header");
}

TEST(missing_value_error_text)
{
    CHECK_EQ_INT(PARSE("--host"), CONFIG_ERROR);
    CHECK_EQ_STR(err, "--host needs a value");
    config_free(&cfg);
}

TEST(app_argument_is_accepted)
{
    CHECK_EQ_INT(PARSE("main:app"), CONFIG_OK);
    CHECK_EQ_STR(cfg.app, "main:app");
    config_free(&cfg);
    CHECK_EQ_INT(PARSE("--port", "1", "pkg.mod:create_app", "--workers=2"), CONFIG_OK);
    CHECK_EQ_STR(cfg.app, "pkg.mod:create_app");
    CHECK_EQ_INT(cfg.port, 1);
    CHECK_EQ_INT(cfg.workers, 2);
    config_free(&cfg);
}

TEST(app_without_attribute_is_refused)
{
    CHECK_REFUSED("main", "main");
    CHECK_REFUSED("main:", "main:");
    CHECK_REFUSED(":app", ":app");
    CHECK_REFUSED("a:b:c", "a:b:c");
}

TEST(two_apps_are_refused)
{
    CHECK_REFUSED("b:c", "main:app", "b:c");
}

TEST(uds_with_fd_is_refused)
{
    CHECK_REFUSED("--uds", "--uds", "/tmp/evicorn.sock", "--fd", "3");
    CHECK_REFUSED("--fd", "--fd=3", "--uds=/tmp/evicorn.sock");
}

TEST(uds_or_fd_alone_is_accepted)
{
    CHECK_EQ_INT(PARSE("--uds", "/tmp/evicorn.sock"), CONFIG_OK);
    CHECK_EQ_STR(cfg.uds, "/tmp/evicorn.sock");
    CHECK_EQ_INT(cfg.fd, -1);
    config_free(&cfg);
    CHECK_EQ_INT(PARSE("--fd", "3"), CONFIG_OK);
    CHECK_EQ_INT(cfg.fd, 3);
    CHECK(cfg.uds == NULL);
    config_free(&cfg);
}

TEST(reload_flags_repeat_and_need_an_app)
{
    CHECK_EQ_INT(PARSE("main:app", "--reload", "--reload-dir", "src", "--reload-dir=lib",
                       "--reload-include", "*.toml", "--reload-exclude", "tmp_*.py",
                       "--reload-delay", "1.5"),
                 CONFIG_OK);
    CHECK(cfg.reload);
    CHECK_EQ_INT(cfg.reload_dirs.n, 2);
    CHECK_EQ_STR(cfg.reload_dirs.items[0], "src");
    CHECK_EQ_STR(cfg.reload_dirs.items[1], "lib");
    CHECK_EQ_INT(cfg.reload_includes.n, 1);
    CHECK_EQ_STR(cfg.reload_includes.items[0], "*.toml");
    CHECK_EQ_INT(cfg.reload_excludes.n, 1);
    CHECK(cfg.reload_delay == 1.5);
    config_free(&cfg);
    CHECK(cfg.reload_dirs.items == NULL && cfg.reload_dirs.n == 0);
    CHECK_EQ_INT(PARSE("main:app"), CONFIG_OK);
    CHECK(!cfg.reload && cfg.reload_delay == 0.25 && cfg.reload_dirs.n == 0);
    config_free(&cfg);
    CHECK_REFUSED("--reload needs an APP", "--reload");
    CHECK_REFUSED("--reload-dir", "main:app", "--reload", "--reload-dir", "");
    CHECK_REFUSED("--reload-delay", "main:app", "--reload-delay", "soon");
    CHECK_REFUSED("--reload", "main:app", "--reload=1");
}

TEST(plugins_folder_given_or_default)
{
    CHECK_EQ_INT(PARSE("main:app"), CONFIG_OK);
    CHECK(!cfg.plugins_dir_given);
    config_free(&cfg);
    CHECK_EQ_INT(PARSE("main:app", "--plugins", "./plugins"), CONFIG_OK);
    CHECK(cfg.plugins_dir_given);
    config_free(&cfg);
}

TEST(help_exits_successfully)
{
    CHECK_EQ_INT(PARSE("--help"), CONFIG_EXIT_OK);
    config_free(&cfg);
    CHECK_EQ_INT(PARSE("--port", "1", "--help", "--bogus"), CONFIG_EXIT_OK);
    config_free(&cfg);
}

/* Runs config_parse on "evicorn --help" with stdout sent to a file; returns
 * what it printed. */
static const char *help_text(void)
{
    static char text[8192];
    text[0] = '\0';
    FILE *tmp = tmpfile();
    CHECK(tmp != NULL);
    if (!tmp)
        return text;
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    dup2(fileno(tmp), STDOUT_FILENO);
    enum config_result r = PARSE("--help");
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    CHECK_EQ_INT(r, CONFIG_EXIT_OK);
    config_free(&cfg);
    rewind(tmp);
    size_t n = fread(text, 1, sizeof text - 1, tmp);
    text[n] = '\0';
    fclose(tmp);
    return text;
}

TEST(help_lists_flags_with_their_value_forms)
{
    const char *help = help_text();
    CHECK(strncmp(help, "Usage: evicorn [APP] [options]\n", 31) == 0);
    CHECK(strstr(help, "\n  --port VALUE ") != NULL);
    CHECK(strstr(help, "\n  --access-log/--no-access-log ") != NULL);
    CHECK(strstr(help, "\n  --factory ") != NULL);
    CHECK(strstr(help, "\n  --timeout-worker VALUE ") != NULL);
    CHECK(strstr(help, "\n  --timeout-startup VALUE ") != NULL);
}

TEST(help_shows_no_value_for_help_and_version)
{
    const char *help = help_text();
    CHECK(strstr(help, "\n  --help ") != NULL);
    CHECK(strstr(help, "\n  --version ") != NULL);
    CHECK(strstr(help, "--help VALUE") == NULL);
    CHECK(strstr(help, "--version VALUE") == NULL);
}

TEST(version_exits_successfully)
{
    CHECK_EQ_INT(PARSE("--version"), CONFIG_EXIT_OK);
    config_free(&cfg);
}

TEST(help_and_version_take_no_value)
{
    CHECK_REFUSED("--help", "--help=1");
    CHECK_REFUSED("--version", "--version=x");
}

TEST(config_free_twice_is_harmless)
{
    CHECK_EQ_INT(PARSE("--header", "A: 1"), CONFIG_OK);
    config_free(&cfg);
    config_free(&cfg);
    CHECK(cfg.headers.items == NULL);
}

CHECK_MAIN()
