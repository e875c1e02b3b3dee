"""AppTest leaves its script as sys.modules["__main__"] (conftest puts the real one back): a
spawned process started by a later test must start. In file order: the page, then the spawn."""

import multiprocessing


def _page(text: str) -> None:
    import streamlit as st

    st.write(text)


def test_an_apptest_page_with_arguments_runs():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_page, args=("hello",)).run()
    assert not at.exception and at.markdown[0].value == "hello"


def test_a_later_test_can_spawn_a_process():
    proc = multiprocessing.get_context("spawn").Process(target=print, args=("",))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
