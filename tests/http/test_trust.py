"""Who may put code into a running server: plugin file and folder trust
checks, the workers' privilege drop (--user/--group), signed plugins
(--plugin-pubkey) and --plugins-insecure.

These need root (chown, users of their own, a port below 1024), as CI has;
the users and folders they create are removed afterwards. A file swapped
between its check and its use is covered by tests/unit/test_plugin_file.c
(the check is made on the descriptor the copy is read from)."""
import glob
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from evicorn_harness import evicorn_bin
from plugin_util import VERSION_REQ, plugin_path

HERE = os.path.dirname(os.path.abspath(__file__))
SIGN = os.path.join(HERE, "..", "..", "scripts", "plugin-sign")

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                                reason="needs root and useradd (CI runs as root)")


# --------------------------------------------------------------------------
# users and folders of the tests' own


def add_user(name):
    subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "--shell",
                    "/usr/sbin/nologin", name], check=True, capture_output=True)
    return pwd.getpwnam(name)


def remove_user(name):
    subprocess.run(["userdel", name], capture_output=True)
    try:
        grp.getgrnam(name)
        subprocess.run(["groupdel", name], capture_output=True)
    except KeyError:
        pass


@pytest.fixture(scope="module")
def users():
    """Two users: `worker`, whom the workers run as, and `other`, nobody the
    server should trust."""
    tag = "%x" % (os.getpid() & 0xffff)
    names = {"worker": "evt-w-" + tag, "other": "evt-o-" + tag}
    made = []
    try:
        out = {}
        for role, name in names.items():
            out[role] = add_user(name)
            made.append(name)
        yield out
    finally:
        for name in made:
            remove_user(name)


