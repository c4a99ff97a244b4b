"""The costs screen's "from provider" column, asked in the background from a local stand-in that
answers in the Anthropic Admin API's cost_report format."""

from __future__ import annotations

from heady_tui.config import Config
from heady_tui.ui.widgets.table import KeyedTable
from reports_httpkit import FakeService, Recorded, Reply
from uikit import fixed_console, wait_until

KEY_ENV = "HEADY_UI_TEST_ANTHROPIC_ADMIN_KEY"
WIDE = (160, 50)


def anthropic_costs(request: Recorded) -> Reply:
    results = [
        {"currency": "USD", "amount": "123.45", "model": "claude-sonnet-4-5", "cost_type": "tokens",
         "token_type": "output_tokens", "description": "Claude Sonnet 4.5 Usage - output_tokens"},
        {"currency": "USD", "amount": "50", "model": None, "cost_type": "web_search",
         "token_type": None, "description": "Web search"},
    ]
    bucket = {"starting_at": "2027-01-15T00:00:00Z", "ending_at": "2027-01-16T00:00:00Z", "results": results}
    return Reply(200, {"data": [bucket], "has_more": False, "next_page": None})


def provider_config(url: str) -> Config:
    return Config.model_validate({"cost": {"providers": {"anthropic_admin_key_env": KEY_ENV, "anthropic_base_url": url}}})


def summary_text(app) -> str:
    return str(app.screen.query_one("#cost-summary").content)


async def show_costs(app, pilot):
    await pilot.press("2")
    await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "costs" and app.screen.is_mounted, "the costs screen")


async def test_without_provider_keys_the_column_is_absent_and_says_not_configured(tmp_path):
    async with fixed_console(tmp_path, size=WIDE) as (app, pilot, clock):
        await show_costs(app, pilot)
        assert "from provider: not configured" in summary_text(app)
        labels = [str(c.label) for c in app.screen.query_one("#cost-by_model", KeyedTable).columns.values()]
        assert "From provider" not in labels


async def test_provider_costs_appear_beside_the_cost_from_tokens_by_model_and_by_day(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-ant-admin01-ui-test")
    with FakeService(anthropic_costs) as api:
        async with fixed_console(tmp_path, size=WIDE, config=provider_config(api.url)) as (app, pilot, clock):
            await show_costs(app, pilot)
            by_model = app.screen.query_one("#cost-by_model", KeyedTable)
            by_day = app.screen.query_one("#cost-by_day", KeyedTable)
            await wait_until(pilot, lambda: by_model.cell("claude-sonnet-4-5", "provider") == "$1.23", "the billed model")
            assert by_model.cell("(other)", "provider") == "$0.50"  # billed without a model
            assert by_model.cell("gpt-5-codex", "provider") == "-"  # not reported by any provider
            assert by_day.cell("2027-01-15", "provider") == "$1.73"
            assert by_day.cell("2027-01-15", "cost") == app.screen.query_one("#cost-by_day", KeyedTable).cell("2027-01-15", "cost")
            assert "from provider: anthropic as of" in summary_text(app)
    [request] = api.requests
    assert request.path == "/v1/organizations/cost_report" and request.headers["x-api-key"] == "sk-ant-admin01-ui-test"


async def test_a_rejected_provider_key_is_one_line_on_the_costs_screen(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-ant-admin01-wrong")
    refusal = Reply(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
    with FakeService(refusal) as api:
        async with fixed_console(tmp_path, size=WIDE, config=provider_config(api.url)) as (app, pilot, clock):
            await show_costs(app, pilot)
            await wait_until(pilot, lambda: "admin key rejected" in summary_text(app), "the provider error")
            line = next(line for line in summary_text(app).splitlines() if "admin key rejected" in line)
            assert line == "anthropic: admin key rejected (HTTP 401: invalid x-api-key)"
            by_model = app.screen.query_one("#cost-by_model", KeyedTable)
            assert by_model.cell("claude-sonnet-4-5", "provider") == "-"


async def test_a_missing_key_variable_is_said_plainly(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    config = Config.model_validate({"cost": {"providers": {"anthropic_admin_key_env": KEY_ENV}}})
    async with fixed_console(tmp_path, size=WIDE, config=config) as (app, pilot, clock):
        await show_costs(app, pilot)
        await wait_until(pilot, lambda: f"${KEY_ENV} is not set" in summary_text(app), "the missing key line")


async def test_the_providers_are_asked_once_per_refresh_interval_not_per_visit(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-ant-admin01-ui-test")
    with FakeService(anthropic_costs) as api:
        async with fixed_console(tmp_path, size=WIDE, config=provider_config(api.url)) as (app, pilot, clock):
            await show_costs(app, pilot)
            await wait_until(pilot, lambda: "from provider: anthropic" in summary_text(app), "the first answer")
            await pilot.press("1")
            await show_costs(app, pilot)
            await pilot.pause(0.2)
            assert len(api.requests) == 1
            clock.advance(app.config.cost.providers.refresh_s)
            await pilot.press("1")
            await show_costs(app, pilot)
            await wait_until(pilot, lambda: len(api.requests) == 2, "a second ask after refresh_s")
