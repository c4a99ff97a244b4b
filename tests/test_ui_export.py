"""Report export from the console (`e`): the dialog asks format and range, the report is written
off the UI into the data dir, and a bad range is one line with nothing written."""

from __future__ import annotations

import json

from heady_tui.report import ReportData
from heady_tui.ui.application import ActionsProvider
from heady_tui.ui.modals.export import ExportModal
from heady_tui.ui.screens.help import HelpScreen
from uikit import fixed_console, wait_until


def dialog(app) -> ExportModal | None:
    """The export dialog once it is on screen with its buttons mounted."""
    screen = app.screen
    return screen if isinstance(screen, ExportModal) and screen.query("#write") else None


async def test_export_writes_a_json_report_into_the_data_dir_that_reads_back_as_report_data(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        await pilot.press("e")
        modal = await wait_until(pilot, lambda: dialog(app), "the export dialog")
        await pilot.click("#format-json")
        await pilot.click("#write")
        path = await wait_until(pilot, lambda: modal.written, "the report to be written")
        assert path.parent == app.supervisor.paths.data_dir / "reports"
        assert path.name.startswith("heady-report-") and path.suffix == ".json"
        report = ReportData.model_validate_json(path.read_text())
        assert report.simulated and {n.id for n in report.nodes} >= {"build-1", "build-2", "gpu-1"}
        assert report.costs.total_usd > 0 and report.sessions
        assert f"wrote {path}" == str(modal.query_one("#export-result").content)


async def test_export_defaults_to_html_over_the_last_24_hours(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        await pilot.press("e")
        modal = await wait_until(pilot, lambda: dialog(app), "the export dialog")
        await pilot.press("enter")
        path = await wait_until(pilot, lambda: modal.written, "the report to be written")
        text = path.read_text()
        assert path.suffix == ".html" and text.lstrip().startswith("<!") and "</html>" in text


async def test_export_markdown_over_a_range_typed_as_an_iso_time(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        await pilot.press("e")
        modal = await wait_until(pilot, lambda: dialog(app), "the export dialog")
        await pilot.click("#format-md")
        since = modal.query_one("#export-since")
        since.value = "2027-01-15T13:00Z"
        await pilot.click("#write")
        path = await wait_until(pilot, lambda: modal.written, "the report to be written")
        assert path.suffix == ".md" and "2027-01-15T13:00:00" in path.read_text()


async def test_a_bad_range_is_one_line_and_nothing_is_written(tmp_path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        await pilot.press("e")
        modal = await wait_until(pilot, lambda: dialog(app), "the export dialog")
        since = modal.query_one("#export-since")
        since.value = "yesterday-ish"
        await pilot.press("enter")
        result = modal.query_one("#export-result")
        line = await wait_until(pilot, lambda: str(result.content).startswith("not written") and str(result.content), "the error")
        assert "\n" not in line and "range: not a duration or an ISO 8601 time: 'yesterday-ish'" in line
        assert modal.written is None and not (app.supervisor.paths.data_dir / "reports").exists()
        await pilot.press("escape")
        await wait_until(pilot, lambda: dialog(app) is None, "the dialog to close")


async def test_export_is_offered_in_read_only_mode_in_footer_help_and_palette(tmp_path):
    async with fixed_console(tmp_path, read_only=True) as (app, pilot, clock):
        assert "export" in {b.binding.id for b in app.active_bindings.values()}
        assert "export" in {a.id for a in ActionsProvider(app.screen)._candidates()}
        await pilot.press("question_mark")
        help_screen = await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen) and app.screen, "help")
        assert ("e", "Export report") in {(key, description) for key, description, _, _ in help_screen.rows()}
        await pilot.press("escape", "e")
        modal = await wait_until(pilot, lambda: dialog(app), "the export dialog in a read-only console")
        await pilot.click("#format-json")
        await pilot.click("#write")
        path = await wait_until(pilot, lambda: modal.written, "the report to be written")
        assert json.loads(path.read_text())["simulated"] is True
