"""The Ray backend: sessions run as Ray tasks; their records stream back to one pump that writes
them into the store, so a Ray run reads exactly like a local one.

A task (raytask.py) runs the one `Session` loop, as a local worker runs it, against a `_Sink`:
an object shaped like the parts of `Store` a session calls, that turns each call into a message
the task yields (a Ray streaming generator). The pump in the submitting process replays the
messages, in order, against the real store; runs the task creates (a dense baseline) get real run
ids there. Artifact files (weights, masks) travel as bytes when their run finishes. Ray is
imported only here and in raytask.py, and only when used; the engine knows nothing of it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .config import ConfigError, SessionConfig
from .raytask import forget_stop, remote_task, request_stop
from .store import FOREGROUND, Store

ENV_ADDRESS = "PRUNEVIZ_RAY_ADDRESS"
POLL_SECONDS = 0.2        # how often the pump looks at cancel flags while no message arrives
STOP_GRACE_SECONDS = 30.0  # a running task asked to stop that has not ended by then: ray.cancel
CANCELLED = "cancelled by the user"


# -- connecting ----------------------------------------------------------------------------------
def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs the ray package, which is not installed; "
                          "`pip install -r requirements.txt` installs it, or use --backend "
                          "local.") from None
    return ray


PROBE_SECONDS = 4.0       # the whole probe of --ray-address: a TCP connect, HTTP/2, one GCS call
# HTTP/2's client connection preface followed by an empty SETTINGS frame (RFC 9113, 3.4): a gRPC
# server (Ray's GCS, the Ray Client server) answers with a SETTINGS frame of its own.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 0x4
# A GCS method every Ray since 2.0 serves; an empty message is a valid request (no node ids).
_GCS_CHECK = "/ray.rpc.NodeInfoGcsService/CheckAlive"


def _no_ray(address: str, why: str) -> ConfigError:
    return ConfigError(f"no Ray cluster answers at {address} ({why}); start one with `ray start "
                       f"--head`, fix --ray-address / {ENV_ADDRESS}, or leave both unset to start "
                       f"a local Ray.")


def _speaks_http2(host: str, port: int, address: str, deadline: float) -> None:
    """Connect and exchange HTTP/2 prefaces; a ConfigError unless a gRPC-style server answers.
    ray.init would otherwise retry a port that accepts and closes for 20 s, printing a warning
    per try, and wait for minutes on a server that answers something else."""
    try:
        sock = socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic()))
    except OSError as e:
        raise _no_ray(address, e.strerror or str(e)) from None
    with sock:
        try:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
        except TimeoutError:
            raise _no_ray(address, f"the server there said nothing within {PROBE_SECONDS:g} s"
                          ) from None
        except (ConnectionResetError, BrokenPipeError):     # it closed before reading us
            raise _no_ray(address, "the server there closed the connection without a word"
                          ) from None
        except OSError as e:
            raise _no_ray(address, f"the connection failed: {e.strerror or e}") from None
        if not head:
            raise _no_ray(address, "the server there closed the connection without a word")
        if len(head) < 9 or head[3] != _H2_SETTINGS or head[5:9] != b"\0\0\0\0":
            with contextlib.suppress(OSError):      # the rest of its first line, to quote it
                sock.settimeout(0.2)
                head += sock.recv(64)
            said = head.decode("ascii", "replace").splitlines()[0][:40]
            raise _no_ray(address, f"the server there does not speak gRPC, as Ray does; it "
                                   f"answered {said!r}")


def _auth_token() -> str | None:
    """The token Ray would send, looked up where Ray 2.60 looks: RAY_AUTH_TOKEN, the file named
    by RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _hpack_int(value: int, prefix: int, flags: int = 0) -> bytes:
    """An HPACK integer with a `prefix`-bit prefix (RFC 7541, 5.1)."""
    top = (1 << prefix) - 1
    if value < top:
        return bytes([flags | value])
    out, value = [flags | top], value - top
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes(out + [value])


