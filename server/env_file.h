/* env_file: --env-file, a .env file loaded into the environment before the
 * workers start, by python-dotenv's rules (what uvicorn's --env-file
 * uses), so a file written for uvicorn means the same here:
 *
 *   KEY=value            # unquoted: up to a " #" comment, trimmed
 *   export KEY=value
 *   KEY='single $quoted' # literal; only \\ and \' are escapes
 *   KEY="double\nquoted ${OTHER:-default}"  # escapes, may span lines
 *   KEY                  # no value: ignored
 *
 * ${NAME} and ${NAME:-default} expand in unquoted and double-quoted
 * values, from the environment first, then from keys earlier in the file.
 * A variable already set is kept (load_dotenv's override=False). A line
 * that cannot be parsed is skipped with a warning naming its line. */
#ifndef EVICORN_ENV_FILE_H
#define EVICORN_ENV_FILE_H

#include <stddef.h>

/* Sets name=value unless name is already set; 0 or -1. */
typedef int (*env_set_fn)(void *ud, const char *name, const char *value);

/* Parses text (len bytes) and calls set for each variable, in order.
 * get_existing looks a name up in the environment (NULL: unset). Returns
 * the number of lines skipped as unparseable, or -1 when out of memory or
 * set failed. bad_line, when not NULL, gets the first skipped line. */
int env_file_parse(const char *text, size_t len, const char *(*get_existing)(const char *name),
                   env_set_fn set, void *ud, int *bad_line);

/* Reads path and loads it: set_env (from the embedding, so that Python's
 * os.environ sees the variables) or setenv(3). Logs what it did; a file
 * that cannot be read is a warning, as python-dotenv's. */
void env_file_load(const char *path, env_set_fn set_env, void *ud);

#endif
