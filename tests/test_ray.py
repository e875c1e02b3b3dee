"""The Ray backend on a local mini-cluster: records equal to the local backend's, cancel, a task
that raises or dies, GPU scheduling, and one clear error for a cluster nobody answers at."""

import contextlib
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import ray

from pruneviz.cli import main
from pruneviz.config import ConfigError, SessionConfig
from pruneviz.raybackend import CANCELLED, run_on_ray, run_sweep_on_ray
from pruneviz.session import run_session
from pruneviz.store import Store

FAST = dict(dense_epochs=3, epochs=2, device="cpu")
# Seconds, not results: they differ between any two runs, on any backend.
TIMINGS = {"step_time", "wall_time"}


@pytest.fixture(scope="module")
def cluster():
    """One local Ray for the module: 2 CPUs and 1 logical GPU, so GPU scheduling is testable
    on a CPU machine."""
    # Ray refuses a declared GPU while CUDA_VISIBLE_DEVICES lists none (conftest empties it);
    # "-1" is one id Ray can hand out that CUDA maps to no device, so tasks still run on CPU.
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    try:
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES")
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    yield
    ray.shutdown()


def _tables(store: Store, run_id: str) -> dict[str, pd.DataFrame]:
    """Every record table of a run, timings dropped, in one canonical order."""
    out = {"scalars": store.scalars(run_id), "layers": store.layers(run_id),
           "filters": store.filters(run_id)}
    out["scalars"] = out["scalars"][~out["scalars"].key.isin(TIMINGS)]
    for name in store.tables(run_id):
        out[f"rows:{name}"] = store.rows(run_id, name)
    return {k: df.drop(columns="run_id").sort_values(list(df.columns.drop("run_id")))
            .reset_index(drop=True) for k, df in out.items()}


def _cpus_free(want: float, seconds: float = 30) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if ray.available_resources().get("CPU", 0) >= want:
            return True
        time.sleep(0.2)
    return False


