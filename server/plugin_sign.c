/* plugin_sign: Ed25519 signatures of plugin files; see plugin_sign.h. */
#include "plugin_sign.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* An Ed25519 signature is 64 bytes (RFC 8032). */
#define SIG_BYTES 64

struct plugin_key {
    EVP_PKEY *pkey;
};

struct plugin_key *plugin_key_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "--plugin-pubkey %s: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *pkey = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (!pkey) {
        snprintf(err, errlen, "--plugin-pubkey %s: not a PEM public key", path);
        ERR_clear_error();
        return NULL;
    }
    if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
        snprintf(err, errlen, "--plugin-pubkey %s: a %s key, not Ed25519", path,
                 EVP_PKEY_get0_type_name(pkey));
        EVP_PKEY_free(pkey);
        return NULL;
    }
    struct plugin_key *k = malloc(sizeof *k);
    if (!k) {
        snprintf(err, errlen, "--plugin-pubkey %s: out of memory", path);
        EVP_PKEY_free(pkey);
        return NULL;
    }
    k->pkey = pkey;
    return k;
}

void plugin_key_free(struct plugin_key *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

/* Reads the signature: exactly SIG_BYTES bytes. */
static int read_signature(const char *sig_path, unsigned char *sig, char *why, size_t whylen)
{
    int fd = open(sig_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            snprintf(why, whylen, "no signature %s (--plugin-pubkey is set)", sig_path);
        else
            snprintf(why, whylen, "cannot read signature %s: %s", sig_path, strerror(errno));
        return -1;
    }
    struct stat st;
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == SIG_BYTES)
        n = read(fd, sig, SIG_BYTES);
    close(fd);
    if (n != SIG_BYTES) {
        snprintf(why, whylen, "signature %s is not a %d-byte Ed25519 signature", sig_path,
                 SIG_BYTES);
        return -1;
    }
    return 0;
}

int plugin_sign_verify(const struct plugin_key *k, const char *path, const char *sig_path,
                       char *why, size_t whylen)
{
    unsigned char sig[SIG_BYTES];
    if (read_signature(sig_path, sig, why, whylen) < 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= 0) {
        snprintf(why, whylen, "cannot read %s to verify it: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    void *data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (data == MAP_FAILED) {
        snprintf(why, whylen, "cannot map %s to verify it: %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    /* Ed25519 signs the message itself (no separate digest): one call. */
    if (!ctx || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k->pkey) != 1)
        snprintf(why, whylen, "cannot verify %s: out of memory", path);
    else if (EVP_DigestVerify(ctx, sig, SIG_BYTES, data, (size_t)st.st_size) != 1)
        snprintf(why, whylen, "signature %s does not match the file", sig_path);
    else
        rc = 0;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    munmap(data, (size_t)st.st_size);
    return rc;
}
