"""The wire contract: what parses, and the one-line error for everything that does not."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heady_agent import protocol
from heady_agent.protocol import FrameError


def _hello() -> dict:
    return {
        "type": "hello",
        "protocol": 1,
        "node": {
            "id": "build-1",
            "hostname": "build-1",
            "agent_version": "0.1.0",
            "os": "Linux",
            "cpu_count": 8,
            "mem_total": 16 << 30,
            "labels": {"rack": "a"},
        },
        "journal": {"id": "j1", "first_seq": 1, "last_seq": 10},
    }


def test_hello_frame_parses_into_its_model():
    frame = protocol.parse_agent_frame(json.dumps(_hello()))
    assert isinstance(frame, protocol.Hello)
    assert frame.node.cpu_count == 8
    assert frame.journal.last_seq == 10


def test_event_frame_carries_kind_session_and_data():
    text = json.dumps(
        {
            "type": "event",
            "journal": "j1",
            "seq": 5,
            "ts": 1_800_000_000.5,
            "kind": "llm.call",
            "session": "s1",
            "data": {"provider": "anthropic", "model": "claude-sonnet-4-5", "input_tokens": 3},
        }
    )
    frame = protocol.parse_agent_frame(text)
    assert isinstance(frame, protocol.Event)
    data = protocol.parse_event_data(frame.kind, frame.data)
    assert isinstance(data, protocol.LlmCallData)
    assert data.input_tokens == 3 and data.ok is True


def test_malformed_json_is_bad_json():
    with pytest.raises(FrameError) as err:
        protocol.parse_console_frame('{"type": "ack", ')
    assert err.value.code == "bad_json"


def test_deeply_nested_agent_frame_is_a_frame_error_not_a_recursion_error():
    nested = '{"type":"event","data":' + "[" * 200_000 + "]" * 200_000 + "}"
    with pytest.raises(FrameError) as err:
        protocol.parse_agent_frame(nested)
    assert (err.value.code, err.value.message) == ("bad_json", "frame is nested too deeply")


def test_deeply_nested_console_frame_is_a_frame_error_not_a_recursion_error():
    nested = '{"type":"subscribe","x":' + "{\"a\":" * 100_000 + "1" + "}" * 100_000 + "}"
    with pytest.raises(FrameError) as err:
        protocol.parse_console_frame(nested)
    assert err.value.code == "bad_json"


def test_unknown_frame_type_is_named_in_the_error():
    with pytest.raises(FrameError) as err:
        protocol.parse_console_frame('{"type": "reboot"}')
    assert err.value.code == "unknown_type"
    assert "reboot" in err.value.message


def test_frame_that_is_not_an_object_is_refused():
    with pytest.raises(FrameError) as err:
        protocol.parse_agent_frame("[1, 2, 3]")
    assert err.value.code == "bad_frame"


def test_oversized_frame_is_refused_before_parsing():
    text = json.dumps({"type": "ack", "seq": 1, "pad": "x" * protocol.MAX_FRAME_BYTES})
    with pytest.raises(FrameError) as err:
        protocol.parse_console_frame(text)
    assert err.value.code == "too_large"


def test_command_action_outside_the_fixed_set_is_refused():
    text = json.dumps({"type": "command", "id": "c1", "action": "shell.exec", "args": {"cmd": "rm -rf /"}})
    with pytest.raises(FrameError) as err:
        protocol.parse_console_frame(text)
    assert err.value.code == "bad_frame"
    assert "action" in err.value.message


def test_negative_seq_in_ack_is_refused():
    with pytest.raises(FrameError):
        protocol.parse_console_frame('{"type": "ack", "seq": -1}')


def test_command_args_are_validated_per_action():
    with pytest.raises(FrameError) as err:
        protocol.parse_command_args("session.renice", {"nice": 99})
    assert err.value.code == "bad_args"
    assert protocol.parse_command_args("session.kill", {}) is None
    moved = protocol.parse_command_args("queue.move", {"count": 3})
    assert isinstance(moved, protocol.QueueMoveArgs) and moved.count == 3


def test_every_action_in_the_design_is_accepted():
    for action in protocol.ACTIONS:
        frame = protocol.parse_console_frame(json.dumps({"type": "command", "id": "x", "action": action}))
        assert frame.action == action


def test_frames_round_trip_through_dump():
    frame = protocol.Metrics(journal="j", seq=1, ts=1_800_000_002.0, cpu=10, load=[0.1, 0.2, 0.3], mem=50, swap=0)
    again = protocol.parse_agent_frame(protocol.dump(frame))
    assert again == frame


@given(st.text(max_size=300))
def test_any_text_either_parses_or_raises_frame_error(text):
    for parse in (protocol.parse_agent_frame, protocol.parse_console_frame):
        try:
            parse(text)
        except FrameError as exc:
            assert exc.code in {"bad_json", "bad_frame", "unknown_type", "too_large"}
            assert "\n" not in exc.message


@given(st.integers(min_value=0, max_value=len(json.dumps(_hello())) - 1))
def test_truncated_hello_never_parses(cut):
    with pytest.raises(FrameError):
        protocol.parse_agent_frame(json.dumps(_hello())[:cut])


@given(
    st.dictionaries(
        st.sampled_from(["type", "seq", "since", "journal", "detail", "id", "action", "args", "target"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=10), st.booleans(), st.lists(st.integers(), max_size=3)),
    )
)
def test_random_console_objects_either_parse_or_raise_frame_error(obj):
    try:
        protocol.parse_console_frame(json.dumps(obj))
    except FrameError:
        pass