def _task_pid(seconds: float = 60) -> int:
    """The pid of the Ray worker running a pruneviz task (Ray titles it ray::pruneviz ...)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(
                        b"ray::pruneviz"):
                    return int(proc.name)
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError("no ray::pruneviz worker appeared")


def _wait_step(store: Store, run_id: str, step: int, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while store.run(run_id)["step"] < step:
        assert time.monotonic() < end, "the Ray run made no progress"
        time.sleep(0.05)


def test_sweep_records_equal_the_local_backend(cluster, tmp_path):
    configs = [SessionConfig(method=m, rate=r, **FAST) for m in ("l1", "gmp")
               for r in (0.5, 0.8)]
    local, remote = Store(tmp_path / "local"), Store(tmp_path / "ray")
    local_ids = [run_session(c, local)["run_id"] for c in configs]
    summaries = run_sweep_on_ray(configs, remote, sweep_id="sweep-ray")
    assert [s["status"] for s in summaries] == ["completed"] * 4
    pairs = list(zip(local_ids, [s["run_id"] for s in summaries]))
    # ... and the one dense baseline each trained, shared by all four sessions
    dense = [Store.run(store, ids[0])["summary"]["dense_run"] for store, ids in
             ((local, local_ids), (remote, [s["run_id"] for s in summaries]))]
    assert {s["dense_run"] for s in summaries} == {dense[1]}
    for (a, b) in [*pairs, tuple(dense)]:
        ta, tb = _tables(local, a), _tables(remote, b)
        assert ta.keys() == tb.keys() and len(ta["scalars"]) > 100
        for name in ta:
            pd.testing.assert_frame_equal(ta[name], tb[name], check_exact=True, obj=name)


def test_sweep_runs_carry_the_sweep_id_and_artifacts(cluster, tmp_path):
    store = Store(tmp_path / "runs")
    configs = [SessionConfig(method="l1", rate=r, **FAST) for r in (0.5, 0.8)]
    summaries = run_sweep_on_ray(configs, store, sweep_id="sweep-abc")
    runs = store.runs().set_index("run_id")
    for s in summaries:
        assert runs.loc[s["run_id"], "sweep_id"] == "sweep-abc"
        assert s["backend"] == "ray" and s["pid"] != os.getpid()
        assert (store.run_dir(s["run_id"]) / "weights.pt").stat().st_size > 0
        assert (store.run_dir(s["run_id"]) / "masks.pt").stat().st_size > 0


def _long_run(store: Store) -> tuple[str, threading.Thread, dict]:
    """A long Ray run pumped from a thread, once it has committed 5 steps: its id, the thread
    and the dict its summary lands in."""
    config = SessionConfig(method="l1", rate=0.5, dense_epochs=3, epochs=200, device="cpu")
    run_id = store.create_run(config)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(run_on_ray(config, store, run_id)))
    thread.start()
    _wait_step(store, run_id, 5)
    return run_id, thread, result


def _record_cancels(monkeypatch) -> list:
    """ray.cancel still works; the list gets every task it was called on."""
    calls, real = [], ray.cancel
    monkeypatch.setattr(ray, "cancel", lambda ref, **k: (calls.append(ref), real(ref, **k)))
    return calls


def test_cancel_a_running_ray_task(cluster, tmp_path, monkeypatch):
    store = Store(tmp_path / "runs")
    run_id, thread, result = _long_run(store)
    cancels = _record_cancels(monkeypatch)
    store.request_cancel(run_id)
    thread.join(60)
    assert not thread.is_alive()
    row = store.run(run_id)
    assert result["status"] == row["status"] == "interrupted" and row["error"] == CANCELLED
    kept = store.scalars(run_id, ["loss"])
    assert len(kept) >= 5 and kept.step.max() < row["total_steps"] - 1
    assert _cpus_free(2), "the cancelled task still holds its CPU"
    # The task stopped itself: a ray.cancel can race a task's completion reply, and Ray 2.60
    # aborts the submitting process (here the dashboard's) on that race.
    assert cancels == []


def test_cancel_a_task_still_waiting_for_a_node(cluster, tmp_path, monkeypatch):
    store = Store(tmp_path / "runs")
    config = SessionConfig(**FAST)
    run_id = store.create_run(config)
    cancels = _record_cancels(monkeypatch)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(
        run_on_ray(config, store, run_id, num_cpus=3)))    # the cluster has 2: it never starts
    thread.start()
    time.sleep(1)
    store.request_cancel(run_id)
    thread.join(30)
    assert not thread.is_alive() and len(cancels) == 1      # nothing running to ask
    row = store.run(run_id)
    assert result["status"] == row["status"] == "interrupted"
    assert row["error"] == "cancelled before it started" and row["step"] == 0


def test_a_task_that_raises_fails_its_run_with_the_message(cluster, tmp_path):
    # Only the node sees the images: every one is unreadable there, which the data loader
    # reports as bad input (DataError); the run fails with it and the caller gets it raised.
    folder = tmp_path / "images"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        (folder / cls / "x.png").write_bytes(b"not an image")
    store = Store(tmp_path / "runs")
    config = SessionConfig(dataset=f"folder:{folder}", **FAST)
    run_id = store.create_run(config)
    with pytest.raises(ConfigError, match="no readable images"):
        run_on_ray(config, store, run_id)
    row = store.run(run_id)
    assert row["status"] == "failed"
    assert "no readable images" in row["error"] and "x.png" in row["error"]


def test_a_task_that_ended_is_never_cancelled(cluster, tmp_path, monkeypatch):
    # ray.cancel on a task whose error was just streamed races its completion reply, and Ray
    # 2.60 aborts the calling process on that race (ray-project/ray#54846): it ended a CI run.
    cancelled = []
    monkeypatch.setattr(ray, "cancel", lambda ref, **k: cancelled.append(ref))
    folder = tmp_path / "images" / "a"
    folder.mkdir(parents=True)
    (folder / "x.png").write_bytes(b"not an image")
    store = Store(tmp_path / "runs")
    config = SessionConfig(dataset=f"folder:{folder.parent}", **FAST)
    with pytest.raises(ConfigError):
        run_on_ray(config, store, store.create_run(config))
    assert cancelled == []


def test_bad_input_found_on_the_node_raises_config_error(cluster, tmp_path):
    store = Store(tmp_path / "runs")
    config = SessionConfig(**{**FAST, "device": "cuda"})     # no CUDA on this node
    run_id = store.create_run(config)
    with pytest.raises(ConfigError, match="no CUDA device"):
        run_on_ray(config, store, run_id, num_gpus=1)
    row = store.run(run_id)
    assert row["status"] == "failed" and "no CUDA device" in row["error"]


def test_a_killed_task_fails_its_run_and_keeps_its_records(cluster, tmp_path):
    store = Store(tmp_path / "runs")
    run_id, thread, result = _long_run(store)
    os.kill(_task_pid(), signal.SIGKILL)
    thread.join(60)
    row = store.run(run_id)
    assert result["status"] == row["status"] == "failed"
    assert "node lost or a worker killed" in row["error"]
    assert len(store.scalars(run_id, ["loss"])) >= 5


@pytest.mark.parametrize("num_gpus", [1, 0.5])
def test_a_gpu_task_is_scheduled_on_the_gpu_ray_gave_it(cluster, tmp_path, num_gpus):
    store = Store(tmp_path / "runs")
    config = SessionConfig(**{**FAST, "device": "auto"})
    summary = run_on_ray(config, store, store.create_run(config), num_gpus=num_gpus)
    assert summary["status"] == "completed"
    assert len(summary["ray_gpus"]) == 1     # Ray gave it the cluster's one (logical) GPU
    assert summary["device"] == "cpu"        # ... which CUDA cannot see here


def test_a_cpu_task_runs_on_cpu(cluster, tmp_path):
    store = Store(tmp_path / "runs")
    config = SessionConfig(**{**FAST, "device": "auto"})
    summary = run_on_ray(config, store, store.create_run(config), num_gpus=0)
    assert summary["ray_gpus"] == [] and summary["device"] == "cpu"


def test_cli_run_and_sweep_on_ray(cluster, tmp_path, capsys):
    root = str(tmp_path / "runs")
    flags = ["--store", root, "--backend", "ray", "--dense-epochs", "3", "--epochs", "1",
             "--device", "cpu", "--json"]
    assert main(["run", *flags]) == 0
    assert main(["sweep", "--methods", "l1,random", "--rates", "0.5", *flags]) == 0
    runs = Store(root).runs()
    assert list(runs.status) == ["completed"] * 3 and runs.sweep_id.notna().sum() == 2


def test_cli_unreachable_address_is_one_clear_error(tmp_path, capsys):
    root = tmp_path / "runs"
    code = main(["run", "--store", str(root), "--backend", "ray", "--ray-address",
                 "127.0.0.1:1", *("--dense-epochs 3 --epochs 1 --device cpu".split())])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("pruneviz: error: no Ray cluster answers at 127.0.0.1:1")
    assert Store(root).runs(include_dense=True).empty


@contextlib.contextmanager
def _tcp_server(reply: bytes | None, close: bool):
    """A local TCP server that, per connection, sends `reply` (None: nothing) and then closes
    or holds the connection open; yields its HOST:PORT."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if reply is not None:
                conn.recv(64)
                conn.sendall(reply)
            conn.close() if close else held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def _cli_run_on(address: str, root: Path, capfd) -> tuple[int, list[str], float]:
    """`run --backend ray --ray-address address`: exit code, stderr lines (Ray's own output
    included, read at the file descriptor), seconds taken."""
    start = time.monotonic()
    code = main(["run", "--store", str(root), "--backend", "ray", "--ray-address", address,
                 *("--dense-epochs 3 --epochs 1 --device cpu".split())])
    took = time.monotonic() - start
    return code, capfd.readouterr().err.strip().splitlines(), took


