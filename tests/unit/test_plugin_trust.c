/* Unit tests for server/plugin_trust.c: who may own and who may write a
 * plugin file and the folders above it. The owner cases need root (chown),
 * as CI runs; without root they are skipped with a note. */
#include "plugin_trust.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "support.h"

/* Someone neither root nor the workers' user: "nobody" on Debian. */
#define OTHER_UID 65534

static const struct plugin_trust as_root = {.uid = 0, .name = "root"};
static const struct plugin_trust as_worker = {.uid = 4242, .name = "worker"};

/* A scratch tree <tmp>/evicorn-trust-XXXXXX/a/b, every folder 0755. */
struct tree {
    char root[96], a[128], b[160];
};

static void tree_init(struct tree *t)
{
    snprintf(t->root, sizeof t->root, "/tmp/evicorn-trust-XXXXXX");
    CHECK(mkdtemp(t->root) != NULL);
    CHECK_EQ_INT(chmod(t->root, 0755), 0);
    snprintf(t->a, sizeof t->a, "%s/a", t->root);
    snprintf(t->b, sizeof t->b, "%s/b", t->a);
    CHECK_EQ_INT(mkdir(t->a, 0755), 0);
    CHECK_EQ_INT(mkdir(t->b, 0755), 0);
}

static bool contains(const char *s, const char *part)
{
    bool ok = strstr(s, part) != NULL;
    if (!ok)
        fprintf(stderr, "  \"%s\" does not contain \"%s\"\n", s, part);
    return ok;
}

static struct stat file_stat(uid_t uid, mode_t mode)
{
    struct stat st = {0};
    st.st_uid = uid;
    st.st_mode = S_IFREG | mode;
    return st;
}

TEST(file_owned_by_root_or_the_worker_and_not_writable_by_others_is_trusted)
{
    char why[512];
    struct stat st = file_stat(0, 0755);
    CHECK_EQ_INT(plugin_trust_file(&as_root, &st, "/p/x.so", why, sizeof why), 0);
    CHECK_EQ_INT(plugin_trust_file(&as_worker, &st, "/p/x.so", why, sizeof why), 0);
    st = file_stat(4242, 0644);
    CHECK_EQ_INT(plugin_trust_file(&as_worker, &st, "/p/x.so", why, sizeof why), 0);
    st = file_stat(0, 0400);
    CHECK_EQ_INT(plugin_trust_file(&as_root, &st, "/p/x.so", why, sizeof why), 0);
}

TEST(file_writable_by_group_or_others_is_refused_with_the_fix)
{
    char why[512];
    struct stat st = file_stat(0, 0664);
    CHECK_EQ_INT(plugin_trust_file(&as_root, &st, "/p/x.so", why, sizeof why), -1);
    CHECK(contains(why, "file /p/x.so is writable by its group (mode 0664)"));
    CHECK(contains(why, "fix: chmod go-w /p/x.so"));
    st = file_stat(0, 0646);
    CHECK_EQ_INT(plugin_trust_file(&as_root, &st, "/p/x.so", why, sizeof why), -1);
    CHECK(contains(why, "writable by others (mode 0646)"));
    st = file_stat(0, 0777);
    CHECK_EQ_INT(plugin_trust_file(&as_root, &st, "/p/x.so", why, sizeof why), -1);
    CHECK(contains(why, "writable by its group and others (mode 0777)"));
    /* The sticky bit means nothing for a file. */
    st = file_stat(0, 01666);
    CHECK_EQ_INT(plugin_trust_file(&as_root, &st, "/p/x.so", why, sizeof why), -1);
}

TEST(file_owned_by_another_user_is_refused_with_the_fix)
{
    char why[512];
    struct stat st = file_stat(OTHER_UID, 0644);
    CHECK_EQ_INT(plugin_trust_file(&as_root, &st, "/p/x.so", why, sizeof why), -1);
    CHECK(contains(why, "file /p/x.so is owned by"));
    CHECK(contains(why, "not by root; fix: chown root /p/x.so"));
    CHECK_EQ_INT(plugin_trust_file(&as_worker, &st, "/p/x.so", why, sizeof why), -1);
    CHECK(contains(why, "not by root or worker, the user the workers run as"));
    /* The worker's own file is not trusted by a root worker. */
    st = file_stat(4242, 0644);
    CHECK_EQ_INT(plugin_trust_file(&as_root, &st, "/p/x.so", why, sizeof why), -1);
}

TEST(folder_chain_of_safe_folders_is_trusted)
{
    struct tree t;
    tree_init(&t);
    char why[512] = "";
    CHECK_EQ_INT(plugin_trust_folder(&as_root, t.b, why, sizeof why), 0);
    if (why[0])
        fprintf(stderr, "  %s\n", why);
    remove_tree(t.root, false);
}

