/* app_launch: serving an APP from the C binary, in the user's interpreter.
 *
 * An ASGI app runs inside Python, with that Python's sys.path and packages:
 * the ones the user installed into their venv. So given an APP, the binary
 * embeds no interpreter; it picks one (the active venv's, $VIRTUAL_ENV, else
 * the first python3 on PATH), makes sure evicorn's Python module is
 * importable there (beside this binary when it was built for that
 * interpreter's version, as in the build tree and an install prefix, else
 * installed in the interpreter itself), and replaces itself with
 * `python -m evicorn ARGS...` (same PID, same arguments), where the module
 * runs the same server with the ASGI bridge built in. */
#ifndef EVICORN_APP_LAUNCH_H
#define EVICORN_APP_LAUNCH_H

struct config;

/* Does not return when it hands over; otherwise logs one line and returns
 * the exit status. */
int app_launch(const struct config *cfg, int argc, char **argv);

#endif