def _hpack_literal(text: str) -> bytes:
    raw = text.encode()
    return _hpack_int(len(raw), 7) + raw       # no Huffman: the H bit stays 0


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big")
            + payload)


def _grpc_status(block: bytes) -> int | None:
    """grpc-status from an HPACK header block, when written as a plain literal (gRPC's C++ core,
    which Ray's GCS is, never Huffman-codes it); None when it is not readable."""
    at = block.find(b"grpc-status")
    if at < 0:
        return None
    at += len(b"grpc-status")
    if at >= len(block) or block[at] & 0x80:
        return None
    value = block[at + 1:at + 1 + block[at]]
    return int(value) if value.isdigit() else None


UNAUTHENTICATED, UNIMPLEMENTED = 16, 12     # gRPC status codes


def _gcs_call(host: str, port: int, token: str | None, deadline: float) -> int | None:
    """One unary gRPC call of _GCS_CHECK (an empty request) over a plain HTTP/2 connection, with
    the credentials ray.init would send; its grpc-status, or None when none could be read. By
    hand: Ray 2.60 installs no grpc package for Python, and its own GCS client retries for 20 s."""
    headers = [(":method", "POST"), (":scheme", "http"), (":path", _GCS_CHECK),
               (":authority", f"{host}:{port}"), ("content-type", "application/grpc"),
               ("te", "trailers")] + ([("authorization", f"Bearer {token}")] if token else [])
    block = b"".join(b"\x00" + _hpack_literal(k) + _hpack_literal(v) for k, v in headers)
    request = (_H2_PREFACE + _frame(1, 0x4, 1, block)           # HEADERS, END_HEADERS
               + _frame(0, 0x1, 1, b"\x00\x00\x00\x00\x00"))   # DATA: an empty message, END_STREAM
    with socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic())
                                  ) as sock:
        sock.sendall(request)
        buffer, blocks = b"", b""
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                return _grpc_status(blocks)
            buffer += chunk
            while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                size, kind, flags = int.from_bytes(buffer[:3], "big"), buffer[3], buffer[4]
                stream = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
                payload, buffer = buffer[9:9 + size], buffer[9 + size:]
                if kind == 4 and not flags & 0x1:               # their SETTINGS: acknowledge
                    sock.sendall(_frame(4, 0x1, 0, b""))
                elif kind == 6 and not flags & 0x1:             # PING: answer it
                    sock.sendall(_frame(6, 0x1, 0, payload))
                elif kind in (1, 9) and stream == 1:            # HEADERS, CONTINUATION
                    if kind == 1 and flags & 0x8:               # PADDED
                        payload = payload[1:len(payload) - payload[0]]
                    if kind == 1 and flags & 0x20:              # PRIORITY
                        payload = payload[5:]
                    blocks += payload
                    status = _grpc_status(blocks)
                    if status is not None and flags & 0x4:
                        return status
                elif kind in (3, 7):                            # RST_STREAM, GOAWAY
                    return _grpc_status(blocks)
    return None


def _gcs_check(host: str, port: int, address: str, deadline: float) -> None:
    """One GCS call with the credentials ray.init would send. Ray 2.60 sends its token only when
    RAY_AUTH_MODE=token, and a head started after any earlier local Ray run requires one: ray.init
    then fails after ~20 s blaming the address. Named here with the fix instead."""
    token_mode = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    token = _auth_token() if token_mode else None
    try:
        status = _gcs_call(host, port, token, deadline)
    except TimeoutError:
        raise _no_ray(address, f"it speaks HTTP/2 but answered no GCS call within "
                               f"{PROBE_SECONDS:g} s") from None
    except OSError as e:
        raise _no_ray(address, f"the connection failed: {e.strerror or e}") from None
    if status == UNAUTHENTICATED:
        raise _unauthenticated(address, token_mode, token)
    if status == UNIMPLEMENTED:
        raise _no_ray(address, "the gRPC server there is not a Ray head node's GCS; give its GCS "
                               "port (6379 by default), or ray://HOST:10001 for a Ray Client "
                               "server")
    # Any other answer (or one this reader cannot decode) is left to ray.init to judge.


