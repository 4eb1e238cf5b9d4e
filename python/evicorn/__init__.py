"""evicorn: an ASGI-style HTTP server written in C, run inside this
interpreter.

    evicorn main:app --workers 2        (or: python -m evicorn main:app)

serves an ASGI app with this interpreter's packages, next to native C
plugins from --plugins. run(argv) is the same server from Python."""
import sys

__version__ = "0.1.0"

# The runtime libraries the native module links: Debian's package names.
_RUNTIME = "libev4, libhttp-parser2.9, libssl3 (libcrypto), zlib1g and libcurl4"


def _load_core():
    try:
        from evicorn import _core
    except ImportError as exc:
        name = getattr(exc, "name", None)
        if name == "evicorn._core":
            raise ImportError(
                "evicorn's native module is not built for this interpreter (Python %d.%d, %s): "
                "reinstall evicorn with it (pip install evicorn)"
                % (sys.version_info[0], sys.version_info[1], sys.implementation.cache_tag)
            ) from exc
        raise ImportError("evicorn's native module cannot be loaded: %s; it needs %s "
                          "(e.g. apt-get install libev4 libhttp-parser2.9 libssl3 zlib1g libcurl4)"
                          % (exc, _RUNTIME)) from exc
    return _core


def run(argv):
    """Runs the server with the command line argv (without the program
    name); returns its exit status."""
    return _load_core().run(["evicorn"] + [str(a) for a in argv])