@pytest.mark.parametrize("reply, close, says", [
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", False,
     "does not speak gRPC, as Ray does; it answered 'HTTP/1.1 400 Bad Request'"),
    (None, True, "closed the connection without a word"),
    (None, False, "said nothing within"),
], ids=["http-server", "accepts-and-closes", "silent"])
def test_an_address_where_no_ray_answers_fails_within_5_s_in_one_line(tmp_path, capfd, reply,
                                                                     close, says):
    with _tcp_server(reply, close) as address:
        code, err, took = _cli_run_on(address, tmp_path / "runs", capfd)
    assert code == 2 and took < 5 and len(err) == 1, (took, err)
    assert err[0].startswith(f"pruneviz: error: no Ray cluster answers at {address} (")
    assert says in err[0] and "ray start --head" in err[0]
    assert Store(tmp_path / "runs").runs(include_dense=True).empty


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big")
            + payload)


def _grpc_reply(status: int) -> bytes:
    """What a gRPC server sends a call it ends at once with `status`: its SETTINGS, then one
    trailers-only HEADERS frame (plain HPACK literals, as gRPC's C++ core writes them)."""
    fields = [(b":status", b"200"), (b"content-type", b"application/grpc"),
              (b"grpc-status", str(status).encode()),
              (b"grpc-message", b"Invalid or missing authentication token")]
    block = b"".join(b"\x00" + bytes([len(k)]) + k + bytes([len(v)]) + v for k, v in fields)
    return _h2_frame(4, 0, 0, b"") + _h2_frame(1, 0x5, 1, block)