def _unauthenticated(address: str, token_mode: bool, token: str | None) -> ConfigError:
    where = os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token"
    copy = f"put the head node's token (`ray get-auth-token` there) in {where}"
    if token_mode and token:
        return ConfigError(f"the Ray cluster at {address} refuses this machine's token "
                           f"(RAY_AUTH_TOKEN or {where}); {copy}, or export RAY_AUTH_TOKEN.")
    if token_mode:
        return ConfigError(f"the Ray cluster at {address} requires token authentication and "
                           f"this machine has no token; {copy}, or export RAY_AUTH_TOKEN.")
    fix = ("export RAY_AUTH_MODE=token (Ray then sends this machine's token, from "
           f"{where})" if _auth_token() else f"export RAY_AUTH_MODE=token and {copy}")
    return ConfigError(f"the Ray cluster at {address} requires token authentication, which Ray "
                       f"sends only when RAY_AUTH_MODE=token; {fix}, or start the head with "
                       f"RAY_AUTH_MODE=disabled.")


def _probe(address: str) -> None:
    """Fail within PROBE_SECONDS, in one line, on an address where no Ray answers or where Ray
    wants a token this process would not send (ray.init retries for 20 s to minutes, then blames
    the address)."""
    if address in ("auto", "local"):
        return
    client = address.startswith("ray://")
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--ray-address expects HOST:PORT (the head node's GCS port, 6379 by "
                          f"default) or ray://HOST:PORT, got {address!r}.")
    host = host.strip("[]") or "127.0.0.1"
    deadline = time.monotonic() + PROBE_SECONDS
    _speaks_http2(host, int(port), address, deadline)
    if not client:          # a Ray Client server serves no GCS methods
        _gcs_check(host, int(port), address, deadline)


def connect(address: str | None = None) -> Any:
    """Connect this process to Ray once (a local Ray is started when `address` is None); returns
    the ray module. One clear ConfigError when Ray is missing or the address is unreachable."""
    address = address or os.environ.get(ENV_ADDRESS) or None
    if address:
        _probe(address)
    ray = _ray()
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    except Exception as e:  # noqa: BLE001 - ray raises several types; one message for all
        raise ConfigError(f"cannot connect to Ray at {address or 'a new local instance'} "
                          f"({type(e).__name__}: {e}); check --ray-address / {ENV_ADDRESS}."
                          ) from None
    return ray


def cluster_info(address: str | None = None) -> dict[str, Any]:
    """The cluster's nodes, CPUs and GPUs (for the sidebar and `--backend ray` summaries)."""
    ray = connect(address)
    total = ray.cluster_resources()
    free = ray.available_resources()
    return {"nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
            "cpus": total.get("CPU", 0.0), "gpus": total.get("GPU", 0.0),
            "cpus_free": free.get("CPU", 0.0), "gpus_free": free.get("GPU", 0.0)}


def check_resources(num_gpus: float, num_cpus: float) -> None:
    """What a task may ask Ray for: GPUs >= 0 (fractions share one), CPUs > 0."""
    if not num_gpus >= 0:
        raise ConfigError(f"--num-gpus must be >= 0 (fractions such as 0.5 share a GPU), got "
                          f"{num_gpus}.")
    if num_gpus > 1 and num_gpus != int(num_gpus):
        raise ConfigError(f"--num-gpus above 1 must be a whole number, got {num_gpus}.")
    if not num_cpus > 0:
        raise ConfigError(f"--num-cpus must be > 0, got {num_cpus}.")


def check_config(config: SessionConfig, num_gpus: float, num_cpus: float) -> None:
    """Cheap validation in the submitting process; the device is the task's node's business
    (this machine may have no GPU while the cluster does)."""
    from .session import check

    check_resources(num_gpus, num_cpus)
    if config.device == "cuda" and num_gpus == 0:
        raise ConfigError("--device cuda on Ray needs a GPU for the task: pass --num-gpus 1 "
                          "(or a fraction such as 0.5).")
    check(config.replace(device="cpu"))


