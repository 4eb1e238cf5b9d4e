/* Unit tests for server/env_file.c: --env-file reads .env files as
 * python-dotenv does (what uvicorn's --env-file uses). Each case's expected
 * variables are what python-dotenv 1.2.1's load_dotenv sets for the same
 * text, with PRESET and HOME_TEST already in the environment. */
#include "env_file.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

static const char *existing(const char *name)
{
    if (strcmp(name, "PRESET") == 0)
        return "from-env";
    if (strcmp(name, "HOME_TEST") == 0)
        return "/home/t";
    return NULL;
}

struct got {
    char names[32][64];
    char values[32][128];
    size_t n;
};

static int collect(void *ud, const char *name, const char *value)
{
    struct got *g = ud;
    if (g->n == 32)
        return -1;
    snprintf(g->names[g->n], sizeof g->names[0], "%s", name);
    snprintf(g->values[g->n], sizeof g->values[0], "%s", value);
    g->n++;
    return 0;
}

static int refuse(void *ud, const char *name, const char *value)
{
    (void)ud;
    (void)name;
    (void)value;
    return -1;
}

/* want: name, value pairs in the order they are set. */
static void check_parse(const char *text, size_t len, const char *const *want, size_t nwant,
                        int skipped)
{
    struct got g = {0};
    int bad_line = 0;
    CHECK_EQ_INT(env_file_parse(text, len, existing, collect, &g, &bad_line), skipped);
    CHECK_EQ_INT(g.n, nwant);
    for (size_t i = 0; i < nwant && i < g.n; i++) {
        CHECK_EQ_STR(g.names[i], want[2 * i]);
        CHECK_EQ_STR(g.values[i], want[2 * i + 1]);
    }
}

TEST(plain_and_export)
{
    static const char text[] = "A=1\nexport B=two\n  C = three  \n\tD\t=\tfour\t\n";
    static const char *const want[] = {"A", "1", "B", "two", "C", "three", "D", "four"};
    check_parse(text, sizeof text - 1, want, 4, 0);
}

TEST(comments)
{
    static const char text[] =
        "# c\nA=x # comment\nB=x#notcomment\nC='q' # c\nD=\"d\"   # c\n#E=1\n   # indented\n";
    static const char *const want[] = {"A", "x", "B", "x#notcomment", "C", "q", "D", "d"};
    check_parse(text, sizeof text - 1, want, 4, 0);
}

TEST(single_quotes)
{
    static const char text[] = "A='a\\'b\\\\c\\n'\nB='${PRESET}'\n";
    static const char *const want[] = {"A", "a'b\\c\\n", "B", "from-env"};
    check_parse(text, sizeof text - 1, want, 2, 0);
}

TEST(double_quotes)
{
    static const char text[] = "B=\"x\\ty\\n\\\"z\\\"\"\nC=\"\\a\\b\\f\\r\\v\"\n";
    static const char *const want[] = {"B", "x\ty\n\"z\"", "C", "\a\b\f\r\v"};
    check_parse(text, sizeof text - 1, want, 2, 0);
}

TEST(multiline)
{
    static const char text[] = "C='multi\nline'\nD=\"two\nlines\"\nE=after\n";
    static const char *const want[] = {"C", "multi\nline", "D", "two\nlines", "E", "after"};
    check_parse(text, sizeof text - 1, want, 3, 0);
}

TEST(backslash_before_closing_quote)
{
    static const char text[] = "E=\"a\\\\\"\nF=1\nG='b\\\\'\n";
    static const char *const want[] = {"E", "a\\", "F", "1", "G", "b\\"};
    check_parse(text, sizeof text - 1, want, 3, 0);
}

TEST(no_value)
{
    static const char text[] = "A\nB=\nC= \nD=\"\"\nE=''\n";
    static const char *const want[] = {"B", "", "C", "", "D", "", "E", ""};
    check_parse(text, sizeof text - 1, want, 4, 0);
}

TEST(expand)
{
    static const char text[] = "A=1\nB=${A}2\nC=\"${A}${MISSING:-def}\"\nE=${HOME_TEST}\nF=${A:x}"
                               "\nG=${UNSET}\nH=${PRESET}\nI=$A\nJ=${A\n";
    static const char *const want[] = {"A", "1",        "B", "12",     "C", "1def",
                                       "E", "/home/t",  "F", "${A:x}", "G", "",
                                       "H", "from-env", "I", "$A",     "J", "${A"};
    check_parse(text, sizeof text - 1, want, 9, 0);
}

TEST(errors)
{
    static const char text[] = "A=1\n=bad\nB=2\nC=\"unterminated\nD=4\nE=\"x\" junk\nF=6\n";
    static const char *const want[] = {"A", "1", "B", "2", "F", "6"};
    check_parse(text, sizeof text - 1, want, 3, 2);
}

TEST(later_wins)
{
    static const char text[] = "A=1\nB=${A}\nA=2\nC=${A}\n";
    static const char *const want[] = {"A", "2", "B", "1", "C", "2"};
    check_parse(text, sizeof text - 1, want, 3, 0);
}

TEST(crlf)
{
    static const char text[] = "A=1\r\nB='x'\r\nC=3\r";
    static const char *const want[] = {"A", "1", "B", "x", "C", "3"};
    check_parse(text, sizeof text - 1, want, 3, 0);
}

TEST(keys)
{
    static const char text[] = "'my key'=v\nexportX=1\nexport\nK.dot-dash=ok\n";
    static const char *const want[] = {"my key", "v", "exportX", "1", "K.dot-dash", "ok"};
    check_parse(text, sizeof text - 1, want, 3, 0);
}

TEST(preset_kept)
{
    static const char text[] = "PRESET=file\nX=${PRESET}\n";
    static const char *const want[] = {"X", "from-env"};
    check_parse(text, sizeof text - 1, want, 1, 0);
}

TEST(empty)
{
    static const char text[] = "";
    static const char *const want[] = {NULL};
    check_parse(text, sizeof text - 1, want, 0, 0);
}

TEST(only_blank)
{
    static const char text[] = "\n\n   \n";
    static const char *const want[] = {NULL};
    check_parse(text, sizeof text - 1, want, 0, 0);
}

TEST(unterminated_single)
{
    static const char text[] = "A='abc\nB=2\n";
    static const char *const want[] = {"B", "2"};
    check_parse(text, sizeof text - 1, want, 1, 1);
}

TEST(the_first_unparseable_line_is_named)
{
    static const char text[] = "A=1\n\n\n=bad\nB=2\n'unclosed=3\n";
    struct got g = {0};
    int bad_line = 0;
    CHECK_EQ_INT(env_file_parse(text, sizeof text - 1, existing, collect, &g, &bad_line), 2);
    CHECK_EQ_INT(bad_line, 4);
    CHECK_EQ_INT(g.n, 2);
}

TEST(a_failing_set_is_an_error)
{
    static const char text[] = "A=1\n";
    CHECK_EQ_INT(env_file_parse(text, sizeof text - 1, existing, refuse, NULL, NULL), -1);
}

CHECK_MAIN()
