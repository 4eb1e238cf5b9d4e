/* Unit tests for server/reload_watch.c's file filter: which changed files
 * make --reload start new workers, by uvicorn's rules for --reload-include
 * and --reload-exclude. */
#include "reload_watch.h"

#include <string.h>

#include "check.h"
#include "config.h"

static struct config with(const char **includes, size_t ni, const char **excludes, size_t ne)
{
    return (struct config){
        .reload_includes = {.items = includes, .n = ni},
        .reload_excludes = {.items = excludes, .n = ne},
    };
}

#define MATCHES(cfg, path) reload_watch_matches(&(cfg), (path))

TEST(python_sources_reload_by_default)
{
    struct config c = with(NULL, 0, NULL, 0);
    CHECK(MATCHES(c, "main.py"));
    CHECK(MATCHES(c, "pkg/sub/models.py"));
    CHECK(!MATCHES(c, "README.md"));
    CHECK(!MATCHES(c, "settings.toml"));
    CHECK(!MATCHES(c, "main.py.orig"));
}

TEST(hidden_files_bytecode_and_editor_droppings_do_not)
{
    struct config c = with(NULL, 0, NULL, 0);
    CHECK(!MATCHES(c, ".main.py"));          /* .* */
    CHECK(!MATCHES(c, "pkg/.#models.py"));   /* emacs lock file */
    CHECK(!MATCHES(c, "~main.py"));          /* ~* */
    CHECK(!MATCHES(c, "__pycache__/m.pyc")); /* not *.py at all */
    CHECK(!MATCHES(c, ".sw.py"));
}

TEST(includes_add_suffixes)
{
    const char *inc[] = {"*.toml", "*.html"};
    struct config c = with(inc, 2, NULL, 0);
    CHECK(MATCHES(c, "settings.toml"));
    CHECK(MATCHES(c, "templates/index.html"));
    CHECK(MATCHES(c, "main.py"));
    CHECK(!MATCHES(c, ".hidden.toml")); /* the default excludes still apply */
    CHECK(!MATCHES(c, "notes.txt"));
}

TEST(an_include_that_names_the_end_outright_wins_over_excludes)
{
    const char *inc[] = {".env"};
    struct config c = with(inc, 1, NULL, 0);
    CHECK(MATCHES(c, ".env"));
    CHECK(MATCHES(c, "conf/.env"));
}

TEST(a_default_exclude_that_is_included_is_dropped)
{
    const char *inc[] = {".*"};
    struct config c = with(inc, 1, NULL, 0);
    CHECK(MATCHES(c, ".config.py"));
    CHECK(MATCHES(c, ".anything"));
}

TEST(excludes_remove_matches)
{
    const char *exc[] = {"scratch_*.py", "migrations/*.py"};
    struct config c = with(NULL, 0, exc, 2);
    CHECK(!MATCHES(c, "scratch_1.py"));
    CHECK(!MATCHES(c, "pkg/scratch_2.py"));
    CHECK(!MATCHES(c, "app/migrations/0001.py"));
    CHECK(MATCHES(c, "app/models.py"));
    CHECK(MATCHES(c, "migrations.py"));
}

TEST(excluding_the_default_include_turns_python_off)
{
    const char *inc[] = {"*.toml"};
    const char *exc[] = {"*.py"};
    struct config c = with(inc, 1, exc, 1);
    CHECK(!MATCHES(c, "main.py"));
    CHECK(MATCHES(c, "a.toml"));
}

TEST(a_pattern_both_included_and_excluded_is_excluded)
{
    const char *inc[] = {"*.toml"};
    const char *exc[] = {"*.toml"};
    struct config c = with(inc, 1, exc, 1);
    CHECK(!MATCHES(c, "a.toml"));
    CHECK(MATCHES(c, "main.py"));
}

TEST(patterns_match_whole_components_from_the_right)
{
    const char *inc[] = {"conf/*.yaml"};
    struct config c = with(inc, 1, NULL, 0);
    CHECK(MATCHES(c, "conf/a.yaml"));
    CHECK(MATCHES(c, "deep/conf/a.yaml"));
    CHECK(!MATCHES(c, "a.yaml"));          /* more pattern than path */
    CHECK(!MATCHES(c, "myconf/a.yaml"));   /* a component matches whole */
    CHECK(!MATCHES(c, "conf/sub/a.yaml")); /* * does not cross a slash */
}

CHECK_MAIN()