TEST(writable_plugins_folder_is_refused)
{
    struct tree t;
    tree_init(&t);
    char why[512];
    CHECK_EQ_INT(chmod(t.b, 0777), 0);
    CHECK_EQ_INT(plugin_trust_folder(&as_root, t.b, why, sizeof why), -1);
    CHECK(contains(why, "is writable by its group and others (mode 0777)"));
    CHECK(contains(why, "fix: chmod go-w"));
    CHECK(!strstr(why, "above"));
    remove_tree(t.root, false);
}

TEST(writable_folder_above_is_refused_and_named)
{
    struct tree t;
    tree_init(&t);
    char why[512], want[256];
    CHECK_EQ_INT(chmod(t.a, 0775), 0);
    CHECK_EQ_INT(plugin_trust_folder(&as_root, t.b, why, sizeof why), -1);
    snprintf(want, sizeof want, "folder %s is writable by its group (mode 0775)", t.a);
    CHECK(contains(why, want));
    snprintf(want, sizeof want, "(a folder above %s)", t.b);
    CHECK(contains(why, want));
    remove_tree(t.root, false);
}

/* Only root and an entry's owner may rename or remove entries of a sticky
 * folder: a root-owned one (/tmp) may be writable by all. */
TEST(sticky_folder_owned_by_root_may_be_writable_by_others)
{
    struct tree t;
    tree_init(&t);
    char why[512];
    CHECK_EQ_INT(chmod(t.a, 01777), 0);
    if (geteuid() == 0) {
        CHECK_EQ_INT(plugin_trust_folder(&as_root, t.b, why, sizeof why), 0);
        /* Sticky but owned by someone else: that owner could swap it. */
        CHECK_EQ_INT(chown(t.a, OTHER_UID, (gid_t)-1), 0);
        CHECK_EQ_INT(plugin_trust_folder(&as_root, t.b, why, sizeof why), -1);
        CHECK(contains(why, "is owned by"));
    } else {
        fprintf(stderr, "  (not root: owner cases skipped)\n");
    }
    CHECK_EQ_INT(chmod(t.a, 0755), 0);
    remove_tree(t.root, false);
}

TEST(folder_owned_by_another_user_is_refused)
{
    if (geteuid() != 0) {
        fprintf(stderr, "  (not root: skipped)\n");
        return;
    }
    struct tree t;
    tree_init(&t);
    char why[512];
    CHECK_EQ_INT(chown(t.b, OTHER_UID, (gid_t)-1), 0);
    CHECK_EQ_INT(plugin_trust_folder(&as_root, t.b, why, sizeof why), -1);
    CHECK(contains(why, "is owned by"));
    /* The workers' own folder is trusted. */
    CHECK_EQ_INT(chown(t.b, 4242, (gid_t)-1), 0);
    CHECK_EQ_INT(plugin_trust_folder(&as_worker, t.b, why, sizeof why), 0);
    remove_tree(t.root, false);
}

/* A link's own owner does not matter; the folders it leads to do. */
TEST(symlinked_folder_is_judged_where_it_leads)
{
    if (geteuid() != 0) {
        fprintf(stderr, "  (not root: skipped)\n");
        return;
    }
    struct tree t;
    tree_init(&t);
    char link[256], evil[256], plugins[300], why[512], want[300];
    snprintf(evil, sizeof evil, "%s/evil", t.root);
    snprintf(link, sizeof link, "%s/link", t.root);
    snprintf(plugins, sizeof plugins, "%s/plugins", link);
    CHECK_EQ_INT(mkdir(evil, 0755), 0);
    CHECK_EQ_INT(chown(evil, OTHER_UID, (gid_t)-1), 0);
    CHECK_EQ_INT(symlink(evil, link), 0);
    snprintf(want, sizeof want, "%s/plugins", evil);
    CHECK_EQ_INT(mkdir(want, 0755), 0);
    CHECK_EQ_INT(plugin_trust_folder(&as_root, plugins, why, sizeof why), -1);
    snprintf(want, sizeof want, "folder %s is owned by", evil);
    CHECK(contains(why, want));
    /* A link to a trusted folder is fine, whoever owns the link. */
    CHECK_EQ_INT(unlink(link), 0);
    CHECK_EQ_INT(symlink(t.a, link), 0);
    CHECK_EQ_INT(lchown(link, OTHER_UID, (gid_t)-1), 0);
    snprintf(plugins, sizeof plugins, "%s/b", link);
    CHECK_EQ_INT(plugin_trust_folder(&as_root, plugins, why, sizeof why), 0);
    CHECK_EQ_INT(unlink(link), 0);
    remove_tree(t.root, false);
}

TEST(missing_folder_is_refused)
{
    char why[512];
    CHECK_EQ_INT(plugin_trust_folder(&as_root, "/nonexistent/evicorn/plugins", why, sizeof why),
                 -1);
    CHECK(contains(why, "cannot resolve folder /nonexistent/evicorn/plugins"));
}

CHECK_MAIN()
