"""The native relay writes into uvicorn's request cycle: at start-up the service checks that this uvicorn's cycle
still carries what the C module uses, and falls back to the Python relay (logged, in /readyz) when it does not."""

from __future__ import annotations

import uvicorn

from backend.stream.server import native_path_problem


class _CycleOfAnotherRelease:
    def __init__(self) -> None:
        self.transport = None
        self.flow = None
        self.disconnected = False
        self.response_complete = False  # no `chunked_encoding` any more


class _Flow:
    def __init__(self) -> None:
        self.write_paused = False


def test_the_installed_uvicorn_is_one_the_native_relay_knows() -> None:
    assert native_path_problem() is None, uvicorn.__version__


def test_a_cycle_without_a_field_the_c_module_reads_turns_the_native_path_off() -> None:
    problem = native_path_problem(cycle=_CycleOfAnotherRelease, flow=_Flow)
    assert problem is not None and "chunked_encoding" in problem and uvicorn.__version__ in problem


def test_a_flow_control_without_write_paused_turns_it_off_too() -> None:
    class NoPause:
        def __init__(self) -> None:
            self.reading_paused = False

    problem = native_path_problem(flow=NoPause)
    assert problem is not None and "write_paused" in problem
