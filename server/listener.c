/* listener: opening TCP, unix-domain and inherited listening sockets; see
 * listener.h for why the master owns them.
 *
 * systemd socket activation follows sd_listen_fds(3), without libsystemd:
 * when $LISTEN_PID is this process, $LISTEN_FDS sockets start at fd 3,
 * named in order by the colon-separated $LISTEN_FDNAMES. The three
 * variables are removed whether or not they were for this process, so
 * nothing started later takes them for its own. */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* sd_listen_fds(3): the first passed descriptor. */
#define LISTEN_FDS_START 3
#define LISTEN_FDS_MAX   1024

static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -1;
    return 0;
}

static void describe_tcp(struct listener *l, const struct sockaddr *sa)
{
    addr_from_sockaddr(&l->addr, sa);
    snprintf(l->name, sizeof l->name, sa->sa_family == AF_INET6 ? "http://[%s]:%u" : "http://%s:%u",
             l->addr.ip, (unsigned)l->addr.port);
}

static int open_tcp(const struct config *cfg, struct listener *l, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    int rc = getaddrinfo(cfg->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve --host %s: %s", cfg->host, gai_strerror(rc));
        return -1;
    }
    int saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, cfg->backlog) < 0 ||
            set_nonblocking(fd) < 0) {
            saved = errno;
            close(fd);
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
            saved = errno;
            close(fd);
            continue;
        }
        l->fd = fd;
        l->unix_socket = false;
        describe_tcp(l, (struct sockaddr *)&ss);
        freeaddrinfo(res);
        return 0;
    }
    freeaddrinfo(res);
    snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
             strerror(saved ? saved : EADDRNOTAVAIL));
    return -1;
}

static int open_unix(const struct config *cfg, struct listener *l, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(cfg->uds) >= sizeof sun.sun_path) {
        snprintf(err, errlen, "--uds path too long: %s", cfg->uds);
        return -1;
    }
    strcpy(sun.sun_path, cfg->uds);
    /* A socket file left by an earlier run would make bind fail; remove it,
     * but never anything that is not a socket. */
    struct stat st;
    if (lstat(cfg->uds, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(cfg->uds);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 || chmod(cfg->uds, 0666) < 0 ||
        listen(fd, cfg->backlog) < 0 || set_nonblocking(fd) < 0) {
        snprintf(err, errlen, "cannot listen on unix socket %s: %s", cfg->uds, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    l->fd = fd;
    l->unix_socket = true;
    snprintf(l->name, sizeof l->name, "unix:%s", cfg->uds);
    l->addr = (struct addr){.unix_socket = true};
    return 0;
}

/* The address an inherited socket listens on, as listener names show it. */
static void describe_inherited(struct listener *l, int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)) {
        describe_tcp(l, (struct sockaddr *)&ss);
        l->unix_socket = false;
        return;
    }
    l->unix_socket = true;
    l->addr = (struct addr){.unix_socket = true};
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss;
    size_t path_len = sl > offsetof(struct sockaddr_un, sun_path)
                          ? (size_t)sl - offsetof(struct sockaddr_un, sun_path)
                          : 0;
    if (ss.ss_family == AF_UNIX && path_len > 0 && sun->sun_path[0])
        snprintf(l->name, sizeof l->name, "unix:%.*s", (int)strnlen(sun->sun_path, path_len),
                 sun->sun_path);
    else
        snprintf(l->name, sizeof l->name, "socket fd %d", fd);
}

static bool is_listening_stream(int fd)
{
    int type = 0, acc = 0;
    socklen_t tl = sizeof type, al = sizeof acc;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 &&
           getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) == 0 && type == SOCK_STREAM && acc;
}

static int open_fd(const struct config *cfg, struct listener *l, char *err, size_t errlen)
{
    int fd = cfg->fd;
    if (!is_listening_stream(fd)) {
        snprintf(err, errlen, "--fd %d is not a listening stream socket", fd);
        return -1;
    }
    if (set_nonblocking(fd) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        snprintf(err, errlen, "--fd %d: %s", fd, strerror(errno));
        return -1;
    }
    l->fd = fd;
    describe_inherited(l, fd);
    return 0;
}

/* The i-th name of a colon-separated list into out ("unknown" past its end,
 * as systemd names a socket it was given no name for). */
