"""python -m evicorn, and the evicorn console script."""
import sys


def main():
    from evicorn import run
    try:
        status = run(sys.argv[1:])
    except ImportError as exc:
        print("evicorn: error: %s" % exc, file=sys.stderr)
        status = 1
    sys.stdout.flush()
    sys.exit(status)


if __name__ == "__main__":
    main()
