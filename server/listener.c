/* listener: opening TCP, unix-domain and inherited listening sockets; see
 * listener.h for why the master owns them. */
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

static int open_fd(const struct config *cfg, struct listener *l, char *err, size_t errlen)
{
    int fd = cfg->fd, type = 0, acc = 0;
    socklen_t tl = sizeof type, al = sizeof acc;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 || type != SOCK_STREAM || !acc) {
        snprintf(err, errlen, "--fd %d is not a listening stream socket", fd);
        return -1;
    }
    if (set_nonblocking(fd) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        snprintf(err, errlen, "--fd %d: %s", fd, strerror(errno));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    l->fd = fd;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)) {
        describe_tcp(l, (struct sockaddr *)&ss);
        l->unix_socket = false;
    } else {
        l->unix_socket = true;
        snprintf(l->name, sizeof l->name, "socket fd %d", fd);
        l->addr = (struct addr){.unix_socket = true};
    }
    return 0;
}

int listeners_open(const struct config *cfg, struct listener **out, size_t *n, char *err,
                   size_t errlen)
{
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