static void nth_name(const char *names, size_t i, char *out, size_t len)
{
    const char *p = names;
    for (size_t k = 0; p && k < i; k++) {
        p = strchr(p, ':');
        if (p)
            p++;
    }
    if (!p || !*p || *p == ':') {
        snprintf(out, len, "unknown");
        return;
    }
    size_t n = strcspn(p, ":");
    snprintf(out, len, "%.*s", (int)n, p);
}

static bool name_wanted(const struct config *cfg, const char *name)
{
    if (cfg->fd_names.n == 0)
        return true;
    for (size_t i = 0; i < cfg->fd_names.n; i++)
        if (strcmp(cfg->fd_names.items[i], name) == 0)
            return true;
    return false;
}

const char *const listener_activation_vars[LISTENER_ACTIVATION_VARS] = {"LISTEN_PID", "LISTEN_FDS",
                                                                        "LISTEN_FDNAMES"};

/* How many sockets systemd passed to this process (0: none, or they were
 * for another process), and their names (a copy the caller frees). The
 * variables are removed from the environment in any case. */
static long activation_take(char **names)
{
    const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
    const char *names_s = getenv("LISTEN_FDNAMES");
    long n = 0;
    *names = NULL;
    if (pid_s && fds_s) {
        char *end;
        errno = 0;
        long pid = strtol(pid_s, &end, 10);
        bool pid_ok = !errno && end != pid_s && !*end && pid == (long)getpid();
        errno = 0;
        long count = strtol(fds_s, &end, 10);
        if (pid_ok && !errno && end != fds_s && !*end && count > 0 && count <= LISTEN_FDS_MAX) {
            n = count;
            *names = names_s ? strdup(names_s) : NULL;
        }
    }
    for (size_t i = 0; i < LISTENER_ACTIVATION_VARS; i++)
        unsetenv(listener_activation_vars[i]);
    return n;
}

/* Serves the activated sockets (those --fd-name picks; the others are
 * closed). -1 for a failure of the system, LISTENERS_USAGE for sockets that cannot be
 * served as given (a usage error), each with a one-line reason. */
static int open_activated(const struct config *cfg, long n, const char *names,
                          struct listener **out, size_t *count, char *err, size_t errlen)
{
    if (cfg->fd >= 0 || cfg->uds) {
        snprintf(err, errlen, "%s cannot be used with systemd socket activation (LISTEN_FDS)",
                 cfg->fd >= 0 ? "--fd" : "--uds");
        return LISTENERS_USAGE;
    }
    struct listener *l = calloc((size_t)n, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t used = 0;
    for (long i = 0; i < n; i++) {
        int fd = LISTEN_FDS_START + (int)i;
        char name[256];
        nth_name(names, (size_t)i, name, sizeof name);
        if (!is_listening_stream(fd)) {
            snprintf(err, errlen,
                     "systemd socket activation: fd %d ('%s') is not a listening stream socket", fd,
                     name);
            goto usage;
        }
        if (!name_wanted(cfg, name)) {
            close(fd);
            continue;
        }
        if (set_nonblocking(fd) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
            snprintf(err, errlen, "systemd socket activation: fd %d: %s", fd, strerror(errno));
            goto fail;
        }
        l[used].fd = fd;
        describe_inherited(&l[used], fd);
        used++;
    }
    if (used == 0) {
        snprintf(err, errlen, "--fd-name: no socket of systemd's is named so (LISTEN_FDNAMES %s)",
                 names ? names : "not set");
        goto usage;
    }
    *out = l;
    *count = used;
    return 0;
usage:
    free(l);
    return LISTENERS_USAGE;
fail:
    free(l);
    return -1;
}

int listeners_open(const struct config *cfg, struct listener **out, size_t *n, char *err,
                   size_t errlen)
{
    char *names;
    long activated = activation_take(&names);
    if (activated > 0) {
        int rc = open_activated(cfg, activated, names, out, n, err, errlen);
        free(names);
        return rc;
    }
    if (cfg->fd_names.n > 0) {
        snprintf(err, errlen, "--fd-name needs systemd socket activation (LISTEN_FDS)");
        return LISTENERS_USAGE;
    }
    struct listener *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc;
    if (cfg->fd >= 0)
        rc = open_fd(cfg, l, err, errlen);
    else if (cfg->uds)
        rc = open_unix(cfg, l, err, errlen);
    else
        rc = open_tcp(cfg, l, err, errlen);
    if (rc < 0) {
        free(l);
        return -1;
    }
    *out = l;
    *n = 1;
    return 0;
}

void listeners_close(struct listener *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (l[i].fd >= 0)
            close(l[i].fd);
    free(l);
}
