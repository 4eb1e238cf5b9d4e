/* plugin_sign: signed plugins (--plugin-pubkey).
 *
 * With a public key configured, every plugin file NAME.so must come with a
 * detached Ed25519 signature NAME.so.sig (the 64 raw bytes `openssl
 * pkeyutl -sign -rawin` writes) over the file's bytes, checked against the
 * private copy that will be mapped, so the code verified is the code run.
 * scripts/plugin-sign makes a key pair and signs a plugin. Verification
 * uses OpenSSL's libcrypto. */
#ifndef EVICORN_PLUGIN_SIGN_H
#define EVICORN_PLUGIN_SIGN_H

#include <stddef.h>

struct plugin_key;

/* Master, at startup: reads an Ed25519 public key (PEM). NULL with one
 * line in err when it cannot be read or is not an Ed25519 key. */
struct plugin_key *plugin_key_load(const char *path, char *err, size_t errlen);
void plugin_key_free(struct plugin_key *k);

/* Any thread. Verifies that sig_path holds k's signature of the file at
 * path. Returns 0, or -1 with the reason in why (missing signature,
 * malformed signature, or a signature that does not match the file). */
int plugin_sign_verify(const struct plugin_key *k, const char *path, const char *sig_path,
                       char *why, size_t whylen);

#endif
