#!/usr/bin/env python3
"""`./net train` as a user watches it: the progress it prints (on a terminal a bar with samples/s,
the running loss and an ETA; otherwise a plain line at least every PNET_PROGRESS seconds), and a
signal during the run's last step, which completes the run: the checkpoint is the uninterrupted
run's, byte for byte, the message says the run is finished, and --resume of it says so and exits 0.

usage: train_progress.py PNETC
"""
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time

PNETC = sys.argv[1]
os.environ["PNET_ADAPTIVE_THREADS"] = "0"
os.environ.pop("PNET_PROGRESS", None)
TMP = tempfile.mkdtemp(prefix="pnet-progress-")
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    ok = bool(ok)
    passed += ok
    failed += not ok
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else " " + str(detail)))


def path(name):
    return os.path.join(TMP, name)


def npy(name, dtype, shape, values):
    """A .npy file (format 1.0) written by hand: dtype 'f4' or 'i4'."""
    header = "{'descr': '<%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype, "".join(f"{d}, " for d in shape) if len(shape) != 1 else f"{shape[0]},")
    header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    data = struct.pack("<%d%s" % (len(values), "f" if dtype == "f4" else "i"), *values)
    with open(path(name), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data)
    return path(name)


def run(*args, env=None):
    p = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    return p.returncode, p.stdout, p.stderr


def compile_net(name, src):
    with open(path(name + ".pnet"), "w") as f:
        f.write(src)
    rc, _, err = run(PNETC, path(name + ".pnet"), "-o", path(name))
    check("compile " + name, rc == 0, err)
    return path(name)


# A network whose one training step takes a while (about 0.3 s of one core): a whole epoch in one
# batch, so a signal sent while the run trains falls in its last step.
SLOW = """network slow {
    input x : f32[batch, 256];
    h1 = relu(dense(x, 1024));
    h2 = relu(dense(h1, 1024));
    logits = dense(h2, 10);
    output probs = softmax(logits);
    train {
        label     : i32[batch];
        loss      = cross_entropy(logits, label);
        optimizer = sgd(lr = 0.01, momentum = 0.9);
        batch     = 2048;
    }
}
"""
N = 2048
slow = compile_net("slow", SLOW)
x = npy("x.npy", "f4", (N, 256), [((i * 37 + k * 11) % 101) / 101.0 for i in range(N) for k in range(256)])
y = npy("y.npy", "i4", (N,), [i % 10 for i in range(N)])
base = [slow, "train", "--data", x, "--labels", y, "--threads", "1", "--no-shuffle"]


early = []  # a try that landed in the first epoch's (last) step instead


# Progress. Not a terminal: only the epoch lines in a short run (10 s by default between progress
# lines), and with PNET_PROGRESS=S a line every S seconds within the epoch.
LINE = re.compile(r"^epoch 1/2: batch (\d+)/16 \((\d+)%\), loss \d+\.\d{4}, \d+ samples/s, ETA (\d+s|\d+:\d\d)$")
rc, out, err = run(*base, "--epochs", "2", "--batch", "128")
# The first line is the schedule, which train prints once.
check("not a terminal, a short run: the schedule, then only the epoch lines", rc == 0 and len(out.splitlines()) == 3
      and out.startswith("schedule: ")
      and all(l.startswith("epoch %d/2: loss" % (i + 1)) for i, l in enumerate(out.splitlines()[1:])), (rc, out, err))
rc, out, err = run(*base, "--epochs", "2", "--batch", "128", env=dict(os.environ, PNET_PROGRESS="0.02"))
prog = [l for l in out.splitlines() if LINE.match(l)]
check("PNET_PROGRESS=0.02: progress lines with the batch, loss, samples/s and ETA", rc == 0 and len(prog) >= 2, (rc, out, err))
check("PNET_PROGRESS=0.02: each epoch still ends with its line",
      [l for l in out.splitlines() if ": loss" in l and "batch" not in l][-1:] == [out.splitlines()[-1]], out)
rc, out, err = run(*base, "--epochs", "2", "--batch", "128", env=dict(os.environ, PNET_PROGRESS="0"))
check("PNET_PROGRESS=0: the schedule, then only the epoch lines", rc == 0 and len(out.splitlines()) == 3, out)
for bad in ("x", "-1", "nan", "1s"):
    rc, out, err = run(*base, "--epochs", "1", env=dict(os.environ, PNET_PROGRESS=bad))
    check("PNET_PROGRESS=%s: a one-line error" % bad,
          rc == 1 and len(err.splitlines()) == 1 and "PNET_PROGRESS needs the seconds" in err and bad in err and not out,
          (rc, out, err))

# On a terminal: a bar with the percentage, samples/s, the running loss and the ETA, cleared before
# the epoch's line.
master, slave = pty.openpty()
p = subprocess.Popen(base + ["--epochs", "2", "--batch", "128"], stdout=slave, stderr=subprocess.PIPE)
os.close(slave)
chunks = []
while True:
    try:
        b = os.read(master, 4096)
    except OSError:
        break
    if not b:
        break
    chunks.append(b)
