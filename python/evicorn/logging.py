"""Python logging as uvicorn sets it up.

The server writes its own lines from C, in uvicorn's format. This module
configures Python's logging in the server's interpreter before the workers
start, as uvicorn's Config.configure_logging does:

* without --log-config, LOGGING_CONFIG below: the loggers "uvicorn",
  "uvicorn.error" and "uvicorn.access" print as uvicorn's do, so an app
  that logs through logging.getLogger("uvicorn.error") is seen;
* with --log-config FILE (.json or .yaml/.yml for logging.config.dictConfig,
  anything else for fileConfig), that file; the server's own lines then go
  through "uvicorn.error" and "uvicorn.access" too, with the access
  record's arguments as uvicorn passes them (client_addr, method,
  full_path, http_version, status_code), so formatters written for uvicorn
  (uvicorn.logging.AccessFormatter, or this module's) work unchanged.

DefaultFormatter and AccessFormatter are this module's equivalents of
uvicorn's, for configs that should not need uvicorn installed.
"""
import copy
import http
import json
import logging
import logging.config
import sys

TRACE_LOG_LEVEL = 5

_COLORS = {"red": 31, "green": 32, "yellow": 33, "blue": 34, "cyan": 36, "bright_red": 91,
           "bright_white": 97}


def _style(text, fg=None, bold=False):
    prefix = ""
    if fg is not None:
        prefix += "\033[%dm" % _COLORS[fg]
    if bold:
        prefix += "\033[1m"
    return "%s%s\033[0m" % (prefix, text)


class ColourizedFormatter(logging.Formatter):
    """%(levelprefix)s is the level name and a colon padded to 10 columns,
    coloured when use_colors (by default when stdout is a terminal)."""

    level_name_colors = {
        TRACE_LOG_LEVEL: "blue",
        logging.DEBUG: "cyan",
        logging.INFO: "green",
        logging.WARNING: "yellow",
        logging.ERROR: "red",
        logging.CRITICAL: "bright_red",
    }

    def __init__(self, fmt=None, datefmt=None, style="%", use_colors=None):
        self.use_colors = use_colors if use_colors in (True, False) else sys.stdout.isatty()
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)

    def color_level_name(self, level_name, level_no):
        fg = self.level_name_colors.get(level_no)
        return _style(level_name, fg) if fg else level_name

    def formatMessage(self, record):
        recordcopy = copy.copy(record)
        levelname = recordcopy.levelname
        separator = " " * (8 - len(levelname))
        if self.use_colors:
            levelname = self.color_level_name(levelname, recordcopy.levelno)
            if "color_message" in recordcopy.__dict__:
                recordcopy.msg = recordcopy.__dict__["color_message"]
                recordcopy.__dict__["message"] = recordcopy.getMessage()
        recordcopy.__dict__["levelprefix"] = levelname + ":" + separator
        return super().formatMessage(recordcopy)


class DefaultFormatter(ColourizedFormatter):
    pass


class AccessFormatter(ColourizedFormatter):
    """Also %(client_addr)s, %(request_line)s and %(status_code)s (with its
    reason phrase), from the access record's arguments."""

    status_code_colours = {1: "bright_white", 2: "green", 3: "yellow", 4: "red",
                           5: "bright_red"}

    def get_status_code(self, status_code):
        try:
            phrase = http.HTTPStatus(status_code).phrase
        except ValueError:
            phrase = ""
        text = "%d %s" % (status_code, phrase)
        if self.use_colors:
            fg = self.status_code_colours.get(status_code // 100)
            return _style(text, fg) if fg else text
        return text

    def formatMessage(self, record):
        recordcopy = copy.copy(record)
        client_addr, method, full_path, http_version, status_code = recordcopy.args
        request_line = "%s %s HTTP/%s" % (method, full_path, http_version)
        if self.use_colors:
            request_line = _style(request_line, bold=True)
        recordcopy.__dict__.update({
            "client_addr": client_addr,
            "request_line": request_line,
            "status_code": self.get_status_code(int(status_code)),
        })
        return super().formatMessage(recordcopy)


LOGGING_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {"()": "evicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s",
                    "use_colors": None},
        "access": {
            "()": "evicorn.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        },
    },
    "handlers": {
        "default": {"formatter": "default", "class": "logging.StreamHandler",
                    "stream": "ext://sys.stderr"},
        "access": {"formatter": "access", "class": "logging.StreamHandler",
                   "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

_LEVELS = {"critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING,
           "info": logging.INFO, "debug": logging.DEBUG, "trace": TRACE_LOG_LEVEL}


def configure(log_config, log_level, access_log, use_colors):
    """What uvicorn's Config.configure_logging does. log_config is a path
    or None; use_colors None, True or False. Raises on a bad file."""
    logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")
    if log_config is None:
        config = copy.deepcopy(LOGGING_CONFIG)
        if use_colors in (True, False):
            config["formatters"]["default"]["use_colors"] = use_colors
            config["formatters"]["access"]["use_colors"] = use_colors
        logging.config.dictConfig(config)
    elif log_config.endswith(".json"):
        with open(log_config) as f:
            logging.config.dictConfig(json.load(f))
    elif log_config.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError as exc:
            raise ImportError("Install the PyYAML package to use --log-config with YAML files.") \
                from exc
        with open(log_config) as f:
            logging.config.dictConfig(yaml.safe_load(f))
    else:
        logging.config.fileConfig(log_config, disable_existing_loggers=False)
    level = _LEVELS.get(log_level)
    if level is not None:
        logging.getLogger("uvicorn.error").setLevel(level)
        logging.getLogger("uvicorn.access").setLevel(level)
        logging.getLogger("uvicorn.asgi").setLevel(level)
    if not access_log:
        logging.getLogger("uvicorn.access").handlers = []
        logging.getLogger("uvicorn.access").propagate = False


_error = logging.getLogger("uvicorn.error")
_access = logging.getLogger("uvicorn.access")
_LEVEL_OF = (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG,
             TRACE_LOG_LEVEL)


def emit(level, text):
    """One of the server's own lines (level 0 critical .. 5 trace)."""
    _error.log(_LEVEL_OF[level], "%s", text)


def emit_access(client, method, target, http_version, status):
    """One access record, with uvicorn's message and arguments."""
    _access.info('%s - "%s %s HTTP/%s" %d', client, method, target, http_version, status)