@pytest.fixture
def base():
    """A folder any user may enter (0755, root's), under /tmp (root's,
    sticky), removed afterwards."""
    d = tempfile.mkdtemp(prefix="evicorn-trust-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def folder(path, mode=0o755, owner=None):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, owner.pw_uid, -1)
    return path


def deploy(plugins, variant, name, mode=0o644, owner=None, sig=None):
    """Installs a built test plugin as <plugins>/<name>: its signature
    first when given, then the file by rename, with its mode and owner set
    before the rename, as a careful operator would."""
    if sig is not None:
        tmp = os.path.join(plugins, ".%s.sig.tmp" % name)
        shutil.copyfile(sig, tmp)
        os.rename(tmp, os.path.join(plugins, name + ".sig"))
    tmp = os.path.join(plugins, ".%s.tmp" % name)
    shutil.copyfile(plugin_path(variant), tmp)
    os.chmod(tmp, mode)
    if owner is not None:
        os.chown(tmp, owner.pw_uid, -1)
    os.rename(tmp, os.path.join(plugins, name))


def get(srv, path):
    with srv.connect() as c:
        return c.request(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())


def serving_probe(srv, version=b"1"):
    with srv.connect() as c:
        r = c.request(VERSION_REQ)
    return r.status == 200 and r.body == version


def refused(srv, name, fragment, timeout=5.0, start=0):
    """The refusal line for <plugins>/<name> that contains fragment."""
    return srv.wait_for_log(r"ERROR:    plugin \S*/%s refused: .*%s" % (
        name.replace(".", r"\."), fragment), timeout, start=start)


def loaded(srv, name, timeout=5.0, start=0):
    return srv.wait_for_log(r"plugin %s: (loaded|replaced)" % name.replace(".", r"\."), timeout,
                            start=start)


def mark(srv):
    return len(srv.stderr.snapshot())


def each_worker(srv, regex, n, start=0, timeout=5.0):
    """Waits for n lines matching regex (one per worker) after start."""
    assert srv.wait_for_log_lines(regex, n, timeout, start=start) is not None, srv.output()


@pytest.fixture
def trusted_server(make_server, base):
    """A server on a safe plugins folder with the probe (v1) serving."""
    plugins = folder(os.path.join(base, "plugins"))
    srv = make_server(plugins=plugins)
    deploy(plugins, "probe", "probe.so")
    assert loaded(srv, "probe.so"), srv.output()
    return srv, plugins


# --------------------------------------------------------------------------
# trust checks


def test_startup_says_whom_the_checks_trust_and_warns_about_root(make_server):
    srv = make_server()
    assert srv.wait_for_log(r"WARNING:  the workers run as root, and so does every plugin they "
                            r"load; --user NAME runs them unprivileged", 3), srv.output()
    assert srv.wait_for_log(r"INFO:     workers run as root; plugins load only from files and "
                            r"folders owned by root and writable by no one else$", 3), \
        srv.output()


@pytest.mark.parametrize("mode,who", [(0o664, "its group"), (0o646, "others"),
                                      (0o666, "its group and others")])
def test_file_writable_by_others_is_refused_while_others_serve(trusted_server, mode, who):
    srv, plugins = trusted_server
    deploy(plugins, "probe_other", "other.so", mode=mode)
    path = os.path.join(plugins, "other.so")
    assert refused(srv, "other.so", r"file %s is writable by %s \(mode %04o\); fix: chmod go-w %s$"
                   % (path, who, mode, path)), srv.output()
    assert serving_probe(srv)
    assert get(srv, "/other/version").status == 404


def test_file_owned_by_another_user_is_refused(trusted_server, users):
    srv, plugins = trusted_server
    other = users["other"]
    deploy(plugins, "probe_other", "other.so", owner=other)
    assert refused(srv, "other.so", r"is owned by %s \(uid %d\), not by root; fix: chown root "
                   % (other.pw_name, other.pw_uid)), srv.output()
    assert serving_probe(srv)


def test_writable_plugins_folder_is_refused(trusted_server):
    srv, plugins = trusted_server
    os.chmod(plugins, 0o777)
    deploy(plugins, "probe_other", "other.so")
    assert refused(srv, "other.so", r"folder %s is writable by its group and others \(mode "
                   r"0777\); fix: chmod go-w %s$" % (plugins, plugins)), srv.output()
    # What was loaded before keeps serving.
    assert serving_probe(srv)


def test_writable_parent_folder_is_refused(make_server, base):
    parent = folder(os.path.join(base, "parent"))
    plugins = folder(os.path.join(parent, "plugins"))
    srv = make_server(plugins=plugins)
    deploy(plugins, "probe", "probe.so")
    assert loaded(srv, "probe.so"), srv.output()
    os.chmod(parent, 0o775)
    deploy(plugins, "probe_other", "other.so")
    assert refused(srv, "other.so", r"folder %s is writable by its group \(mode 0775\); fix: "
                   r"chmod go-w %s \(a folder above %s\)$" % (parent, parent, plugins)), \
        srv.output()
    assert serving_probe(srv)


def test_sticky_root_folder_above_is_trusted(make_server, base):
    # Like /tmp: others may write it, but not swap entries they do not own.
    sticky = folder(os.path.join(base, "shared"), 0o1777)
    plugins = folder(os.path.join(sticky, "plugins"))
    srv = make_server(plugins=plugins)
    deploy(plugins, "probe", "probe.so")
    assert loaded(srv, "probe.so"), srv.output()
    assert serving_probe(srv)


def test_symlinked_folder_owned_by_another_user_is_refused(make_server, base, users):
    other = users["other"]
    evil = folder(os.path.join(base, "evil"), owner=other)
    folder(os.path.join(evil, "plugins"))
    os.symlink(evil, os.path.join(base, "link"))
    plugins = os.path.join(base, "link", "plugins")
    srv = make_server(plugins=plugins)
    deploy(plugins, "probe", "probe.so")
    assert refused(srv, "probe.so", r"folder %s is owned by %s \(uid %d\), not by root; fix: "
                   r"chown root %s \(a folder above %s\)$"
                   % (evil, other.pw_name, other.pw_uid, evil, plugins)), srv.output()
    assert get(srv, "/probe/version").status == 404  # the server itself serves on


def test_plugins_insecure_loads_with_one_warning_per_file(make_server, base):
    plugins = folder(os.path.join(base, "plugins"), 0o777)
    srv = make_server("--plugins-insecure", plugins=plugins)
    assert srv.wait_for_log(r"\(--plugins-insecure: others only warned about\)", 3)
    deploy(plugins, "probe", "probe.so", mode=0o666)
    assert loaded(srv, "probe.so"), srv.output()
    warnings = [l for l in srv.stderr.snapshot() if l.startswith("WARNING:  plugin ")]
    assert len(warnings) == 1, warnings
    assert "folder %s is writable by its group and others" % plugins in warnings[0]
    assert "file %s/probe.so is writable by its group and others" % plugins in warnings[0]
    assert warnings[0].endswith("loading it anyway (--plugins-insecure)")
    assert serving_probe(srv)


# --------------------------------------------------------------------------
# signed plugins


@pytest.fixture
def keys(base):
    d = folder(os.path.join(base, "keys"), 0o700)
    subprocess.run([SIGN, "keygen", d], check=True, capture_output=True)
    return os.path.join(d, "plugins.key"), os.path.join(d, "plugins.pub")


def signature(key, variant, base):
    """The signature file of a built plugin variant."""
    copy = os.path.join(base, "keys", variant + ".so")
    shutil.copyfile(plugin_path(variant), copy)
    subprocess.run([SIGN, "sign", key, copy], check=True, capture_output=True)
    return copy + ".sig"


def test_signed_plugins_load_and_bad_ones_are_refused(make_server, base, keys):
    key, pub = keys
    plugins = folder(os.path.join(base, "plugins"))
    srv = make_server("--plugin-pubkey", pub, plugins=plugins)
    assert srv.wait_for_log(r"signed with the --plugin-pubkey key", 3), srv.output()
    deploy(plugins, "probe", "probe.so", sig=signature(key, "probe", base))
    assert loaded(srv, "probe.so"), srv.output()
    assert serving_probe(srv)

    # No signature at all.
    deploy(plugins, "probe_other", "other.so")
    assert refused(srv, "other.so", r"no signature %s/other\.so\.sig \(--plugin-pubkey is set\)"
                   % plugins), srv.output()
    # The signature of another file.
    start = mark(srv)
    deploy(plugins, "probe_other", "other.so", sig=signature(key, "probe_v2", base))
    assert refused(srv, "other.so", r"signature %s/other\.so\.sig does not match the file$"
                   % plugins, start=start), srv.output()
    # Bytes that are no signature of anything.
    start = mark(srv)
    junk = os.path.join(base, "junk.sig")
    with open(junk, "wb") as f:
        f.write(os.urandom(64))
    deploy(plugins, "probe_other", "other.so", sig=junk)
    assert refused(srv, "other.so", r"does not match the file$", start=start), srv.output()
    # Not even the size of one.
    start = mark(srv)
    with open(junk, "wb") as f:
        f.write(b"short")
    deploy(plugins, "probe_other", "other.so", sig=junk)
    assert refused(srv, "other.so", r"is not a 64-byte Ed25519 signature$", start=start), \
        srv.output()
    # A correct signature from another key.
    start = mark(srv)
    other_keys = folder(os.path.join(base, "other-keys"), 0o700)
    subprocess.run([SIGN, "keygen", other_keys], check=True, capture_output=True)
    sig = signature(os.path.join(other_keys, "plugins.key"), "probe_other", base)
    deploy(plugins, "probe_other", "other.so", sig=sig)
    assert refused(srv, "other.so", r"does not match the file$", start=start), srv.output()
    # Signed properly, it loads, and a signed reload replaces the probe.
    deploy(plugins, "probe_other", "other.so", sig=signature(key, "probe_other", base))
    assert loaded(srv, "other.so"), srv.output()
    start = mark(srv)
    deploy(plugins, "probe_v2", "probe.so", sig=signature(key, "probe_v2", base))
    assert srv.wait_for_log(r"plugin probe\.so: replaced", 5, start=start), srv.output()
    assert serving_probe(srv, b"2")


# --------------------------------------------------------------------------
# privilege drop


def ids_of(pid):
    """Uid, Gid (real, effective, saved, fs) and Groups of a process."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                out[key] = value.split()
    return out


def dropped_ids(pid, timeout=5.0):
    """The ids of a worker once it has dropped root: a worker forks as root
    and drops before it does anything else."""
    deadline = time.monotonic() + timeout
    while True:
        ids = ids_of(pid)
        if ids["Uid"][0] != "0" or time.monotonic() > deadline:
            return ids
        time.sleep(0.01)


def free_low_port():
    for port in range(1023, 900, -1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free port below 1024")


def test_workers_run_as_the_given_user_with_no_other_groups(make_server, base, users):
    worker = users["worker"]
    plugins = folder(os.path.join(base, "plugins"))
    tmp = folder(os.path.join(base, "tmp"))
    port = free_low_port()
    srv = make_server("--user", worker.pw_name, "--workers", 2, plugins=plugins,
                      listen=["--host", "127.0.0.1", "--port", str(port)],
                      wrapper=["env", "TMPDIR=" + tmp])
    assert srv.wait_for_log(r"INFO:     workers run as %s; plugins load only from files and "
                            r"folders owned by root or %s and writable by no one else$"
                            % (worker.pw_name, worker.pw_name), 3), srv.output()
    assert not srv.wait_for_log(r"the workers run as root", 0.2)
    pids = srv.wait_workers(2)
    for pid in pids:
        ids = dropped_ids(pid)
        assert ids["Uid"] == [str(worker.pw_uid)] * 4, ids
        assert ids["Gid"] == [str(worker.pw_gid)] * 4, ids
        assert ids["Groups"] == [], ids
    assert ids_of(srv.pid)["Uid"][1] == "0"  # the master keeps root

    # The private folder the copies are mapped from is the workers' alone.
    (private,) = glob.glob(os.path.join(tmp, "evicorn-%d-*" % srv.pid))
    st = os.stat(private)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (worker.pw_uid, worker.pw_gid, 0o700)

    # Plugins load and hot reload under that user, on the port below 1024;
    # a file the workers' own user owns is trusted too.
    deploy(plugins, "probe", "probe.so", owner=worker)
    each_worker(srv, r"plugin probe\.so: loaded probe 1", 2)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(VERSION_REQ)
        assert s.recv(4096).startswith(b"HTTP/1.1 200 OK")
    start = mark(srv)
    deploy(plugins, "probe_v2", "probe.so")
    each_worker(srv, r"plugin probe\.so: replaced probe 1 .* with probe 2", 2, start=start)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(VERSION_REQ)
        assert s.recv(4096).endswith(b"\r\n\r\n2")


def test_group_option_sets_the_workers_group(make_server, base, users):
    worker, other = users["worker"], users["other"]
    plugins = folder(os.path.join(base, "plugins"))
    srv = make_server("--user", worker.pw_name, "--group", other.pw_name, plugins=plugins)
    (pid,) = srv.wait_workers(1)
    ids = dropped_ids(pid)
    assert ids["Uid"] == [str(worker.pw_uid)] * 4, ids
    assert ids["Gid"] == [str(other.pw_gid)] * 4, ids
    assert ids["Groups"] == [], ids


def run_cli(*args, preexec=None):
    return subprocess.run([evicorn_bin()] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=10, preexec_fn=preexec)


def test_user_needs_root(users):
    nobody = users["other"]

    def become_other():
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    res = run_cli("--user", users["worker"].pw_name, "--port", 0, preexec=become_other)
    assert res.returncode == 2, res
    assert res.stderr.splitlines() == [
        "evicorn: error: --user %s: evicorn must be started as root to run its workers as "
        "another user" % users["worker"].pw_name], res.stderr


@pytest.mark.parametrize("args,message", [
    (["--user", "no-such-user-evicorn"], "--user: no such user 'no-such-user-evicorn'"),
    (["--group", "root"], "--group needs --user"),
    (["--user", "root", "--group", "no-such-group-evicorn"],
     "--group: no such group 'no-such-group-evicorn'"),
    (["--plugin-pubkey", "/nonexistent/key.pem"],
     "--plugin-pubkey /nonexistent/key.pem: No such file or directory"),
    (["--plugin-pubkey", "/etc/hostname"], "--plugin-pubkey /etc/hostname: not a PEM public key"),
])
def test_bad_user_group_or_key_is_one_line_and_exit_2(args, message):
    res = run_cli(*args)
    assert res.returncode == 2, res
    assert res.stderr.splitlines() == ["evicorn: error: " + message], res.stderr


def test_a_key_that_is_not_ed25519_is_refused(base):
    d = folder(os.path.join(base, "rsa"), 0o700)
    key, pub = os.path.join(d, "k.pem"), os.path.join(d, "pub.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:1024",
                    "-out", key], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True,
                   capture_output=True)
    res = run_cli("--plugin-pubkey", pub)
    assert res.returncode == 2, res
    assert res.stderr.splitlines() == ["evicorn: error: --plugin-pubkey %s: a RSA key, not "
                                       "Ed25519" % pub], res.stderr
