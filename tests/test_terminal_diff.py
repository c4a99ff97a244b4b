"""Only changed cells reach the terminal: ScreenDiff against frames written the way Textual writes them
(a cursor move per line, an SGR per segment, a reset after it)."""

from __future__ import annotations

from heady_tui.ui.terminal import SYNC_END, SYNC_START, ScreenDiff

SIZE = (40, 10)
GREY = "38;5;252;48;5;233"
GREEN = "1;38;5;71;48;5;233"


def line(row: int, *segments: tuple[str, str], col: int = 1) -> str:
    """One line as Textual writes it: move, then each segment in its style followed by a reset."""
    return f"\x1b[{row};{col}H" + "".join(f"\x1b[{style}m{text}\x1b[0m" if style else text for style, text in segments)


def caret(row: int = 1, col: int = 3) -> str:
    return f"\x1b[{row};{col}H"


def primed(*frames: str) -> ScreenDiff:
    diff = ScreenDiff()
    for frame in frames:
        diff.frame(frame, SIZE)
    return diff


def cpu_frame(cpu: str = "27%", load: str = "0.31", cpu_style: str = GREEN) -> str:
    """A one-line frame: "cpu 27% load 0.31" in three segments, then the caret."""
    return line(2, (GREY, "cpu "), (cpu_style, cpu), (GREY, f" load {load}")) + caret()


FIRST = cpu_frame()


def test_the_first_frame_goes_out_whole():
    out = ScreenDiff().frame(FIRST, SIZE)
    assert "cpu " in out and "27%" in out and " load 0.31" in out


def test_a_frame_the_terminal_already_shows_writes_nothing():
    assert primed(FIRST).frame(FIRST, SIZE) == ""


def test_a_changed_cell_is_written_alone_in_its_style_at_its_place():
    diff = primed(FIRST)
    out = diff.frame(cpu_frame(cpu="28%"), SIZE)
    assert out == f"\x1b[2;6H\x1b[0;{GREEN}m8\x1b[0m\x1b[1;3H"


def test_a_line_rewritten_from_its_left_edge_sends_only_what_changed_in_it():
    diff = primed(FIRST)
    out = diff.frame(cpu_frame(load="0.42"), SIZE)
    assert out == f"\x1b[2;16H\x1b[0;{GREY}m42\x1b[0m\x1b[1;3H"


def test_a_short_unchanged_gap_is_resent_instead_of_a_cursor_move():
    diff = primed(line(2, (GREY, "cpu 27% 31%")) + caret())
    out = diff.frame(line(2, (GREY, "cpu 28% 32%")) + caret(), SIZE)
    assert out == f"\x1b[2;6H\x1b[0;{GREY}m8% 32\x1b[0m\x1b[1;3H"


def test_a_long_unchanged_gap_is_jumped_over():
    diff = primed(FIRST)
    out = diff.frame(cpu_frame(cpu="28%", load="0.32"), SIZE)
    assert out == f"\x1b[2;6H\x1b[0;{GREEN}m8\x1b[2;17H\x1b[0;{GREY}m2\x1b[0m\x1b[1;3H"


def test_a_change_of_style_alone_is_written():
    diff = primed(FIRST)
    out = diff.frame(cpu_frame(cpu_style=GREY), SIZE)
    assert out == f"\x1b[2;5H\x1b[0;{GREY}m27%\x1b[0m\x1b[1;3H"


def test_a_moved_caret_alone_is_written():
    assert primed(FIRST).frame(FIRST.replace(caret(), caret(4, 9)), SIZE) == "\x1b[4;9H"


def test_a_sequence_it_does_not_read_goes_through_whole_and_the_next_frame_is_written_whole():
    diff = primed(FIRST)
    clear = "\x1b[2J" + FIRST
    assert diff.frame(clear, SIZE) == clear
    assert "cpu " in diff.frame(FIRST, SIZE)


def test_a_write_cut_inside_an_escape_sequence_goes_through_whole():
    diff = primed(FIRST)
    assert diff.frame(FIRST + "\x1b[", SIZE) == FIRST + "\x1b["
    assert "cpu " in diff.frame(FIRST, SIZE)


def test_a_new_terminal_size_forgets_the_screen():
    diff = primed(FIRST)
    assert "cpu " in diff.frame(FIRST, (80, 24))


def test_forget_makes_the_next_frame_go_out_whole():
    diff = primed(FIRST)
    diff.forget()
    assert "cpu " in diff.frame(FIRST, SIZE)


def test_without_a_terminal_size_every_write_goes_through():
    diff = ScreenDiff()
    assert diff.frame(FIRST, None) == FIRST
    assert diff.frame(FIRST, None) == FIRST


def test_text_that_would_wrap_past_the_right_edge_goes_through():
    diff = primed(FIRST)
    wide = line(3, (GREY, "x" * 41)) + caret()
    assert diff.frame(wide, SIZE) == wide


def test_a_line_feed_off_the_bottom_row_goes_through():
    diff = primed(FIRST)
    scroll = line(10, (GREY, "last")) + "\r\n" + caret()
    assert diff.frame(scroll, SIZE) == scroll


def test_synchronized_update_brackets_around_a_frame_that_writes_nothing_are_dropped():
    diff = primed(FIRST)
    assert [diff.frame(SYNC_START, SIZE), diff.frame(FIRST, SIZE), diff.frame(SYNC_END, SIZE)] == ["", "", ""]


def test_synchronized_update_brackets_stay_around_a_frame_that_writes():
    diff = primed(FIRST)
    start = diff.frame(SYNC_START, SIZE)
    out = diff.frame(cpu_frame(cpu="28%"), SIZE)
    end = diff.frame(SYNC_END, SIZE)
    assert (start, out.startswith(SYNC_START), end) == ("", True, SYNC_END)


def test_a_row_where_a_wide_character_is_written_goes_out_as_textual_wrote_it():
    diff = primed(line(4, (GREY, "title: ab"), col=1) + caret())
    out = diff.frame(line(4, (GREY, "title: 世"), col=1) + caret(), SIZE)
    assert "title: 世" in out


def test_overwriting_half_of_a_wide_character_forgets_the_other_half():
    diff = primed(line(4, (GREY, "世界"), col=1) + caret())
    diff.frame(line(4, (GREY, "x"), col=2) + caret(), SIZE)  # the terminal blanks 世's first half
    assert "世" in diff.frame(line(4, (GREY, "世"), col=1) + caret(), SIZE)


def test_a_combining_mark_joins_the_character_before_it():
    diff = primed(line(5, (GREY, "cafe"), col=1) + caret())
    out = diff.frame(line(5, (GREY, "cafe\u0301"), col=1) + caret(), SIZE)
    assert "e\u0301" in out
    assert diff.frame(line(5, (GREY, "cafe\u0301"), col=1) + caret(), SIZE) == ""


def test_text_left_in_a_style_carries_into_the_next_frame_as_on_the_terminal():
    diff = primed(line(6, (GREY, "ab")) + f"\x1b[{GREEN}m" + caret())  # no reset at the end
    out = diff.frame(line(6, ("", "ab")) + caret(), SIZE)  # unstyled text: still GREEN on the terminal
    assert out == f"\x1b[6;1H\x1b[0;{GREEN}mab\x1b[0m\x1b[1;3H"
