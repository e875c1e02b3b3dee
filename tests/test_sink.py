"""RunSink names exactly what a session needs of a store, and both sinks a session is given (the
Store, the Ray task's _Sink) satisfy it, checked on names and signatures."""

import ast
import inspect

import pytest

from pruneviz import loop, session
from pruneviz.raytask import _Sink
from pruneviz.store import RunSink, Store
from pruneviz.store.sink import MEMBERS, mismatches


@pytest.fixture
def sinks(tmp_path):
    return [Store(tmp_path / "runs"), _Sink(tmp_path / "sink", None)]


def test_the_store_and_the_ray_sink_are_run_sinks(sinks):
    for sink in sinks:
        assert isinstance(sink, RunSink)
        assert mismatches(sink) == []


def store_calls(module) -> set[str]:
    """Names the module reads off a `store` (a parameter or self.store)."""
    names = set()
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Attribute):
            v = node.value
            if (isinstance(v, ast.Name) and v.id == "store") or (
                    isinstance(v, ast.Attribute) and v.attr == "store"):
                names.add(node.attr)
    return names


def test_run_sink_lists_exactly_what_a_session_uses():
    assert store_calls(loop) | store_calls(session) == set(MEMBERS)


def test_the_session_is_typed_to_take_a_run_sink():
    for fn in (session.trained, session.run_session, session.dense_start, loop.train,
               loop.Session.__init__):
        assert inspect.signature(fn).parameters["store"].annotation == "RunSink", fn


def test_a_sink_missing_a_member_or_a_parameter_is_refused(sinks, monkeypatch):
    monkeypatch.delattr(_Sink, "dense_save")
    assert mismatches(sinks[1]) == ["_Sink has no dense_save"]
    assert not isinstance(sinks[1], RunSink)
    monkeypatch.undo()

    def write(self, run_id, records):           # no step=
        pass

    def run_dir(self, run_id, create=False):     # another default
        pass

    def start_run(self, run_id, total_steps, phase):    # a parameter a session never passes
        pass

    for fn in (write, run_dir, start_run):
        monkeypatch.setattr(_Sink, fn.__name__, fn)
    assert mismatches(sinks[1]) == [
        "_Sink.start_run requires phase, which a session never passes",
        "_Sink.write takes no step",
        "_Sink.run_dir: create defaults to False, not True",
    ]