# -- the pump ------------------------------------------------------------------------------------
@dataclass
class _Stream:
    """One task's stream and what the pump knows of it."""

    gen: Any
    run_id: str | None                  # the session's run (None: a dense-only task)
    stop_key: str                       # raytask.request_stop(stop_key) ends the task
    cancel: threading.Event | None = None
    ids: dict[str, str] = field(default_factory=dict)
    open: list[str] = field(default_factory=list)      # runs begun, not yet finished
    where: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    error: BaseException | None = None   # a ConfigError the task raised, re-raised for callers
    reason: str | None = None            # why the stream ended early
    cancelled: bool = False
    stop_asked: float | None = None     # monotonic time the task was asked to stop
    forced: bool = False                # ... and, past the grace, cancelled through Ray
    done: bool = False
    total: int = 0
    phase: str = "session"

    def real(self, run_id: str | None) -> str | None:
        return self.ids.get(run_id, run_id) if run_id else run_id


def _replay(s: _Stream, msg: tuple, store: Store, progress: Any) -> None:
    kind = msg[0]
    if kind == "hello":
        _, host, pid, started, gpus = msg
        s.where = {"backend": "ray", "host": host, "pid": pid, "ray_gpus": list(gpus),
                   "task_started": started}
    elif kind == "create":
        _, local, config, run_kind, status, sweep_id = msg
        s.ids[local] = store.create_run(SessionConfig.from_dict(config), kind=run_kind,
                                        status=status, sweep_id=sweep_id)
        s.open.append(s.ids[local])
    elif kind == "start":
        run_id = s.real(msg[1])
        store.start_run(run_id, msg[2])
        if run_id not in s.open:
            s.open.append(run_id)
        s.total, s.phase = msg[2], "session" if run_id == s.run_id else "dense baseline"
    elif kind == "write":
        _, local, records, step = msg
        store.write(s.real(local), records, step=step)
        if progress is not None and step is not None and s.total:
            progress(min(step + 1, s.total), s.total, s.phase)
    elif kind == "finish":
        _, local, status, summary, error, files = msg
        run_id = s.real(local)
        folder = store.run_dir(run_id)
        for name, data in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        if summary is not None:
            summary = {**summary, **s.where}
            summary["run_id"], summary["dense_run"] = run_id, s.real(summary.get("dense_run"))
        store.finish_run(run_id, status, summary=summary, error=error)
        if run_id in s.open:
            s.open.remove(run_id)
        if run_id == s.run_id:
            s.summary = summary or {"run_id": run_id, "status": status, "error": error}
    elif kind == "dense":
        _, key, local, name, accuracy = msg
        run_id = s.real(local)
        store.dense_save(key, run_id, store.run_dir(run_id) / name, accuracy)


def _fail(s: _Stream, store: Store, e: BaseException | None) -> None:
    """The stream ended early (`e`: why, None when it just ended): every run it had open (and
    its session, if still queued) ends with the reason; every record it streamed stays."""
    ray = _ray()
    cause = getattr(e, "cause", None) if isinstance(e, ray.exceptions.RayTaskError) else None
    if s.cancelled or isinstance(e, ray.exceptions.TaskCancelledError):
        status, error = "interrupted", CANCELLED
    elif isinstance(cause, ConfigError):
        status, error = "failed", str(cause)
        s.error = cause
    elif cause is not None:
        status, error = "failed", f"{type(cause).__name__}: {cause}"
    elif e is None:
        status, error = "failed", "the Ray task ended without finishing its run"
    else:
        status, error = "failed", (f"the Ray task stopped before it finished ({type(e).__name__}:"
                                   f" {str(e).splitlines()[0] if str(e) else 'no detail'}); a "
                                   f"node lost or a worker killed. Every step it streamed is "
                                   f"kept.")
    s.reason = error
    runs = list(s.open)
    if s.run_id is not None and s.run_id not in runs and s.summary is None:
        row = store.run(s.run_id)
        if row["status"] in ("queued", "running"):
            runs.append(s.run_id)
            if row["status"] == "queued" and status == "interrupted":
                error = "cancelled before it started"
    for run_id in runs:
        summary = {"run_id": run_id, "status": status, "error": error, **s.where}
        store.finish_run(run_id, status, summary=summary, error=error)
        if run_id == s.run_id:
            s.summary = summary
    s.open.clear()
    if s.run_id is not None and s.summary is None:     # it had ended already (a queued run
        row = store.run(s.run_id)                       # no worker claimed ends at its cancel)
        s.summary = {"run_id": s.run_id, "status": row["status"], "error": row["error"]}


