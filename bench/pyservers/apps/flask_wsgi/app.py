"""The Flask (WSGI) app of bench/pyservers/run.py: / answers "Hello, World!"."""
from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello, World!"