@contextlib.contextmanager
def _grpc_server(status: int):
    """A local HTTP/2 server answering any gRPC call with `status`; yields its HOST:PORT and
    the bytes of each request it got."""
    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []
    stop = threading.Event()

    def serve():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                got = conn.recv(65536)
                conn.sendall(_grpc_reply(status))
                with contextlib.suppress(OSError):      # the client's ACK and the rest
                    got += conn.recv(65536)
                requests.append(got)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}", requests
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_a_cluster_that_wants_a_token_is_named_with_the_fix(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("abc123\n")
    with _grpc_server(16) as (address, seen):          # 16: UNAUTHENTICATED
        code, err, took = _cli_run_on(address, tmp_path / "runs", capfd)
        assert code == 2 and took < 5 and len(err) == 1, (took, err)
        assert "requires token authentication" in err[0]
        assert "export RAY_AUTH_MODE=token (Ray then sends this machine's token" in err[0]
        assert b"authorization" not in seen[-1]          # as ray.init would call: no token
        # With the mode set, the token goes along; a cluster that still refuses it says so.
        monkeypatch.setenv("RAY_AUTH_MODE", "token")
        code, err, took = _cli_run_on(address, tmp_path / "runs", capfd)
        assert code == 2 and took < 5 and len(err) == 1, (took, err)
        assert "refuses this machine's token" in err[0]
        assert b"Bearer abc123" in seen[-1]
    assert Store(tmp_path / "runs").runs(include_dense=True).empty


def test_a_grpc_server_that_is_not_a_ray_gcs_is_one_clear_error(tmp_path, capfd):
    with _grpc_server(12) as (address, _):             # 12: UNIMPLEMENTED
        code, err, took = _cli_run_on(address, tmp_path / "runs", capfd)
    assert code == 2 and took < 5 and len(err) == 1, (took, err)
    assert "not a Ray head node's GCS" in err[0] and "6379" in err[0]


def test_a_real_gcs_passes_the_probe_and_its_token_auth_is_named(cluster, monkeypatch):
    from pruneviz.raybackend import _probe

    address = ray.get_runtime_context().gcs_address
    start = time.monotonic()
    _probe(address)                 # with the credentials this process's ray.init uses
    assert time.monotonic() - start < 5
    # Ray 2.60 starts a new local cluster with token auth on (RAY_AUTH_MODE=token here, the
    # token in ~/.ray/auth_token): a process without the variable is refused by that GCS.
    if os.environ.get("RAY_AUTH_MODE") == "token":
        monkeypatch.delenv("RAY_AUTH_MODE")
        with pytest.raises(ConfigError, match="requires token authentication.*export "
                                              "RAY_AUTH_MODE=token"):
            _probe(address)


@pytest.mark.parametrize("flags, says", [(["--num-gpus", "-1"], "--num-gpus"),
                                         (["--num-cpus", "0"], "--num-cpus"),
                                         (["--device", "cuda"], "--num-gpus 1"),
                                         (["--ray-address", "nohost"], "HOST:PORT")])
def test_cli_bad_ray_flags_are_one_clear_error(tmp_path, capsys, flags, says):
    root = tmp_path / "runs"
    code = main(["run", "--store", str(root), "--backend", "ray", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and says in err[0]
    assert Store(root).runs(include_dense=True).empty


def test_a_ray_worker_trains_a_queued_run_on_the_cluster(cluster, tmp_path):
    from pruneviz.workers import Worker, submit

    store = Store(tmp_path / "runs")
    run_id = submit(store, SessionConfig(method="l1", rate=0.5, **FAST))
    worker = Worker(store, "ray")
    assert worker.serve(once=True) == 1
    row = store.run(run_id)
    assert row["status"] == "completed", row["error"]
    assert row["summary"]["backend"] == "ray" and row["summary"]["pid"] != os.getpid()
    assert len(store.scalars(run_id, ["loss"])) == row["summary"]["steps"]


def test_a_foreground_ray_sweep_is_never_claimed_by_a_worker(cluster, tmp_path):
    store = Store(tmp_path / "runs")
    configs = [SessionConfig(method="l1", rate=r, **FAST) for r in (0.5, 0.8)]
    seen = []
    thread = threading.Thread(target=run_sweep_on_ray, args=(configs, store),
                              kwargs={"sweep_id": "sweep-fg"})
    thread.start()
    while thread.is_alive():
        seen.append(store.claim("local-worker", "local"))   # a worker on the same store
        time.sleep(0.05)
    thread.join()
    assert seen and all(job is None for job in seen)
    assert set(store.runs().status) == {"completed"}