def _pump(streams: list[_Stream], store: Store, progress: Any = None) -> None:
    """Write every stream's messages into the store as they arrive, until all have ended;
    stop a task once its event or its run's store flag is set (`_stop`)."""
    ray = _ray()
    active = list(streams)
    try:
        while active:
            ready, _ = ray.wait([s.gen for s in active], num_returns=1, timeout=POLL_SECONDS)
            for s in active:
                if any(g is s.gen for g in ready):
                    _drain(s, store, progress)
            for s in active:
                if not s.done:
                    _stop(s, store)
            active = [s for s in active if not s.done]
    finally:
        for s in streams:
            if s.stop_asked is not None:
                with contextlib.suppress(Exception):     # Ray gone: so is its key
                    forget_stop(s.stop_key)


def _drain(s: _Stream, store: Store, progress: Any) -> None:
    """Replay what the stream has ready, without blocking (_next_sync with timeout 0 is the one
    call that does; next() would wait for the task's next message)."""
    ray = _ray()
    try:
        while True:
            ref = s.gen._next_sync(timeout_s=0)
            if ref.is_nil():
                return
            _replay(s, ray.get(ref), store, progress)
    except StopIteration:
        s.done = True
        if s.open or (s.run_id is not None and s.summary is None):
            _fail(s, store, None)      # e.g. cancelled before it started: the stream just ends
    except ray.exceptions.RayError as e:
        # The task itself ended (raised, was killed or cancelled): nothing to stop. A ray.cancel
        # here races the task's completion reply and aborts this whole process in Ray 2.60's
        # core worker (RAY_CHECK "Tried to complete task that was not pending", ray#54846).
        _fail(s, store, e)
        s.done = True
    except Exception as e:  # noqa: BLE001 - the pump failed to store a message
        ray.cancel(s.gen)     # stop the task this pump gives up on
        _fail(s, store, e)
        s.done = True


def _stop(s: _Stream, store: Store) -> None:
    """Once the user cancels: a running task is asked to stop itself (it ends its session within
    a step and its stream ends as a finished task's does); one still waiting for a node, or one
    that has not stopped after STOP_GRACE_SECONDS, is cancelled through Ray."""
    if not s.cancelled:
        runs = [s.run_id] if s.run_id else []
        if not ((s.cancel is not None and s.cancel.is_set())
                or any(store.cancel_requested(r) for r in runs + s.open)):
            return
        s.cancelled = True
        if not s.where:           # no "hello" yet: not running, so it cannot be completing
            _ray().cancel(s.gen)
            return
        request_stop(s.stop_key)
        s.stop_asked = time.monotonic()
    elif (s.stop_asked is not None and not s.forced
          and time.monotonic() - s.stop_asked > STOP_GRACE_SECONDS):
        s.forced = True
        _ray().cancel(s.gen)


def _submit(config: SessionConfig, run_id: str | None, dense: Any, *, panel: bool,
            num_gpus: float, num_cpus: float, cancel: threading.Event | None) -> _Stream:
    stop_key = uuid.uuid4().hex
    gen = remote_task().options(num_gpus=num_gpus, num_cpus=num_cpus, max_retries=0,
                          name=f"pruneviz {run_id or 'dense'}").remote(
        config.to_dict(), run_id, dense, panel, num_cpus, stop_key)
    return _Stream(gen, run_id, stop_key, cancel)