p.wait(timeout=300)
os.close(master)
tty = b"".join(chunks).decode(errors="replace")
BAR = re.compile(r"\repoch 1/2 \[=*\s*\] +\d+%  \d+ samples/s  loss \d+\.\d{4}  ETA (\d+s|\d+:\d\d)")
check("a terminal: the bar shows samples/s, the running loss and the ETA", p.returncode == 0 and BAR.search(tty), repr(tty[:300]))
check("a terminal: the bar is cleared before the epoch's line", re.search(r"\r +\repoch 1/2: loss", tty), repr(tty[-300:]))


def interrupt_last_step(epochs, ckpt, sig=signal.SIGINT):
    """Runs `epochs` one-step epochs with --save ckpt and sends sig during the last step: after the
    handler is installed, before the step ends. Returns (rc, stdout, stderr), or None when no try hit it."""
    t = time.monotonic()
    rc, _, err = run(*base, "--epochs", str(epochs), "--save", path("timing.st"))
    whole = time.monotonic() - t
    if rc != 0:
        check("an uninterrupted run for the timing", False, err)
        return None
    step = whole / (epochs + 0.5)  # about: the start and the saves are short beside a step
    delay = whole - step * 0.6
    for _ in range(8):
        if os.path.exists(ckpt):
            os.remove(ckpt)
        p = subprocess.Popen(base + ["--epochs", str(epochs), "--save", ckpt], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(max(delay, 0.01))
        p.send_signal(sig)
        out, err = p.communicate(timeout=300)
        if p.returncode == 0:  # too late: the run had finished
            delay *= 0.7
        elif p.returncode == -sig or any("after epoch %d" % e in err or "(epoch %d," % e in err for e in range(1, epochs)):
            if p.returncode == 128 + sig and epochs == 2 and not early:
                early.append((p.returncode, out, err, open(ckpt, "rb").read() if os.path.exists(ckpt) else b""))
            delay = delay * 1.2 + 0.02  # too early: before training, or in an earlier step
        else:
            return p.returncode, out, err
    return None


# The uninterrupted runs whose files the interrupted ones must equal.
for e in (1, 2):
    rc, _, err = run(*base, "--epochs", str(e), "--save", path("whole%d.st" % e))
    check("uninterrupted run of %d epoch%s" % (e, "s"[:e > 1]), rc == 0, err)


def same(a, b):
    return open(a, "rb").read() == open(b, "rb").read()


for epochs, sig in ((1, signal.SIGINT), (2, signal.SIGTERM)):
    ck = path("last%d.st" % epochs)
    got = interrupt_last_step(epochs, ck, sig)
    what = "%s during the last step of %d epoch%s" % (sig.name, epochs, "s"[:epochs > 1])
    if got is None:
        print("NOTE %s: no try landed in the last step (a busy machine); checks skipped" % what)
        continue
    rc, out, err = got
    lines = err.strip().splitlines()
    check(what + ": exit 128 + the signal", rc == 128 + sig, (rc, err))
    check(what + ": one line saying the run is finished, not to resume",
          len(lines) == 1 and "training is finished" in err and "--resume" not in err
          and "checkpoint written to " + ck in err, err)
    check(what + ": the epoch's line is printed", ("epoch %d/%d: loss" % (epochs, epochs)) in out, out)
    check(what + ": the checkpoint equals the uninterrupted run's, metadata included",
          os.path.exists(ck) and same(ck, path("whole%d.st" % epochs)))
    before = open(ck, "rb").read()
    rc, out, err = run(*base, "--epochs", str(epochs), "--resume", ck, "--save", ck)
    check(what + ": --resume says the run is finished and exits 0",
          rc == 0 and "finished" in err and len(err.strip().splitlines()) == 1 and "epoch" not in out, (rc, out, err))
    check(what + ": --resume leaves the checkpoint as it was", open(ck, "rb").read() == before)
    rc, out, err = run(*base, "--epochs", str(epochs + 1), "--resume", ck, "--save", ck)
    check(what + ": --resume with a larger --epochs trains on", rc == 0 and "epoch %d/%d" % (epochs + 1, epochs + 1) in out,
          (rc, out, err))

if not early:  # aim at epoch 1 of 2: a signal early in the run
    for delay in (0.15, 0.25, 0.4, 0.6):
        ck = path("early.st")
        if os.path.exists(ck):
            os.remove(ck)
        p = subprocess.Popen(base + ["--epochs", "2", "--save", ck], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        time.sleep(delay)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=300)
        if p.returncode == 128 + signal.SIGTERM and "after epoch 1" in err or "(epoch 1," in err:
            early.append((p.returncode, out, err, open(ck, "rb").read() if os.path.exists(ck) else b""))
            break

# A signal during an earlier epoch's last step: the checkpoint is the one written after that epoch,
# and the message says to resume.
if early:
    rc, out, err, data = early[0]
    check("SIGTERM during epoch 1's last step: says to resume after epoch 1",
          len(err.strip().splitlines()) == 1 and "after epoch 1" in err and "--resume" in err, err)
    check("SIGTERM during epoch 1's last step: the checkpoint equals a 1-epoch run's",
          data == open(path("whole1.st"), "rb").read())
else:
    print("NOTE no try landed in epoch 1 of 2: its checks skipped")

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