def _dense_ref(config: SessionConfig, store: Store) -> Any:
    """The cached dense baseline of `config` as one object-store entry the tasks share, or
    None when it is not cached yet (the task then trains it)."""
    from .session import dense_config, dense_key

    if config.start != "dense":
        return None
    key = dense_key(dense_config(config))
    hit = store.dense_lookup(key)
    if hit is None:
        return None
    run_id, path, accuracy = hit
    return _ray().put((key, run_id, path.read_bytes(), accuracy))


def _finish(s: _Stream) -> dict[str, Any]:
    if isinstance(s.error, ConfigError):
        raise s.error
    assert s.summary is not None
    return s.summary


def run_on_ray(config: SessionConfig, store: Store, run_id: str, *,
               cancel: threading.Event | None = None, address: str | None = None,
               num_gpus: float = 0, num_cpus: float = 1, panel: bool = True,
               progress: Any = None) -> dict[str, Any]:
    """Train the queued run `run_id` as a Ray task and stream its records into `store`; returns
    the run summary, as `session.run_session` does (ConfigError raised once the run is marked
    failed with it)."""
    try:
        check_config(config, num_gpus, num_cpus)
        connect(address)
    except ConfigError as e:
        store.finish_run(run_id, "failed", error=str(e))
        raise
    s = _submit(config, run_id, _dense_ref(config, store), panel=panel, num_gpus=num_gpus,
                num_cpus=num_cpus, cancel=cancel)
    _pump([s], store, progress)
    return _finish(s)


def run_sweep_on_ray(configs: list[SessionConfig], store: Store, *, sweep_id: str | None = None,
                     cancel: threading.Event | None = None, address: str | None = None,
                     num_gpus: float = 0, num_cpus: float = 1) -> list[dict[str, Any]]:
    """Queue the configs as one sweep, train each dense baseline they need once (a Ray task),
    then every session at once as Ray tasks sharing it; returns the summaries in order."""
    from .session import dense_config, dense_key

    for config in configs:
        check_config(config, num_gpus, num_cpus)
    connect(address)
    # The foreground's runs: no worker on this store may claim them while they wait for Ray.
    run_ids = [store.create_run(c, sweep_id=sweep_id, worker=FOREGROUND) for c in configs]
    # One dense-only task per baseline not cached yet, all at once; then the sessions.
    needed = {dense_key(dense_config(c)): c for c in configs
              if c.start == "dense" and _dense_ref(c, store) is None}
    dense_streams = [_submit(c, None, None, panel=False, num_gpus=num_gpus, num_cpus=num_cpus,
                             cancel=cancel) for c in needed.values()]
    _pump(dense_streams, store)
    failed = {key: s for key, s in zip(needed, dense_streams) if store.dense_lookup(key) is None}
    streams: list[_Stream | None] = []
    shared: dict[str, Any] = {}
    for config, run_id in zip(configs, run_ids):
        key = dense_key(dense_config(config)) if config.start == "dense" else None
        if key in failed:
            why = failed[key]
            status = "interrupted" if why.cancelled else "failed"
            error = (CANCELLED if why.cancelled
                     else f"its dense baseline did not train: {why.reason}")
            store.finish_run(run_id, status, error=error)
            streams.append(None)
            continue
        if key is not None and key not in shared:
            shared[key] = _dense_ref(config, store)
        streams.append(_submit(config, run_id, shared.get(key), panel=False, num_gpus=num_gpus,
                               num_cpus=num_cpus, cancel=cancel))
    _pump([s for s in streams if s is not None], store)
    out = []
    for run_id, s in zip(run_ids, streams):
        if s is None or s.summary is None:
            row = store.run(run_id)
            out.append({"run_id": run_id, "status": row["status"], "error": row["error"],
                        "method": row["method"], "rate": row["rate"]})
        else:
            out.append(s.summary)
    return out
